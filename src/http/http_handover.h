// A connection handed from a worker of an old generation to a worker of the new one, so that a reload
// or an upgrade cuts nothing long-lived: an idle keep-alive connection, or a plain-TCP tunnel (a
// WebSocket or another `Upgrade`). It travels as one control message: a versioned description in the
// payload and its descriptors (SCM_RIGHTS).
//
// The receiving worker trusts nothing in it: decode_handover() checks the version, the kind, every
// number and size, the addresses, and that each descriptor is a connected stream socket; a bad
// description is refused with the reason, its descriptors closed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "event/connection.h"
#include "os/unix/control.h"
#include "os/unix/fd.h"
#include "os/unix/socket.h"

namespace baton::http {

constexpr int kHandoverVersion = 1;
// Bytes a description carries in its text (read and not yet used), all kinds together: with base64
// they fit a control message. An idle connection holding more is not handed over; it drains where it
// is. A tunnel's bytes in flight go in a memory file sent along with it instead, when they are more.
constexpr size_t kHandoverMaxPending = 32 * 1024;
// What that file may hold: a tunnel's two queues stop growing at their high-water mark (plus a read),
// far below this.
constexpr size_t kHandoverMaxSpill = 4 * 1024 * 1024;

struct HandedConnection {
  enum class Kind { kIdle, kTunnel };
  Kind kind = Kind::kIdle;
  std::string listener;       // the key of the listener the client connected to
  SockAddr peer;              // the client's address (as the PROXY protocol header gave it, if any)
  bool via_proxy_protocol = false;
  uint64_t requests = 0;      // kIdle: requests served on the connection so far
  std::string preread;        // kIdle: bytes of the next request already read
  std::string to_upstream;    // kTunnel: read from the client, not yet written to the upstream
  std::string to_client;      // kTunnel: read from the upstream, not yet written to the client
  int64_t idle_left_ms = 0;   // until the connection's idle timeout
  int64_t timeout_ms = 0;     // kTunnel: its idle timeout (the proxy's read_timeout where it began)
  // kIdle: the client; kTunnel: the client, then the upstream.
  std::vector<Fd> fds;

  size_t pending() const { return preread.size() + to_upstream.size() + to_client.size(); }
};

// The client's part of a description: the key of the listener it came to, its address, and whether
// that address came from a PROXY protocol header.
void describe_client(const Connection& c, HandedConnection* out);
// A client's address as a description carries it.
SockAddr peer_sockaddr(const PeerAddr& p);

// The message for a connection (its descriptors move into it). Returns false, with the reason, for one
// that cannot be described (too many bytes pending, the wrong number of descriptors, no memory file).
bool encode_handover(HandedConnection&& c, Message* out, std::string* why);

// Checks and reads a description (taking its descriptors). On failure the reason is in *why and the
// descriptors are closed.
bool decode_handover(Message&& m, HandedConnection* out, std::string* why);

}  // namespace baton::http

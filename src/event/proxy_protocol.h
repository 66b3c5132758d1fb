// The PROXY protocol (HAProxy's, versions 1 and 2) as a listener with `proxy_protocol` expects it in
// front of every connection: one parser that looks at the bytes received so far and says whether
// they hold a complete header, need more, or can never become one.
#pragma once

#include <cstddef>

#include "os/unix/socket.h"

namespace baton {

// A v1 line, CRLF included, is never longer than this (the specification's worst case).
inline constexpr size_t kProxyV1MaxLength = 107;
// A v2 header may carry TLVs up to 16 + 65535 bytes; baton refuses anything larger than this so that
// a peer cannot make a connection buffer 64 KiB before HTTP starts. Real proxies send well under it.
inline constexpr size_t kProxyV2MaxLength = 4096;

enum class ProxyResult { kNeedMore, kDone, kError };

struct ProxyHeader {
  bool local = false;     // v1 UNKNOWN or v2 LOCAL: keep the real peer address
  SockAddr source;        // valid when !local
  SockAddr destination;   // valid when !local
  size_t length = 0;      // bytes of the header, to be skipped before HTTP starts
};

// data/len: everything received so far on the connection; the header may arrive in pieces.
// kNeedMore only while the bytes seen are a prefix of a valid header: at most kProxyV1MaxLength - 1
// bytes for v1, and for v2 until the length the header announces (never above kProxyV2MaxLength)
// has arrived. kError as soon as the bytes cannot start a valid header. *out is written only on
// kDone. Allocates nothing and keeps no state between calls.
ProxyResult parse_proxy_header(const char* data, size_t len, ProxyHeader* out);

}  // namespace baton

#include <string>

#include "event/connection.h"

namespace baton {

// The first handler of a connection on a `proxy_protocol` listener: it reads the header, makes the
// client it names the connection's peer, and hands the connection (with the bytes that followed the
// header) to the protocol that comes next. A connection that never completes its header within the
// timeout, or sends one that cannot be valid, is closed without an answer: whoever is on the other
// side is not a proxy speaking to us.
class ProxyProtocolReader final : public ConnectionHandler {
 public:
  // Installs the next handler on c and starts it with what was read after the header.
  using Next = void (*)(void* arg, Connection* c, std::string_view preread);
  // exact: take the header's bytes only and leave what follows in the socket (for TLS, whose
  // library reads the socket itself); next then gets no preread.
  ProxyProtocolReader(Connection* c, double timeout, Next next, void* arg, bool exact = false);
  void start();

  void on_readable() override;
  void on_writable() override {}
  void on_timeout() override;

 private:
  void read_exact();
  Connection* c_;
  double timeout_;
  Next next_;
  void* arg_;
  bool exact_;
  std::string in_;
};

}  // namespace baton

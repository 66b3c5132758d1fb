// The control protocol: small framed messages over SOCK_SEQPACKET Unix sockets, between a master and
// its workers (a socketpair made before each fork), between an old and a new master during a live
// upgrade, and between `baton -s` and the master (the control socket).
//
// One packet is one message: a fixed header (magic, protocol version, type, payload length) and a
// payload of "key=value" lines. A message may carry descriptors (SCM_RIGHTS); they are received with
// MSG_CMSG_CLOEXEC and a truncated control part (MSG_CTRUNC) is an error, never a silent loss.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "os/unix/fd.h"

namespace baton {

constexpr uint32_t kControlMagic = 0x6274636eu;  // "btcn"
constexpr uint16_t kControlVersion = 1;
constexpr size_t kControlMaxPayload = 60 * 1024;
constexpr size_t kControlMaxFds = 64;  // per message

enum class MsgType : uint16_t {
  kRegister = 1,          // a worker or a new master introduces itself: pid, role, generation
  kReady = 2,             // the sender accepts connections
  kFdRequest = 3,         // a new master asks for the listening sockets
  kFdTransferStart = 4,   // the old master announces how many descriptors follow
  kAck = 5,               // confirmation of the previous step
  kShutdown = 6,          // stop: mode=drain|fast
  kStatus = 7,            // ask for state: `baton -s status`, and the master's ping to each worker
  kUpgrade = 8,           // start a live binary upgrade
  kReload = 9,            // reload the configuration
  kResult = 10,           // outcome of a request: ok=1|0, reason=...
  kFd = 11,               // one descriptor, its key in the payload
  kWorker = 12,           // a worker handed to the master that adopts it: pid, generation, slot; its channel
  kSnapshot = 13,         // the configuration files as the candidate of an upgrade read them (a memfd)
  kConnection = 14,       // a client connection handed to a worker of the new generation, with its sockets
};

const char* msg_type_name(MsgType t);

struct Message {
  MsgType type = MsgType::kAck;
  std::vector<std::pair<std::string, std::string>> fields;
  std::vector<Fd> fds;

  Message() = default;
  explicit Message(MsgType t) : type(t) {}
  Message& set(std::string key, std::string value);
  Message& set(std::string key, long long value) { return set(std::move(key), std::to_string(value)); }
  // "" when absent.
  std::string get(std::string_view key) const;
  long long get_int(std::string_view key, long long dflt = 0) const;
  bool has(std::string_view key) const;
};

// Encodes and sends one message (with its descriptors, which stay owned by msg). Blocking sockets
// block; non-blocking ones return -1 with EAGAIN. Returns 0 or -1 with errno.
int send_message(int fd, const Message& msg);
// Receives one message. Returns 1 with *out filled, 0 on end of stream, -1 with errno (EAGAIN on an
// empty non-blocking socket; EPROTO for a malformed message, a foreign version or truncated
// descriptors).
int recv_message(int fd, Message* out);
// Waits up to timeout_ms for one message on a blocking or non-blocking socket.
int recv_message_timeout(int fd, Message* out, int timeout_ms);

// Messages waiting for room on a non-blocking channel, in order. A channel holds a limited number of
// messages (the socket's buffer: some hundred small ones, fewer large ones): a sender that must not
// lose one, such as a connection handed over, queues what the channel does not take and sends it
// when the channel is writable again.
class Outbox {
 public:
  // Sends now when nothing waits and the channel takes it, else queues it (it takes msg). -1 with
  // errno on another failure: the message is dropped and its descriptors closed.
  int send(int fd, Message&& msg);
  // Sends what waits, in order, until the channel is full. A message that cannot be sent for a
  // reason of its own is dropped (counted in dropped()) and the others go on; -1 with errno when
  // the channel is gone, and what waits is then dropped.
  int flush(int fd);
  bool empty() const { return queue_.empty(); }
  size_t size() const { return queue_.size(); }
  void clear() { queue_.clear(); }
  size_t dropped() const { return dropped_; }

 private:
  std::deque<Message> queue_;
  size_t dropped_ = 0;
};

// A SOCK_SEQPACKET socketpair, close-on-exec and non-blocking; [0] for the parent, [1] for the child.
bool control_socketpair(Fd* parent, Fd* child);

// The control socket's address: a path, or "abstract" which becomes "@baton-<pid>".
struct ControlAddress {
  std::string text;  // as shown to people: a path, or "@name"
  sockaddr_un addr{};
  socklen_t len = 0;
};
ControlAddress make_control_address(const std::string& configured, pid_t pid);
// Base64 of the address text, for BATON_CONTROL_SOCKET, and back.
std::string base64_encode(std::string_view in);
bool base64_decode(std::string_view in, std::string* out);
bool control_address_from_text(const std::string& text, ControlAddress* out);

// Listens on the address: a socket file is created mode 0600 under a temporary name and renamed into
// place, so that a new master can take over the path of an old one without a moment where it is
// missing. Returns an invalid Fd and sets *err on failure.
Fd listen_control(const ControlAddress& addr, std::string* err);
// Connects (blocking, with close-on-exec). Returns an invalid Fd and sets *err on failure.
Fd connect_control(const ControlAddress& addr, std::string* err);

// The peer of a Unix socket must be root or the same user as this process.
bool peer_allowed(int fd, pid_t* peer_pid = nullptr);

}  // namespace baton

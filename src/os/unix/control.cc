#include "os/unix/control.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>

namespace baton {

namespace {

struct Header {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t length;
  uint32_t nfds;
};

}  // namespace

const char* msg_type_name(MsgType t) {
  switch (t) {
    case MsgType::kRegister: return "register";
    case MsgType::kReady: return "ready";
    case MsgType::kFdRequest: return "fd_request";
    case MsgType::kFdTransferStart: return "fd_transfer_start";
    case MsgType::kAck: return "ack";
    case MsgType::kShutdown: return "shutdown";
    case MsgType::kStatus: return "status";
    case MsgType::kUpgrade: return "upgrade";
    case MsgType::kReload: return "reload";
    case MsgType::kResult: return "result";
    case MsgType::kFd: return "fd";
    case MsgType::kWorker: return "worker";
    case MsgType::kSnapshot: return "snapshot";
    case MsgType::kConnection: return "connection";
  }
  return "?";
}

Message& Message::set(std::string key, std::string value) {
  for (auto& [k, v] : fields) {
    if (k == key) {
      v = std::move(value);
      return *this;
    }
  }
  fields.emplace_back(std::move(key), std::move(value));
  return *this;
}

std::string Message::get(std::string_view key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return v;
  return "";
}

long long Message::get_int(std::string_view key, long long dflt) const {
  std::string v = get(key);
  if (v.empty()) return dflt;
  char* end = nullptr;
  long long n = strtoll(v.c_str(), &end, 10);
  return (end && *end == '\0') ? n : dflt;
}

bool Message::has(std::string_view key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return true;
  return false;
}

int send_message(int fd, const Message& msg) {
  std::string payload;
  for (const auto& [k, v] : msg.fields) {
    // Values are single lines: a newline inside one would forge another field.
    payload.append(k).push_back('=');
    for (char c : v) payload.push_back(c == '\n' ? ' ' : c);
    payload.push_back('\n');
  }
  if (payload.size() > kControlMaxPayload || msg.fds.size() > kControlMaxFds) {
    errno = EMSGSIZE;
    return -1;
  }
  Header h{kControlMagic, kControlVersion, static_cast<uint16_t>(msg.type), static_cast<uint32_t>(payload.size()),
           static_cast<uint32_t>(msg.fds.size())};
  iovec iov[2] = {{&h, sizeof(h)}, {payload.data(), payload.size()}};
  msghdr mh{};
  mh.msg_iov = iov;
  mh.msg_iovlen = payload.empty() ? 1 : 2;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kControlMaxFds)];
  if (!msg.fds.empty()) {
    size_t n = msg.fds.size();
    mh.msg_control = cbuf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    int* fds = reinterpret_cast<int*>(CMSG_DATA(c));
    for (size_t i = 0; i < n; i++) fds[i] = msg.fds[i].get();
  }
  ssize_t r;
  do {
    r = ::sendmsg(fd, &mh, MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? -1 : 0;
}

namespace {
// The channel itself is gone: nothing queued for it can leave.
bool channel_gone(int err) { return err == EPIPE || err == ECONNRESET || err == ENOTCONN || err == EBADF; }
}  // namespace

int Outbox::send(int fd, Message&& msg) {
  if (queue_.empty()) {
    if (send_message(fd, msg) == 0) return 0;
    if (errno != EAGAIN) return -1;
  }
  queue_.push_back(std::move(msg));
  return 0;
}

int Outbox::flush(int fd) {
  while (!queue_.empty()) {
    if (send_message(fd, queue_.front()) < 0) {
      if (errno == EAGAIN) return 0;
      if (channel_gone(errno)) {
        int err = errno;
        queue_.clear();
        errno = err;
        return -1;
      }
      dropped_++;  // this message cannot be sent (too many descriptors in flight, say); the rest may
    }
    queue_.pop_front();
  }
  return 0;
}

int recv_message(int fd, Message* out) {
  *out = Message();
  alignas(Header) char buf[sizeof(Header) + kControlMaxPayload + 1];
  iovec iov{buf, sizeof(buf)};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kControlMaxFds)];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof(cbuf);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -1;
  if (n == 0) return 0;
  // Take ownership of every descriptor first, so that none leaks whatever else is wrong.
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* fds = reinterpret_cast<const int*>(CMSG_DATA(c));
    for (size_t i = 0; i < count; i++) out->fds.emplace_back(fds[i]);
  }
  Header h;
  if ((mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || static_cast<size_t>(n) < sizeof(h)) {
    out->fds.clear();
    errno = EPROTO;
    return -1;
  }
  memcpy(&h, buf, sizeof(h));
  if (h.magic != kControlMagic || h.version != kControlVersion || h.length != static_cast<size_t>(n) - sizeof(h) ||
      h.nfds != out->fds.size()) {
    out->fds.clear();
    errno = EPROTO;
    return -1;
  }
  out->type = static_cast<MsgType>(h.type);
  std::string_view payload(buf + sizeof(h), h.length);
  while (!payload.empty()) {
    size_t nl = payload.find('\n');
    std::string_view line = payload.substr(0, nl);
    size_t eq = line.find('=');
    if (eq != std::string_view::npos) out->fields.emplace_back(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
    if (nl == std::string_view::npos) break;
    payload.remove_prefix(nl + 1);
  }
  return 1;
}

int recv_message_timeout(int fd, Message* out, int timeout_ms) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    int got = recv_message(fd, out);
    if (got < 0 && errno == EAGAIN) continue;
    return got;
  }
}

bool control_socketpair(Fd* parent, Fd* child) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) return false;
  parent->reset(sv[0]);
  child->reset(sv[1]);
  return true;
}

ControlAddress make_control_address(const std::string& configured, pid_t pid) {
  ControlAddress a;
  if (configured == "abstract") a.text = "@baton-" + std::to_string(pid);
  else a.text = configured;
  control_address_from_text(a.text, &a);
  return a;
}

bool control_address_from_text(const std::string& text, ControlAddress* out) {
  out->text = text;
  out->addr = sockaddr_un{};
  out->addr.sun_family = AF_UNIX;
  if (text.empty() || text.size() >= sizeof(out->addr.sun_path)) return false;
  if (text[0] == '@') {
    // Abstract namespace: a leading NUL, no file.
    memcpy(out->addr.sun_path + 1, text.data() + 1, text.size() - 1);
    out->len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size());
  } else {
    memcpy(out->addr.sun_path, text.data(), text.size());
    out->len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size() + 1);
  }
  return true;
}

static const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
  std::string out;
  size_t i = 0;
  while (i + 2 < in.size()) {
    uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) | static_cast<uint8_t>(in[i + 2]);
    out.push_back(kB64[v >> 18]);
    out.push_back(kB64[(v >> 12) & 63]);
    out.push_back(kB64[(v >> 6) & 63]);
    out.push_back(kB64[v & 63]);
    i += 3;
  }
  if (i < in.size()) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    out.push_back(kB64[v >> 18]);
    out.push_back(kB64[(v >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

bool base64_decode(std::string_view in, std::string* out) {
  out->clear();
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const char* p = strchr(kB64, c);
    if (!p || c == '\0') return false;
    acc = (acc << 6) | static_cast<uint32_t>(p - kB64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

Fd listen_control(const ControlAddress& a, std::string* err) {
  Fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    *err = std::string("socket() failed (") + strerror(errno) + ")";
    return Fd();
  }
  if (a.text[0] == '@') {
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a.addr), a.len) < 0) {
      *err = "bind() to control socket " + a.text + " failed (" + strerror(errno) + ")";
      return Fd();
    }
  } else {
    // Bind a fresh name, restrict it, then move it over the final path in one step.
    std::string tmp = a.text + "." + std::to_string(getpid()) + ".tmp";
    ControlAddress t;
    if (!control_address_from_text(tmp, &t)) {
      *err = "control socket path \"" + a.text + "\" is too long";
      return Fd();
    }
    ::unlink(tmp.c_str());
    mode_t old = ::umask(0077);
    int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&t.addr), t.len);
    ::umask(old);
    if (rc < 0) {
      *err = "bind() to control socket " + tmp + " failed (" + strerror(errno) + ")";
      return Fd();
    }
    ::chmod(tmp.c_str(), 0600);
    if (::rename(tmp.c_str(), a.text.c_str()) < 0) {
      *err = "rename() of control socket to " + a.text + " failed (" + strerror(errno) + ")";
      ::unlink(tmp.c_str());
      return Fd();
    }
  }
  if (::listen(fd.get(), 64) < 0) {
    *err = "listen() on control socket " + a.text + " failed (" + strerror(errno) + ")";
    return Fd();
  }
  return fd;
}

Fd connect_control(const ControlAddress& a, std::string* err) {
  Fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) {
    *err = std::string("socket() failed (") + strerror(errno) + ")";
    return Fd();
  }
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a.addr), a.len);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    *err = "connect() to control socket " + a.text + " failed (" + strerror(errno) + ")";
    return Fd();
  }
  return fd;
}

bool peer_allowed(int fd, pid_t* peer_pid) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return false;
  if (peer_pid) *peer_pid = cred.pid;
  return cred.uid == 0 || cred.uid == ::geteuid();
}

}  // namespace baton

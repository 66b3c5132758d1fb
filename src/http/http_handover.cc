#include "http/http_handover.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "core/strings.h"
#include "event/connection.h"
#include "event/listener.h"

namespace baton::http {

namespace {

constexpr size_t kMaxListenerKey = 512;
constexpr uint64_t kMaxRequests = uint64_t{1} << 48;
constexpr int64_t kMaxIdleMs = 24LL * 3600 * 1000;

const char* kind_name(HandedConnection::Kind k) { return k == HandedConnection::Kind::kIdle ? "idle" : "tunnel"; }

size_t fds_for(HandedConnection::Kind k) { return k == HandedConnection::Kind::kIdle ? 1 : 2; }

// "a.b.c.d:port" or "[v6]:port", port 0 included (a PROXY protocol header may say 0).
bool parse_peer(const std::string& text, SockAddr* out) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 >= text.size() || colon + 6 < text.size()) return false;
  uint64_t port = 0;
  if (!parse_uint(std::string_view(text).substr(colon + 1), &port) || port > 65535) return false;
  std::string host = text.substr(0, colon);
  *out = SockAddr();
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out->storage);
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &in6->sin6_addr) != 1) return false;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in6);
    return true;
  }
  auto* in4 = reinterpret_cast<sockaddr_in*>(&out->storage);
  if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) != 1) return false;
  in4->sin_family = AF_INET;
  in4->sin_port = htons(static_cast<uint16_t>(port));
  out->len = sizeof(sockaddr_in);
  return true;
}

// A connected stream socket, as a client connection (or a tunnel's upstream) is.
std::string check_socket(int fd) {
  struct stat st {};
  if (fstat(fd, &st) < 0) return std::string("fstat() failed (") + strerror(errno) + ")";
  if (!S_ISSOCK(st.st_mode)) return "not a socket";
  int type = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) return "not a stream socket";
  sockaddr_storage peer{};
  socklen_t plen = sizeof(peer);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) < 0) return "not connected";
  return "";
}

// The bytes of a tunnel that travelled in a memory file: "<to client>,<to upstream>" says how many of
// each, and the file must hold exactly that many.
std::string read_spill(const std::string& sizes, int fd, std::string* to_client, std::string* to_upstream) {
  size_t comma = sizes.find(',');
  uint64_t a = 0;
  uint64_t b = 0;
  if (comma == std::string::npos || !parse_uint(std::string_view(sizes).substr(0, comma), &a) ||
      !parse_uint(std::string_view(sizes).substr(comma + 1), &b) || a > kHandoverMaxSpill ||
      b > kHandoverMaxSpill || a + b > kHandoverMaxSpill || a + b <= kHandoverMaxPending)
    return "spill \"" + sizes + "\"";
  struct stat st {};
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) return "the memory file is not a regular file";
  if (static_cast<uint64_t>(st.st_size) != a + b)
    return "the memory file holds " + std::to_string(st.st_size) + " bytes, not " + std::to_string(a + b);
  std::string all(a + b, '\0');
  if (!pread_exact(fd, all.data(), all.size(), 0)) return "the memory file cannot be read";
  to_client->assign(all, 0, a);
  to_upstream->assign(all, a, b);
  return "";
}

}  // namespace

SockAddr peer_sockaddr(const PeerAddr& p) {
  SockAddr a;
  size_t len = p.family() == AF_INET    ? sizeof(sockaddr_in)
               : p.family() == AF_INET6 ? sizeof(sockaddr_in6)
                                        : sizeof(sa_family_t);
  memcpy(&a.storage, &p.u, len);
  a.len = static_cast<socklen_t>(len);
  return a;
}

void describe_client(const Connection& c, HandedConnection* out) {
  out->listener = c.listening()->key;
  out->peer = peer_sockaddr(c.peer());
  out->via_proxy_protocol = c.listening()->opts.proxy_protocol;
}

bool encode_handover(HandedConnection&& c, Message* out, std::string* why) {
  if (c.fds.size() != fds_for(c.kind)) {
    *why = std::string("a ") + kind_name(c.kind) + " connection has " + std::to_string(fds_for(c.kind)) +
           " descriptor(s), not " + std::to_string(c.fds.size());
    return false;
  }
  const bool tunnel = c.kind == HandedConnection::Kind::kTunnel;
  const size_t limit = tunnel ? kHandoverMaxSpill : kHandoverMaxPending;
  if (c.pending() > limit) {
    *why = std::to_string(c.pending()) + " bytes pending, more than " + std::to_string(limit);
    return false;
  }
  Fd spill;
  if (c.pending() > kHandoverMaxPending) {
    // A tunnel's bytes in flight, more than the text carries: in a memory file, to_client first.
    spill = Fd(memfd_create("baton-handover", MFD_CLOEXEC));
    if (!spill) {
      *why = std::string("memfd_create() failed (") + strerror(errno) + ")";
      return false;
    }
    for (const std::string* part : {&c.to_client, &c.to_upstream}) {
      size_t done = 0;
      while (done < part->size()) {
        ssize_t n = write(spill.get(), part->data() + done, part->size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          *why = std::string("writing the memory file failed (") + strerror(errno) + ")";
          return false;
        }
        done += static_cast<size_t>(n);
      }
    }
  }
  Message m(MsgType::kConnection);
  m.set("v", kHandoverVersion);
  m.set("kind", kind_name(c.kind));
  m.set("listener", base64_encode(c.listener));
  m.set("peer", c.peer.family() == AF_UNIX ? std::string("unix") : c.peer.to_string());
  m.set("proxy", c.via_proxy_protocol ? "1" : "0");
  m.set("requests", static_cast<long long>(c.requests));
  m.set("idle_ms", static_cast<long long>(std::clamp<int64_t>(c.idle_left_ms, 0, kMaxIdleMs)));
  m.set("preread", base64_encode(c.preread));
  m.set("to_upstream", spill ? std::string() : base64_encode(c.to_upstream));
  m.set("to_client", spill ? std::string() : base64_encode(c.to_client));
  // Only a tunnel has these: a description of an idle connection stays what the first version sent.
  if (tunnel) m.set("timeout_ms", static_cast<long long>(std::clamp<int64_t>(c.timeout_ms, 1, kMaxIdleMs)));
  if (spill) m.set("spill", std::to_string(c.to_client.size()) + "," + std::to_string(c.to_upstream.size()));
  for (Fd& fd : c.fds) m.fds.push_back(std::move(fd));
  c.fds.clear();
  if (spill) m.fds.push_back(std::move(spill));
  *out = std::move(m);
  return true;
}

bool decode_handover(Message&& m, HandedConnection* out, std::string* why) {
  std::vector<Fd> fds = std::move(m.fds);  // closed on every way out but success
  m.fds.clear();
  auto bad = [&](const std::string& text) {
    *why = "bad connection description: " + text;
    return false;
  };
  if (m.type != MsgType::kConnection) return bad(std::string("a ") + msg_type_name(m.type) + " message");
  static const char* const kKeys[] = {"v",       "kind",     "listener", "peer",        "proxy",
                                      "requests", "idle_ms", "preread",  "to_upstream", "to_client"};
  for (size_t i = 0; i < m.fields.size(); i++) {
    const std::string& k = m.fields[i].first;
    if (k != "timeout_ms" && k != "spill" &&
        std::find_if(std::begin(kKeys), std::end(kKeys), [&](const char* n) { return k == n; }) == std::end(kKeys))
      return bad("unknown field \"" + k + "\"");
    for (size_t j = 0; j < i; j++)
      if (m.fields[j].first == k) return bad("field \"" + k + "\" given twice");
  }
  for (const char* k : kKeys)
    if (!m.has(k)) return bad(std::string("no \"") + k + "\"");
  if (m.get("v") != std::to_string(kHandoverVersion)) return bad("version \"" + m.get("v") + "\"");

  HandedConnection c;
  std::string kind = m.get("kind");
  if (kind == "idle") c.kind = HandedConnection::Kind::kIdle;
  else if (kind == "tunnel") c.kind = HandedConnection::Kind::kTunnel;
  else return bad("kind \"" + kind + "\"");
  const bool spilled = m.has("spill");
  if (spilled && c.kind != HandedConnection::Kind::kTunnel) return bad("a memory file for an idle connection");
  if (fds.size() != fds_for(c.kind) + (spilled ? 1 : 0))
    return bad(std::to_string(fds.size()) + " descriptor(s) for a " + kind + " connection");

  if (!base64_decode(m.get("listener"), &c.listener) || c.listener.empty() || c.listener.size() > kMaxListenerKey)
    return bad("listener");
  std::string peer = m.get("peer");
  if (peer == "unix") {
    c.peer.storage.ss_family = AF_UNIX;
    c.peer.len = sizeof(sa_family_t);
  } else if (!parse_peer(peer, &c.peer)) {
    return bad("peer \"" + peer + "\"");
  }
  std::string proxy = m.get("proxy");
  if (proxy != "0" && proxy != "1") return bad("proxy \"" + proxy + "\"");
  c.via_proxy_protocol = proxy == "1";
  uint64_t n = 0;
  if (!parse_uint(m.get("requests"), &n) || n > kMaxRequests) return bad("requests \"" + m.get("requests") + "\"");
  c.requests = n;
  if (!parse_uint(m.get("idle_ms"), &n) || n > static_cast<uint64_t>(kMaxIdleMs)) return bad("idle_ms \"" + m.get("idle_ms") + "\"");
  c.idle_left_ms = static_cast<int64_t>(n);
  // Decoded sizes are bounded by the message (60 KiB); the total is checked after.
  if (!base64_decode(m.get("preread"), &c.preread) || !base64_decode(m.get("to_upstream"), &c.to_upstream) ||
      !base64_decode(m.get("to_client"), &c.to_client))
    return bad("pending bytes");
  if (c.pending() > kHandoverMaxPending) return bad(std::to_string(c.pending()) + " bytes pending");
  if (spilled) {
    if (c.pending() > 0) return bad("tunnel bytes both in the text and in a memory file");
    std::string err = read_spill(m.get("spill"), fds.back().get(), &c.to_client, &c.to_upstream);
    if (!err.empty()) return bad(err);
    fds.pop_back();
  }
  if (c.kind == HandedConnection::Kind::kIdle && (!c.to_upstream.empty() || !c.to_client.empty()))
    return bad("tunnel bytes on an idle connection");
  if (c.kind == HandedConnection::Kind::kTunnel && !c.preread.empty()) return bad("a next request on a tunnel");
  if (c.kind == HandedConnection::Kind::kTunnel && c.requests != 0) return bad("requests on a tunnel");
  if (c.kind == HandedConnection::Kind::kIdle && m.has("timeout_ms")) return bad("a tunnel timeout on an idle connection");
  if (c.kind == HandedConnection::Kind::kTunnel) {
    if (!m.has("timeout_ms")) return bad("no \"timeout_ms\" for a tunnel");
    if (!parse_uint(m.get("timeout_ms"), &n) || n == 0 || n > static_cast<uint64_t>(kMaxIdleMs))
      return bad("timeout_ms \"" + m.get("timeout_ms") + "\"");
    c.timeout_ms = static_cast<int64_t>(n);
  }

  for (size_t i = 0; i < fds.size(); i++) {
    std::string err = check_socket(fds[i].get());
    if (!err.empty()) return bad("descriptor " + std::to_string(i + 1) + ": " + err);
  }
  c.fds = std::move(fds);
  *out = std::move(c);
  return true;
}

}  // namespace baton::http

#include "os/unix/socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include <cstddef>

#include <charconv>

namespace baton {

size_t SockAddr::host_into(char* out, size_t cap) const {
  switch (family()) {
    case AF_INET: {
      auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
      if (!inet_ntop(AF_INET, &in->sin_addr, out, cap)) return 0;
      return strlen(out);
    }
    case AF_INET6: {
      auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
      if (!inet_ntop(AF_INET6, &in6->sin6_addr, out, cap)) return 0;
      return strlen(out);
    }
    case AF_UNIX: {
      static const char kUnix[] = "unix:";
      if (cap < sizeof(kUnix)) return 0;
      memcpy(out, kUnix, sizeof(kUnix));
      return sizeof(kUnix) - 1;
    }
  }
  return 0;
}

PeerAddr::PeerAddr(const SockAddr& a) {
  if (a.family() == AF_INET) memcpy(&u.in, &a.storage, sizeof(u.in));
  else if (a.family() == AF_INET6) memcpy(&u.in6, &a.storage, sizeof(u.in6));
  else u.sa.sa_family = AF_UNIX;
}

size_t PeerAddr::host_into(char* out, size_t cap) const {
  if (family() == AF_INET && cap >= INET_ADDRSTRLEN) {
    // Dotted quad by hand: inet_ntop formats through sprintf, and this runs for every proxied
    // request (X-Forwarded-For, X-Real-IP) and every access log line.
    const auto* b = reinterpret_cast<const unsigned char*>(&u.in.sin_addr);
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
      unsigned v = b[i];
      if (v >= 100) out[n++] = static_cast<char>('0' + v / 100);
      if (v >= 10) out[n++] = static_cast<char>('0' + v / 10 % 10);
      out[n++] = static_cast<char>('0' + v % 10);
      if (i < 3) out[n++] = '.';
    }
    out[n] = '\0';
    return n;
  }
  SockAddr a;
  if (family() == AF_INET) memcpy(&a.storage, &u.in, sizeof(u.in));
  else if (family() == AF_INET6) memcpy(&a.storage, &u.in6, sizeof(u.in6));
  else a.storage.ss_family = AF_UNIX;
  return a.host_into(out, cap);
}

std::string PeerAddr::to_string() const {
  if ((family() == AF_INET && u.in.sin_port == 0) || (family() == AF_INET6 && u.in6.sin6_port == 0)) {
    char host[INET6_ADDRSTRLEN + 8];
    return std::string(host, host_into(host, sizeof(host)));
  }
  SockAddr a;
  if (family() == AF_INET) {
    memcpy(&a.storage, &u.in, sizeof(u.in));
    a.len = sizeof(u.in);
  } else if (family() == AF_INET6) {
    memcpy(&a.storage, &u.in6, sizeof(u.in6));
    a.len = sizeof(u.in6);
  } else {
    return "unix:";
  }
  return a.to_string();
}

std::string SockAddr::host() const {
  char buf[INET6_ADDRSTRLEN + 8];
  size_t n = host_into(buf, sizeof(buf));
  return std::string(buf, n);
}

std::string SockAddr::to_string() const {
  switch (family()) {
    case AF_INET: {
      auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
      return host() + ":" + std::to_string(ntohs(in->sin_port));
    }
    case AF_INET6: {
      auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
      return "[" + host() + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    case AF_UNIX: {
      auto* un = reinterpret_cast<const sockaddr_un*>(&storage);
      if (len <= offsetof(sockaddr_un, sun_path)) return "unix:";
      size_t n = len - offsetof(sockaddr_un, sun_path);
      std::string path(un->sun_path, strnlen(un->sun_path, n));
      return "unix:" + path;
    }
  }
  return "?";
}

bool SockAddr::operator==(const SockAddr& o) const {
  return len == o.len && memcmp(&storage, &o.storage, len) == 0;
}

static bool parse_port(std::string_view s, uint16_t* port) {
  unsigned v = 0;
  if (s.empty() || s.size() > 5) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0 || v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

std::string parse_sockaddr(std::string_view text, SockAddr* out) {
  *out = SockAddr{};
  if (text.starts_with("unix:")) {
    std::string_view path = text.substr(5);
    auto* un = reinterpret_cast<sockaddr_un*>(&out->storage);
    if (path.empty()) return "empty unix socket path";
    if (path.size() >= sizeof(un->sun_path)) return "unix socket path is too long";
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path.data(), path.size());
    out->len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return "";
  }
  std::string host;
  std::string_view port_text;
  if (text.starts_with("[")) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return "invalid IPv6 address \"" + std::string(text) + "\" (expected [addr]:port)";
    host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
    uint16_t port;
    if (!parse_port(port_text, &port)) return "invalid port in \"" + std::string(text) + "\"";
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out->storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1)
      return "invalid IPv6 address \"" + host + "\"";
    out->len = sizeof(sockaddr_in6);
    return "";
  }
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    host = "0.0.0.0";
    port_text = text;
  } else {
    host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (host == "*" || host.empty()) host = "0.0.0.0";
    if (host == "localhost") host = "127.0.0.1";
  }
  uint16_t port;
  if (!parse_port(port_text, &port)) return "invalid port in \"" + std::string(text) + "\"";
  auto* in = reinterpret_cast<sockaddr_in*>(&out->storage);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1)
    return "invalid IPv4 address \"" + host + "\" (host names are not resolved in listen)";
  out->len = sizeof(sockaddr_in);
  return "";
}

Fd open_listener(const SockAddr& addr, const ListenOptions& opts, std::string* err) {
  Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    *err = std::string("socket() failed (") + strerror(errno) + ")";
    return Fd();
  }
  int one = 1;
  if (addr.family() != AF_UNIX) {
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (opts.reuseport) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (addr.family() == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  } else {
    // A stale socket file left by a process that is gone would make bind() fail.
    auto* un = reinterpret_cast<const sockaddr_un*>(&addr.storage);
    if (un->sun_path[0] != '\0') {
      Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (probe && ::connect(probe.get(), addr.sa(), addr.len) < 0 && errno == ECONNREFUSED)
        ::unlink(un->sun_path);
    }
  }
  if (::bind(fd.get(), addr.sa(), addr.len) < 0) {
    *err = "bind() to " + addr.to_string() + " failed (" + strerror(errno) + ")";
    return Fd();
  }
  if (::listen(fd.get(), opts.backlog) < 0) {
    *err = "listen() on " + addr.to_string() + " failed (" + strerror(errno) + ")";
    return Fd();
  }
  return fd;
}

}  // namespace baton

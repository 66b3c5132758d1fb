// Socket addresses and listening sockets: parsing "host:port" / "[v6]:port" / "unix:/path",
// formatting them for logs, and opening non-blocking, close-on-exec listeners.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <string>
#include <string_view>

#include "os/unix/fd.h"

namespace baton {

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;

  int family() const { return storage.ss_family; }
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&storage); }
  // "127.0.0.1:8080", "[::1]:8080", "unix:/path".
  std::string to_string() const;
  // The host part only (no port): what access logs show as the client address.
  std::string host() const;
  // Writes the host part into out (at least INET6_ADDRSTRLEN + 8 bytes); returns its length.
  size_t host_into(char* out, size_t cap) const;
  bool operator==(const SockAddr& o) const;
};

// A connection's peer: an IPv4 or IPv6 address and port, or just "a unix socket". A quarter of the
// size of SockAddr, which must hold unix socket paths; every connection carries one.
struct PeerAddr {
  union {
    sockaddr sa;
    sockaddr_in in;
    sockaddr_in6 in6;
  } u{};
  PeerAddr() = default;
  explicit PeerAddr(const SockAddr& a);
  int family() const { return u.sa.sa_family; }
  size_t host_into(char* out, size_t cap) const;
  // "127.0.0.1:5555", "[::1]:5555", "unix:"; the host alone for an address without a port (one a
  // proxy named in a header).
  std::string to_string() const;
};

// Parses a listen address. "8080" means 0.0.0.0:8080; "*:8080" too. Returns an error text or "".
std::string parse_sockaddr(std::string_view text, SockAddr* out);

struct ListenOptions {
  int backlog = 511;
  bool reuseport = false;
  bool proxy_protocol = false;  // connections start with a PROXY protocol header
  bool ssl = false;             // connections speak TLS
};

// Opens, binds and listens. On failure returns an invalid Fd and sets *err to "bind() to ... failed (...)".
Fd open_listener(const SockAddr& addr, const ListenOptions& opts, std::string* err);

}  // namespace baton

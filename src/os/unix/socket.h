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

// Parses a listen address. "8080" means 0.0.0.0:8080; "*:8080" too. Returns an error text or "".
std::string parse_sockaddr(std::string_view text, SockAddr* out);

struct ListenOptions {
  int backlog = 511;
  bool reuseport = false;
  bool proxy_protocol = false;  // connections start with a PROXY protocol header
};

// Opens, binds and listens. On failure returns an invalid Fd and sets *err to "bind() to ... failed (...)".
Fd open_listener(const SockAddr& addr, const ListenOptions& opts, std::string* err);

// Sets TCP_NODELAY and similar per-connection options on an accepted socket.
void tune_accepted(int fd, int family);

}  // namespace baton

#include "os/unix/sd_notify.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <cstddef>

#include "os/unix/fd.h"

namespace baton {

bool sd_notify(const std::string& state) {
  const char* path = getenv("NOTIFY_SOCKET");
  if (!path || !*path) return true;
  size_t len = strlen(path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof(addr.sun_path)) return false;
  memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
  Fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  ssize_t n;
  do {
    n = ::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), alen);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(state.size());
}

std::string sd_reloading_state() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  unsigned long long usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ull +
                            static_cast<unsigned long long>(ts.tv_nsec) / 1000ull;
  return "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\n";
}

}  // namespace baton

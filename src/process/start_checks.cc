#include "process/start_checks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include "core/strings.h"
#include "os/unix/process.h"
#include "process/cycle.h"

namespace baton {

namespace {

// The line of the last `key` in the [main] sections of conf (the one that took effect), 0 if none.
int main_key_line(const ConfFile& conf, const std::string& key) {
  int line = 0;
  for (const ConfSection& sec : conf.sections)
    if (sec.kind == "main")
      for (const ConfEntry& e : sec.entries)
        if (e.key == key) line = e.line;
  return line;
}

// "file:line: msg" when the configuration names the culprit, else msg alone.
std::string at(const ConfFile& conf, int line, const std::string& msg) {
  return line > 0 ? conf.where(line) + ": " + msg : msg;
}

std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string open_failed(const std::string& path, int err) {
  return "open() \"" + path + "\" failed (" + strerror(err) + ")";
}

// Whether a file may be created in dir, without creating one: an unnamed O_TMPFILE file vanishes
// when closed. File systems without O_TMPFILE get the permission check alone. 0 or an errno.
int can_create_in(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::close(fd);
    return 0;
  }
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return errno;
  return ::access(dir.c_str(), W_OK | X_OK) == 0 ? 0 : errno;
}

// A log file as the start opens it (O_WRONLY | O_APPEND | O_CREAT), except that nothing is written
// and nothing is created: `-t` tests, it does not prepare. "" or the message the start would give.
std::string check_log_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    // O_NONBLOCK: a FIFO without a reader must not hang the test.
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
      ::close(fd);
      return "";
    }
    if (errno == ENXIO) return "";  // a FIFO that has no reader yet
    return open_failed(path, errno);
  }
  if (errno != ENOENT) return open_failed(path, errno);
  int err = can_create_in(dir_of(path));
  return err ? open_failed(path, err) : "";
}

// ---- who holds a listening socket --------------------------------------------------------------

// The running master of this configuration: the pid file names a live process titled as a master.
pid_t running_master(const Cycle& c) {
  std::ifstream in(c.pid_path());
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  if (::kill(static_cast<pid_t>(pid), 0) < 0 && errno != EPERM) return 0;
  std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
  std::string title;
  std::getline(cmd, title, '\0');
  if (!title.starts_with("baton: master process")) return 0;
  return static_cast<pid_t>(pid);
}

// Socket inodes open in process pid; false when its descriptors cannot be read (another user's).
bool socket_inodes(pid_t pid, std::set<unsigned long>* out) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return false;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[64];
    ssize_t n = ::readlinkat(::dirfd(d), e->d_name, target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    unsigned long ino;
    if (sscanf(target, "socket:[%lu]", &ino) == 1) out->insert(ino);
  }
  ::closedir(d);
  return true;
}

// Inodes of the listening TCP sockets on addr's port whose address is addr's, or either of the two
// is the wildcard (they conflict either way), from /proc/net/tcp or tcp6.
std::set<unsigned long> tcp_listener_inodes(const SockAddr& addr) {
  std::set<unsigned long> inodes;
  bool v6 = addr.family() == AF_INET6;
  uint8_t want[16] = {};
  uint16_t port;
  size_t alen = v6 ? 16 : 4;
  if (v6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr.storage);
    memcpy(want, &in6->sin6_addr, 16);
    port = ntohs(in6->sin6_port);
  } else {
    auto* in = reinterpret_cast<const sockaddr_in*>(&addr.storage);
    memcpy(want, &in->sin_addr, 4);
    port = ntohs(in->sin_port);
  }
  static const uint8_t kZero[16] = {};
  bool want_any = memcmp(want, kZero, alen) == 0;
  std::ifstream in(v6 ? "/proc/net/tcp6" : "/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode"
    auto f = split_ws(line);
    if (f.size() < 10 || f[3] != "0A") continue;  // 0A: LISTEN
    std::string_view local = f[1];
    size_t colon = local.find(':');
    if (colon != alen * 2) continue;
    // The address is printed as 32-bit words in the kernel's byte order: the bytes as they lie in
    // memory, four at a time, each word read as a number.
    uint8_t got[16] = {};
    bool ok = true;
    for (size_t w = 0; w < alen / 4 && ok; w++) {
      uint32_t word = 0;
      for (size_t i = 0; i < 8; i++) {
        char ch = local[w * 8 + i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (v < 0) ok = false;
        word = word << 4 | static_cast<uint32_t>(v < 0 ? 0 : v);
      }
      memcpy(got + w * 4, &word, 4);
    }
    uint64_t p = 0;
    std::string_view port_hex = local.substr(colon + 1);
    for (char ch : port_hex) {
      int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
      if (v < 0) ok = false;
      p = p << 4 | static_cast<uint64_t>(v < 0 ? 0 : v);
    }
    if (!ok || p != port) continue;
    if (!want_any && memcmp(got, kZero, alen) != 0 && memcmp(got, want, alen) != 0) continue;
    uint64_t ino;
    if (parse_uint(f[9], &ino)) inodes.insert(static_cast<unsigned long>(ino));
  }
  return inodes;
}

// Inodes of the listening unix sockets bound to path, from /proc/net/unix.
std::set<unsigned long> unix_listener_inodes(const std::string& path) {
  std::set<unsigned long> inodes;
  std::ifstream in("/proc/net/unix");
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    // "Num RefCount Protocol Flags Type St Inode Path"; flag 00010000: listening.
    auto f = split_ws(line);
    if (f.size() < 8 || f[7] != path || f[3] != "00010000") continue;
    uint64_t ino;
    if (parse_uint(f[6], &ino)) inodes.insert(static_cast<unsigned long>(ino));
  }
  return inodes;
}

// Whether the running master holds the listener at addr. A master whose descriptors this user
// cannot read is taken to hold it: `-t` then cannot tell, and a reload would find out.
bool held_by(pid_t master, const SockAddr& addr) {
  if (master <= 0) return false;
  std::set<unsigned long> own;
  if (!socket_inodes(master, &own)) return true;
  std::set<unsigned long> bound;
  if (addr.family() == AF_UNIX) {
    auto* un = reinterpret_cast<const sockaddr_un*>(&addr.storage);
    bound = unix_listener_inodes(un->sun_path);
  } else {
    bound = tcp_listener_inodes(addr);
  }
  for (unsigned long ino : bound)
    if (own.count(ino)) return true;
  return false;
}

// "" when the start could listen at addr (or the running master already does), else why not.
std::string check_listen(const SockAddr& addr, const ListenOptions& opts, pid_t master) {
  if (addr.family() == AF_UNIX) {
    auto* un = reinterpret_cast<const sockaddr_un*>(&addr.storage);
    std::string path = un->sun_path;
    if (path.empty()) return "";  // abstract: nothing on disk to check
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return "bind() to " + addr.to_string() + " failed (" + strerror(EADDRINUSE) + "): not a socket";
      // A socket file nobody answers on is left over and removed by the start.
      Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (!probe || ::connect(probe.get(), addr.sa(), addr.len) < 0) return "";
      if (held_by(master, addr)) return "";
      return "bind() to " + addr.to_string() + " failed (" + strerror(EADDRINUSE) + "): the socket is in use by another process";
    }
    int err = can_create_in(dir_of(path));
    if (err) return "bind() to " + addr.to_string() + " failed (" + strerror(err) + ")";
    return "";
  }
  // Bound as the start binds it, never listened on: nobody can connect to it meanwhile.
  Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return std::string("socket() failed (") + strerror(errno) + ")";
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (opts.reuseport) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (addr.family() == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (::bind(fd.get(), addr.sa(), addr.len) == 0) return "";
  int err = errno;
  if (err == EADDRINUSE && held_by(master, addr)) return "";
  return "bind() to " + addr.to_string() + " failed (" + strerror(err) + ")";
}

}  // namespace

void check_user(const ConfFile& conf, const ConfFile* overrides, const MainConf& main) {
  if (main.user.empty()) {
    if (geteuid() != 0) return;
    uid_t uid;
    gid_t gid;
    if (!lookup_user("nobody", &uid, &gid).empty())
      throw ConfError(conf.path + ": unknown user \"nobody\", whom workers run as by default: set \"user\" in [main]");
    return;
  }
  uid_t uid;
  gid_t gid;
  std::string err = lookup_user(main.user, &uid, &gid);
  if (err.empty()) return;
  // The -g settings come last and win.
  const ConfFile* from = &conf;
  int line = main_key_line(conf, "user");
  if (overrides) {
    int l = main_key_line(*overrides, "user");
    if (l) {
      from = overrides;
      line = l;
    }
  }
  from->fail(line, err);
}

std::vector<std::string> check_start(const Cycle& c) {
  std::vector<std::string> problems;
  const ConfFile& conf = c.conf;

  std::string error_log = c.error_log_path();
  if (error_log != "stderr") {
    std::string err = check_log_file(error_log);
    if (!err.empty()) problems.push_back(at(conf, c.opts.error_log.empty() ? main_key_line(conf, "error_log") : 0, err));
  }
  for (const auto& [path, log] : c.http->access_logs) {
    std::string err = check_log_file(path);
    if (!err.empty()) problems.push_back(at(conf, log->line, err));
  }
  for (const auto& [path, log] : c.http->error_logs) {
    if (path == "stderr") continue;
    std::string err = check_log_file(path);
    if (!err.empty()) problems.push_back(log->where + ": " + err);
  }
  // The pid file is written next to itself and renamed over it.
  std::string pid_path = c.pid_path();
  if (int err = can_create_in(dir_of(pid_path)))
    problems.push_back(at(conf, main_key_line(conf, "pid"),
                          "cannot write pid file \"" + pid_path + "\" (" + strerror(err) + ")"));
  if (c.main.control_socket != "abstract") {
    std::string sock = resolve_path(c.opts.prefix, c.main.control_socket);
    if (int err = can_create_in(dir_of(sock)))
      problems.push_back(at(conf, main_key_line(conf, "control_socket"),
                            "cannot create control socket \"" + sock + "\" (" + strerror(err) + ")"));
  }

  pid_t master = running_master(c);
  for (const auto& group : c.http->listens) {
    std::string err = check_listen(group->addr, group->opts, master);
    if (!err.empty()) problems.push_back(at(conf, group->line, err));
  }
  return problems;
}

}  // namespace baton

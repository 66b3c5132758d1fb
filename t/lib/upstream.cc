// The harness side of the test upstream (see upstream.h): starting the program, reading its port,
// its /__stats and its log, stopping it.
#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <utility>

extern char** environ;

namespace baton_test {

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left < 0) return 0;
  return left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  ::remove(path);
  return 0;
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::string();
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The value of ` key=` in a log line (the first field has no leading space).
bool field(std::string_view line, std::string_view key, std::string_view* out) {
  std::string pattern = std::string(key) + "=";
  size_t at = 0;
  while (true) {
    at = line.find(pattern, at);
    if (at == std::string_view::npos) return false;
    if (at == 0 || line[at - 1] == ' ') break;
    at++;
  }
  std::string_view rest = line.substr(at + pattern.size());
  *out = rest.substr(0, rest.find(' '));
  return true;
}

bool to_u64(std::string_view s, int base, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  std::string copy(s);
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(copy.c_str(), &end, base);
  if (errno != 0 || *end != '\0' || copy[0] == '-' || copy[0] == '+') return false;
  *out = v;
  return true;
}

}  // namespace

std::string upstream_binary() {
  if (const char* env = std::getenv("BATON_UPSTREAM_BINARY"); env && *env) return env;
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "baton_upstream";
  self[n] = '\0';
  std::string dir(self);
  size_t slash = dir.rfind('/');
  dir = slash == std::string::npos ? "." : dir.substr(0, slash);
  return dir + "/baton_upstream";
}

bool parse_upstream_log_line(std::string_view line, TestUpstream::LogLine* out) {
  std::string_view conn, req, method, target, body, hash, complete;
  uint64_t c, r, len, h, done;
  if (!field(line, "conn", &conn) || !field(line, "req", &req) || !field(line, "method", &method) ||
      !field(line, "target", &target) || !field(line, "body", &body) || !field(line, "hash", &hash) ||
      !field(line, "complete", &complete))
    return false;
  if (!to_u64(conn, 10, &c) || !to_u64(req, 10, &r) || !to_u64(body, 10, &len) || hash.size() != 16 ||
      !to_u64(hash, 16, &h) || !to_u64(complete, 10, &done) || done > 1)
    return false;
  out->connection = static_cast<long>(c);
  out->request = static_cast<long>(r);
  out->method = std::string(method);
  out->target = std::string(target);
  out->body_length = len;
  out->body_hash = h;
  out->complete = done == 1;
  return true;
}

TestUpstream::TestUpstream() = default;

TestUpstream::~TestUpstream() {
  stop();
  if (!dir_.empty() && !std::getenv("BATON_TEST_KEEP")) ::nftw(dir_.c_str(), remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestUpstream::TestUpstream(TestUpstream&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      port_(std::exchange(other.port_, 0)),
      args_(std::move(other.args_)),
      dir_(std::exchange(other.dir_, std::string())),
      log_path_(std::exchange(other.log_path_, std::string())),
      error_(std::move(other.error_)) {}

TestUpstream& TestUpstream::operator=(TestUpstream&& other) noexcept {
  if (this != &other) {
    TestUpstream old(std::move(*this));  // stops and cleans up what this one had, on return
    pid_ = std::exchange(other.pid_, -1);
    port_ = std::exchange(other.port_, 0);
    args_ = std::move(other.args_);
    dir_ = std::exchange(other.dir_, std::string());
    log_path_ = std::exchange(other.log_path_, std::string());
    error_ = std::move(other.error_);
  }
  return *this;
}

std::string TestUpstream::address() const { return "127.0.0.1:" + std::to_string(port_); }

bool TestUpstream::start(const std::vector<std::string>& args) {
  auto fail = [this](const std::string& why) {
    error_ = "test upstream: " + why;
    std::cerr << error_ << "\n";
    return false;
  };
  if (pid_ > 0) return fail("already running");
  error_.clear();
  args_ = args;

  bool has_log = false;
  for (size_t i = 0; i < args.size(); i++) {
    if (args[i] == "--log" && i + 1 < args.size()) {
      has_log = true;
      log_path_ = args[i + 1];
    }
  }
  std::vector<std::string> argv_store = {upstream_binary()};
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  if (!has_log) {
    if (dir_.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/baton-upstream.XXXXXX";
      std::vector<char> buf(tmpl.begin(), tmpl.end());
      buf.push_back('\0');
      if (!::mkdtemp(buf.data())) return fail("mkdtemp " + tmpl + ": " + std::strerror(errno));
      dir_ = buf.data();
    }
    log_path_ = dir_ + "/upstream.log";
    argv_store.push_back("--log");
    argv_store.push_back(log_path_);
  }
  if (::access(argv_store[0].c_str(), X_OK) != 0)
    return fail("no program at " + argv_store[0] + " (build it with make; or set BATON_UPSTREAM_BINARY)");

  // Everything the child needs is prepared before the fork: a process with threads may only call
  // async-signal-safe functions between fork and exec.
  std::vector<char*> argv;
  for (std::string& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return fail(std::string("pipe2: ") + std::strerror(errno));
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out[0]);
    ::close(out[1]);
    return fail(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives a test binary that crashed
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; sig++) ::signal(sig, SIG_DFL);
    int in_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // only its duplicate, 0, stays open
    if (in_fd >= 0) ::dup2(in_fd, 0);
    ::dup2(out[1], 1);  // the duplicate has no FD_CLOEXEC; every other descriptor of ours has it
    // stderr stays the test binary's: a sanitizer report lands in the test output
    ::execve(argv[0], argv.data(), environ);
    static const char msg[] = "test upstream: exec failed\n";
    ssize_t ignored = ::write(2, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(127);
  }
  ::close(out[1]);
  pid_ = pid;
  port_ = 0;

  // `port N\n`, within 10 s (a sanitizer build starts slowly on a busy machine).
  std::string got;
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (got.find('\n') == std::string::npos) {
    struct pollfd p = {out[0], POLLIN, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    char buf[256];
    ssize_t k = ::read(out[0], buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got.append(buf, static_cast<size_t>(k));
  }
  ::close(out[0]);  // the program writes nothing more on stdout (and ignores SIGPIPE)
  int port = 0;
  if (std::sscanf(got.c_str(), "port %d", &port) != 1 || port <= 0 || port > 65535) {
    stop();
    return fail("did not report its port (it printed \"" + got + "\")");
  }
  port_ = port;
  return true;
}

bool TestUpstream::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    pid_ = -1;
    return false;
  }
  return true;
}

void TestUpstream::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  auto deadline = Clock::now() + std::chrono::seconds(2);
  int status = 0;
  while (true) {
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno != EINTR)) break;
    if (Clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
}

bool TestUpstream::restart() {
  if (port_ <= 0) {
    error_ = "test upstream: restart() before a successful start()";
    std::cerr << error_ << "\n";
    return false;
  }
  std::vector<std::string> args;
  for (size_t i = 0; i < args_.size(); i++) {
    if (args_[i] == "--listen" && i + 1 < args_.size()) {
      i++;
      continue;
    }
    args.push_back(args_[i]);
  }
  args.push_back("--listen");
  args.push_back(address());
  stop();
  return start(args);
}

TestUpstream::Stats TestUpstream::stats() {
  Stats s;
  if (port_ <= 0) return s;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return s;
  struct timeval tv = {5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa {};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port_));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string resp;
  static const char kRequest[] = "GET /__stats HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
      ::send(fd, kRequest, sizeof kRequest - 1, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof kRequest - 1)) {
    char buf[4096];
    while (true) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      resp.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  size_t body = resp.find("\r\n\r\n");
  if (resp.rfind("HTTP/1.1 200 ", 0) != 0 || body == std::string::npos) return s;
  long c, r;
  if (std::sscanf(resp.c_str() + body + 4, "{\"connections\":%ld,\"requests\":%ld}", &c, &r) == 2) {
    s.connections = c;
    s.requests = r;
  }
  return s;
}

std::string TestUpstream::log_text() const { return log_path_.empty() ? std::string() : read_whole_file(log_path_); }

std::vector<TestUpstream::LogLine> TestUpstream::log_lines() const {
  std::vector<LogLine> out;
  std::string text = log_text();
  std::string_view rest = text;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) break;  // a line being written
    LogLine l;
    if (parse_upstream_log_line(rest.substr(0, nl), &l)) out.push_back(std::move(l));
    rest.remove_prefix(nl + 1);
  }
  return out;
}

size_t TestUpstream::received(std::string_view method, std::string_view target) const {
  size_t n = 0;
  for (const LogLine& l : log_lines())
    if (l.method == method && l.target == target) n++;
  return n;
}

}  // namespace baton_test

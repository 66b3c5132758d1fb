#include "os/unix/process.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

extern char** environ;

namespace baton {

namespace {
char* title_start = nullptr;
size_t title_room = 0;
std::vector<std::string> g_argv;
}  // namespace

void init_proc_title(int argc, char** argv) {
  g_argv.assign(argv, argv + argc);
  // argv strings and then environ strings lie one after another; the title may use all of it once
  // environ has been copied elsewhere.
  char* end = argv[0] + strlen(argv[0]) + 1;
  for (int i = 1; i < argc; i++)
    if (argv[i] == end) end = argv[i] + strlen(argv[i]) + 1;
  size_t n = 0;
  while (environ[n]) n++;
  // The copies are owned here, not by environ: unsetenv() drops entries from environ, and the
  // strings must neither dangle nor be lost.
  static std::vector<std::string> env_strings;
  static std::vector<char*> env;
  env_strings.reserve(n);
  for (size_t i = 0; i < n; i++) {
    if (environ[i] == end) end = environ[i] + strlen(environ[i]) + 1;
    env_strings.emplace_back(environ[i]);
  }
  for (std::string& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);
  environ = env.data();
  title_start = argv[0];
  title_room = static_cast<size_t>(end - argv[0]);
  for (int i = 1; i < argc; i++) argv[i] = nullptr;
}

void set_proc_title(const std::string& title) {
  if (!title_start || title_room < 2) return;
  size_t n = title.size() < title_room - 1 ? title.size() : title_room - 1;
  memcpy(title_start, title.data(), n);
  memset(title_start + n, 0, title_room - n);
  prctl(PR_SET_NAME, title.size() > 6 && title.starts_with("baton:") ? "baton" : title.c_str(), 0, 0, 0);
}

const std::vector<std::string>& saved_argv() { return g_argv; }

Fd open_signalfd(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  return Fd(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
}

void reset_signals() {
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; s++) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    sigaction(s, &sa, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

int read_signal(int sfd, pid_t* sender) {
  signalfd_siginfo info;
  ssize_t n;
  do {
    n = ::read(sfd, &info, sizeof(info));
  } while (n < 0 && errno == EINTR);
  if (n != sizeof(info)) return 0;
  if (sender) *sender = static_cast<pid_t>(info.ssi_pid);
  return static_cast<int>(info.ssi_signo);
}

std::string lookup_user(const std::string& user, uid_t* uid, gid_t* gid) {
  struct passwd pw, *res = nullptr;
  char buf[4096];
  if (getpwnam_r(user.c_str(), &pw, buf, sizeof(buf), &res) != 0 || !res)
    return "unknown user \"" + user + "\"";
  *uid = pw.pw_uid;
  *gid = pw.pw_gid;
  return "";
}

std::string switch_user(const std::string& user) {
  uid_t uid;
  gid_t gid;
  std::string err = lookup_user(user, &uid, &gid);
  if (!err.empty()) return err;
  if (setgid(gid) < 0) return std::string("setgid() failed (") + strerror(errno) + ")";
  if (initgroups(user.c_str(), gid) < 0) return std::string("initgroups() failed (") + strerror(errno) + ")";
  if (setuid(uid) < 0) return std::string("setuid() failed (") + strerror(errno) + ")";
  // Stay dumpable for a core file after a crash, as the user we became.
  prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
  return "";
}

void raise_nofile_limit(rlim_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return;
  if (rl.rlim_cur >= want) return;
  struct rlimit next = rl;
  next.rlim_cur = want;
  if (next.rlim_max < want) {
    if (geteuid() == 0) next.rlim_max = want;
    else next.rlim_cur = rl.rlim_max;
  }
  setrlimit(RLIMIT_NOFILE, &next);
}

std::string daemonize(Fd* starter, int wait_ms) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return std::string("pipe2() failed (") + strerror(errno) + ")";
  Fd read_end(p[0]), write_end(p[1]);
  pid_t pid = fork();
  if (pid < 0) return std::string("fork() failed (") + strerror(errno) + ")";
  if (pid > 0) {
    // The starter: its exit status is the start's outcome.
    write_end.reset();
    struct pollfd pfd = {read_end.get(), POLLIN, 0};
    int n;
    do {
      n = poll(&pfd, 1, wait_ms);
    } while (n < 0 && errno == EINTR);
    char c = 0;
    if (n > 0 && ::read(read_end.get(), &c, 1) == 1 && c == '1') _exit(0);
    if (n == 0)
      fprintf(stderr, "baton: [emerg] the server did not report started within %d ms; see the error log\n", wait_ms);
    _exit(1);
  }
  read_end.reset();
  if (setsid() < 0) return std::string("setsid() failed (") + strerror(errno) + ")";
  umask(022);
  int fd = open("/dev/null", O_RDWR);
  if (fd < 0) return std::string("open(\"/dev/null\") failed (") + strerror(errno) + ")";
  dup2(fd, STDIN_FILENO);
  dup2(fd, STDOUT_FILENO);
  if (fd > STDERR_FILENO) close(fd);
  *starter = std::move(write_end);
  return "";
}

void release_starter(Fd* starter) {
  if (!*starter) return;
  ssize_t n;
  do {
    n = ::write(starter->get(), "1", 1);
  } while (n < 0 && errno == EINTR);
  starter->reset();
}

std::string executable_path(const char* argv0) {
  // Resolved once at start-up: after an upgrade replaced the file, /proc/self/exe names the old,
  // deleted one, while this path names what is there now.
  char buf[PATH_MAX];
  if (argv0 && strchr(argv0, '/')) {
    if (realpath(argv0, buf)) return buf;
  } else if (argv0) {
    const char* path = getenv("PATH");
    std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
    size_t start = 0;
    while (start <= p.size()) {
      size_t colon = p.find(':', start);
      std::string dir = p.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      std::string cand = (dir.empty() ? "." : dir) + "/" + argv0;
      if (access(cand.c_str(), X_OK) == 0 && realpath(cand.c_str(), buf)) return buf;
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) {
    buf[n] = '\0';
    return buf;
  }
  return argv0 ? argv0 : "baton";
}

}  // namespace baton

// A start that cannot succeed says why where the operator is looking: on the terminal (stderr) as well
// as in the error log, and `-t` already finds what would stop the start (an unknown user, a log file
// that cannot be opened, a listen address that cannot be bound, a missing types file).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <future>
#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n";

// A listening socket the test holds, so that the server finds its port taken.
class PortHog {
 public:
  explicit PortHog(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 && ::listen(fd_, 8) == 0;
  }
  ~PortHog() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return ok_; }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

RunResult start_foreground(BatonServer& s, const std::vector<std::string>& extra = {}, RunOptions opts = {}) {
  std::vector<std::string> args = {"-p", s.prefix(), "-c", s.config_path()};
  args.insert(args.end(), extra.begin(), extra.end());
  opts.timeout = 10000ms;
  return run_baton_with(args, opts);
}

// A port below the first one unprivileged processes may bind, or 0 when every port is unprivileged.
int privileged_port() {
  std::ifstream in("/proc/sys/net/ipv4/ip_unprivileged_port_start");
  int start = 1024;
  if (!(in >> start)) start = 1024;
  if (start <= 1) return 0;
  return start - 1;
}

// ---- a failed start says why on stderr -------------------------------------------------------------

TEST(StartErrors, PortInUseIsSaidOnStderr) {
  BatonServer s;
  s.set_config(make_config(kServer));
  PortHog hog(s.port());
  ASSERT_TRUE(hog.ok());
  RunResult r = start_foreground(s);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  std::string want = "baton: [emerg] bind() to 127.0.0.1:" + std::to_string(s.port()) + " failed (Address already in use)";
  EXPECT_TRUE(contains(r.err, want)) << "expected \"" << want << "\"\n" << describe(r);
  EXPECT_TRUE(contains(s.error_log(), "Address already in use")) << s.error_log();
}

TEST(StartErrors, DaemonSaysWhyBeforeItDetaches) {
  BatonServer s;
  s.set_config(make_config(kServer));
  PortHog hog(s.port());
  ASSERT_TRUE(hog.ok());
  RunResult r = start_foreground(s, {"-g", "daemon = on"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "baton: [emerg] bind() to 127.0.0.1:")) << describe(r);
}

// What stops a daemon after it has detached is said on the terminal too, and the start's exit
// status says it failed: the process that started it waits for the outcome.
TEST(StartErrors, DaemonThatFailsAfterDetachingSaysWhy) {
  BatonServer s;
  s.set_config(replace_all(make_config(kServer), "pid = logs/baton.pid\n", "pid = nodir/baton.pid\n"));
  RunResult r = start_foreground(s, {"-g", "daemon = on"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "baton: [emerg] open() \"" + s.path("nodir/baton.pid.tmp") + "\" failed")) << describe(r);
  EXPECT_FALSE(can_connect(s.port(), 200ms));
}

// A daemon's start returns once it serves: -s finds the master and the workers answer at once.
TEST(StartErrors, DaemonReturnsOnceItServes) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer));
  DaemonGuard stop_daemon{s};
  RunResult r = start_foreground(s, {"-g", "daemon = on"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  pid_t master = read_pid_file(s.pid_path());
  EXPECT_TRUE(master > 0 && process_alive(master));
  RunResult status = s.ctl("status");
  EXPECT_EQ(status.exit_code, 0) << describe(status);
  EXPECT_FALSE(contains(status.out, "state=starting")) << status.out;
  EXPECT_EQ(get(s.port(), "/a.txt").body, "a");
  RunResult quit = s.ctl("quit");
  EXPECT_EQ(quit.exit_code, 0) << describe(quit);
  EXPECT_TRUE(wait_for([&] { return !process_alive(master); }, 5000ms));
}

// A reload asked for while the daemon is still starting does not hold the start back: it is done
// once a generation serves (the first, or the reloaded one if it is ready first), and says so.
TEST(StartErrors, DaemonReloadedWhileStartingReturnsOnceItServes) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer));
  DaemonGuard stop_daemon{s};
  auto start = std::async(std::launch::async, [&s] { return start_foreground(s, {"-g", "daemon = on; upgrade_timeout = 3s"}); });
  pid_t master = 0;
  ASSERT_TRUE(wait_for([&] { return (master = read_pid_file(s.pid_path())) > 0; }, 5000ms, 1ms));
  ::kill(master, SIGHUP);
  RunResult r = start.get();
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(get(s.port(), "/a.txt").body, "a");
  EXPECT_EQ(s.ctl("quit").exit_code, 0);
  EXPECT_TRUE(wait_for([&] { return !process_alive(master); }, 5000ms));
}

TEST(StartErrors, AccessLogThatCannotBeOpenedIsSaidOnStderr) {
  BatonServer s;
  // A directory where a file is expected cannot be opened for writing, even by root.
  s.make_dir("logs/access.log");
  s.set_config(make_config(kServer));
  RunResult r = start_foreground(s);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "baton: [emerg] open() \"" + s.path("logs/access.log") + "\" failed (Is a directory)"))
      << describe(r);
  EXPECT_FALSE(can_connect(s.port(), 200ms));
}

TEST(StartErrors, PrivilegedPortWithoutPrivilegeIsSaidOnStderr) {
  int port = privileged_port();
  if (port == 0) GTEST_SKIP() << "every port is unprivileged here (net.ipv4.ip_unprivileged_port_start = 0)";
  RunOptions opts;
  if (::geteuid() == 0) {
    // Root may bind anything: run the server as nobody, who can read the prefix and write its logs.
    opts.uid = 65534;
    opts.gid = 65534;
  }
  BatonServer s;
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:" + std::to_string(port) + "\nroot = html\n"));
  if (::geteuid() == 0 && ::chown(s.path("logs").c_str(), 65534, 65534) != 0) FAIL() << "chown logs";
  RunResult r = start_foreground(s, {}, opts);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  std::string want = "baton: [emerg] bind() to 127.0.0.1:" + std::to_string(port) + " failed (Permission denied)";
  EXPECT_TRUE(contains(r.err, want)) << "expected \"" << want << "\"\n" << describe(r);
}

TEST(StartErrors, ErrorLogOnStderrIsNotWrittenTwice) {
  BatonServer s;
  s.set_config(make_config(kServer));
  PortHog hog(s.port());
  ASSERT_TRUE(hog.ok());
  RunResult r = start_foreground(s, {"-e", "stderr"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  size_t first = r.err.find("Address already in use");
  ASSERT_NE(first, std::string::npos) << describe(r);
  EXPECT_EQ(r.err.find("Address already in use", first + 1), std::string::npos) << "said twice:\n" << describe(r);
}

TEST(StartErrors, SuccessfulStartIsQuietOnStderr) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a.txt").body, "a");
  EXPECT_EQ(s.server_stderr(), "");
}

// ---- an unknown user -----------------------------------------------------------------------------

TEST(StartErrors, UnknownUserFailsTest) {
  BatonServer s;
  s.set_config(make_config_main("user = no-such-user-baton\n", kServer));
  int line = line_of(s.config_text(), "user = ");
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "baton.ini:" + std::to_string(line) + ": unknown user \"no-such-user-baton\""))
      << describe(r);
  EXPECT_TRUE(contains(r.err, "test failed")) << describe(r);
}

TEST(StartErrors, UnknownUserStopsTheStartAtOnce) {
  BatonServer s;
  s.set_config(make_config_main("user = no-such-user-baton\n", kServer));
  auto t0 = SteadyClock::now();
  RunResult r = start_foreground(s);
  auto took = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "unknown user \"no-such-user-baton\"")) << describe(r);
  EXPECT_LT(took, 3000ms) << "the start took " << took.count() << " ms to give up";
  EXPECT_FALSE(contains(s.error_log(), "start worker process")) << s.error_log();
}

TEST(StartErrors, UnknownUserFromDashGFailsTest) {
  BatonServer s;
  s.set_config(make_config(kServer));
  RunResult r = s.test_config({"-g", "user = no-such-user-baton", "-t"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "-g:")) << describe(r);
  EXPECT_TRUE(contains(r.err, "unknown user \"no-such-user-baton\"")) << describe(r);
}

// ---- -t finds log files that cannot be opened ----------------------------------------------------

TEST(StartErrors, TestFindsAnAccessLogInAMissingDirectory) {
  BatonServer s;
  // The access log of make_config() replaced: one access_log per section.
  std::string config = make_config(kServer);
  const std::string standard = "access_log = logs/access.log combined\n";
  ASSERT_NE(config.find(standard), std::string::npos);
  config.replace(config.find(standard), standard.size(), "access_log = logs/missing/access.log\n");
  s.set_config(config);
  int line = line_of(s.config_text(), "logs/missing/access.log");
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "baton.ini:" + std::to_string(line) + ":")) << describe(r);
  EXPECT_TRUE(contains(r.err, s.path("logs/missing/access.log"))) << describe(r);
  EXPECT_TRUE(contains(r.err, "No such file or directory")) << describe(r);
}

TEST(StartErrors, TestFindsAnErrorLogThatCannotBeOpened) {
  BatonServer s;
  s.make_dir("logs/error.log");
  s.set_config(make_config(kServer));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, s.path("logs/error.log"))) << describe(r);
  EXPECT_TRUE(contains(r.err, "Is a directory")) << describe(r);
}

TEST(StartErrors, TestFindsAnErrorLogGivenWithDashE) {
  BatonServer s;
  s.set_config(make_config(kServer));
  RunResult r = s.test_config({"-e", "nowhere/error.log", "-t"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, s.path("nowhere/error.log"))) << describe(r);
}

TEST(StartErrors, TestCreatesNoLogFile) {
  BatonServer s;
  s.set_config(make_config(kServer));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_FALSE(file_exists(s.path("logs/access.log"))) << "-t created the access log";
  EXPECT_FALSE(file_exists(s.path("logs/error.log"))) << "-t created the error log";
}

TEST(StartErrors, TestFindsALogDirectoryTheUserCannotWrite) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run -t as another user";
  BatonServer s;
  s.set_config(make_config(kServer));
  ::chmod(s.config_path().c_str(), 0644);
  ::chmod(s.path("conf/mime.types").c_str(), 0644);
  RunOptions as_nobody;
  as_nobody.uid = 65534;
  as_nobody.gid = 65534;
  RunResult r = run_baton_with({"-p", s.prefix(), "-c", s.config_path(), "-t"}, as_nobody);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "Permission denied")) << describe(r);
  EXPECT_TRUE(contains(r.err, s.path("logs/"))) << describe(r);
}

// ---- -t finds listen addresses that cannot be bound ----------------------------------------------

TEST(StartErrors, TestFindsAPortInUse) {
  BatonServer s;
  s.set_config(make_config(kServer));
  int line = line_of(s.config_text(), "listen = ");
  PortHog hog(s.port());
  ASSERT_TRUE(hog.ok());
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "baton.ini:" + std::to_string(line) + ": bind() to 127.0.0.1:" +
                                  std::to_string(s.port()) + " failed (Address already in use)"))
      << describe(r);
}

TEST(StartErrors, TestFindsAPrivilegedPort) {
  int port = privileged_port();
  if (port == 0) GTEST_SKIP() << "every port is unprivileged here (net.ipv4.ip_unprivileged_port_start = 0)";
  if (::geteuid() == 0) GTEST_SKIP() << "covered by PrivilegedPortWithoutPrivilegeIsSaidOnStderr as nobody";
  BatonServer s;
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:" + std::to_string(port) + "\nroot = html\n"));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "Permission denied")) << describe(r);
}

TEST(StartErrors, TestFindsAnAddressNotOnThisHost) {
  BatonServer s;
  // TEST-NET-1 (RFC 5737): never a local address.
  s.set_config(make_config("[server main]\nlisten = 192.0.2.1:@PORT@\nroot = html\n"));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "bind() to 192.0.2.1:")) << describe(r);
}

TEST(StartErrors, TestPassesWhileTheRunningMasterHoldsThePorts) {
  BatonServer s;
  s.set_config(make_config(kServer + std::string("listen = unix:@PREFIX@/http.sock\n")));
  ASSERT_TRUE(s.start());
  ASSERT_TRUE(wait_for([&] { return s.pid_from_file() == s.master_pid(); }, 3000ms));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(s.running());
  EXPECT_TRUE(can_connect(s.port(), 500ms));
}

TEST(StartErrors, TestWhileRunningStillFindsAPortSomeoneElseHolds) {
  BatonServer s;
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  ASSERT_TRUE(wait_for([&] { return s.pid_from_file() == s.master_pid(); }, 3000ms));
  PortHog hog(s.port(1));
  ASSERT_TRUE(hog.ok());
  s.set_config(make_config(kServer + std::string("listen = 127.0.0.1:@PORT2@\n")));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "bind() to 127.0.0.1:" + std::to_string(s.port(1)))) << describe(r);
  EXPECT_FALSE(contains(r.err, "bind() to 127.0.0.1:" + std::to_string(s.port(0)))) << describe(r);
}

TEST(StartErrors, TestFindsAUnixSocketInUse) {
  BatonServer s;
  s.set_config(make_config(kServer + std::string("listen = unix:@PREFIX@/http.sock\n")));
  ASSERT_TRUE(s.start());
  ASSERT_TRUE(file_exists(s.path("http.sock")));
  // Another server whose unix listener is the first one's socket file: the first one is not its
  // running master, so the address is taken.
  BatonServer other;
  other.set_config(make_config("[server main]\nlisten = unix:" + s.path("http.sock") + "\nroot = html\n"));
  RunResult r = other.test_config();
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, s.path("http.sock"))) << describe(r);
  EXPECT_TRUE(contains(r.err, "in use")) << describe(r);
  EXPECT_TRUE(s.running());
}

// ---- the types file ------------------------------------------------------------------------------

TEST(StartErrors, TestFindsAMissingTypesFile) {
  BatonServer s;
  s.set_config(make_config(kServer));
  ::unlink(s.path("conf/mime.types").c_str());
  int line = line_of(s.config_text(), "types = ");
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "baton.ini:" + std::to_string(line) + ":")) << describe(r);
  EXPECT_TRUE(contains(r.err, "mime.types")) << describe(r);
}

}  // namespace

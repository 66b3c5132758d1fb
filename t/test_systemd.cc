// systemd notifications (NOTIFY_SOCKET): READY=1 with MAINPID once the workers accept, RELOADING=1 with
// MONOTONIC_USEC then READY=1 on reload, the new master's MAINPID and READY=1 after an upgrade (the old
// master's READY=1 again after a rollback), STOPPING=1 on shutdown; a socket path or an abstract `@name`.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr const char* kFile = "notified\n";

constexpr const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n";

std::string describe(const RunResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

unsigned long long monotonic_usec() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<unsigned long long>(ts.tv_sec) * 1000000ull + static_cast<unsigned long long>(ts.tv_nsec) / 1000;
}

bool has(const NotifySocket::Message& m, std::string_view key, std::string_view value) {
  return m.field(key) == std::string(value);
}

// Whether any datagram so far from `sender` (0: anyone) has KEY=VALUE.
bool seen(const NotifySocket& n, std::string_view key, std::string_view value, pid_t sender = 0) {
  for (const auto& m : n.history())
    if (has(m, key, value) && (sender == 0 || m.sender == sender)) return true;
  return false;
}

// Starts the server with NOTIFY_SOCKET and waits for READY=1 (the start counts as done only then).
::testing::AssertionResult start_notified(BatonServer& s, NotifySocket& n) {
  s.set_env("NOTIFY_SOCKET", n.address());
  bool ready = false;
  ::testing::AssertionResult started = s.start([&] {
    if (!ready) ready = n.wait_for_field("READY", "1", 50ms).has_value();
    return ready;
  });
  if (!started) return started << "\n" << n.describe();
  return ::testing::AssertionSuccess();
}

}  // namespace

TEST(Systemd, ReadyWithMainPidOnceWorkersAccept) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 2));
  NotifySocket n(s.path("notify.sock"));
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_TRUE(start_notified(s, n));
  // READY=1 means requests are answered now, not merely that the port accepts connections.
  Client c(s.port(), {.timeout = 2000ms});
  ASSERT_TRUE(c.connected());
  Response r = c.exchange(req("GET", "/a.txt", "Connection: close\r\n"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kFile);
  const std::string pid = std::to_string(s.master_pid());
  if (!seen(n, "MAINPID", pid)) n.wait_for_field("MAINPID", pid, 1000ms);
  EXPECT_TRUE(seen(n, "MAINPID", pid)) << n.describe();
  const NotifySocket::Message* ready = nullptr;
  for (const auto& m : n.history())
    if (has(m, "READY", "1")) ready = &m;
  ASSERT_NE(ready, nullptr);
  EXPECT_EQ(ready->sender, s.master_pid()) << "READY=1 should come from the master\n" << n.describe();
}

TEST(Systemd, ReloadSendsReloadingThenReady) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 1));
  NotifySocket n(s.path("notify.sock"));
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_TRUE(start_notified(s, n));
  n.clear();

  unsigned long long before = monotonic_usec();
  RunResult r = s.ctl("reload");
  unsigned long long after = monotonic_usec();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  std::optional<NotifySocket::Message> reloading = n.wait_for_field("RELOADING", "1", 2000ms);
  ASSERT_TRUE(reloading) << n.describe();
  // systemd wants MONOTONIC_USEC in the same datagram as RELOADING=1.
  std::optional<std::string> usec = reloading->field("MONOTONIC_USEC");
  ASSERT_TRUE(usec) << "RELOADING=1 without MONOTONIC_USEC: " << n.describe();
  unsigned long long v = std::strtoull(usec->c_str(), nullptr, 10);
  EXPECT_GE(v, before);
  EXPECT_LE(v, after);
  EXPECT_TRUE(n.wait_for_field("READY", "1", 3000ms)) << "no READY=1 after RELOADING=1\n" << n.describe();
  EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
}

TEST(Systemd, UpgradeAnnouncesTheNewMainPid) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 1));
  NotifySocket n(s.path("notify.sock"));
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_TRUE(start_notified(s, n));
  pid_t old = s.master_pid();
  n.clear();

  RunResult r = s.ctl("upgrade");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  std::optional<UpgradeOutcome> up = parse_upgrade_success(r.out);
  ASSERT_TRUE(up) << describe(r);
  const std::string fresh = std::to_string(up->pid);
  // READY=1 from the new master, after it named itself the main pid.
  std::optional<NotifySocket::Message> ready = n.wait_for(
      [&](const NotifySocket::Message& m) { return has(m, "READY", "1") && m.sender == up->pid; }, 3000ms);
  EXPECT_TRUE(ready) << n.describe();
  EXPECT_TRUE(seen(n, "MAINPID", fresh)) << n.describe();
  bool mainpid_first = false;
  for (const auto& m : n.history()) {
    if (has(m, "MAINPID", fresh)) mainpid_first = true;
    if (has(m, "READY", "1") && m.sender == up->pid) break;
  }
  EXPECT_TRUE(mainpid_first) << "MAINPID=" << fresh << " should come with or before READY=1\n" << n.describe();
  EXPECT_TRUE(seen(n, "RELOADING", "1", old)) << "the old master should announce RELOADING=1\n" << n.describe();
  // The old master leaves without STOPPING=1: the service is not stopping.
  EXPECT_TRUE(wait_for([&] { return !process_alive(old); }, 5000ms));
  n.receive(200ms);
  EXPECT_FALSE(seen(n, "STOPPING", "1")) << n.describe();
  EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
}

TEST(Systemd, RollbackAnnouncesTheOldMasterAgain) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 1));
  std::string good = s.config_text();
  NotifySocket n(s.path("notify.sock"));
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_TRUE(start_notified(s, n));
  pid_t old = s.master_pid();
  n.clear();

  s.set_config(replace_all(good, "[main]\n", "[main]\nno_such_directive = 1\n"));
  RunResult r = s.ctl("upgrade");
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  std::optional<NotifySocket::Message> ready = n.wait_for(
      [&](const NotifySocket::Message& m) { return has(m, "READY", "1") && m.sender == old; }, 3000ms);
  EXPECT_TRUE(ready) << n.describe();
  n.receive(200ms);
  EXPECT_TRUE(seen(n, "MAINPID", std::to_string(old))) << n.describe();
  EXPECT_FALSE(seen(n, "STOPPING", "1")) << n.describe();
}

TEST(Systemd, StoppingOnQuitAndTerm) {
  for (int sig : {SIGQUIT, SIGTERM}) {
    SCOPED_TRACE(sig == SIGQUIT ? "SIGQUIT" : "SIGTERM");
    BatonServer s;
    s.set_config(make_runtime_config(kServer, "", 1));
    NotifySocket n(s.path("notify.sock"));
    ASSERT_TRUE(n.ok()) << n.error();
    ASSERT_TRUE(start_notified(s, n));
    n.clear();
    ASSERT_TRUE(s.signal(sig));
    EXPECT_TRUE(n.wait_for_field("STOPPING", "1", 3000ms)) << n.describe();
    EXPECT_TRUE(s.wait_exit(5000ms));
  }
}

TEST(Systemd, AbstractNotifySocket) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 1));
  static std::atomic<int> counter{0};
  std::string name = "@baton-test-notify-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  NotifySocket n(name);
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_TRUE(start_notified(s, n));
  if (!seen(n, "MAINPID", std::to_string(s.master_pid())))
    n.wait_for_field("MAINPID", std::to_string(s.master_pid()), 1000ms);
  EXPECT_TRUE(seen(n, "MAINPID", std::to_string(s.master_pid()))) << n.describe();
  EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
  n.clear();
  ASSERT_TRUE(s.signal(SIGTERM));
  EXPECT_TRUE(n.wait_for_field("STOPPING", "1", 3000ms)) << n.describe();
}

// Live binary upgrade (`baton -s upgrade`, USR2): the master keeps its PID and runs the new file;
// repeated upgrades under load lose no request and leak neither descriptors nor processes, a download
// in flight completes, the listeners follow the configuration, the pid file never changes, and every
// kind of failure rolls back to the master's old code and workers, which keep serving.
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr const char* kBody = "hello from the upgrade test\n";

constexpr const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n";

std::string config(std::string_view main_extra = "", int workers = 2, std::string_view servers = kServer) {
  // Short timeouts keep every test bounded (see make_runtime_config).
  return make_runtime_config(servers, main_extra, workers);
}

// The reason of a failed `-s upgrade`: the rest of the stderr line `baton: upgrade failed: ...`.
std::string failure_reason(const RunResult& r) {
  constexpr std::string_view kHead = "baton: upgrade failed: ";
  size_t pos = r.err.find(kHead);
  if (pos == std::string::npos) return std::string();
  std::string rest = r.err.substr(pos + kHead.size());
  return rest.substr(0, rest.find('\n'));
}

// Runs `-s upgrade`, expects success and returns the master's pid it reports (0 on failure).
pid_t upgrade_ok(BatonServer& s, long expected_generation = 0) {
  RunResult r = s.ctl("upgrade");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  std::optional<UpgradeOutcome> up = parse_upgrade_success(r.out);
  EXPECT_TRUE(up) << "stdout is not `upgrade succeeded: new master pid N, generation G`: " << describe(r);
  if (r.exit_code != 0 || !up) return 0;
  if (expected_generation) {
    EXPECT_EQ(up->generation, expected_generation) << r.out;
  }
  return up->pid;
}

std::vector<pid_t> sorted(std::vector<pid_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The state after a rolled-back upgrade: `-s upgrade` exited 1 with a reason, the old master and its
// workers are the only processes of the server, and the pid file names the old master again.
void expect_rolled_back(BatonServer& s, const RunResult& r, pid_t old_master, const std::vector<pid_t>& old_workers) {
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_FALSE(failure_reason(r).empty()) << "no `baton: upgrade failed: <reason>` on stderr: " << describe(r);
  EXPECT_TRUE(process_alive(old_master)) << "the old master is gone";
  EXPECT_EQ(s.pid_from_file(), old_master) << "pid file: " << read_file(s.pid_path());
  EXPECT_FALSE(file_exists(s.oldbin_path())) << "the .oldbin pid file is still there";
  BatonServer::Census c;
  bool clean = wait_for(
      [&] {
        c = s.census();
        return c.masters == std::vector<pid_t>{old_master} && c.others.empty() && c.draining.empty() &&
               sorted(c.workers) == sorted(old_workers);
      },
      2000ms, 20ms);
  EXPECT_TRUE(clean) << "after the rollback, expected only the old master " << old_master << " and its "
                     << old_workers.size() << " workers:\n"
                     << c.describe();
}

LoadOptions light_load(int port) {
  LoadOptions o;
  o.port = port;
  o.target = "/a.txt";
  o.expected_body = kBody;
  o.keepalive_threads = 2;
  o.close_threads = 1;
  o.pause = 5ms;
  return o;
}

std::vector<pid_t> wait_for_workers(BatonServer& s, pid_t master, size_t n) {
  std::vector<pid_t> w;
  wait_for(
      [&] {
        w = s.workers_of(master);
        return w.size() == n;
      },
      5000ms, 10ms);
  return w;
}

// Starts the server from its own copy of baton at PREFIX/sbin/baton (which a test may then replace)
// with main_extra in [main] and 2 workers; *old is the master, *workers its workers.
bool start_from_own_copy(BatonServer& s, std::string_view main_extra, pid_t* old, std::vector<pid_t>* workers) {
  s.write_file("html/a.txt", kBody);
  std::string bin = s.path("sbin/baton");
  if (!install_file(baton_binary(), bin)) return false;
  s.set_binary(bin);
  s.set_config(config(main_extra));
  if (!s.start()) return false;
  *old = s.master_pid();
  *workers = wait_for_workers(s, *old, 2);
  return workers->size() == 2;
}

}  // namespace

TEST(Upgrade, RepeatedUpgradesUnderLoadLoseNothing) {
  constexpr int kWorkers = 2;
  constexpr int kUpgrades = 20;
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  {
    char real[PATH_MAX];
    std::string path = s.path("sbin/baton");
    EXPECT_TRUE(install_file(baton_binary(), path));
    EXPECT_NE(::realpath(path.c_str(), real), nullptr);
    s.set_binary(real);
  }
  s.set_config(config("", kWorkers));
  ASSERT_TRUE(s.start());
  pid_t first = s.master_pid();
  ASSERT_EQ(wait_for_workers(s, first, kWorkers).size(), size_t{kWorkers});
  ASSERT_EQ(get(s.port(), "/a.txt").body, kBody);
  std::this_thread::sleep_for(300ms);
  // Each upgrade installs another build at the path the master was started from (the same program
  // with a different tail): the master must run the file of that upgrade.
  std::string bin = s.path("sbin/baton");

  LoadOptions o;
  o.port = s.port();
  o.target = "/a.txt";
  o.expected_body = kBody;
  o.keepalive_threads = 8;
  o.close_threads = 4;
  LoadGenerator load(o);
  std::this_thread::sleep_for(300ms);

  const auto deadline = SteadyClock::now() + 60s;
  long generation = 1;
  int done = 0;
  int fds_after_first = -1;
  long rss_after_first = -1;
  std::vector<uint64_t> per_interval;
  uint64_t last = load.requests();
  for (int i = 0; i < kUpgrades; i++) {
    if (SteadyClock::now() > deadline) {
      ADD_FAILURE() << "only " << done << " upgrades within 60 s";
      break;
    }
    if (!install_file(baton_binary(), s.binary(), "\n-- build " + std::to_string(i + 1) + " --\n")) {
      ADD_FAILURE() << "cannot install build " << i + 1;
      break;
    }
    struct stat on_disk {};
    ASSERT_EQ(::stat(s.binary().c_str(), &on_disk), 0);
    RunResult r = s.ctl("upgrade");
    std::optional<UpgradeOutcome> up = parse_upgrade_success(r.out);
    if (r.exit_code != 0 || !up) {
      ADD_FAILURE() << "upgrade " << i + 1 << " failed: " << describe(r);
      break;
    }
    EXPECT_EQ(up->generation, generation + 1) << r.out;
    EXPECT_EQ(up->pid, first) << "the master changed its pid at upgrade " << i + 1;
    EXPECT_EQ(s.pid_from_file(), first) << "the pid file changed at upgrade " << i + 1;
    EXPECT_TRUE(process_alive(first));
    EXPECT_FALSE(s.original_exited()) << "the process the test started exited at upgrade " << i + 1;
    EXPECT_EQ(process_exe(first), s.binary()) << "upgrade " << i + 1;
    struct stat running {};
    EXPECT_EQ(::stat(("/proc/" + std::to_string(first) + "/exe").c_str(), &running), 0);
    EXPECT_EQ(running.st_ino, on_disk.st_ino) << "the master does not run build " << i + 1;
    // The old workers leave once they have drained (quit_timeout = 2s at most).
    if (!s.wait_old_generations_gone(5000ms)) {
      ADD_FAILURE() << "the old generation still runs 5 s after upgrade " << i + 1 << "\n" << s.census().describe();
      break;
    }
    if (i == 0) {
      // Once the master has reaped the old workers and closed their channels.
      std::this_thread::sleep_for(300ms);
      fds_after_first = count_open_fds(first);
      rss_after_first = process_rss_kib(first);
    }
    generation = up->generation;
    done++;
    uint64_t now = load.requests();
    per_interval.push_back(now - last);
    last = now;
  }
  std::this_thread::sleep_for(200ms);
  load.stop();

  RecordProperty("upgrades", done);
  RecordProperty("requests", std::to_string(load.requests()));
  RecordProperty("connections", std::to_string(load.connections()));
  EXPECT_EQ(done, kUpgrades);
  EXPECT_EQ(load.failures(), 0u) << load.summary();
  EXPECT_EQ(load.refused(), 0u) << load.summary();
  EXPECT_GT(load.requests(), 0u);
  for (size_t i = 0; i < per_interval.size(); i++)
    EXPECT_GT(per_interval[i], 0u) << "no request was served around upgrade " << i + 1;

  // Exactly the master the test started and its workers are left, and the master has as many
  // descriptors as after the first upgrade.
  BatonServer::Census c;
  bool settled = wait_for(
      [&] {
        c = s.census();
        return c.masters == std::vector<pid_t>{first} && c.workers.size() == size_t{kWorkers} && c.draining.empty() &&
               c.others.empty();
      },
      5000ms, 20ms);
  EXPECT_TRUE(settled) << "expected 1 master (" << first << ") and " << kWorkers << " workers:\n" << c.describe();
  EXPECT_EQ(sorted(s.workers_of(first)), sorted(c.workers)) << "a worker is not the master's child";
  EXPECT_EQ(parent_of(first), ::getpid());
  ASSERT_GT(fds_after_first, 0);
  int final_fds = -1;
  wait_for(
      [&] {
        final_fds = count_open_fds(first);
        return final_fds == fds_after_first;
      },
      3000ms, 20ms);
  EXPECT_EQ(final_fds, fds_after_first) << "descriptors of the master after the first upgrade and after " << done;
  // Its memory starts afresh with each exec: what it holds does not pile up (a generous bound).
  ASSERT_GT(rss_after_first, 0);
  EXPECT_LE(process_rss_kib(first), rss_after_first + 1024) << "KiB of the master after the first upgrade: " << rss_after_first;
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);

  // Ctrl-C stops the whole service: the master the test started exits, and nothing is left.
  ASSERT_EQ(::kill(first, SIGINT), 0);
  std::optional<int> status = s.wait_exit(5000ms);
  ASSERT_TRUE(status) << s.census().describe();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  EXPECT_TRUE(wait_for([&] { return s.census().masters.empty() && s.census().workers.empty(); }, 3000ms))
      << s.census().describe();
  EXPECT_FALSE(can_connect(s.port(), 200ms));
}

TEST(Upgrade, SlowDownloadStartedBeforeUpgradeCompletes) {
  constexpr size_t kSize = 20 * 1024 * 1024;
  BatonServer s;
  std::string content = s.write_generated("html/big.bin", kSize, 21);
  s.write_file("html/a.txt", kBody);
  // The old workers must not cut the download short: a long quit_timeout here.
  s.set_config(config("quit_timeout = 30s\n", 1));
  ASSERT_TRUE(s.start());
  pid_t old = s.master_pid();

  Client c(s.port(), {.timeout = 5000ms, .rcvbuf = 16384});
  ASSERT_TRUE(c.send(req("GET", "/big.bin")));
  std::string data;
  size_t head_end;
  while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
    std::string chunk = c.read_some(4096);
    ASSERT_FALSE(chunk.empty()) << c.error();
    data += chunk;
  }
  std::string head = data.substr(0, head_end + 4);
  std::string body = data.substr(head_end + 4);
  ASSERT_EQ(head.rfind("HTTP/1.1 200 ", 0), 0u) << head;
  for (int i = 0; i < 10; i++) {
    body += c.read_some(8192);
    std::this_thread::sleep_for(10ms);
  }

  std::vector<pid_t> old_workers = s.workers_of(old);
  ASSERT_EQ(old_workers.size(), 1u);
  pid_t fresh = upgrade_ok(s, 2);
  ASSERT_EQ(fresh, old);
  ASSERT_LT(body.size(), kSize / 2) << "the download is not in flight any more";
  // New connections go to the new generation while the old one finishes the download.
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);
  EXPECT_TRUE(process_alive(old_workers[0])) << "the old worker exited with a download in flight";
  for (int i = 0; i < 20; i++) {
    body += c.read_some(8192);
    std::this_thread::sleep_for(10ms);
  }
  int buf = 1 << 20;
  ::setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  while (body.size() < kSize) {
    std::string chunk = c.read_some(1 << 20);
    if (chunk.empty()) break;
    body += chunk;
  }
  EXPECT_TRUE(same_bytes(body, content)) << c.error();
  // Then the old worker has nothing left and exits.
  EXPECT_TRUE(s.wait_old_generations_gone(5000ms)) << s.census().describe();
  EXPECT_FALSE(process_alive(old_workers[0]));
  EXPECT_EQ(s.pid_from_file(), old);
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);
}

TEST(Upgrade, RunsTheFileNowOnDisk) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  std::string bin = s.path("sbin/baton");
  ASSERT_TRUE(install_file(baton_binary(), bin));
  char real[PATH_MAX];
  ASSERT_NE(::realpath(bin.c_str(), real), nullptr);
  bin = real;
  s.set_binary(bin);
  s.set_config(config("", 1));
  ASSERT_TRUE(s.start());
  pid_t old = s.master_pid();
  EXPECT_EQ(process_exe(old), bin);

  // A different file (the same program with bytes appended) takes the place of the running one.
  ASSERT_TRUE(install_file(baton_binary(), bin, std::string("\n-- another build of baton --\n")));
  EXPECT_EQ(process_exe(old), bin + " (deleted)");
  struct stat on_disk {};
  ASSERT_EQ(::stat(bin.c_str(), &on_disk), 0);

  pid_t fresh = upgrade_ok(s, 2);
  ASSERT_EQ(fresh, old);
  EXPECT_EQ(process_exe(fresh), bin) << "the master does not run the file now at " << bin;
  struct stat running {};
  ASSERT_EQ(::stat(("/proc/" + std::to_string(fresh) + "/exe").c_str(), &running), 0);
  EXPECT_EQ(running.st_ino, on_disk.st_ino);
  EXPECT_EQ(running.st_size, on_disk.st_size);
  std::vector<pid_t> workers = wait_for_workers(s, fresh, 1);
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(process_exe(workers[0]), bin);
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);
}

TEST(Upgrade, InvalidConfigurationRollsBack) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  s.set_config(config());
  std::string good = s.config_text();
  ASSERT_TRUE(s.start());
  pid_t old = s.master_pid();
  std::vector<pid_t> workers = wait_for_workers(s, old, 2);
  ASSERT_EQ(workers.size(), 2u);
  LoadGenerator load(light_load(s.port()));
  std::this_thread::sleep_for(200ms);

  std::string bad = replace_all(good, "[main]\n", "[main]\nno_such_directive = 1\n");
  s.set_config(bad);
  int line = line_of(s.config_text(), "no_such_directive");
  ASSERT_GT(line, 0);
  RunResult r = s.ctl("upgrade");
  std::this_thread::sleep_for(200ms);
  uint64_t during = load.requests();
  expect_rolled_back(s, r, old, workers);
  std::string where = s.config_path() + ":" + std::to_string(line) + ":";
  EXPECT_TRUE(contains(failure_reason(r), where)) << "the reason does not name " << where << ": " << describe(r);

  // Still serving, and a later upgrade with a good configuration works.
  std::this_thread::sleep_for(200ms);
  EXPECT_GT(load.requests(), during);
  s.set_config(good);
  pid_t fresh = upgrade_ok(s, 2);
  EXPECT_EQ(fresh, old);
  EXPECT_TRUE(s.wait_old_generations_gone(5000ms)) << s.census().describe();
  load.stop();
  EXPECT_EQ(load.failures(), 0u) << load.summary();
  EXPECT_GT(load.requests(), 0u);
}

TEST(Upgrade, BinaryThatExitsOrCrashesRollsBackAtOnce) {
  BatonServer s;
  std::string bin = s.path("sbin/baton");
  pid_t old = 0;
  std::vector<pid_t> workers;
  // A long upgrade_timeout: the rollback must come from the exit, not from the timeout.
  ASSERT_TRUE(start_from_own_copy(s, "upgrade_timeout = 20s\n", &old, &workers));
  LoadGenerator load(light_load(s.port()));
  std::this_thread::sleep_for(200ms);

  // One that exits, one that dies of SIGSEGV: each time the same master keeps serving.
  for (auto [script, reason] : {std::pair{"#!/bin/sh\nexit 3\n", "exited with code 3"},
                                std::pair{"#!/bin/sh\nkill -SEGV $$\n", "killed by signal 11"}}) {
    ASSERT_TRUE(install_content(script, bin));
    auto t0 = SteadyClock::now();
    RunResult r = s.ctl("upgrade", 15000ms);
    auto took = SteadyClock::now() - t0;
    expect_rolled_back(s, r, old, workers);
    EXPECT_TRUE(contains(failure_reason(r), reason)) << describe(r);
    EXPECT_LT(took, 5000ms) << "the rollback waited for something other than the end of the new binary";
    EXPECT_FALSE(s.original_exited()) << "the master the test started is gone";
  }

  // The real binary back in place: an upgrade works again.
  ASSERT_TRUE(install_file(baton_binary(), bin));
  EXPECT_EQ(upgrade_ok(s, 2), old);
  EXPECT_TRUE(s.wait_old_generations_gone(5000ms)) << s.census().describe();
  load.stop();
  EXPECT_EQ(load.failures(), 0u) << load.summary();
  EXPECT_GT(load.requests(), 0u);
}

// The new binary passes as a candidate but fails once the master runs it (here it crashes at once,
// as new code could in the master's own start): the candidate, which keeps everything until the
// master says it has adopted the generation, carries on as the master. The service is never left
// without a master and loses no request; only the PID changes.
TEST(Upgrade, MasterThatDiesInTheNewBinaryLeavesTheCandidateInCharge) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  std::string bin = s.path("sbin/baton");
  std::string real = s.path("sbin/baton.real");
  ASSERT_TRUE(install_file(baton_binary(), bin));
  ASSERT_TRUE(install_file(baton_binary(), real));
  s.set_binary(bin);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  pid_t old = s.master_pid();
  std::vector<pid_t> workers = wait_for_workers(s, old, 2);
  ASSERT_EQ(workers.size(), 2u);
  LoadGenerator load(light_load(s.port()));
  std::this_thread::sleep_for(200ms);

  ASSERT_TRUE(install_content("#!/bin/sh\n[ \"$BATON_UPGRADE\" = 1 ] && exec '" + real + "' \"$@\"\nkill -SEGV $$\n", bin));
  RunResult r = s.ctl("upgrade", 15000ms);
  EXPECT_NE(r.exit_code, -1) << "`-s upgrade` did not return";
  std::optional<int> status = s.wait_exit(5000ms);
  ASSERT_TRUE(status) << s.census().describe();
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGSEGV) << "wait status " << *status;

  pid_t now = 0;
  ASSERT_TRUE(wait_for(
      [&] {
        now = s.pid_from_file();
        return now > 0 && now != old && process_alive(now);
      },
      5000ms))
      << s.census().describe() << "\n" << s.error_log();
  EXPECT_TRUE(contains(s.error_log(), "carries on as the master")) << s.error_log();
  std::optional<StatusReport> st = status_of(s);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->master_pid, now);
  EXPECT_EQ(st->generation, 2);
  // The old workers, whose master is gone, drain and leave; the candidate's serve.
  EXPECT_TRUE(wait_for([&] { return none_alive(workers); }, 5000ms)) << s.census().describe();
  std::this_thread::sleep_for(200ms);
  load.stop();
  EXPECT_EQ(load.failures(), 0u) << load.summary();
  EXPECT_GT(load.requests(), 0u);
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);
}

// The master takes longer to come back in the new binary than the candidate waits for it: the
// candidate carries on as the master, and the master, once back, leaves the candidate's workers to
// it and exits when its old workers are done. At no moment do both or neither supervise them.
TEST(Upgrade, MasterSlowerThanTheCandidateWaitsLeavesItInCharge) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  std::string bin = s.path("sbin/baton");
  std::string real = s.path("sbin/baton.real");
  ASSERT_TRUE(install_file(baton_binary(), bin));
  ASSERT_TRUE(install_file(baton_binary(), real));
  s.set_binary(bin);
  s.set_config(config());  // upgrade_timeout = 3s: the candidate waits 5 s for the master
  ASSERT_TRUE(s.start());
  pid_t old = s.master_pid();
  std::vector<pid_t> workers = wait_for_workers(s, old, 2);
  ASSERT_EQ(workers.size(), 2u);
  LoadGenerator load(light_load(s.port()));
  std::this_thread::sleep_for(200ms);

  ASSERT_TRUE(install_content(
      "#!/bin/sh\n[ \"$BATON_UPGRADE\" = 1 ] && exec '" + real + "' \"$@\"\nsleep 7\nexec '" + real + "' \"$@\"\n", bin));
  RunResult r = s.ctl("upgrade", 20000ms);
  std::optional<UpgradeOutcome> up = parse_upgrade_success(r.out);
  ASSERT_TRUE(up) << describe(r) << "\n" << s.error_log();
  EXPECT_NE(up->pid, old);
  EXPECT_EQ(s.pid_from_file(), up->pid);
  std::optional<int> status = s.wait_exit(10000ms);
  ASSERT_TRUE(status) << s.census().describe();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  std::string log = s.error_log();
  EXPECT_TRUE(contains(log, "carries on as the master")) << log;
  EXPECT_TRUE(contains(log, "it is the master now")) << log;
  std::optional<StatusReport> st = status_of(s);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->master_pid, up->pid);
  EXPECT_EQ(st->generation, 2);
  EXPECT_EQ(st->workers.size(), 2u);
  EXPECT_TRUE(none_alive(workers)) << s.census().describe();
  std::this_thread::sleep_for(200ms);
  load.stop();
  EXPECT_EQ(load.failures(), 0u) << load.summary();
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);
}

TEST(Upgrade, QuitAfterUpgradesStopsTheServiceGracefully) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  s.set_config(config("", 2));
  ASSERT_TRUE(s.start());
  pid_t master = s.master_pid();
  EXPECT_EQ(upgrade_ok(s, 2), master);
  EXPECT_EQ(upgrade_ok(s, 3), master);
  ASSERT_TRUE(s.wait_old_generations_gone(5000ms)) << s.census().describe();
  ASSERT_EQ(::kill(master, SIGQUIT), 0);
  std::optional<int> status = s.wait_exit(5000ms);
  ASSERT_TRUE(status) << s.census().describe();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  EXPECT_TRUE(wait_for([&] { return s.census().workers.empty() && s.census().draining.empty(); }, 3000ms))
      << s.census().describe();
  EXPECT_FALSE(file_exists(s.pid_path()));
}

TEST(Upgrade, BinaryThatCannotBeExecutedRollsBackWithTheReason) {
  BatonServer s;
  std::string bin = s.path("sbin/baton");
  pid_t old = 0;
  std::vector<pid_t> workers;
  ASSERT_TRUE(start_from_own_copy(s, "upgrade_timeout = 20s\n", &old, &workers));

  ASSERT_EQ(::chmod(bin.c_str(), 0644), 0);
  auto t0 = SteadyClock::now();
  RunResult r = s.ctl("upgrade", 15000ms);
  EXPECT_LT(SteadyClock::now() - t0, 5000ms);
  expect_rolled_back(s, r, old, workers);
  EXPECT_TRUE(contains(failure_reason(r), "cannot execute " + bin + " (Permission denied)")) << describe(r);
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);
}

TEST(Upgrade, BinaryNeverReadyRollsBackAfterUpgradeTimeout) {
  BatonServer s;
  std::string bin = s.path("sbin/baton");
  pid_t old = 0;
  std::vector<pid_t> workers;
  ASSERT_TRUE(start_from_own_copy(s, "", &old, &workers));  // upgrade_timeout = 3s
  LoadGenerator load(light_load(s.port()));
  std::this_thread::sleep_for(200ms);

  ASSERT_TRUE(install_content("#!/bin/sh\nexec sleep 100\n", bin));
  auto t0 = SteadyClock::now();
  RunResult r = s.ctl("upgrade", 3000ms + 5000ms);
  auto took = SteadyClock::now() - t0;
  EXPECT_GE(took, 2500ms) << "rolled back before upgrade_timeout";
  EXPECT_LT(took, 8000ms);
  expect_rolled_back(s, r, old, workers);
  // The process that never got ready was killed.
  bool no_sleeper = wait_for(
      [&] {
        for (pid_t p : s.census().others)
          if (contains(process_cmdline(p), "sleep")) return false;
        return true;
      },
      2000ms);
  EXPECT_TRUE(no_sleeper) << s.census().describe();
  std::this_thread::sleep_for(300ms);
  load.stop();
  EXPECT_EQ(load.failures(), 0u) << load.summary();
  EXPECT_GT(load.requests(), 0u);
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);
}

TEST(Upgrade, NewMasterKilledMidHandoverRollsBack) {
  BatonServer s;
  std::string bin = s.path("sbin/baton");
  pid_t old = 0;
  std::vector<pid_t> workers;
  // The rollback must come from the death of the new master, not from upgrade_timeout.
  ASSERT_TRUE(start_from_own_copy(s, "upgrade_timeout = 10s\n", &old, &workers));
  LoadGenerator load(light_load(s.port()));
  std::this_thread::sleep_for(200ms);

  // A new master that has taken every listener and then does nothing more.
  std::string mark = s.path("new-master.mark");
  ASSERT_TRUE(install_scripted_new_master(ScriptedNewMaster::kHoldsListeners, bin, mark));
  auto pending = std::async(std::launch::async, [&s] { return s.ctl("upgrade", 15000ms); });
  pid_t fresh = wait_for_new_master(old, workers, 5000ms);
  ASSERT_GT(fresh, 0) << "no new master appeared under " << old << "\n" << s.census().describe();
  ASSERT_TRUE(wait_for([&] { return file_exists(mark); }, 5000ms))
      << "the new master did not get the listeners\n" << s.census().describe() << "\n" << s.error_log();
  ASSERT_EQ(::kill(fresh, SIGKILL), 0);
  auto killed = SteadyClock::now();
  RunResult r = pending.get();
  EXPECT_LT(SteadyClock::now() - killed, 2000ms) << "the rollback did not follow the death of the new master";
  expect_rolled_back(s, r, old, workers);
  EXPECT_FALSE(process_alive(fresh));
  std::this_thread::sleep_for(300ms);
  load.stop();
  EXPECT_EQ(load.failures(), 0u) << load.summary();
  EXPECT_GT(load.requests(), 0u);
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);
}

// The hand-over of the listeners is a step of the old master's event loop, not a wait inside it: a
// new master that stops answering in the middle of it holds up nothing else. Here the new master
// takes the announcement of the transfer and then says nothing, until the step's deadline.
TEST(Upgrade, MasterServesItsLoopWhileTheHandoverIsHeldUp) {
  BatonServer s;
  std::string bin = s.path("sbin/baton");
  pid_t old = 0;
  std::vector<pid_t> workers;
  ASSERT_TRUE(start_from_own_copy(s, "upgrade_timeout = 20s\n", &old, &workers));  // nothing here comes from the timeout

  std::string mark = s.path("new-master.mark");
  ASSERT_TRUE(install_scripted_new_master(ScriptedNewMaster::kStallsTransfer, bin, mark));
  auto pending = std::async(std::launch::async, [&s] { return s.ctl("upgrade", 30000ms); });
  pid_t fresh = wait_for_new_master(old, workers, 5000ms);
  ASSERT_GT(fresh, 0) << s.census().describe();
  ASSERT_TRUE(wait_for([&] { return file_exists(mark); }, 5000ms))
      << "the new master did not get as far as the transfer\n" << s.census().describe() << "\n" << s.error_log();

  // `-s status` is answered at once.
  auto t0 = SteadyClock::now();
  RunResult st = s.ctl("status", 10000ms);
  auto took = SteadyClock::now() - t0;
  EXPECT_LT(took, 1000ms) << "status took " << std::chrono::duration_cast<Millis>(took).count() << " ms";
  std::string why;
  std::optional<StatusReport> report = parse_status(st.out, &why);
  ASSERT_TRUE(report) << why << "\n" << describe(st);
  EXPECT_EQ(report->master_pid, old);
  EXPECT_EQ(report->state, "upgrading");
  EXPECT_EQ(report->workers.size(), 2u) << st.out;

  // A worker that dies is replaced (restart_initial_backoff = 200ms), and requests are served.
  ASSERT_EQ(::kill(workers[0], SIGKILL), 0);
  std::vector<pid_t> now_workers;
  bool replaced = wait_for(
      [&] {
        now_workers = s.workers_of(old);
        return now_workers.size() == 2 &&
               std::find(now_workers.begin(), now_workers.end(), workers[0]) == now_workers.end();
      },
      1500ms, 10ms);
  EXPECT_TRUE(replaced) << "the killed worker " << workers[0] << " was not replaced in time\n" << s.census().describe();
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);

  // The upgrade is still under way. The step has a deadline of its own (5 s), far below
  // upgrade_timeout: then the old master kills the new one, rolls back and says why.
  EXPECT_EQ(pending.wait_for(0ms), std::future_status::timeout) << "-s upgrade answered before the upgrade ended";
  EXPECT_EQ(pending.wait_for(7000ms), std::future_status::ready) << "no end of the stalled hand-over within 7 s";
  RunResult r = pending.get();
  EXPECT_TRUE(contains(failure_reason(r), "did not acknowledge the listener transfer")) << describe(r);
  expect_rolled_back(s, r, old, now_workers);
  EXPECT_TRUE(wait_for([&] { return !process_alive(fresh); }, 2000ms)) << "the stalled new master still runs";
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);
}

TEST(Upgrade, SecondUpgradeWhileOneIsInProgressIsRefused) {
  BatonServer s;
  std::string bin = s.path("sbin/baton");
  pid_t old = 0;
  std::vector<pid_t> workers;
  ASSERT_TRUE(start_from_own_copy(s, "upgrade_timeout = 10s\n", &old, &workers));

  // The first upgrade's new binary holds still until it is resumed.
  ASSERT_TRUE(install_stopping_binary(baton_binary(), bin));
  auto first = std::async(std::launch::async, [&s] { return s.ctl("upgrade", 15000ms); });
  pid_t fresh = wait_for_new_master(old, workers, 5000ms);
  ASSERT_GT(fresh, 0) << s.census().describe();
  ASSERT_TRUE(wait_for([&] { return process_stopped(fresh); }, 5000ms)) << s.census().describe();
  RunResult second = s.ctl("upgrade");
  EXPECT_EQ(second.exit_code, 1) << describe(second);
  EXPECT_TRUE(contains(second.err, "baton: upgrade failed: an upgrade is already in progress")) << describe(second);
  EXPECT_TRUE(second.out.empty()) << describe(second);

  ASSERT_EQ(::kill(fresh, SIGCONT), 0);
  RunResult r = first.get();
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  std::optional<UpgradeOutcome> up = parse_upgrade_success(r.out);
  ASSERT_TRUE(up) << describe(r);
  EXPECT_EQ(up->pid, old);
  EXPECT_EQ(up->generation, 2);
  EXPECT_TRUE(s.wait_old_generations_gone(5000ms)) << s.census().describe();
  EXPECT_FALSE(process_alive(fresh)) << "the candidate is still there";
  BatonServer::Census c = s.census();
  EXPECT_EQ(c.masters, std::vector<pid_t>{old}) << c.describe();
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);
}

TEST(Upgrade, ListenersFollowTheNewConfiguration) {
  const char* before =
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "listen = 127.0.0.1:@PORT2@\n"
      "root = html\n";
  const char* after =
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "listen = 127.0.0.1:@PORT3@\n"
      "root = html\n";
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  s.port(2);
  s.set_config(config("", 1, before));
  ASSERT_TRUE(s.start());
  pid_t old = s.master_pid();
  EXPECT_EQ(get(s.port(1), "/a.txt").body, kBody);
  EXPECT_FALSE(can_connect(s.port(2), 300ms));

  s.set_config(config("", 1, after));
  pid_t fresh = upgrade_ok(s, 2);
  ASSERT_EQ(fresh, old);
  EXPECT_EQ(get(s.port(2), "/a.txt").body, kBody) << "the added listener does not serve";
  EXPECT_EQ(get(s.port(0), "/a.txt").body, kBody);
  ASSERT_TRUE(s.wait_old_generations_gone(5000ms)) << s.census().describe();
  EXPECT_TRUE(wait_for([&] { return !can_connect(s.port(1), 200ms); }, 2000ms))
      << "the removed listener still accepts once the old generation is gone";
  EXPECT_EQ(get(s.port(0), "/a.txt").body, kBody);
  EXPECT_EQ(get(s.port(2), "/a.txt").body, kBody);
}

// When `-s upgrade` says it succeeded, no new connection is answered by the old generation: its
// workers have stopped accepting. A stopped old worker cannot say so; the answer waits for it
// (within a bound).
TEST(Upgrade, ReturnsOnceTheOldWorkersStoppedAccepting) {
  auto servers = [](std::string_view body) {
    return std::string(kServer) + "\n[location = /v]\nreturn = 200 " + std::string(body) + "\n";
  };
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  s.set_config(config("", 1, servers("one")));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, s.master_pid(), 1);
  ASSERT_EQ(old.size(), 1u);
  EXPECT_EQ(get(s.port(), "/v").body, "one");

  ASSERT_EQ(::kill(old[0], SIGSTOP), 0);
  s.set_config(config("", 1, servers("two")));
  auto pending = std::async(std::launch::async, [&s] { return s.ctl("upgrade", 15000ms); });
  // The new generation serves (the old worker cannot take a connection while it is stopped).
  EXPECT_TRUE(wait_for([&] { return get(s.port(), "/v").body == "two"; }, 5000ms, 20ms));
  EXPECT_EQ(pending.wait_for(300ms), std::future_status::timeout) << "the upgrade answered while an old worker was stopped";
  ::kill(old[0], SIGCONT);
  RunResult r = pending.get();
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(parse_upgrade_success(r.out)) << describe(r);
  for (int i = 0; i < 20; i++) EXPECT_EQ(get(s.port(), "/v").body, "two");
}

TEST(Upgrade, PidFileNeverChanges) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  std::string bin = s.path("sbin/baton");
  ASSERT_TRUE(install_file(baton_binary(), bin));
  s.set_binary(bin);
  s.set_config(config("upgrade_timeout = 10s\n"));
  ASSERT_TRUE(s.start());
  pid_t old = s.master_pid();
  ASSERT_TRUE(wait_for([&] { return s.pid_from_file() == old; }, 3000ms));
  std::vector<pid_t> workers = wait_for_workers(s, old, 2);
  ASSERT_EQ(workers.size(), 2u);

  ASSERT_TRUE(install_stopping_binary(baton_binary(), bin));
  auto pending = std::async(std::launch::async, [&s] { return s.ctl("upgrade", 15000ms); });
  pid_t candidate = wait_for_new_master(old, workers, 5000ms);
  ASSERT_GT(candidate, 0) << s.census().describe();
  ASSERT_TRUE(wait_for([&] { return process_stopped(candidate); }, 5000ms)) << s.census().describe();
  // During the upgrade: the pid file names the master, and no .oldbin appears.
  EXPECT_EQ(s.pid_from_file(), old);
  EXPECT_FALSE(file_exists(s.oldbin_path()));
  // Requests are served by the old generation meanwhile.
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);

  ASSERT_EQ(::kill(candidate, SIGCONT), 0);
  RunResult r = pending.get();
  std::optional<UpgradeOutcome> up = parse_upgrade_success(r.out);
  ASSERT_TRUE(up) << describe(r);
  EXPECT_EQ(up->pid, old);
  EXPECT_EQ(s.pid_from_file(), old) << "pid file right after `-s upgrade` succeeded: " << read_file(s.pid_path());
  EXPECT_FALSE(file_exists(s.oldbin_path()));
  ASSERT_TRUE(s.wait_old_generations_gone(5000ms)) << s.census().describe();
  EXPECT_FALSE(process_alive(candidate));
  EXPECT_EQ(s.pid_from_file(), old);

  // The master removes its pid file when it stops.
  std::optional<int> status = s.stop(SIGTERM, 5000ms);
  EXPECT_TRUE(status) << "the master did not stop";
  EXPECT_FALSE(file_exists(s.pid_path()));
}

TEST(Upgrade, Usr2UpgradesLikeTheCommand) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  s.set_config(config("", 1));
  ASSERT_TRUE(s.start());
  pid_t old = s.master_pid();
  std::vector<pid_t> workers = wait_for_workers(s, old, 1);
  ASSERT_EQ(workers.size(), 1u);
  ASSERT_TRUE(s.signal(SIGUSR2));
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), "generation 2; draining the old workers"); }, 5000ms))
      << s.error_log();
  BatonServer::Census c;
  EXPECT_TRUE(wait_for(
      [&] {
        c = s.census();
        return c.masters == std::vector<pid_t>{old} && c.workers.size() == 1 && c.workers != workers && c.draining.empty() &&
               c.others.empty();
      },
      5000ms))
      << c.describe();
  EXPECT_EQ(s.pid_from_file(), old);
  EXPECT_EQ(get(s.port(), "/a.txt").body, kBody);
}

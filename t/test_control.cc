// The control socket and `baton -s`: status output (workers, generations, draining workers, connection
// counts), the socket file's mode, the abstract namespace, peers of another user refused, signals sent
// through the pid file, and clear failures when no master runs.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr const char* kFile = "controlled\n";

constexpr const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n";

std::vector<pid_t> sorted(std::vector<pid_t> v) {
  std::sort(v.begin(), v.end());
  return v;
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

const StatusReport::Worker* find_worker(const StatusReport& st, pid_t pid) {
  for (const auto& w : st.workers)
    if (w.pid == pid) return &w;
  return nullptr;
}

}  // namespace

TEST(Control, StatusListsMasterAndWorkers) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 2));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> workers = wait_for_workers(s, s.master_pid(), 2);
  ASSERT_EQ(workers.size(), 2u);

  std::optional<StatusReport> st = status_of(s);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->master_pid, s.master_pid());
  EXPECT_EQ(st->generation, 1);
  EXPECT_EQ(st->state, "running");
  ASSERT_EQ(st->workers.size(), 2u);
  std::vector<pid_t> listed;
  for (const auto& w : st->workers) {
    listed.push_back(w.pid);
    EXPECT_EQ(w.generation, 1);
    EXPECT_EQ(w.state, "active");
    EXPECT_GE(w.connections, 0);
  }
  EXPECT_EQ(sorted(listed), sorted(workers));
}

TEST(Control, StatusCountsConnections) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 1));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> workers = wait_for_workers(s, s.master_pid(), 1);
  ASSERT_EQ(workers.size(), 1u);

  {
    std::vector<Client> idle;
    for (int i = 0; i < 3; i++) {
      idle.emplace_back(s.port());
      ASSERT_EQ(idle.back().exchange(req("GET", "/a.txt")).status, 200);
    }
    std::optional<StatusReport> st = status_of(s);
    ASSERT_TRUE(st);
    ASSERT_EQ(st->workers.size(), 1u);
    EXPECT_EQ(st->workers[0].pid, workers[0]);
    EXPECT_GE(st->workers[0].connections, 3) << "three idle keep-alive connections are open";
  }
  // Once the clients have gone, the count falls back.
  long connections = -1;
  EXPECT_TRUE(wait_for(
      [&] {
        std::optional<StatusReport> st = status_of(s);
        connections = st && st->workers.size() == 1 ? st->workers[0].connections : -1;
        return connections == 0;
      },
      3000ms, 100ms))
      << "connections=" << connections;
}

TEST(Control, StatusShowsGenerationsAndDrainingWorkers) {
  BatonServer s;
  s.write_generated("html/big.bin", 32 * 1024 * 1024, 8);
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "quit_timeout = 5s\n", 1));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, s.master_pid(), 1);
  ASSERT_EQ(old.size(), 1u);

  // A stalled download keeps the old worker draining after the reload.
  Client c(s.port(), {.timeout = 3000ms, .rcvbuf = 4096});
  ASSERT_TRUE(c.send(req("GET", "/big.bin")));
  ASSERT_FALSE(c.read_some(1024).empty()) << c.error();

  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  std::optional<StatusReport> st;
  bool both = wait_for(
      [&] {
        st = status_of(s);
        return st && st->workers.size() == 2;
      },
      2000ms, 100ms);
  ASSERT_TRUE(both) << "expected the new worker and the draining one";
  EXPECT_EQ(st->master_pid, s.master_pid());
  EXPECT_EQ(st->generation, 2);
  EXPECT_EQ(st->state, "running");
  const StatusReport::Worker* draining = find_worker(*st, old[0]);
  ASSERT_NE(draining, nullptr) << "the draining worker " << old[0] << " is not listed";
  EXPECT_EQ(draining->generation, 1);
  EXPECT_EQ(draining->state, "draining");
  EXPECT_GE(draining->connections, 1);
  for (const auto& w : st->workers) {
    if (w.pid == old[0]) continue;
    EXPECT_EQ(w.generation, 2);
    EXPECT_EQ(w.state, "active");
  }
  EXPECT_EQ(process_cmdline(old[0]), "baton: worker process (draining)");
}

TEST(Control, StatusDuringAndAfterAnUpgrade) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  std::string bin = s.path("sbin/baton");
  ASSERT_TRUE(install_file(baton_binary(), bin));
  s.set_binary(bin);
  s.set_config(make_runtime_config(kServer, "upgrade_timeout = 10s\n", 1));
  ASSERT_TRUE(s.start());
  pid_t old = s.master_pid();
  std::vector<pid_t> workers = wait_for_workers(s, old, 1);
  ASSERT_EQ(workers.size(), 1u);

  // The new binary holds still until it is resumed: the upgrade is under way meanwhile.
  ASSERT_TRUE(install_stopping_binary(baton_binary(), bin));
  auto pending = std::async(std::launch::async, [&s] { return s.ctl("upgrade", 15000ms); });
  pid_t fresh = wait_for_new_master(old, workers, 5000ms);
  ASSERT_GT(fresh, 0) << s.census().describe();
  ASSERT_TRUE(wait_for([&] { return process_stopped(fresh); }, 5000ms)) << s.census().describe();
  std::optional<StatusReport> during = status_of(s);
  if (during) {
    EXPECT_EQ(during->master_pid, old);
    EXPECT_EQ(during->state, "upgrading");
    EXPECT_EQ(during->generation, 1);
  }
  ASSERT_EQ(::kill(fresh, SIGCONT), 0);
  RunResult r = pending.get();
  std::optional<UpgradeOutcome> up = parse_upgrade_success(r.out);
  ASSERT_TRUE(up) << describe(r);
  EXPECT_EQ(up->pid, old) << "the master keeps its pid across the upgrade";
  ASSERT_TRUE(s.wait_old_generations_gone(5000ms)) << s.census().describe();
  std::optional<StatusReport> after = status_of(s);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->master_pid, up->pid);
  EXPECT_EQ(after->generation, 2);
  EXPECT_EQ(after->state, "running");
  ASSERT_EQ(after->workers.size(), 1u);
  EXPECT_EQ(after->workers[0].generation, 2);
  EXPECT_EQ(after->workers[0].state, "active");
}

// The master pings its workers: one that has not answered the last ping within a second (stopped
// here with SIGSTOP) is shown as not responding, and as active again once it answers.
TEST(Control, StatusShowsAWorkerThatDoesNotRespond) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 2));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> workers = wait_for_workers(s, s.master_pid(), 2);
  ASSERT_EQ(workers.size(), 2u);
  pid_t stopped = workers[0], other = workers[1];

  ASSERT_EQ(::kill(stopped, SIGSTOP), 0);
  struct Resume {
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{stopped};
  std::optional<StatusReport> st;
  const StatusReport::Worker* w = nullptr;
  bool flagged = wait_for(
      [&] {
        st = status_of(s);
        w = st ? find_worker(*st, stopped) : nullptr;
        return w && w->state == "not-responding";
      },
      4000ms, 100ms);
  ASSERT_TRUE(flagged) << "the stopped worker " << stopped << " is shown as " << (w ? w->state : "missing");
  EXPECT_TRUE(matches_pattern(w->note, "last answer %+.%d s ago")) << w->note;
  EXPECT_EQ(w->generation, 1);
  const StatusReport::Worker* o = find_worker(*st, other);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->state, "active");

  // The master does not wait for a worker it already knows to be silent.
  auto t0 = SteadyClock::now();
  st = status_of(s);
  auto took = SteadyClock::now() - t0;
  EXPECT_LT(took, 1000ms) << "status took " << std::chrono::duration_cast<Millis>(took).count() << " ms";
  ASSERT_TRUE(st);
  w = find_worker(*st, stopped);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->state, "not-responding");
  // The other worker serves meanwhile, and the master has left the silent one alone.
  EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
  EXPECT_TRUE(process_alive(stopped));

  ASSERT_EQ(::kill(stopped, SIGCONT), 0);
  bool active = wait_for(
      [&] {
        st = status_of(s);
        w = st ? find_worker(*st, stopped) : nullptr;
        return w && w->state == "active";
      },
      3000ms, 100ms);
  EXPECT_TRUE(active) << "the resumed worker " << stopped << " is shown as " << (w ? w->state : "missing");
  EXPECT_TRUE(w && w->note.empty());
}

TEST(Control, SocketFileIsPrivate) {
  BatonServer s;
  s.set_config(make_runtime_config(kServer, "", 1));
  ASSERT_TRUE(s.start());
  struct stat st {};
  ASSERT_EQ(::stat(s.path("logs/baton.sock").c_str(), &st), 0) << "no control socket at logs/baton.sock";
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u) << std::oct << (st.st_mode & 07777);
  EXPECT_EQ(st.st_uid, ::geteuid());
}

TEST(Control, ConfiguredSocketPath) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "control_socket = run/ctl.sock\n", 1));
  s.make_dir("run");
  ASSERT_TRUE(s.start());
  EXPECT_TRUE(file_exists(s.path("run/ctl.sock")));
  EXPECT_FALSE(file_exists(s.path("logs/baton.sock")));
  std::optional<StatusReport> st = status_of(s);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->master_pid, s.master_pid());
}

TEST(Control, AbstractSocketServesStatusReloadAndUpgrade) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "control_socket = abstract\n", 1));
  ASSERT_TRUE(s.start());
  pid_t old = s.master_pid();
  EXPECT_FALSE(file_exists(s.path("logs/baton.sock")));
  std::string name = "@baton-" + std::to_string(old);
  EXPECT_TRUE(wait_for([&] { return contains(read_file("/proc/net/unix"), " " + name + "\n"); }, 2000ms))
      << "no abstract socket " << name << " in /proc/net/unix";

  std::optional<StatusReport> st = status_of(s);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->master_pid, old);
  EXPECT_EQ(st->generation, 1);

  RunResult r = s.ctl("reload");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(parse_reload_success(r.out), std::optional<long>(2)) << describe(r);

  r = s.ctl("upgrade");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  std::optional<UpgradeOutcome> up = parse_upgrade_success(r.out);
  ASSERT_TRUE(up) << describe(r);
  EXPECT_EQ(up->generation, 3);
  EXPECT_EQ(up->pid, old) << "the master keeps its pid across the upgrade";
  ASSERT_TRUE(s.wait_old_generations_gone(5000ms)) << s.census().describe();
  // The same socket, carried across the master's exec.
  EXPECT_TRUE(contains(read_file("/proc/net/unix"), " " + name + "\n"));
  st = status_of(s);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->master_pid, up->pid);
  EXPECT_EQ(st->generation, 3);
  EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
}

TEST(Control, PeerOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as another user";
  BatonServer s;
  // An abstract socket has no file permissions: only the peer check stands in the way.
  s.set_config(make_runtime_config(kServer, "control_socket = abstract\n", 1));
  ASSERT_TRUE(s.start());
  ASSERT_TRUE(wait_for([&] { return s.pid_from_file() == s.master_pid(); }, 3000ms));
  // The client reads the configuration and the pid file: let any user read them.
  ::chmod(s.pid_path().c_str(), 0644);
  ::chmod(s.config_path().c_str(), 0644);

  RunOptions as_nobody;
  as_nobody.uid = 65534;
  as_nobody.gid = 65534;
  RunResult r = run_baton_with({"-p", s.prefix(), "-c", s.config_path(), "-s", "status"}, as_nobody);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_FALSE(contains(r.out, "master:")) << "a client of another user got an answer: " << describe(r);
  EXPECT_FALSE(r.err.empty());
  EXPECT_FALSE(contains(r.err, "ermission denied")) << "the client could not even get to the socket: " << describe(r);
  r = run_baton_with({"-p", s.prefix(), "-c", s.config_path(), "-s", "reload"}, as_nobody);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_FALSE(contains(r.out, "reload succeeded")) << describe(r);

  // The master is unharmed and still answers its own user.
  EXPECT_TRUE(s.running());
  std::optional<StatusReport> st = status_of(s);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->master_pid, s.master_pid());
  EXPECT_EQ(st->generation, 1) << "the refused reload happened anyway";
}

TEST(Control, NoMasterRunning) {
  BatonServer s;
  s.set_config(make_runtime_config(kServer, "", 1));
  for (const char* sig : {"upgrade", "reload", "status"}) {
    SCOPED_TRACE(sig);
    RunResult r = s.ctl(sig);
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_FALSE(r.err.empty()) << "no message";
    EXPECT_TRUE(r.out.empty()) << describe(r);
  }

  // A master that was killed leaves its files behind; the commands still fail cleanly.
  ASSERT_TRUE(s.start());
  ASSERT_TRUE(wait_for([&] { return s.pid_from_file() == s.master_pid(); }, 3000ms));
  std::vector<pid_t> workers = s.workers_of(s.master_pid());
  ASSERT_TRUE(s.signal(SIGKILL));
  ASSERT_TRUE(s.wait_exit(3000ms));
  for (pid_t w : workers) ::kill(w, SIGKILL);
  for (const char* sig : {"upgrade", "reload", "status"}) {
    SCOPED_TRACE(std::string("after SIGKILL: ") + sig);
    RunResult r = s.ctl(sig, 5000ms);
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_FALSE(r.err.empty()) << "no message";
  }
}

TEST(Control, StopQuitReopenSignals) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 1));
  ASSERT_TRUE(s.start());
  RunResult r = s.ctl("reopen");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(s.running());
  EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);

  r = s.ctl("quit");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  std::optional<int> status = s.wait_exit(5000ms);
  ASSERT_TRUE(status) << "the master did not exit after -s quit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;

  ASSERT_TRUE(s.start());
  r = s.ctl("stop");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  status = s.wait_exit(5000ms);
  ASSERT_TRUE(status) << "the master did not exit after -s stop";
  EXPECT_FALSE(file_exists(s.pid_path()));
}

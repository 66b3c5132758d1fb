// Worker supervision: a worker that dies is replaced after a backoff that doubles up to
// restart_max_backoff; a crash loop (more than restart_max_per_minute restarts) makes the master log
// at `alert`, stop its workers and exit with status 2.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr const char* kFile = "supervised\n";

constexpr const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n";

std::vector<pid_t> wait_for_workers(BatonServer& s, size_t n) {
  std::vector<pid_t> w;
  wait_for(
      [&] {
        w = s.workers_of(s.master_pid());
        return w.size() == n;
      },
      5000ms, 5ms);
  return w;
}

// Waits for a worker of the master that is not in `known`; 0 if none comes within `timeout`.
pid_t wait_for_replacement(BatonServer& s, const std::vector<pid_t>& known, Millis timeout) {
  pid_t found = 0;
  wait_for(
      [&] {
        for (pid_t p : s.workers_of(s.master_pid())) {
          if (std::find(known.begin(), known.end(), p) == known.end()) {
            found = p;
            return true;
          }
        }
        return false;
      },
      timeout, 2ms);
  return found;
}

}  // namespace

TEST(Supervise, KilledWorkerIsReplaced) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 2));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> before = wait_for_workers(s, 2);
  ASSERT_EQ(before.size(), 2u);

  ASSERT_EQ(::kill(before[0], SIGKILL), 0);
  // restart_initial_backoff = 200ms.
  pid_t fresh = wait_for_replacement(s, before, 3000ms);
  ASSERT_GT(fresh, 0) << "no new worker 3 s after one was killed\n" << s.census().describe() << s.error_log();
  EXPECT_NE(fresh, before[0]);
  EXPECT_FALSE(process_alive(before[0]));
  std::vector<pid_t> now = wait_for_workers(s, 2);
  std::sort(now.begin(), now.end());
  std::vector<pid_t> want = {before[1], fresh};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(now, want) << "the other worker should be untouched";
  for (int i = 0; i < 20; i++) EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
  EXPECT_TRUE(s.running());
}

TEST(Supervise, RestartBackoffDoublesUpToTheMaximum) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer,
                                   "restart_initial_backoff = 200ms\n"
                                   "restart_max_backoff = 400ms\n"
                                   "restart_max_per_minute = 100\n",
                                   1));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> known = wait_for_workers(s, 1);
  ASSERT_EQ(known.size(), 1u);

  // Delays from the death of a worker to its replacement: 200 ms, then 400 ms, then 400 ms (capped).
  const Millis minimum[] = {180ms, 380ms, 380ms};
  for (int i = 0; i < 3; i++) {
    pid_t victim = known.back();
    auto t0 = SteadyClock::now();
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
    pid_t fresh = wait_for_replacement(s, known, 3000ms);
    auto delay = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0);
    ASSERT_GT(fresh, 0) << "no replacement for restart " << i + 1 << "\n" << s.error_log();
    EXPECT_GE(delay, minimum[i]) << "restart " << i + 1 << " came after " << delay.count() << " ms";
    EXPECT_LT(delay, minimum[i] + 1500ms) << "restart " << i + 1 << " came after " << delay.count() << " ms";
    known.push_back(fresh);
    // Wait until the new worker serves, so that the next kill hits a running worker.
    EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
  }
  EXPECT_TRUE(s.running());
}

TEST(Supervise, CrashLoopMakesTheMasterExitWithStatus2) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer,
                                   "restart_initial_backoff = 100ms\n"
                                   "restart_max_per_minute = 2\n",
                                   2));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> known = wait_for_workers(s, 2);
  ASSERT_EQ(known.size(), 2u);

  // Kill one worker, then each of its replacements as soon as it appears.
  ASSERT_EQ(::kill(known[0], SIGKILL), 0);
  int kills = 1;
  auto deadline = SteadyClock::now() + 10s;
  while (s.running() && SteadyClock::now() < deadline) {
    pid_t fresh = wait_for_replacement(s, known, 200ms);
    if (fresh > 0) {
      known.push_back(fresh);
      ::kill(fresh, SIGKILL);
      kills++;
    }
  }
  std::optional<int> status = s.wait_exit(1000ms);
  ASSERT_TRUE(status) << "the master still runs after " << kills << " worker deaths\n" << s.error_log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << "wait status " << *status;
  EXPECT_GE(kills, 3) << "the master gave up before exceeding restart_max_per_minute";
  EXPECT_LE(kills, 4);
  EXPECT_TRUE(contains(s.error_log(), "[alert]")) << s.error_log();
  // The master stopped its other worker too.
  EXPECT_TRUE(wait_for(
      [&] { return std::none_of(known.begin(), known.end(), [](pid_t p) { return process_alive(p); }); }, 3000ms))
      << s.census().describe();
  EXPECT_TRUE(wait_for([&] { return !can_connect(s.port(), 100ms); }, 2000ms));
}

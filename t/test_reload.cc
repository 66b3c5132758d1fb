// Reload (`baton -s reload`, HUP): a valid configuration starts a new generation of workers and drains
// the old one, an invalid one changes nothing, listeners follow the configuration, draining workers
// close keep-alive connections and give up at quit_timeout; WINCH stops the workers until a HUP.
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr const char* kFile = "static file\n";

std::string servers(std::string_view body) {
  return "[server main]\n"
         "listen = 127.0.0.1:@PORT@\n"
         "root = html\n"
         "\n"
         "[location = /v]\n"
         "return = 200 " +
         std::string(body) + "\n";
}

std::string config(std::string_view body, std::string_view main_extra = "", int workers = 2) {
  return make_runtime_config(servers(body), main_extra, workers);
}

std::vector<pid_t> sorted(std::vector<pid_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

bool disjoint(const std::vector<pid_t>& a, const std::vector<pid_t>& b) {
  return std::none_of(a.begin(), a.end(), [&](pid_t p) { return std::find(b.begin(), b.end(), p) != b.end(); });
}

std::vector<pid_t> wait_for_workers(BatonServer& s, size_t n) {
  std::vector<pid_t> w;
  wait_for(
      [&] {
        w = s.workers_of(s.master_pid());
        return w.size() == n;
      },
      5000ms, 10ms);
  return w;
}

// Active workers (title `baton: worker process`) that are not in `old`, once there are `n` of them.
std::vector<pid_t> wait_for_new_workers(BatonServer& s, const std::vector<pid_t>& old, size_t n) {
  std::vector<pid_t> fresh;
  wait_for(
      [&] {
        fresh.clear();
        for (pid_t p : s.workers_of(s.master_pid()))
          if (std::find(old.begin(), old.end(), p) == old.end() && process_cmdline(p) == "baton: worker process")
            fresh.push_back(p);
        return fresh.size() == n;
      },
      5000ms, 10ms);
  return fresh;
}

// The body of GET /v on a fresh connection ("" when there is no response).
std::string body_of_v(int port) {
  Client c(port, {.timeout = 3000ms});
  if (!c.connected() || !c.send(req("GET", "/v", "Connection: close\r\n"))) return std::string();
  std::optional<Response> r = c.read_response();
  return r && r->status == 200 ? r->body : std::string();
}

// Waits until GET /v answers `body`, then checks that it keeps doing so.
::testing::AssertionResult serves(int port, const std::string& body) {
  std::string got;
  if (!wait_for(
          [&] {
            got = body_of_v(port);
            return got == body;
          },
          2000ms, 20ms))
    return ::testing::AssertionFailure() << "GET /v answers \"" << got << "\", expected \"" << body << "\"";
  for (int i = 0; i < 20; i++) {
    got = body_of_v(port);
    if (got != body)
      return ::testing::AssertionFailure() << "GET /v answered \"" << body << "\" and then \"" << got << "\"";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace

TEST(Reload, ValidConfigurationStartsNewWorkers) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config("one"));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, 2);
  ASSERT_EQ(old.size(), 2u);
  EXPECT_TRUE(serves(s.port(), "one"));

  s.set_config(config("two"));
  RunResult r = s.ctl("reload");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  std::optional<long> gen = parse_reload_success(r.out);
  ASSERT_TRUE(gen) << "stdout is not `reload succeeded: generation G`: " << describe(r);
  EXPECT_EQ(*gen, 2);

  std::vector<pid_t> fresh = wait_for_new_workers(s, old, 2);
  EXPECT_EQ(fresh.size(), 2u) << s.census().describe();
  EXPECT_TRUE(disjoint(fresh, old));
  EXPECT_TRUE(serves(s.port(), "two"));
  EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
  // The old workers drain and exit (quit_timeout = 2s).
  EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 5000ms)) << s.census().describe();
  EXPECT_TRUE(s.running());
  EXPECT_EQ(sorted(s.workers_of(s.master_pid())), sorted(fresh));

  // Each successful reload is a new generation.
  s.set_config(config("three"));
  r = s.ctl("reload");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(parse_reload_success(r.out), std::optional<long>(3)) << describe(r);
  EXPECT_TRUE(serves(s.port(), "three"));
}

// When `-s reload` says it succeeded, no new connection is answered by the old configuration: the
// old workers have stopped accepting. A stopped old worker cannot say so; the reload waits for it
// (within a bound) and, once it runs again, every new connection is the new configuration's.
TEST(Reload, ReturnsOnceTheOldWorkersStoppedAccepting) {
  BatonServer s;
  s.set_config(config("one", "", 1));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, 1);
  ASSERT_EQ(old.size(), 1u);
  EXPECT_TRUE(serves(s.port(), "one"));

  ASSERT_EQ(::kill(old[0], SIGSTOP), 0);
  s.set_config(config("two", "", 1));
  auto pending = std::async(std::launch::async, [&s] { return s.ctl("reload", 10000ms); });
  std::vector<pid_t> fresh = wait_for_new_workers(s, old, 1);
  EXPECT_EQ(fresh.size(), 1u) << s.census().describe();
  // The new worker is up; the old one has not read its drain yet, so the answer waits.
  EXPECT_EQ(pending.wait_for(300ms), std::future_status::timeout) << "the reload answered while the old worker was stopped";
  ::kill(old[0], SIGCONT);
  RunResult r = pending.get();
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(parse_reload_success(r.out), std::optional<long>(2)) << describe(r);
  // Many new connections at once, right after the answer: the old worker, just woken with its drain
  // and these connections before it, takes none of them.
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 30; i++) {
    clients.push_back(std::make_unique<Client>(s.port(), ClientOptions{.timeout = 3000ms}));
    clients.back()->send(req("GET", "/v", "Connection: close\r\n"));
  }
  for (auto& c : clients) {
    std::optional<Response> got = c->read_response();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->body, "two");
  }
}

TEST(Reload, InvalidConfigurationChangesNothing) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config("one"));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, 2);
  ASSERT_EQ(old.size(), 2u);

  std::string bad = config("two");
  bad = replace_all(bad, "root = html\n", "root = html\nno_such_directive = on\n");
  s.set_config(bad);
  int line = line_of(s.config_text(), "no_such_directive");
  ASSERT_GT(line, 0);
  std::string where = s.config_path() + ":" + std::to_string(line) + ":";

  RunResult r = s.ctl("reload");
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "baton: reload failed: " + where)) << "expected `baton: reload failed: " << where
                                                                 << " ...`: " << describe(r);
  EXPECT_TRUE(r.out.empty()) << describe(r);
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), where); }, 2000ms)) << s.error_log();

  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(sorted(s.workers_of(s.master_pid())), sorted(old)) << s.census().describe();
  EXPECT_TRUE(serves(s.port(), "one"));
  EXPECT_TRUE(s.running());

  // A failed reload is not a generation: the next good one is generation 2.
  s.set_config(config("two"));
  r = s.ctl("reload");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(parse_reload_success(r.out), std::optional<long>(2)) << describe(r);
  EXPECT_TRUE(serves(s.port(), "two"));
}

TEST(Reload, HupSignalReloadsLikeTheCommand) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config("one"));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, 2);
  ASSERT_EQ(old.size(), 2u);

  s.set_config(config("two"));
  ASSERT_TRUE(s.signal(SIGHUP));
  std::vector<pid_t> fresh = wait_for_new_workers(s, old, 2);
  EXPECT_EQ(fresh.size(), 2u) << s.census().describe();
  EXPECT_TRUE(serves(s.port(), "two"));
  EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 5000ms)) << s.census().describe();

  // An invalid configuration: logged with file:line, nothing changes.
  std::string bad = replace_all(config("three"), "root = html\n", "root = html\nno_such_directive = on\n");
  s.set_config(bad);
  std::string where = s.config_path() + ":" + std::to_string(line_of(s.config_text(), "no_such_directive")) + ":";
  ASSERT_TRUE(s.signal(SIGHUP));
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), where); }, 3000ms)) << s.error_log();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(sorted(s.workers_of(s.master_pid())), sorted(fresh)) << s.census().describe();
  EXPECT_TRUE(serves(s.port(), "two"));
  EXPECT_TRUE(s.running());
}

TEST(Reload, ListenersAddedAndRemoved) {
  auto with_ports = [](std::string_view second) {
    return "[server main]\n"
           "listen = 127.0.0.1:@PORT@\n"
           "listen = 127.0.0.1:" +
           std::string(second) +
           "\n"
           "root = html\n";
  };
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.port(2);
  s.set_config(make_runtime_config(with_ports("@PORT2@"), "", 1));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, 1);
  EXPECT_EQ(get(s.port(1), "/a.txt").body, kFile);
  EXPECT_FALSE(can_connect(s.port(2), 300ms));

  s.set_config(make_runtime_config(with_ports("@PORT3@"), "", 1));
  RunResult r = s.ctl("reload");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(get(s.port(2), "/a.txt").body, kFile) << "the added listener does not serve";
  EXPECT_EQ(get(s.port(0), "/a.txt").body, kFile);
  ASSERT_TRUE(wait_for([&] { return none_alive(old); }, 5000ms)) << s.census().describe();
  EXPECT_TRUE(wait_for([&] { return !can_connect(s.port(1), 200ms); }, 2000ms))
      << "the removed listener still accepts once the old workers are gone";
  EXPECT_EQ(get(s.port(0), "/a.txt").body, kFile);
  EXPECT_EQ(get(s.port(2), "/a.txt").body, kFile);
}

TEST(Reload, QuitTimeoutClosesAStalledDownload) {
  BatonServer s;
  s.write_generated("html/big.bin", 32 * 1024 * 1024, 4);
  s.set_config(config("one", "quit_timeout = 1s\n", 1));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, 1);
  ASSERT_EQ(old.size(), 1u);

  // A download the client stops reading.
  Client c(s.port(), {.timeout = 3000ms, .rcvbuf = 4096});
  ASSERT_TRUE(c.send(req("GET", "/big.bin")));
  std::string first = c.read_some(4096);
  ASSERT_EQ(first.rfind("HTTP/1.1 200 ", 0), 0u) << first;
  std::this_thread::sleep_for(200ms);

  s.set_config(config("two", "quit_timeout = 1s\n", 1));
  auto t0 = SteadyClock::now();
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(serves(s.port(), "two"));
  bool gone = wait_for([&] { return none_alive(old); }, 1000ms + 3000ms, 10ms);
  auto took = SteadyClock::now() - t0;
  EXPECT_TRUE(gone) << "the old worker still runs " << std::chrono::duration_cast<Millis>(took).count()
                    << " ms after the reload with quit_timeout = 1s\n"
                    << s.census().describe();
  EXPECT_GE(took, 800ms) << "the old worker did not wait for quit_timeout";
  // The stalled connection was closed (what the server had sent is still readable before the end).
  EXPECT_TRUE(c.is_closed_by_peer(3000ms)) << c.error();
}

// A keep-alive connection in use across a reload moves to the new generation between two requests:
// every request is answered, none with `Connection: close`, and the answers switch to the new
// configuration on the same connection; the old worker, with nothing left, exits long before its
// quit_timeout.
TEST(Reload, KeepAliveConnectionMovesToTheNewGenerationBetweenRequests) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config("one", "quit_timeout = 10s\n", 1));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, 1);
  ASSERT_EQ(old.size(), 1u);

  Client c(s.port());
  Response first = c.exchange(req("GET", "/v"));
  ASSERT_EQ(first.status, 200);
  ASSERT_EQ(first.body, "one");
  ASSERT_FALSE(first.connection_close());

  s.set_config(config("two", "quit_timeout = 10s\n", 1));
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  bool moved = false;
  for (int i = 0; i < 40 && !moved; i++) {
    ASSERT_TRUE(c.send(req("GET", "/v"))) << c.error();
    std::optional<Response> resp = c.read_response();
    ASSERT_TRUE(resp) << "request " << i + 1 << " after the reload got no response: " << c.error();
    EXPECT_EQ(resp->status, 200);
    EXPECT_FALSE(resp->connection_close()) << "request " << i + 1 << ": the connection is closed by the reload";
    moved = resp->body == "two";
    if (!moved) {
      EXPECT_EQ(resp->body, "one");
      std::this_thread::sleep_for(50ms);
    }
  }
  EXPECT_TRUE(moved) << "the connection still answers with the old configuration 2 s after the reload";
  EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 3000ms)) << s.census().describe();
  Response after = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(after.body, kFile);
  EXPECT_FALSE(after.connection_close());
}

TEST(Reload, IdleKeepAliveConnectionMovesToTheNewGeneration) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config("one", "quit_timeout = 10s\n", 1));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, 1);
  ASSERT_EQ(old.size(), 1u);

  Client idle(s.port());
  ASSERT_EQ(idle.exchange(req("GET", "/a.txt")).status, 200);
  s.set_config(config("two", "quit_timeout = 10s\n", 1));
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  // The old worker has nothing left and exits (quit_timeout is 10 s); the connection stays open.
  EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 3000ms)) << s.census().describe();
  EXPECT_FALSE(idle.is_closed_by_peer(300ms)) << "the idle connection was closed by the reload";
  EXPECT_EQ(idle.buffered(), 0u) << "unexpected bytes: " << idle.buffer();
  Response next = idle.exchange(req("GET", "/v"));
  EXPECT_EQ(next.status, 200);
  EXPECT_EQ(next.body, "two") << "the moved connection is not served under the new configuration";
}

TEST(Reload, WinchStopsWorkersAndHupRestartsThem) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config("one"));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, 2);
  ASSERT_EQ(old.size(), 2u);

  ASSERT_TRUE(s.signal(SIGWINCH));
  EXPECT_TRUE(wait_for([&] { return s.workers_of(s.master_pid()).empty(); }, 2000ms + 3000ms))
      << "workers still running after WINCH:\n"
      << s.census().describe();
  EXPECT_TRUE(s.running()) << "the master exited on WINCH";
  {
    // Nothing answers (the listening socket may still take the connection into its queue).
    Client c(s.port(), {.timeout = 700ms});
    if (c.connected() && c.send(req("GET", "/a.txt", "Connection: close\r\n"))) {
      std::optional<Response> resp = c.read_response();
      EXPECT_FALSE(resp) << "a response after WINCH: " << *resp;
    }
  }
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(s.running());
  EXPECT_TRUE(s.workers_of(s.master_pid()).empty());

  ASSERT_TRUE(s.signal(SIGHUP));
  std::vector<pid_t> fresh = wait_for_new_workers(s, old, 2);
  EXPECT_EQ(fresh.size(), 2u) << s.census().describe();
  EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
  EXPECT_TRUE(serves(s.port(), "one"));
}

// Reload and live upgrade while proxying: keep-alive clients sending GETs and POSTs through the
// proxy lose no request and no POST reaches the upstream twice; requests in flight to an upstream
// finish on the old generation, and new requests follow the new configuration's upstream.
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "lib/proxy_util.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

// [upstream app] with one server, and a server proxying everything to it, with the process
// runtime's short timeouts (quit_timeout = 2s, upgrade_timeout = 3s).
std::string runtime_proxy_config(const TestUpstream& u, int workers = 2, std::string_view main_extra = "") {
  return make_runtime_config("[upstream app]\nserver = " + u.address() +
                                 "\n\n[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                                 "\n[location /]\nproxy_pass = http://app\n",
                             main_extra, workers);
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

// Keep-alive clients that POST small bodies to /sink one after another (a new connection when a
// response says `Connection: close`), each answer checked against the body sent. Every target is
// unique, so the upstream's log tells how often each POST arrived.
class PostLoad {
 public:
  PostLoad(int port, int threads) {
    for (int t = 0; t < threads; t++) threads_.emplace_back([this, port, t] { run(port, t); });
  }
  ~PostLoad() { stop(); }
  void stop() {
    stop_ = true;
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
  }
  uint64_t ok() const { return ok_.load(); }
  uint64_t failed() const { return failed_.load(); }
  std::vector<std::string> targets() const {
    std::lock_guard<std::mutex> lock(mu_);
    return targets_;
  }
  std::string summary() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string s = std::to_string(ok_.load()) + " POSTs ok, " + std::to_string(failed_.load()) + " failed";
    for (const std::string& e : errors_) s += "\n  " + e;
    return s;
  }

 private:
  void fail(const std::string& what) {
    failed_++;
    std::lock_guard<std::mutex> lock(mu_);
    if (errors_.size() < 10) errors_.push_back(what);
  }

  void run(int port, int t) {
    std::optional<Client> c;
    for (uint64_t n = 0; !stop_; n++) {
      if (!c) c.emplace(port, ClientOptions{.timeout = 5000ms});
      std::string target = "/sink?t=" + std::to_string(t) + "&n=" + std::to_string(n);
      std::string body = upstream_content(n, 1 + (n * 397) % 3000);
      {
        std::lock_guard<std::mutex> lock(mu_);
        targets_.push_back(target);
      }
      bool sent = c->send(req("POST", target, "Content-Length: " + std::to_string(body.size()) + "\r\n", body));
      std::optional<Response> r = sent ? c->read_response() : std::nullopt;
      if (!r) {
        fail(target + ": " + c->error());
        c.reset();
        continue;
      }
      std::string want = "bytes=" + std::to_string(body.size()) + " hash=" + hash_hex(fnv1a(body));
      if (r->status != 200 || r->body != want) {
        fail(target + ": status " + std::to_string(r->status) + " body " + r->body.substr(0, 200));
        c.reset();
        continue;
      }
      ok_++;
      if (r->connection_close()) c.reset();
      std::this_thread::sleep_for(2ms);
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> ok_{0}, failed_{0};
  mutable std::mutex mu_;
  std::vector<std::string> errors_;
  std::vector<std::string> targets_;
  std::vector<std::thread> threads_;
};

}  // namespace

TEST(ProxyReload, ReloadAndUpgradeUnderProxiedKeepAliveLoadLoseNothing) {
  TestUpstream up;
  ASSERT_TRUE(up.start({"--name", "a"})) << up.error();
  BatonServer s;
  s.set_config(runtime_proxy_config(up));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> first_workers = wait_for_workers(s, s.master_pid(), 2);
  ASSERT_EQ(first_workers.size(), 2u);
  ASSERT_EQ(get(s.port(), "/size/100").body, upstream_content(0, 100));

  LoadOptions o;
  o.port = s.port();
  o.target = "/size/1000";
  o.expected_body = upstream_content(0, 1000);
  o.keepalive_threads = 3;
  o.close_threads = 1;
  o.pause = 2ms;
  LoadGenerator gets(o);
  PostLoad posts(s.port(), 2);
  std::this_thread::sleep_for(300ms);

  // A reload: new workers, the old ones drain.
  uint64_t before = gets.requests() + posts.ok();
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  // (They leave as soon as their requests are done: ADrainingWorkerLeavesOnceItsProxiedRequestsAreDone.)
  EXPECT_TRUE(wait_for([&] { return none_alive(first_workers); }, 10000ms)) << s.census().describe();
  std::this_thread::sleep_for(300ms);
  EXPECT_GT(gets.requests() + posts.ok(), before) << "nothing was served around the reload";

  // A live upgrade: the master runs the new binary with new workers, the old workers go.
  pid_t old_master = s.current_master();
  before = gets.requests() + posts.ok();
  r = s.ctl("upgrade");
  std::optional<UpgradeOutcome> outcome = parse_upgrade_success(r.out);
  ASSERT_TRUE(r.exit_code == 0 && outcome) << describe(r);
  EXPECT_EQ(outcome->pid, old_master);
  EXPECT_TRUE(s.wait_old_generations_gone(10000ms)) << s.census().describe();
  std::this_thread::sleep_for(300ms);
  EXPECT_GT(gets.requests() + posts.ok(), before) << "nothing was served around the upgrade";

  gets.stop();
  posts.stop();
  RecordProperty("gets", std::to_string(gets.requests()));
  RecordProperty("posts", std::to_string(posts.ok()));
  EXPECT_EQ(gets.failures(), 0u) << gets.summary();
  EXPECT_EQ(posts.failed(), 0u) << posts.summary();
  EXPECT_GT(gets.requests(), 50u) << gets.summary();
  EXPECT_GT(posts.ok(), 20u) << posts.summary();

  // No POST reached the upstream twice (and none that was answered went missing).
  std::map<std::string, int> arrived;
  for (const TestUpstream::LogLine& l : up.log_lines())
    if (l.method == "POST") arrived[l.target]++;
  size_t twice = 0;
  for (const auto& [target, n] : arrived)
    if (n > 1) twice++;
  EXPECT_EQ(twice, 0u);
  EXPECT_GE(arrived.size(), posts.ok());
  EXPECT_LE(arrived.size(), posts.targets().size());
  std::string log = s.error_log();
  EXPECT_FALSE(contains(log, "signal")) << log;
}

TEST(ProxyReload, AfterAReloadNewRequestsGoToTheNewUpstream) {
  TestUpstream a, b;
  ASSERT_TRUE(a.start({"--name", "a"})) << a.error();
  ASSERT_TRUE(b.start({"--name", "b"})) << b.error();
  BatonServer s;
  s.set_config(runtime_proxy_config(a));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, s.master_pid(), 2);
  ASSERT_EQ(old.size(), 2u);

  Client kept(s.port());
  Response r = kept.exchange(req("GET", "/size/10"));
  ASSERT_EQ(r.header("X-Upstream"), "a") << r;
  // A request in flight to the old upstream when the reload comes.
  Client slow(s.port());
  ASSERT_TRUE(slow.send(req("GET", "/delay/1000/slow")));
  ASSERT_TRUE(wait_for([&] { return a.received("GET", "/delay/1000/slow") == 1; }, 2000ms));

  s.set_config(runtime_proxy_config(b));
  RunResult rr = s.ctl("reload");
  ASSERT_EQ(rr.exit_code, 0) << describe(rr);

  // It finishes on the old generation, with the old upstream.
  std::optional<Response> done = slow.read_response();
  ASSERT_TRUE(done) << slow.error();
  EXPECT_EQ(done->status, 200);
  EXPECT_EQ(done->header("X-Upstream"), "a");

  // New connections reach the new upstream (once the new workers have taken over), and only it.
  auto served_by = [&](const std::string& target) { return get(s.port(), target).header("X-Upstream"); };
  EXPECT_TRUE(wait_for([&] { return served_by("/size/1?wait") == "b"; }, 2000ms, 20ms));
  for (int i = 0; i < 20; i++) EXPECT_EQ(served_by("/size/1?i=" + std::to_string(i)), "b") << i;

  // The connection kept alive across the reload: its next request is answered (by the old worker
  // with `Connection: close`, or by a new one), and the one after that reaches the new upstream.
  if (kept.send(req("GET", "/size/10"))) {
    std::optional<Response> k = kept.read_response();
    if (k) {
      EXPECT_EQ(k->status, 200);
      if (k->header("X-Upstream") == "a") {
        EXPECT_TRUE(k->connection_close()) << *k;
      }
      if (k->connection_close()) kept = Client(s.port());
    } else {
      // Closed while idle during the drain, before this request arrived: a client opens another.
      kept = Client(s.port());
    }
  } else {
    kept = Client(s.port());
  }
  r = kept.exchange(req("GET", "/size/10?after"));
  EXPECT_EQ(r.header("X-Upstream"), "b") << r;

  EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 5000ms)) << s.census().describe();
  EXPECT_EQ(a.received("GET", "/size/1?i=0"), 0u);
}

// A draining worker leaves as soon as the requests it had in flight are done, proxied ones
// included: the upstream connection such a request used is closed at its end, not kept for
// requests the worker will never take. (quit_timeout is the bound for requests that do not end.)
// fails: the old worker stays until quit_timeout (10 s here, 30 s by default), and so does the old
// master of a live upgrade: UpstreamLink::on_drain (src/http/http_upstream_pool.cc) closes the
// connections idle in the pool when the drain starts, but UpstreamRuntime::give_back() still pools
// the connection of a request that ends after it (nothing tells it the worker drains), and the
// worker waits for its last connection (core/worker.cc: stop_gracefully, on_connections_changed).
TEST(ProxyReload, ADrainingWorkerLeavesOnceItsProxiedRequestsAreDone) {
  TestUpstream up;
  ASSERT_TRUE(up.start({"--name", "a"})) << up.error();
  BatonServer s;
  s.set_config(runtime_proxy_config(up, 1, "quit_timeout = 10s\n"));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> old = wait_for_workers(s, s.master_pid(), 1);
  ASSERT_EQ(old.size(), 1u);

  Client slow(s.port());
  ASSERT_TRUE(slow.send(req("GET", "/delay/500/size/10")));
  ASSERT_TRUE(wait_for([&] { return up.received("GET", "/delay/500/size/10") == 1; }, 2000ms));
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  std::optional<Response> done = slow.read_response();
  ASSERT_TRUE(done) << slow.error();
  EXPECT_EQ(done->body, upstream_content(0, 10));
  // The client connection, now idle, goes to the new generation, which serves its next request.
  EXPECT_FALSE(done->connection_close());

  auto t0 = SteadyClock::now();
  EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 3000ms))
      << "the old worker still runs 3 s after its last request ended (quit_timeout = 10s)\n"
      << s.census().describe() << s.error_log();
  RecordProperty("old_worker_exit_ms",
                 std::to_string(std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count()));
  Response next = slow.exchange(req("GET", "/size/10"));
  EXPECT_EQ(next.body, upstream_content(0, 10));
}

// limit_req_zone / limit_req and limit_conn_zone / limit_conn: a rate and a count of requests in
// progress per key that hold for the whole service (every worker shares one zone), survive a reload
// and a live upgrade, refuse with limit_req_status / limit_conn_status through error_page, delay
// within a burst, log the zone that refused, and fill $limit_req_status / $limit_conn_status.
#include <set>
#include <string>
#include <thread>

#include "harness.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

// Two workers, one server on @PORT@ whose /r/ is limited by `limit` (a limit_req line) in the zone
// `zone` (a limit_req_zone line), and whose answers say which worker gave them.
std::string limited_site(const std::string& zone, const std::string& limit, const std::string& extra = "") {
  return make_runtime_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                             "add_header = X-Pid $pid always\n" + extra +
                                 "[location /r/]\n" + limit + "\n",
                             "", 2, zone + "\nlimit_req_status = 429\n");
}

// GET path on a fresh connection (each lands on either worker).
Response fresh_get(int port, const std::string& path, std::string_view headers = "") {
  Client c(port, {.timeout = 5000ms});
  if (!c.connected() || !c.send(req("GET", path, std::string(headers) + "Connection: close\r\n"))) return Response{};
  std::optional<Response> r = c.read_response();
  return r ? *r : Response{};
}

struct Tally {
  int ok = 0;
  int refused = 0;
  int other = 0;
  std::set<std::string> pids;  // of the workers that answered
};

Tally send_many(int port, int n, const std::string& path = "/r/a.txt") {
  Tally t;
  for (int i = 0; i < n; i++) {
    Response r = fresh_get(port, path);
    if (r.status == 200) t.ok++;
    else if (r.status == 429) t.refused++;
    else t.other++;
    if (!r.header("X-Pid").empty()) t.pids.insert(std::string(r.header("X-Pid")));
  }
  return t;
}

int count_of(std::string_view text, std::string_view needle) {
  int n = 0;
  for (size_t p = text.find(needle); p != std::string_view::npos; p = text.find(needle, p + 1)) n++;
  return n;
}

}  // namespace

// The rate holds for the service: with two workers answering, a client gets its burst once, not
// once per worker. (rate=1r/m: nothing drains during the test.)
TEST(LimitReq, RateHoldsAcrossWorkers) {
  BatonServer s;
  s.write_file("html/r/a.txt", "limited\n");
  s.set_config(limited_site("limit_req_zone = one $binary_remote_addr rate=1r/m", "limit_req = one burst=4 nodelay"));
  ASSERT_TRUE(s.start());
  Tally t = send_many(s.port(), 40);
  EXPECT_EQ(t.ok, 5) << "1 + burst=4 requests pass, whichever worker answers";
  EXPECT_EQ(t.refused, 35);
  EXPECT_EQ(t.other, 0);
  // Both workers answered (each connection lands on one of them, the kernel's choice: more go until
  // both have, every one refused): the limit is not per worker.
  for (int i = 0; t.pids.size() < 2 && i < 200; i++) {
    Tally more = send_many(s.port(), 1);
    EXPECT_EQ(more.refused, 1);
    t.pids.insert(more.pids.begin(), more.pids.end());
  }
  EXPECT_EQ(t.pids.size(), 2u) << "only one worker answered";
  // A location without limit_req is not limited.
  s.write_file("html/free.txt", "free\n");
  EXPECT_EQ(send_many(s.port(), 10, "/free.txt").ok, 10);
  // Each refusal is logged with its zone, as nginx does.
  EXPECT_TRUE(wait_for([&] { return count_of(s.error_log(), "limiting requests, excess: ") >= 35; }, 2000ms))
      << s.error_log();
  EXPECT_TRUE(contains(s.error_log(), "by zone \"one\", client: 127.0.0.1")) << s.error_log();
}

// A reload keeps the zone's state (same name, key and size): the client is still over its rate. A
// zone whose key changed starts empty.
TEST(LimitReq, StateSurvivesReload) {
  BatonServer s;
  s.write_file("html/r/a.txt", "limited\n");
  const std::string zone = "limit_req_zone = one $binary_remote_addr rate=1r/m";
  s.set_config(limited_site(zone, "limit_req = one burst=2 nodelay"));
  ASSERT_TRUE(s.start());
  Tally before = send_many(s.port(), 3);
  EXPECT_EQ(before.ok, 3);
  std::vector<pid_t> old = s.current_workers();

  s.set_config(limited_site(zone, "limit_req = one burst=2 nodelay", "server_tokens = off\n"));
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  ASSERT_TRUE(wait_for([&] { return none_alive(old); }, 8000ms)) << s.census().describe();
  Tally after = send_many(s.port(), 10);
  EXPECT_EQ(after.ok, 0) << "the reload forgot the zone's state";
  EXPECT_EQ(after.refused, 10);

  // The key changes: the zone is another one, and starts empty.
  s.set_config(limited_site("limit_req_zone = one $remote_addr rate=1r/m", "limit_req = one burst=2 nodelay"));
  r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  ASSERT_TRUE(s.wait_old_generations_gone(8000ms)) << s.census().describe();
  Tally fresh = send_many(s.port(), 5);
  EXPECT_EQ(fresh.ok, 3);
  EXPECT_EQ(fresh.refused, 2);
}

// A live upgrade hands the zone to the new binary with the listeners: still over the rate after it.
TEST(LimitReq, StateSurvivesUpgrade) {
  BatonServer s;
  s.write_file("html/r/a.txt", "limited\n");
  s.set_config(limited_site("limit_req_zone = one $binary_remote_addr rate=1r/m", "limit_req = one burst=2 nodelay"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(send_many(s.port(), 3).ok, 3);
  RunResult r = s.ctl("upgrade");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  ASSERT_TRUE(s.wait_old_generations_gone(8000ms)) << s.census().describe();
  Tally after = send_many(s.port(), 10);
  EXPECT_EQ(after.ok, 0) << "the upgrade forgot the zone's state";
  EXPECT_EQ(after.refused, 10);
  EXPECT_TRUE(contains(s.error_log(), "shared memory zone(s) from the master")) << s.error_log();
}

// Without nodelay, requests beyond the rate but within the burst wait their turn: a client sending
// one after another is paced at the rate.
TEST(LimitReq, BurstIsDelayedToTheRate) {
  BatonServer s;
  s.write_file("html/r/a.txt", "limited\n");
  s.set_config(limited_site("limit_req_zone = one $binary_remote_addr rate=10r/s", "limit_req = one burst=20"));
  ASSERT_TRUE(s.start());
  auto t0 = SteadyClock::now();
  Client c(s.port());
  for (int i = 0; i < 11; i++) {
    Response r = c.exchange(req("GET", "/r/a.txt"));
    ASSERT_EQ(r.status, 200) << r;
    EXPECT_EQ(r.body, "limited\n");
  }
  auto took = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0);
  // The first passes at once, each next one 100 ms after the one before.
  EXPECT_GE(took.count(), 850) << "11 requests at 10r/s took " << took.count() << " ms";
  EXPECT_LT(took.count(), 5000);
  // The delays are logged a level below the refusals (warn), with the zone.
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), "[warn]"); }, 2000ms));
  EXPECT_TRUE(contains(s.error_log(), "delaying request, excess: ")) << s.error_log();
}

// delay=N: the first N requests of the burst pass at once, the rest wait; beyond the burst, 429.
TEST(LimitReq, DelayThresholdAndBurstEdge) {
  BatonServer s;
  s.write_file("html/r/a.txt", "limited\n");
  s.set_config(limited_site("limit_req_zone = one $binary_remote_addr rate=2r/s", "limit_req = one burst=3 delay=2"));
  ASSERT_TRUE(s.start());
  // 1 + delay=2 pass at once.
  auto t0 = SteadyClock::now();
  for (int i = 0; i < 3; i++) EXPECT_EQ(fresh_get(s.port(), "/r/a.txt").status, 200);
  auto fast = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0);
  EXPECT_LT(fast.count(), 400);
  // The fourth is in the burst beyond delay: it waits about 500 ms (one request at 2r/s).
  // A fifth sent at the same time is over the burst and refused at once.
  std::thread later([&] {
    std::this_thread::sleep_for(100ms);
    Response r = fresh_get(s.port(), "/r/a.txt");
    EXPECT_EQ(r.status, 429) << r;
  });
  auto t1 = SteadyClock::now();
  Response fourth = fresh_get(s.port(), "/r/a.txt");
  auto waited = std::chrono::duration_cast<Millis>(SteadyClock::now() - t1);
  later.join();
  EXPECT_EQ(fourth.status, 200) << fourth;
  EXPECT_GE(waited.count(), 300);
  EXPECT_LT(waited.count(), 3000);
}

// A delayed POST keeps its body: the handler that answers (here an error for the method, after the
// body is read) still reads the connection in step, and a delayed request whose client leaves is
// simply dropped.
TEST(LimitReq, DelayedRequestWithBodyAndClientThatLeaves) {
  BatonServer s;
  s.write_file("html/r/a.txt", "limited\n");
  s.set_config(limited_site("limit_req_zone = one $binary_remote_addr rate=2r/s", "limit_req = one burst=10"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  EXPECT_EQ(c.exchange(req("GET", "/r/a.txt")).status, 200);
  // Delayed ~500 ms; its body arrives during the delay; then a second request on the connection.
  Response r = c.exchange(req("POST", "/r/a.txt", "Content-Length: 5\r\n", "hello") + req("GET", "/r/a.txt"));
  EXPECT_EQ(r.status, 405) << r;
  std::optional<Response> next = c.read_response();
  ASSERT_TRUE(next) << c.error();
  EXPECT_EQ(next->status, 200);
  EXPECT_EQ(next->body, "limited\n");
  // A client that leaves while it waits: nothing breaks, the server goes on.
  {
    Client gone(s.port());
    ASSERT_TRUE(gone.send(req("GET", "/r/a.txt")));
  }
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(get(s.port(), "/r/a.txt").status, 200);
}

// limit_req_status through error_page, $limit_req_status in the access log, a key that is empty is
// not limited, and limit_req in [server] inherited by a location without its own.
TEST(LimitReq, StatusPageVariableAndEmptyKey) {
  BatonServer s;
  s.write_file("html/r/a.txt", "limited\n");
  s.write_file("html/busy.html", "slow down\n");
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\nlimit_req = byhdr\n"
                           "error_page = 503 /busy.html\n[location /r/]\n[location /open/]\nlimit_req = byip burst=100 nodelay\n",
                           "limit_req_zone = byhdr $http_x_user rate=1r/m\nlimit_req_zone = byip $binary_remote_addr rate=1r/m\n"
                           "log_format = lim \"$request_uri $status $limit_req_status\"\naccess_log = logs/lim.log lim\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/r/a.txt", "X-User: ann\r\n").status, 200);
  Response r = get(s.port(), "/r/a.txt", "X-User: ann\r\n");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "slow down\n");
  // Another user has a bucket of their own; no X-User: an empty key, never limited.
  EXPECT_EQ(get(s.port(), "/r/a.txt", "X-User: bob\r\n").status, 200);
  for (int i = 0; i < 5; i++) EXPECT_EQ(get(s.port(), "/r/a.txt").status, 200);
  // A location's own limit_req replaces the server's.
  s.write_file("html/open/a.txt", "open\n");
  for (int i = 0; i < 5; i++) EXPECT_EQ(get(s.port(), "/open/a.txt", "X-User: ann\r\n").status, 200);
  std::string log;
  ASSERT_TRUE(wait_for([&] { log = read_file(s.path("logs/lim.log")); return count_of(log, "\n") >= 13; }, 2000ms)) << log;
  EXPECT_TRUE(contains(log, "/r/a.txt 200 PASSED\n/r/a.txt 503 REJECTED\n")) << log;
  EXPECT_TRUE(contains(log, "/r/a.txt 200 -\n")) << log;  // the empty key: no limit applied
}

// Configuration errors name file:line.
TEST(LimitReq, ConfigurationErrors) {
  struct Case {
    std::string http, server, message;
  } cases[] = {
      {"", "limit_req = nosuch\n", "unknown limit_req_zone \"nosuch\" in \"limit_req\""},
      {"limit_req_zone = one $binary_remote_addr\n", "", "needs a rate"},
      {"limit_req_zone = one $binary_remote_addr rate=fast\n", "", "invalid rate \"fast\""},
      {"limit_req_zone = one $binary_remote_addr rate=1r/s\nlimit_req_zone = one $uri rate=1r/s\n", "", "duplicate zone \"one\""},
      {"limit_req_zone = one static rate=1r/s\n", "", "holds no variable"},
      {"limit_req_zone = one $binary_remote_addr rate=1r/s size=4k\n", "", "must be between 32k"},
      {"limit_conn_zone = c $binary_remote_addr\n", "limit_req = c\n", "unknown limit_req_zone \"c\""},
      {"limit_req_zone = one $binary_remote_addr rate=1r/s\n", "limit_req = one nodelay delay=2\n", "together"},
      {"limit_conn_zone = c $binary_remote_addr\n", "limit_conn = c\n", "takes a zone and a number"},
  };
  for (const Case& c : cases) {
    BatonServer s;
    s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\n" + c.server, c.http));
    RunResult r = s.test_config();
    EXPECT_NE(r.exit_code, 0) << c.message;
    EXPECT_TRUE(contains(r.err, c.message)) << describe(r);
    EXPECT_TRUE(contains(r.err, "baton.ini:")) << describe(r);
  }
  // nginx's own order is read too.
  BatonServer s;
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nlimit_req = zone=one burst=5 nodelay\n",
                           "limit_req_zone = $binary_remote_addr zone=one:10m rate=1r/s\n"));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << describe(r);
}

// limit_conn counts the requests in progress per key, across workers: with one large download
// stalled, a second is refused; once it ends, another may start.
TEST(LimitConn, CountsRequestsInProgressAcrossWorkers) {
  BatonServer s;
  s.write_generated("html/big.bin", 16 << 20);
  s.write_file("html/small.txt", "small\n");
  s.set_config(make_runtime_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\nlimit_conn = addr 1\n"
                                   "add_header = X-Pid $pid always\n",
                                   "", 2,
                                   "limit_conn_zone = addr $binary_remote_addr\nlimit_conn_status = 429\n"
                                   "log_format = lc \"$request_uri $status $limit_conn_status\"\naccess_log = logs/lc.log lc\n"));
  ASSERT_TRUE(s.start());
  // Requests one after another never overlap: none is refused.
  for (int i = 0; i < 10; i++) EXPECT_EQ(fresh_get(s.port(), "/small.txt").status, 200);

  Client stalled(s.port(), {.timeout = 5000ms, .rcvbuf = 4096});
  ASSERT_TRUE(stalled.send(req("GET", "/big.bin")));
  std::string first = stalled.read_some(1024);
  ASSERT_FALSE(first.empty());
  ASSERT_TRUE(contains(first, "200 OK")) << first;
  // Every other request, whichever worker takes it, is refused while the download is in progress.
  // (Which worker takes a connection is the kernel's choice: requests go on until both answered.)
  std::set<std::string> pids;
  for (int i = 0; i < 20 || (pids.size() < 2 && i < 200); i++) {
    Response r = fresh_get(s.port(), "/small.txt");
    EXPECT_EQ(r.status, 429) << r;
    pids.insert(std::string(r.header("X-Pid")));
  }
  EXPECT_EQ(pids.size(), 2u) << "only one worker answered";
  stalled.close();
  // The download ends with its connection: the count goes back to zero.
  EXPECT_TRUE(wait_for([&] { return fresh_get(s.port(), "/small.txt").status == 200; }, 5000ms));
  for (int i = 0; i < 5; i++) EXPECT_EQ(fresh_get(s.port(), "/small.txt").status, 200);
  EXPECT_TRUE(contains(s.error_log(), "limiting connections by zone \"addr\", client: 127.0.0.1")) << s.error_log();
  std::string log = read_file(s.path("logs/lc.log"));
  EXPECT_TRUE(contains(log, "/small.txt 429 REJECTED")) << log;
  EXPECT_TRUE(contains(log, "/small.txt 200 PASSED")) << log;
}

// Keep-alive: the count is per request, not per connection; pipelined requests on one connection
// each count while in progress, one after another.
TEST(LimitConn, KeepAliveAndPipelining) {
  BatonServer s;
  s.write_file("html/small.txt", "small\n");
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\nlimit_conn = addr 1\n",
                           "limit_conn_zone = addr $binary_remote_addr\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  for (int i = 0; i < 5; i++) EXPECT_EQ(c.exchange(req("GET", "/small.txt")).status, 200);
  // An idle keep-alive connection holds nothing: another client is served.
  EXPECT_EQ(get(s.port(), "/small.txt").status, 200);
  std::string three = req("GET", "/small.txt") + req("GET", "/small.txt") + req("GET", "/small.txt");
  ASSERT_TRUE(c.send(three));
  for (int i = 0; i < 3; i++) {
    std::optional<Response> r = c.read_response();
    ASSERT_TRUE(r) << c.error();
    EXPECT_EQ(r->status, 200);
  }
}

// A worker that dies with requests in progress cannot give their counts back: the master clears the
// limit_conn zones, so that the client is not refused until the next restart.
TEST(LimitConn, WorkerThatDiesDoesNotKeepItsCounts) {
  BatonServer s;
  s.write_generated("html/big.bin", 16 << 20);
  s.write_file("html/small.txt", "small\n");
  s.set_config(make_runtime_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\nlimit_conn = addr 1\n", "", 1,
                                   "limit_conn_zone = addr $binary_remote_addr\nlimit_conn_status = 429\n"));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> workers;
  ASSERT_TRUE(wait_for([&] { return (workers = s.current_workers()).size() == 1; }, 5000ms));
  Client stalled(s.port(), {.timeout = 5000ms, .rcvbuf = 4096});
  ASSERT_TRUE(stalled.send(req("GET", "/big.bin")));
  ASSERT_TRUE(contains(stalled.read_some(1024), "200 OK"));
  EXPECT_EQ(fresh_get(s.port(), "/small.txt").status, 429);
  ASSERT_EQ(kill(workers[0], SIGKILL), 0);
  // The master starts another worker; the dead one's count is gone with it.
  std::vector<pid_t> now;
  ASSERT_TRUE(wait_for([&] { now = s.current_workers(); return now.size() == 1 && now[0] != workers[0]; }, 5000ms));
  EXPECT_TRUE(wait_for([&] { return fresh_get(s.port(), "/small.txt").status == 200; }, 5000ms));
  EXPECT_TRUE(contains(s.error_log(), "limit_conn zone(s) cleared")) << s.error_log();
}

// A delayed request's head outlives the read buffer it came in: what goes upstream after the delay
// is its own, not bytes another client sent meanwhile (the Upgrade field was not copied).
TEST(LimitReq, DelayedRequestKeepsItsOwnHead) {
  TestUpstream up;
  ASSERT_TRUE(up.start()) << up.error();
  BatonServer s;
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\n[location /]\nlimit_req = one burst=5\n"
                           "proxy_pass = http://127.0.0.1:" + std::to_string(up.port()) + "\n",
                           "limit_req_zone = one $binary_remote_addr rate=2r/s\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/headers").status, 200);
  std::string upgrade(300, 'u');
  Client c(s.port());
  ASSERT_TRUE(c.send(req("GET", "/headers", "Connection: upgrade\r\nUpgrade: " + upgrade + "\r\n")));
  // While it waits (about 500 ms), another client's request passes through the same worker.
  std::this_thread::sleep_for(100ms);
  Client other(s.port());
  ASSERT_TRUE(other.send(req("GET", "/nothing", "X-Secret: " + std::string(400, 's') + "\r\n")));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_TRUE(contains(r->body, "Upgrade: " + upgrade + "\r\n")) << r->body;
  EXPECT_FALSE(contains(r->body, "sss")) << r->body;
}

// A delayed request that asked to switch protocols and got an ordinary answer: the connection ends
// after it, as it does without the delay (it neither hangs nor reads what follows as requests).
TEST(LimitReq, DelayedUpgradeAnsweredPlainlyEndsTheConnection) {
  BatonServer s;
  s.write_file("html/r/a.txt", "limited\n");
  s.set_config(limited_site("limit_req_zone = one $binary_remote_addr rate=2r/s", "limit_req = one burst=5"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(fresh_get(s.port(), "/r/a.txt").status, 200);
  Client c(s.port());
  ASSERT_TRUE(c.send(req("GET", "/r/a.txt", "Connection: Upgrade\r\nUpgrade: h2c\r\n")));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(c.is_closed_by_peer(3000ms)) << "the connection stayed open after the answer";
}

// Dry run: the requests are counted and the refusals only logged.
TEST(LimitConn, DryRunCountsAndLogs) {
  BatonServer s;
  s.write_generated("html/big.bin", 16 << 20);
  s.write_file("html/small.txt", "small\n");
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\nlimit_conn = addr 1\nlimit_conn_dry_run = on\n",
                           "limit_conn_zone = addr $binary_remote_addr\n"
                           "log_format = lc \"$request_uri $status $limit_conn_status\"\naccess_log = logs/lc.log lc\n"));
  ASSERT_TRUE(s.start());
  Client stalled(s.port(), {.timeout = 5000ms, .rcvbuf = 4096});
  ASSERT_TRUE(stalled.send(req("GET", "/big.bin")));
  ASSERT_TRUE(contains(stalled.read_some(1024), "200 OK"));
  EXPECT_EQ(fresh_get(s.port(), "/small.txt").status, 200);
  EXPECT_TRUE(wait_for([&] { return contains(read_file(s.path("logs/lc.log")), "/small.txt 200 REJECTED_DRY_RUN"); }, 2000ms))
      << read_file(s.path("logs/lc.log"));
  EXPECT_TRUE(contains(s.error_log(), "limiting connections, dry run, by zone \"addr\"")) << s.error_log();
}

// stub_status and metrics: nginx's stub_status text to the byte and the Prometheus text format,
// with counts that are the service's (every worker summed), that go on across reloads, live
// upgrades and a worker that crashes, and connection states that follow what the clients do.
#include <signal.h>
#include <time.h>

#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

// One server "main" with a stub_status and a metrics location, and files to fetch; answers say which
// worker gave them.
std::string site(int workers = 1, const std::string& extra = "", const std::string& more_servers = "") {
  return make_runtime_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\nadd_header = X-Pid $pid always\n"
                             "\n[location = /status]\nstub_status = on\n"
                             "\n[location = /metrics]\nmetrics = on\n" +
                                 extra + more_servers,
                             "", workers);
}

void write_files(BatonServer& s) {
  s.write_file("html/a.txt", "hello\n");
  s.write_generated("html/big.bin", 16 * 1024 * 1024, 3);
}

struct Stub {
  long long active = -1, accepts = -1, handled = -1, requests = -1, reading = -1, writing = -1, waiting = -1;
};

// nginx's format, line by line, the blanks at the ends included.
std::optional<Stub> parse_stub(const std::string& body, std::string* why) {
  static const std::regex l1("Active connections: (\\d+) ");
  static const std::regex l2("server accepts handled requests");
  static const std::regex l3(" (\\d+) (\\d+) (\\d+) ");
  static const std::regex l4("Reading: (\\d+) Writing: (\\d+) Waiting: (\\d+) ");
  std::vector<std::string> lines;
  size_t at = 0;
  while (at < body.size()) {
    size_t nl = body.find('\n', at);
    if (nl == std::string::npos) {
      *why = "the body does not end with a line feed";
      return std::nullopt;
    }
    lines.push_back(body.substr(at, nl - at));
    at = nl + 1;
  }
  if (lines.size() != 4) {
    *why = "not 4 lines";
    return std::nullopt;
  }
  std::smatch m1, m3, m4;
  if (!std::regex_match(lines[0], m1, l1) || !std::regex_match(lines[1], l2) || !std::regex_match(lines[2], m3, l3) ||
      !std::regex_match(lines[3], m4, l4)) {
    *why = "a line does not have nginx's form";
    return std::nullopt;
  }
  Stub s;
  s.active = std::stoll(m1[1]);
  s.accepts = std::stoll(m3[1]);
  s.handled = std::stoll(m3[2]);
  s.requests = std::stoll(m3[3]);
  s.reading = std::stoll(m4[1]);
  s.writing = std::stoll(m4[2]);
  s.waiting = std::stoll(m4[3]);
  return s;
}

Stub stub(int port) {
  Response r = get(port, "/status");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Type"), "text/plain") << r;
  std::string why;
  std::optional<Stub> s = parse_stub(r.body, &why);
  EXPECT_TRUE(s.has_value()) << why << ":\n[" << r.body << "]";
  return s ? *s : Stub{};
}

// The samples of a metrics page by series ("name{labels}" as written), every line checked: a
// comment (# HELP / # TYPE of a baton_ family, HELP before TYPE, before its samples) or a sample of
// the family last declared.
using Series = std::map<std::string, double>;

std::optional<Series> parse_metrics(const std::string& body, std::string* why) {
  static const std::regex help("# HELP (baton_[a-zA-Z0-9_]*) \\S.*");
  static const std::regex type("# TYPE (baton_[a-zA-Z0-9_]*) (counter|gauge|histogram|summary)");
  static const std::regex sample(
      "([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\\n]|\\\\[\\\\\"n])*\""
      "(?:,[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\\n]|\\\\[\\\\\"n])*\")*\\})? (\\S+)");
  Series out;
  std::string family, family_type, helped;
  std::set<std::string> declared;
  size_t at = 0;
  int n = 0;
  while (at < body.size()) {
    size_t nl = body.find('\n', at);
    if (nl == std::string::npos) {
      *why = "the body does not end with a line feed";
      return std::nullopt;
    }
    std::string line = body.substr(at, nl - at);
    at = nl + 1;
    n++;
    std::smatch m;
    if (std::regex_match(line, m, help)) {
      helped = m[1];
      continue;
    }
    if (std::regex_match(line, m, type)) {
      family = m[1];
      family_type = m[2];
      if (helped != family || !declared.insert(family).second) {
        *why = "line " + std::to_string(n) + ": TYPE without its HELP, or twice: " + line;
        return std::nullopt;
      }
      if (family_type == "counter" && !family.ends_with("_total")) {
        *why = "a counter whose name does not end with _total: " + family;
        return std::nullopt;
      }
      continue;
    }
    if (!std::regex_match(line, m, sample)) {
      *why = "line " + std::to_string(n) + " is neither a comment nor a sample: [" + line + "]";
      return std::nullopt;
    }
    std::string name = m[1];
    bool ok = name == family;
    if (family_type == "histogram")
      ok = name == family + "_bucket" || name == family + "_sum" || name == family + "_count";
    if (family_type == "summary") ok = name == family + "_sum" || name == family + "_count";
    if (!ok) {
      *why = "line " + std::to_string(n) + ": a sample outside its family " + family + ": " + line;
      return std::nullopt;
    }
    char* end = nullptr;
    std::string value = m[3];
    double v = strtod(value.c_str(), &end);
    if (!end || *end != '\0') {
      *why = "line " + std::to_string(n) + ": not a number: " + value;
      return std::nullopt;
    }
    std::string key = name + std::string(m[2]);
    if (!out.emplace(key, v).second) {
      *why = "series twice: " + key;
      return std::nullopt;
    }
  }
  return out;
}

Series metrics(int port) {
  Response r = get(port, "/metrics");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8") << r;
  std::string why;
  std::optional<Series> m = parse_metrics(r.body, &why);
  EXPECT_TRUE(m.has_value()) << why << "\n" << r.body;
  return m ? *m : Series{};
}

double at(const Series& m, const std::string& key) {
  auto it = m.find(key);
  EXPECT_NE(it, m.end()) << "no series " << key;
  return it == m.end() ? -1 : it->second;
}

std::string requests_key(const std::string& server, const std::string& code) {
  return "baton_http_requests_total{server=\"" + server + "\",code=\"" + code + "\"}";
}

// n requests for path, each on a fresh connection; the pids that answered.
std::set<std::string> fetch(int port, const std::string& path, int n, int status = 200) {
  std::set<std::string> pids;
  for (int i = 0; i < n; i++) {
    Response r = get(port, path);
    EXPECT_EQ(r.status, status) << r;
    pids.insert(r.header("X-Pid"));
  }
  return pids;
}

// A kept-alive connection that has had one answer and now waits (idle).
Client idle_connection(int port, std::string* pid) {
  Client c(port);
  Response r = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(r.status, 200) << r;
  *pid = r.header("X-Pid");
  return c;
}

}  // namespace

// nginx's text, the counters exact: N requests on N connections move requests and accepts by N, plus
// the status request itself.
TEST(Status, StubStatusTextAndCounts) {
  BatonServer s;
  write_files(s);
  s.set_config(site());
  ASSERT_TRUE(s.start());
  Stub before = stub(s.port());
  EXPECT_GE(before.active, 1) << "the status request's own connection";
  EXPECT_GE(before.writing, 1) << "the status request itself is being answered";
  EXPECT_EQ(before.accepts, before.handled);
  fetch(s.port(), "/a.txt", 7);
  fetch(s.port(), "/missing", 2, 404);
  Stub after = stub(s.port());
  EXPECT_EQ(after.requests - before.requests, 9 + 1);
  EXPECT_EQ(after.accepts - before.accepts, 9 + 1);
  EXPECT_EQ(after.handled, after.accepts);
  EXPECT_EQ(after.active, after.reading + after.writing + after.waiting);

  // Two requests on one connection: one connection, two requests.
  Client c(s.port());
  EXPECT_EQ(c.exchange(req("GET", "/a.txt")).status, 200);
  Response r = c.exchange(req("GET", "/status"));
  std::string why;
  std::optional<Stub> on_conn = parse_stub(r.body, &why);
  ASSERT_TRUE(on_conn) << why;
  EXPECT_EQ(on_conn->accepts - after.accepts, 1);
  EXPECT_EQ(on_conn->requests - after.requests, 2);

  // HEAD: the head only; other methods are not allowed.
  Response h = head(s.port(), "/status");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.header("Content-Type"), "text/plain");
  EXPECT_TRUE(h.body.empty());
  Client p(s.port());
  Response post = p.exchange(req("POST", "/status", "Content-Length: 0\r\n"));
  EXPECT_EQ(post.status, 405) << post;
}

// A request whose head arrives in pieces is one request (and its time starts with its first byte).
TEST(Status, AHeadInPiecesIsOneRequest) {
  BatonServer s;
  write_files(s);
  s.set_config(site());
  ASSERT_TRUE(s.start());
  Stub before = stub(s.port());
  Client c(s.port());
  std::string request = req("GET", "/a.txt");
  for (size_t at = 0; at < request.size(); at += 8) {
    ASSERT_TRUE(c.send(request.substr(at, 8)));
    std::this_thread::sleep_for(30ms);
  }
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  Stub after = stub(s.port());
  EXPECT_EQ(after.requests - before.requests, 1 + 1);
}

// Waiting counts an idle kept-alive connection, Writing a download the client does not read, Reading a
// request head that has not all arrived.
TEST(Status, ConnectionStates) {
  BatonServer s;
  write_files(s);
  s.set_config(site());
  ASSERT_TRUE(s.start());
  Stub quiet = stub(s.port());
  EXPECT_EQ(quiet.reading, 0);
  EXPECT_EQ(quiet.writing, 1);

  std::string pid;
  Client idle = idle_connection(s.port(), &pid);
  Client stalled(s.port(), {.timeout = 5000ms, .rcvbuf = 4096});
  ASSERT_TRUE(stalled.send(req("GET", "/big.bin")));
  Client partial(s.port());
  ASSERT_TRUE(partial.send("GET /a.txt HTTP/1.1\r\nHost: loc"));
  Stub busy;
  EXPECT_TRUE(wait_for(
      [&] {
        busy = stub(s.port());
        return busy.waiting >= 1 && busy.writing >= 2 && busy.reading >= 1;
      },
      3000ms, 50ms))
      << "active " << busy.active << " reading " << busy.reading << " writing " << busy.writing << " waiting "
      << busy.waiting;
  EXPECT_GE(busy.active, 4);
  EXPECT_EQ(busy.active, busy.reading + busy.writing + busy.waiting);

  // Once they are gone, only the status request's connection is left.
  idle.close();
  stalled.close();
  partial.close();
  Stub after;
  EXPECT_TRUE(wait_for(
      [&] {
        after = stub(s.port());
        return after.active == 1 && after.reading == 0 && after.writing == 1 && after.waiting == 0;
      },
      3000ms, 50ms))
      << "active " << after.active << " reading " << after.reading << " writing " << after.writing << " waiting "
      << after.waiting;
}

// Two workers: the numbers are the service's, whichever worker answers the status request.
TEST(Status, SumsEveryWorker) {
  BatonServer s;
  write_files(s);
  s.set_config(site(2));
  ASSERT_TRUE(s.start());
  Stub before = stub(s.port());
  std::set<std::string> pids = fetch(s.port(), "/a.txt", 30);
  EXPECT_EQ(pids.size(), 2u) << "both workers should have answered 30 connections";
  // Idle connections on both workers.
  std::vector<Client> idle;
  std::set<std::string> idle_pids;
  // Which worker takes a connection is the kernel's choice (a worker that is awake may take many in
  // a row): connections are opened until both hold some, within a bound.
  for (int i = 0; i < 12 || (idle_pids.size() < 2 && i < 200); i++) {
    std::string pid;
    idle.push_back(idle_connection(s.port(), &pid));
    idle_pids.insert(pid);
  }
  EXPECT_EQ(idle_pids.size(), 2u) << "the idle connections should be on both workers";
  const long long n = static_cast<long long>(idle.size());
  for (int i = 0; i < 6; i++) {
    Stub now = stub(s.port());
    EXPECT_EQ(now.requests - before.requests, 30 + n + 1 + i) << "whichever worker answers";
    EXPECT_EQ(now.accepts - before.accepts, 30 + n + 1 + i);
    EXPECT_GE(now.waiting, n);
    EXPECT_GE(now.active, n + 1);
  }
}

// Counters go on across a reload and a live upgrade: nothing lost, nothing counted twice.
TEST(Status, CountersSurviveReloadAndUpgrade) {
  BatonServer s;
  write_files(s);
  s.set_config(site(2));
  ASSERT_TRUE(s.start());
  fetch(s.port(), "/a.txt", 10);
  Stub before = stub(s.port());
  EXPECT_GE(before.requests, 11);

  s.set_config(site(2, "", "\n[server other]\nlisten = 127.0.0.1:@PORT2@\nroot = html\n"));
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  ASSERT_TRUE(s.wait_old_generations_gone(8000ms)) << s.census().describe();
  Stub reloaded = stub(s.port());
  EXPECT_EQ(reloaded.requests, before.requests + 1) << "the reload lost or added requests";
  EXPECT_GE(reloaded.accepts, before.accepts + 1);
  fetch(s.port(), "/a.txt", 5);
  fetch(s.port(1), "/a.txt", 5);
  Stub more = stub(s.port());
  EXPECT_EQ(more.requests, reloaded.requests + 11) << "counting goes on after the reload";

  r = s.ctl("upgrade");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  ASSERT_TRUE(s.wait_old_generations_gone(8000ms)) << s.census().describe();
  Stub upgraded = stub(s.port());
  EXPECT_EQ(upgraded.requests, more.requests + 1) << "the upgrade lost or added requests";
  EXPECT_GE(upgraded.accepts, more.accepts + 1);
  fetch(s.port(), "/a.txt", 4);
  Stub last = stub(s.port());
  EXPECT_EQ(last.requests, upgraded.requests + 5) << "counting goes on after the upgrade";
  EXPECT_EQ(last.active, last.reading + last.writing + last.waiting);
}

// A worker killed outright takes its counts nowhere: the master keeps them when it reaps it.
TEST(Status, KilledWorkerKeepsItsCounts) {
  BatonServer s;
  write_files(s);
  s.set_config(site(1));
  ASSERT_TRUE(s.start());
  fetch(s.port(), "/a.txt", 8);
  Stub before = stub(s.port());
  std::vector<pid_t> workers = s.worker_pids();
  ASSERT_EQ(workers.size(), 1u);
  std::string pid;
  Client idle = idle_connection(s.port(), &pid);  // its connection goes with it
  ASSERT_EQ(::kill(workers[0], SIGKILL), 0);
  ASSERT_TRUE(wait_for(
      [&] {
        std::vector<pid_t> now = s.worker_pids();
        return now.size() == 1 && now[0] != workers[0];
      },
      8000ms, 50ms))
      << s.error_log();
  ASSERT_TRUE(wait_for([&] { return can_connect(s.port()); }, 3000ms));
  Stub after;
  ASSERT_TRUE(wait_for(
      [&] {
        after = stub(s.port());
        return after.requests > 0;
      },
      3000ms, 50ms));
  EXPECT_EQ(after.requests, before.requests + 2) << "the idle connection's request and this one";
  EXPECT_GE(after.accepts, before.accepts + 2);
  EXPECT_EQ(after.active, 1) << "the killed worker's connections are gone";
  EXPECT_EQ(after.waiting, 0);
}

// allow/deny hold as in any location.
TEST(Status, AllowAndDeny) {
  BatonServer s;
  write_files(s);
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                           "\n[location = /status]\nstub_status = on\ndeny = 127.0.0.1\n"
                           "\n[location = /metrics]\nmetrics = on\nallow = 10.0.0.0/8\ndeny = all\n"
                           "\n[location = /open]\nstub_status = on\nallow = 127.0.0.1\ndeny = all\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/status").status, 403);
  EXPECT_EQ(get(s.port(), "/metrics").status, 403);
  EXPECT_EQ(get(s.port(), "/open").status, 200);
}

TEST(Status, ConfigurationErrors) {
  BatonServer s;
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\n[location /s]\nstub_status = on\nmetrics = on\n"));
  RunResult r = s.test_config();
  EXPECT_NE(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "cannot be combined")) << describe(r);
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nstub_status = on\n"));
  r = s.test_config();
  EXPECT_NE(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "stub_status")) << describe(r);
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\n[location /s]\nmetrics = maybe\n"));
  r = s.test_config();
  EXPECT_NE(r.exit_code, 0) << describe(r);
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\n[location /s]\nmetrics = on\n"
                           "proxy_pass = http://127.0.0.1:1\n"));
  r = s.test_config();
  EXPECT_NE(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "cannot be combined")) << describe(r);
}

// Requests by server and status class, the request time histogram, bytes, build and start time.
TEST(Metrics, RequestsByServerAndClass) {
  BatonServer s;
  write_files(s);
  s.set_config(site(2, "", "\n[server b]\nlisten = 127.0.0.1:@PORT2@\nroot = html\n"));
  ASSERT_TRUE(s.start());
  Series m0 = metrics(s.port());
  fetch(s.port(), "/a.txt", 3);
  fetch(s.port(), "/nope", 2, 404);
  fetch(s.port(1), "/a.txt", 1);
  Series m1 = metrics(s.port());

  // The first metrics request was answered (200) after it was read: it counts in the second.
  EXPECT_EQ(at(m1, requests_key("main", "2xx")) - at(m0, requests_key("main", "2xx")), 3 + 1);
  EXPECT_EQ(at(m1, requests_key("main", "4xx")) - at(m0, requests_key("main", "4xx")), 2);
  EXPECT_EQ(at(m1, requests_key("main", "5xx")), 0);
  EXPECT_EQ(at(m1, requests_key("b", "2xx")) - at(m0, requests_key("b", "2xx")), 1);
  EXPECT_EQ(at(m1, requests_key("b", "4xx")), 0);
  EXPECT_EQ(at(m1, "baton_requests_total") - at(m0, "baton_requests_total"), 3 + 2 + 1 + 1);
  EXPECT_EQ(at(m1, "baton_connections_accepted_total") - at(m0, "baton_connections_accepted_total"), 3 + 2 + 1 + 1);

  // The histogram: cumulative buckets, the last one (+Inf) and _count the requests answered.
  for (const std::string server : {"main", "b"}) {
    double answered = 0;
    for (const char* code : {"1xx", "2xx", "3xx", "4xx", "5xx"}) answered += at(m1, requests_key(server, code));
    std::string labels = "{server=\"" + server + "\"";
    double count = at(m1, "baton_http_request_duration_seconds_count" + labels + "}");
    EXPECT_EQ(count, answered) << server;
    int buckets = 0;
    for (const auto& [key, v] : m1)
      if (key.starts_with("baton_http_request_duration_seconds_bucket" + labels + ",le=")) buckets++;
    EXPECT_EQ(buckets, 12) << server;
    double previous = 0;
    for (const char* le : {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}) {
      double v = at(m1, "baton_http_request_duration_seconds_bucket" + labels + ",le=\"" + le + "\"}");
      EXPECT_GE(v, previous) << server << " le=" << le << ": buckets are cumulative";
      previous = v;
    }
    EXPECT_EQ(previous, count) << "the +Inf bucket is the count";
    EXPECT_GE(at(m1, "baton_http_request_duration_seconds_sum" + labels + "}"), 0);
    EXPECT_GT(at(m1, "baton_http_sent_bytes_total" + labels + "}"), 0);
    EXPECT_GT(at(m1, "baton_http_received_bytes_total" + labels + "}"), 0);
  }
  // What went to b: 1 request head in, 1 answer out (with its body, "hello\n").
  double b_in = at(m1, "baton_http_received_bytes_total{server=\"b\"}");
  double b_out = at(m1, "baton_http_sent_bytes_total{server=\"b\"}");
  std::string one_req = req("GET", "/a.txt", "Connection: close\r\n");
  EXPECT_EQ(b_in, static_cast<double>(one_req.size()));
  EXPECT_GT(b_out, 6);
  EXPECT_LT(b_out, 600);

  // The build and the start.
  bool build = false;
  for (const auto& [key, v] : m1)
    if (key.starts_with("baton_build_info{version=\"")) build = v == 1;
  EXPECT_TRUE(build);
  double started = at(m1, "baton_start_time_seconds");
  EXPECT_GT(started, static_cast<double>(time(nullptr) - 60));
  EXPECT_LE(started, static_cast<double>(time(nullptr)));
  // The connection gauges.
  EXPECT_GE(at(m1, "baton_connections{state=\"active\"}"), 1);
  EXPECT_GE(at(m1, "baton_connections{state=\"writing\"}"), 1);
  EXPECT_GE(at(m1, "baton_connections{state=\"reading\"}"), 0);
  EXPECT_GE(at(m1, "baton_connections{state=\"waiting\"}"), 0);
  // HEAD: the head only.
  Response h = head(s.port(), "/metrics");
  EXPECT_EQ(h.status, 200);
  EXPECT_TRUE(h.body.empty());
}

// Reloads (ok and failed), upgrades (succeeded and rolled back), worker restarts; and the request
// counters never go backwards through them.
TEST(Metrics, ReloadUpgradeAndRestartCounters) {
  BatonServer s;
  write_files(s);
  s.set_config(site(2));
  std::string good = s.config_text();
  ASSERT_TRUE(s.start());
  Series m0 = metrics(s.port());
  EXPECT_EQ(at(m0, "baton_reloads_total{result=\"ok\"}"), 0);
  EXPECT_EQ(at(m0, "baton_upgrades_total{result=\"succeeded\"}"), 0);
  EXPECT_EQ(at(m0, "baton_worker_restarts_total"), 0);
  fetch(s.port(), "/a.txt", 4);
  const std::string ok2xx = requests_key("main", "2xx");

  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  ASSERT_TRUE(s.wait_old_generations_gone(8000ms)) << s.census().describe();
  Series m1 = metrics(s.port());
  EXPECT_EQ(at(m1, "baton_reloads_total{result=\"ok\"}"), 1);
  EXPECT_EQ(at(m1, "baton_reloads_total{result=\"failed\"}"), 0);
  EXPECT_EQ(at(m1, ok2xx), at(m0, ok2xx) + 4 + 1);

  s.set_config(replace_all(good, "[main]\n", "[main]\nno_such_directive = 1\n"));
  r = s.ctl("reload");
  EXPECT_NE(r.exit_code, 0) << describe(r);
  r = s.ctl("upgrade");
  EXPECT_NE(r.exit_code, 0) << describe(r);
  Series m2 = metrics(s.port());
  EXPECT_EQ(at(m2, "baton_reloads_total{result=\"failed\"}"), 1);
  EXPECT_EQ(at(m2, "baton_upgrades_total{result=\"rolled_back\"}"), 1);
  EXPECT_EQ(at(m2, "baton_upgrades_total{result=\"succeeded\"}"), 0);
  EXPECT_EQ(at(m2, ok2xx), at(m1, ok2xx) + 1);

  s.set_config(good);
  r = s.ctl("upgrade");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  ASSERT_TRUE(s.wait_old_generations_gone(8000ms)) << s.census().describe();
  Series m3 = metrics(s.port());
  EXPECT_EQ(at(m3, "baton_upgrades_total{result=\"succeeded\"}"), 1);
  EXPECT_EQ(at(m3, "baton_upgrades_total{result=\"rolled_back\"}"), 1);
  EXPECT_EQ(at(m3, "baton_reloads_total{result=\"ok\"}"), 1);
  EXPECT_EQ(at(m3, ok2xx), at(m2, ok2xx) + 1);
  EXPECT_EQ(at(m3, "baton_start_time_seconds"), at(m0, "baton_start_time_seconds"));

  std::vector<pid_t> workers = s.current_workers();
  ASSERT_EQ(workers.size(), 2u);
  ASSERT_EQ(::kill(workers[0], SIGKILL), 0);
  ASSERT_TRUE(wait_for(
      [&] {
        std::vector<pid_t> now = s.current_workers();
        return now.size() == 2 && now[0] != workers[0] && now[1] != workers[0];
      },
      8000ms, 50ms))
      << s.error_log();
  Series m4 = metrics(s.port());
  EXPECT_EQ(at(m4, "baton_worker_restarts_total"), 1);
  EXPECT_EQ(at(m4, ok2xx), at(m3, ok2xx) + 1) << "the killed worker's counts are kept";
}

// The proxy's counters, per upstream group, against a real upstream: requests, attempts, responses
// by class, response times, and failures by kind.
TEST(Metrics, UpstreamCounters) {
  TestUpstream up;
  ASSERT_TRUE(up.start()) << up.error();
  BatonServer s;
  write_files(s);
  std::string servers =
      "[upstream app]\nserver = " + up.address() + "\n\n[upstream dead]\nserver = 127.0.0.1:@PORT3@\n\n"
      "[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
      "\n[location = /metrics]\nmetrics = on\n"
      "\n[location /app/]\nproxy_pass = http://app/\n"
      "\n[location /slow/]\nproxy_pass = http://app/\nproxy_read_timeout = 300ms\n"
      "\n[location /dead/]\nproxy_pass = http://dead/\n";
  s.set_config(make_config(servers));
  ASSERT_TRUE(s.start());
  Series m0 = metrics(s.port());
  EXPECT_EQ(at(m0, "baton_upstream_requests_total{upstream=\"app\"}"), 0);
  fetch(s.port(), "/app/size/1000", 3);
  fetch(s.port(), "/app/status/503", 1, 503);
  fetch(s.port(), "/app/status/404", 1, 404);
  fetch(s.port(), "/dead/x", 2, 502);
  fetch(s.port(), "/slow/delay/3000/", 1, 504);
  Series m1 = metrics(s.port());
  auto app = [&](const std::string& name, const std::string& more = "") {
    return at(m1, name + "{upstream=\"app\"" + more + "}");
  };
  auto dead = [&](const std::string& name, const std::string& more = "") {
    return at(m1, name + "{upstream=\"dead\"" + more + "}");
  };
  EXPECT_EQ(app("baton_upstream_requests_total"), 6);
  EXPECT_EQ(app("baton_upstream_attempts_total"), 6);
  EXPECT_EQ(app("baton_upstream_responses_total", ",code=\"2xx\""), 3);
  EXPECT_EQ(app("baton_upstream_responses_total", ",code=\"4xx\""), 1);
  EXPECT_EQ(app("baton_upstream_responses_total", ",code=\"5xx\""), 1);
  EXPECT_EQ(app("baton_upstream_failures_total", ",type=\"timeout\""), 1);
  EXPECT_EQ(app("baton_upstream_failures_total", ",type=\"connect\""), 0);
  EXPECT_EQ(app("baton_upstream_response_time_seconds_count"), 5);
  EXPECT_GT(app("baton_upstream_response_time_seconds_sum"), 0);
  EXPECT_EQ(dead("baton_upstream_requests_total"), 2);
  EXPECT_GE(dead("baton_upstream_attempts_total"), 1) << "a server that failed may be skipped for fail_timeout";
  EXPECT_GE(dead("baton_upstream_failures_total", ",type=\"connect\""), 1);
  EXPECT_EQ(dead("baton_upstream_failures_total", ",type=\"connect\""), dead("baton_upstream_attempts_total"));
  EXPECT_EQ(dead("baton_upstream_responses_total", ",code=\"2xx\""), 0);
  EXPECT_EQ(dead("baton_upstream_response_time_seconds_count"), 0);
  // The answers the clients got, by server.
  EXPECT_EQ(at(m1, requests_key("main", "5xx")), 1 + 2 + 1);
}

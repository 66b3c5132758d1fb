// Which upstream server a proxied request reaches: each balancing method (least_conn, ip_hash,
// hash KEY, round robin with `down`), passive health (max_fails within fail_timeout takes a server
// out, a probe brings it back) and backup servers, seen from outside with real upstream processes.
// One worker per baton: balancing and health are per-worker state.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "lib/proxy_util.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

size_t count_occurrences(std::string_view text, std::string_view needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + 1)) n++;
  return n;
}

// The error-log lines of failed attempts on one server name it as `upstream "127.0.0.1:PORT"`.
std::string failure_mark(const TestUpstream& u) { return "upstream \"" + u.address() + "\""; }

// One request on a connection from the source address `source` (any 127/8 address is local), with
// `Connection: close`; the X-Upstream of the answer, or "" (with the reason) when none came.
std::string upstream_seen_from(const std::string& source, int port, std::string_view target, std::string* why) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *why = "socket failed";
    return "";
  }
  struct timeval tv = {5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in src {};
  src.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &src.sin_addr);
  struct sockaddr_in dst {};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<uint16_t>(port));
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string request = req("GET", target, "Connection: close\r\n");
  std::string got;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
    *why = "bind to " + source + " failed";
  } else if (::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
    *why = "connect from " + source + " failed";
  } else if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    *why = "send from " + source + " failed";
  } else {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t at = got.find("\r\nX-Upstream: ");
  if (!got.starts_with("HTTP/1.1 200 ") || at == std::string::npos) {
    if (why->empty()) *why = "no 200 with X-Upstream from " + source + ": " + got.substr(0, 200);
    return "";
  }
  at += 14;
  return got.substr(at, got.find("\r\n", at) - at);
}

class ProxyBalance : public ::testing::Test {
 public:
  // Starts upstream servers named a, b, c...
  void start_upstreams(size_t n, const std::vector<std::string>& extra_args = {}) {
    for (size_t i = 0; i < n; i++) {
      ups.push_back(std::make_unique<TestUpstream>());
      std::vector<std::string> args = {"--name", std::string(1, static_cast<char>('a' + i))};
      args.insert(args.end(), extra_args.begin(), extra_args.end());
      ASSERT_TRUE(ups.back()->start(args)) << ups.back()->error();
    }
  }
  // Restarts a stopped upstream on its old port, with its old name.
  void restart(size_t i) {
    TestUpstream& u = *ups[i];
    int port = u.port();
    ASSERT_FALSE(u.running());
    ASSERT_TRUE(u.start({"--listen", "127.0.0.1:" + std::to_string(port), "--name",
                         std::string(1, static_cast<char>('a' + i))}))
        << u.error();
    ASSERT_EQ(u.port(), port);
  }
  TestUpstream& up(size_t i) { return *ups[i]; }

  // GET `target` on the keep-alive client; the X-Upstream of a 200, or "status N".
  static std::string served_by(Client& c, const std::string& target) {
    Response r = c.exchange(req("GET", target));
    if (r.status != 200) return "status " + std::to_string(r.status);
    return r.header("X-Upstream");
  }

  std::vector<std::unique_ptr<TestUpstream>> ups;
  BatonServer s;
};

// ---- balancing methods ----

TEST_F(ProxyBalance, LeastConnSendsNewRequestsAwayFromTheBusyServer) {
  start_upstreams(2);
  s.set_config(proxy_conf({up(0).address(), up(1).address()}, "balance = least_conn\n"));
  ASSERT_TRUE(s.start());

  // A slow request holds a connection to one of the servers.
  Client slow(s.port(), {.timeout = 10000ms});
  auto sent_at = SteadyClock::now();
  ASSERT_TRUE(slow.send(req("GET", "/delay/2500/slow")));
  std::string busy;
  ASSERT_TRUE(wait_for(
      [&] {
        if (up(0).received("GET", "/delay/2500/slow") == 1) busy = "a";
        if (up(1).received("GET", "/delay/2500/slow") == 1) busy = "b";
        return !busy.empty();
      },
      2000ms));
  std::string other = busy == "a" ? "b" : "a";

  // Meanwhile every new request goes to the other one.
  Client c(s.port());
  for (int i = 0; i < 8; i++) EXPECT_EQ(served_by(c, "/size/1?i=" + std::to_string(i)), other) << i;
  EXPECT_LT(SteadyClock::now() - sent_at, 2500ms) << "the slow request was not outstanding all along";

  std::optional<Response> r = slow.read_response();
  ASSERT_TRUE(r) << slow.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("X-Upstream"), busy);

  // Both idle again: they share the requests.
  std::map<std::string, int> count;
  for (int i = 0; i < 8; i++) count[served_by(c, "/size/1?j=" + std::to_string(i))]++;
  EXPECT_EQ(count["a"], 4);
  EXPECT_EQ(count["b"], 4);
}

TEST_F(ProxyBalance, IpHashKeepsAClientOnOneServer) {
  start_upstreams(2);
  s.set_config(proxy_conf({up(0).address(), up(1).address()}, "balance = ip_hash\n"));
  ASSERT_TRUE(s.start());

  // 127.0.0.1: on new connections and on one kept alive, always the same server.
  std::string first = get(s.port(), "/size/1").header("X-Upstream");
  ASSERT_TRUE(first == "a" || first == "b") << first;
  for (int i = 0; i < 10; i++) EXPECT_EQ(get(s.port(), "/size/1?i=" + std::to_string(i)).header("X-Upstream"), first);
  Client c(s.port());
  for (int i = 0; i < 10; i++) EXPECT_EQ(served_by(c, "/size/1?k=" + std::to_string(i)), first);
  TestUpstream& idle = first == "a" ? up(1) : up(0);
  EXPECT_EQ(idle.stats().requests, 0);

  // Clients of other /24 networks spread over both servers, and each of them stays where it
  // landed. The hash is fixed by the code, so this is the same on every run.
  std::map<std::string, std::string> where;
  std::set<std::string> servers;
  for (int net = 1; net <= 16; net++) {
    std::string source = "127.0." + std::to_string(net) + ".7";
    std::string why;
    std::string got = upstream_seen_from(source, s.port(), "/size/1", &why);
    ASSERT_FALSE(got.empty()) << why;
    where[source] = got;
    servers.insert(got);
  }
  EXPECT_EQ(servers.size(), 2u) << "16 client networks all went to one server";
  for (const auto& [source, server] : where) {
    std::string why;
    EXPECT_EQ(upstream_seen_from(source, s.port(), "/size/1?again", &why), server) << source << " " << why;
    // Another address of the same /24 is the same client for ip_hash.
    std::string neighbour = source.substr(0, source.rfind('.')) + ".200";
    EXPECT_EQ(upstream_seen_from(neighbour, s.port(), "/size/1", &why), server) << neighbour << " " << why;
  }
}

TEST_F(ProxyBalance, HashOfTheRequestUriPinsEachUriToOneServer) {
  start_upstreams(2);
  s.set_config(proxy_conf({up(0).address(), up(1).address()}, "balance = hash $request_uri\n"));
  ASSERT_TRUE(s.start());

  std::map<std::string, std::string> where;
  Client c(s.port());
  for (int i = 0; i < 24; i++) {
    std::string uri = "/item/" + std::to_string(i);
    where[uri] = served_by(c, uri);
    ASSERT_TRUE(where[uri] == "a" || where[uri] == "b") << uri << ": " << where[uri];
  }
  std::map<std::string, int> count;
  for (const auto& [uri, server] : where) count[server]++;
  EXPECT_GE(count["a"], 3) << "24 URIs, " << count["a"] << " on a";
  EXPECT_GE(count["b"], 3) << "24 URIs, " << count["b"] << " on b";

  // Again, in another order and on other connections: nothing moves. The query is part of the
  // request URI, so it counts as another key.
  for (int round = 0; round < 2; round++) {
    Client again(s.port());
    for (int i = 23; i >= 0; i--) {
      std::string uri = "/item/" + std::to_string(i);
      EXPECT_EQ(served_by(again, uri), where[uri]) << uri << " round " << round;
    }
  }
  std::set<std::string> with_query;
  for (int i = 0; i < 24; i++) with_query.insert(served_by(c, "/item/0?v=" + std::to_string(i)));
  EXPECT_EQ(with_query.size(), 2u) << "24 different query strings all went to one server";
}

// Consistent hashing: while a server is out only its keys move (to the others), and they come
// back to it when it does.
TEST_F(ProxyBalance, HashMovesOnlyTheKeysOfAServerThatIsOut) {
  start_upstreams(3);
  s.set_config(proxy_conf({up(0).address() + " fail_timeout=1s", up(1).address() + " fail_timeout=1s",
                           up(2).address() + " fail_timeout=1s"},
                          "balance = hash $request_uri\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  std::map<std::string, std::string> home;
  std::map<std::string, int> count;
  // Enough keys that b holds a score of them: each of b's keys goes to a or c with even odds, so
  // with few of them "all went to one server" would happen by chance (1 in 8 with 4 keys).
  for (int i = 0; i < 120; i++) {
    std::string uri = "/key/" + std::to_string(i);
    home[uri] = served_by(c, uri);
    count[home[uri]]++;
  }
  ASSERT_GE(count["b"], 20) << "120 keys, " << count["b"] << " on b";
  ASSERT_EQ(count["a"] + count["b"] + count["c"], 120);

  up(1).stop();
  std::this_thread::sleep_for(200ms);
  std::set<std::string> b_keys_went_to;
  for (const auto& [uri, server] : home) {
    std::string now = served_by(c, uri);
    if (server == "b") {
      EXPECT_TRUE(now == "a" || now == "c") << uri << ": " << now;
      b_keys_went_to.insert(now);
    } else {
      EXPECT_EQ(now, server) << uri << " moved although its server is up";
    }
  }
  EXPECT_EQ(b_keys_went_to.size(), 2u) << "b's keys all went to one server";

  // b may have been tried again and failed late in the loop above, if it outlasted fail_timeout:
  // wait a whole fail_timeout from now, when b is up again.
  restart(1);
  std::this_thread::sleep_for(1200ms);
  for (const auto& [uri, server] : home) EXPECT_EQ(served_by(c, uri), server) << uri << " after b came back";
}

TEST_F(ProxyBalance, ADownServerIsNeverChosenByAnyMethod) {
  start_upstreams(3);
  for (std::string method : {"round_robin", "least_conn", "ip_hash", "hash $request_uri"}) {
    BatonServer b;
    b.set_config(proxy_conf({up(0).address(), up(1).address() + " down", up(2).address() + " weight=2"},
                            "balance = " + method + "\n"));
    ASSERT_TRUE(b.start()) << method;
    Client c(b.port());
    std::map<std::string, int> count;
    for (int i = 0; i < 30; i++) count[served_by(c, "/size/1?m=" + std::to_string(i))]++;
    EXPECT_EQ(count["b"], 0) << method;
    EXPECT_EQ(count["a"] + count["c"], 30) << method;
    if (method == "round_robin") {
      // Weights 1 and 2 over the servers left: exactly 10 and 20.
      EXPECT_EQ(count["a"], 10) << method;
      EXPECT_EQ(count["c"], 20) << method;
    }
    if (method != "ip_hash") {
      // (ip_hash keeps 127.0.0.1 on one server.)
      EXPECT_GT(count["a"], 0) << method;
      EXPECT_GT(count["c"], 0) << method;
    }
  }
  EXPECT_EQ(up(1).stats().requests, 0);
}

// ---- passive health ----

TEST_F(ProxyBalance, AFailingServerIsTakenOutAfterMaxFailsAndComesBack) {
  start_upstreams(2);
  s.set_config(proxy_conf({up(0).address() + " max_fails=2 fail_timeout=2s", up(1).address()}));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  std::map<std::string, int> count;
  for (int i = 0; i < 4; i++) count[served_by(c, "/size/1?warm=" + std::to_string(i))]++;
  EXPECT_EQ(count["a"], 2);
  EXPECT_EQ(count["b"], 2);

  up(0).stop();
  // The pooled connection to a sees its end; let the worker notice before the next request.
  std::this_thread::sleep_for(200ms);
  const std::string mark = failure_mark(up(0));
  auto failures = [&] { return count_occurrences(s.error_log(), mark); };
  ASSERT_EQ(failures(), 0u) << s.error_log();

  // Every request is answered (by b), and a is tried until it has failed twice.
  int sent = 0;
  while (failures() < 2 && sent < 8) {
    EXPECT_EQ(served_by(c, "/size/1?down=" + std::to_string(sent)), "b") << sent;
    sent++;
  }
  ASSERT_EQ(failures(), 2u) << "after " << sent << " requests:\n" << s.error_log();
  auto out_at = SteadyClock::now();
  // Out: the following requests go straight to b, with no attempt on a.
  for (int i = 0; i < 8; i++) EXPECT_EQ(served_by(c, "/size/1?out=" + std::to_string(i)), "b") << i;
  bool within = SteadyClock::now() - out_at < 1500ms;
  if (within) {
    EXPECT_EQ(failures(), 2u) << s.error_log();
  }

  // a comes back; once fail_timeout has passed a request tries it again, and it serves again.
  restart(0);
  std::this_thread::sleep_for(2000ms - (SteadyClock::now() - out_at) + 200ms);
  count.clear();
  for (int i = 0; i < 8; i++) count[served_by(c, "/size/1?back=" + std::to_string(i))]++;
  EXPECT_GE(count["a"], 3) << "a served " << count["a"] << " of 8 after coming back";
  EXPECT_EQ(count["a"] + count["b"], 8);
  EXPECT_EQ(failures(), 2u) << s.error_log();
}

// A server that restarts (a deploy) closes the connections the pool keeps: once it is back, its
// connections are kept alive as before. It never closed a connection for being idle.
// fails: UpstreamRuntime::idle_event (src/http/http_upstream_pool.cc) takes the restart's close of
// an idle pooled connection for the server's idle timeout (observed_close = the idle time, 0.5 s
// here), and idle_limit() retires every later connection to that server after half of it. The
// value only ever goes down, and a connection retired before it can never show it wrong, so one
// restart disables keep-alive to that server for the rest of the worker's life: here every
// request 300 ms after the previous one opens a new upstream connection.
TEST_F(ProxyBalance, AServerThatRestartedIsKeptAliveAsBefore) {
  start_upstreams(1);
  s.set_config(proxy_conf({up(0).address()}));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(served_by(c, "/size/1?before=" + std::to_string(i)), "a");
    std::this_thread::sleep_for(300ms);
  }
  EXPECT_EQ(up(0).stats().connections, 1);

  // It restarts while the pooled connection has been idle for half a second.
  std::this_thread::sleep_for(200ms);
  up(0).stop();
  std::this_thread::sleep_for(200ms);
  restart(0);
  for (int i = 0; i < 5; i++) {
    EXPECT_EQ(served_by(c, "/size/1?after=" + std::to_string(i)), "a");
    std::this_thread::sleep_for(300ms);
  }
  TestUpstream::Stats st = up(0).stats();
  EXPECT_EQ(st.requests, 5);
  EXPECT_EQ(st.connections, 1) << "5 requests 300 ms apart after the restart took " << st.connections
                               << " upstream connections";
}

TEST_F(ProxyBalance, BackupServesOnlyWhenEveryPrimaryIsOut) {
  start_upstreams(3);
  s.set_config(proxy_conf({up(0).address() + " fail_timeout=2s", up(1).address() + " fail_timeout=2s",
                           up(2).address() + " backup fail_timeout=2s"}));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  std::map<std::string, int> count;
  for (int i = 0; i < 10; i++) count[served_by(c, "/size/1?all=" + std::to_string(i))]++;
  EXPECT_EQ(count["a"], 5);
  EXPECT_EQ(count["b"], 5);
  EXPECT_EQ(up(2).stats().requests, 0);

  // One primary gone: the other serves, not the backup.
  up(0).stop();
  std::this_thread::sleep_for(200ms);
  for (int i = 0; i < 6; i++) EXPECT_EQ(served_by(c, "/size/1?one=" + std::to_string(i)), "b") << i;
  EXPECT_EQ(up(2).stats().requests, 0);

  // Both gone: the backup serves, at once and every time.
  up(1).stop();
  std::this_thread::sleep_for(200ms);
  auto t0 = SteadyClock::now();
  for (int i = 0; i < 6; i++) EXPECT_EQ(served_by(c, "/size/1?backup=" + std::to_string(i)), "c") << i;
  EXPECT_LT(SteadyClock::now() - t0, 1500ms);
  EXPECT_EQ(count_occurrences(s.error_log(), failure_mark(up(1))), 1u) << s.error_log();

  // Every server out: 502 at once, and no server is even tried.
  up(2).stop();
  std::this_thread::sleep_for(200ms);
  Response r = c.exchange(req("GET", "/size/1?none=0"));
  EXPECT_TRUE(is_error_page(r, 502, "Bad Gateway")) << r;
  size_t c_failures = count_occurrences(s.error_log(), failure_mark(up(2)));
  EXPECT_EQ(c_failures, 1u) << s.error_log();
  for (int i = 1; i < 4; i++) {
    Client fresh(s.port());
    auto start = SteadyClock::now();
    r = fresh.exchange(req("GET", "/size/1?none=" + std::to_string(i)));
    EXPECT_TRUE(is_error_page(r, 502, "Bad Gateway")) << r;
    EXPECT_LT(SteadyClock::now() - start, 1000ms);
  }
  std::string log = s.error_log();
  EXPECT_EQ(count_occurrences(log, failure_mark(up(2))), c_failures) << log;
  EXPECT_TRUE(contains(log, "no live upstreams")) << log;

  // A primary back, after fail_timeout: the backup is left alone again.
  restart(0);
  std::this_thread::sleep_for(2200ms);
  for (int i = 0; i < 4; i++) EXPECT_EQ(served_by(c, "/size/1?primary=" + std::to_string(i)), "a") << i;
}

}  // namespace

// Connections handed to the new generation: on a reload or a live upgrade the old workers hand their
// idle keep-alive connections (through the master) to workers of the new generation, which serve the
// next requests on them; the old generation leaves as soon as its requests in flight are done.
#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr const char* kBody = "hello from the hand-over test\n";
// A long keep-alive timeout: an idle connection must not end for being idle while a test waits.
constexpr const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n"
    "keepalive_timeout = 60s\n";

std::vector<pid_t> workers_now(BatonServer& s, size_t n) {
  std::vector<pid_t> w;
  wait_for(
      [&] {
        w = s.current_workers();
        return w.size() == n;
      },
      5000ms, 10ms);
  return w;
}

// Kept-alive clients: HTTP/1.1, and HTTP/1.0 asking for keep-alive; each has made one request.
struct Idle {
  Client c11;
  Client c10;
  explicit Idle(int port) : c11(port), c10(port) {
    Response r = c11.exchange(req("GET", "/a.txt"));
    EXPECT_EQ(r.status, 200);
    EXPECT_FALSE(r.connection_close());
    r = c10.exchange("GET /a.txt HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("Connection"), "keep-alive") << "the HTTP/1.0 connection is not kept alive";
  }
  // Their next requests are served, and the connections stay.
  void expect_served(const std::string& when) {
    Response r = c11.exchange(req("GET", "/a.txt"));
    EXPECT_EQ(r.status, 200) << when << " (HTTP/1.1)";
    EXPECT_EQ(r.body, kBody) << when;
    EXPECT_FALSE(r.connection_close()) << when;
    r = c10.exchange("GET /a.txt HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_EQ(r.status, 200) << when << " (HTTP/1.0)";
    EXPECT_EQ(r.body, kBody) << when;
    EXPECT_EQ(r.header("Connection"), "keep-alive") << when;
  }
};

long received_by_workers(BatonServer& s) {
  std::optional<StatusReport> st = status_of(s);
  long n = 0;
  if (st)
    for (const auto& w : st->workers) n += w.received;
  return n;
}

}  // namespace

TEST(Handover, IdleKeepAliveConnectionsOutliveReloads) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  // A long quit_timeout: the old workers must leave because they have nothing left, not because
  // their time is up.
  s.set_config(make_runtime_config(kServer, "quit_timeout = 30s\n", 2));
  ASSERT_TRUE(s.start());
  Idle idle(s.port());
  for (int i = 1; i <= 3; i++) {
    std::vector<pid_t> old = workers_now(s, 2);
    ASSERT_EQ(old.size(), 2u);
    RunResult r = s.ctl("reload");
    ASSERT_EQ(r.exit_code, 0) << describe(r);
    EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 5000ms))
        << "reload " << i << ": the old workers stay although their connections were idle\n" << s.census().describe();
    // Only workers of the new generation are left: whatever answers now is one of them.
    idle.expect_served("after reload " + std::to_string(i));
  }
  // (A status answer may come from a ping sent before the last move.)
  EXPECT_TRUE(wait_for([&] { return received_by_workers(s) == 2; }, 3000ms))
      << "-s status counts the connections the workers received";
  EXPECT_TRUE(contains(s.error_log(), "connection(s) to the new generation")) << s.error_log();
}

TEST(Handover, IdleKeepAliveConnectionsOutliveAnUpgrade) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  s.set_config(make_runtime_config(kServer, "quit_timeout = 30s\n", 2));
  ASSERT_TRUE(s.start());
  Idle idle(s.port());
  std::vector<pid_t> old = workers_now(s, 2);
  ASSERT_EQ(old.size(), 2u);
  RunResult r = s.ctl("upgrade");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 5000ms))
      << "the old workers stay although their connections were idle\n" << s.census().describe();
  idle.expect_served("after the upgrade");
}

// A client that pipelines requests while a reload moves its connection: every response comes, in
// order, none says `Connection: close`, and once the new configuration answers the old never does
// again.
TEST(Handover, PipeliningClientKeepsItsOrderAcrossReloads) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  auto conf = [](int g) {
    return make_runtime_config(std::string(kServer) + "\n[location = /v]\nreturn = 200 g" + std::to_string(g) + "\n",
                               "quit_timeout = 30s\n", 2);
  };
  s.set_config(conf(1));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  int generation = 1;
  int seen = 1;
  for (int round = 0; round < 60; round++) {
    if (round % 15 == 5) {
      generation++;
      s.set_config(conf(generation));
      ASSERT_EQ(s.ctl("reload").exit_code, 0);
    }
    std::string batch;
    for (int i = 0; i < 3; i++) batch += req("GET", "/v", "X-Round: " + std::to_string(round) + "\r\n");
    ASSERT_TRUE(c.send(batch)) << c.error();
    for (int i = 0; i < 3; i++) {
      std::optional<Response> r = c.read_response();
      ASSERT_TRUE(r) << "round " << round << ", response " << i + 1 << ": " << c.error();
      ASSERT_EQ(r->status, 200);
      EXPECT_FALSE(r->connection_close()) << "round " << round;
      ASSERT_EQ(r->body.size(), 2u) << r->body;
      int g = r->body[1] - '0';
      EXPECT_GE(g, seen) << "round " << round << ": an older configuration answered after a newer one";
      seen = std::max(seen, g);
    }
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(seen, generation) << "the connection never reached the newest generation";
}

// A graceful stop hands nothing over: idle connections are closed, and the server exits.
TEST(Handover, QuitDoesNotHandConnectionsOver) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  s.set_config(make_runtime_config(kServer, "", 1));
  ASSERT_TRUE(s.start());
  Idle idle(s.port());
  ASSERT_TRUE(s.signal(SIGQUIT));
  EXPECT_TRUE(idle.c11.is_closed_by_peer(5000ms));
  EXPECT_TRUE(s.wait_exit(5000ms));
  EXPECT_FALSE(contains(s.error_log(), "to the new generation")) << s.error_log();
}

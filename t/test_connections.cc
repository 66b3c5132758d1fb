// A full worker makes room: at worker_connections, connections that have not begun a request
// (silent new ones, idle keep-alive ones) are closed, oldest first, so that clients that send
// nothing cannot shut everyone else out until client_header_timeout. Connections in the middle of a
// request are never closed for room.
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr int kSlots = 16;

class Connections : public ::testing::Test {
 protected:
  void SetUp() override {
    s.write_file("html/a.txt", "a");
    s.set_config(make_config_main("worker_connections = " + std::to_string(kSlots) + "\n",
                                  "[server main]\n"
                                  "listen = 127.0.0.1:@PORT@\n"
                                  "root = html\n",
                                  "keepalive_timeout = 60s\n"
                                  "client_header_timeout = 60s\n",
                                  1));
    ASSERT_TRUE(s.start());
    port = s.port();
  }

  size_t count_in_error_log(std::string_view needle) {
    std::string log = s.error_log();
    size_t n = 0;
    for (size_t pos = log.find(needle); pos != std::string::npos; pos = log.find(needle, pos + 1)) n++;
    return n;
  }

  BatonServer s;
  int port = 0;
};

}  // namespace

TEST_F(Connections, SilentConnectionsDoNotShutOthersOut) {
  std::vector<Client> silent;
  for (int i = 0; i < kSlots * 3; i++) silent.emplace_back(port);
  std::this_thread::sleep_for(300ms);
  // Every slot is taken by a connection that sent nothing; a real client is still served, at once.
  for (int i = 0; i < 5; i++) {
    Client c(port, ClientOptions{.timeout = 3000ms});
    Response r = c.exchange(req("GET", "/a.txt"));
    EXPECT_EQ(r.status, 200) << "client " << i << ": " << c.error();
  }
  // The oldest silent connections were the ones closed.
  EXPECT_TRUE(silent.front().is_closed_by_peer(2000ms));
  // Logged once per episode, not once per connection.
  EXPECT_TRUE(wait_for([&] { return count_in_error_log("worker_connections are not enough") >= 1; }, 2000ms))
      << s.error_log();
  EXPECT_LE(count_in_error_log("worker_connections are not enough"), 3u) << s.error_log();
}

TEST_F(Connections, IdleKeepAliveConnectionsMakeRoom) {
  std::vector<Client> idle;
  for (int i = 0; i < kSlots; i++) {
    idle.emplace_back(port);
    ASSERT_EQ(idle.back().exchange(req("GET", "/a.txt")).status, 200);
  }
  Client c(port, ClientOptions{.timeout = 3000ms});
  Response r = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(r.status, 200) << c.error();
  // The oldest idle one made room; the newest is still usable.
  EXPECT_TRUE(idle.front().is_closed_by_peer(2000ms));
  EXPECT_EQ(idle.back().exchange(req("GET", "/a.txt")).status, 200);
}

TEST_F(Connections, ARequestInProgressIsNeverClosedForRoom) {
  std::vector<Client> busy;
  for (int i = 0; i < kSlots - 1; i++) {
    busy.emplace_back(port);
    ASSERT_TRUE(busy.back().send("GET /a.txt HTTP/1.1\r\n"));
  }
  std::this_thread::sleep_for(200ms);
  // The last slot churns through silent connections; the busy ones keep theirs.
  std::vector<Client> silent;
  for (int i = 0; i < 10; i++) silent.emplace_back(port);
  // Once they are all accepted, a real client is the newest connection and is not the one closed.
  std::this_thread::sleep_for(300ms);
  Client c(port, ClientOptions{.timeout = 3000ms});
  EXPECT_EQ(c.exchange(req("GET", "/a.txt")).status, 200) << c.error();
  for (Client& b : busy) {
    ASSERT_TRUE(b.send("Host: localhost\r\n\r\n"));
    std::optional<Response> r = b.read_response();
    ASSERT_TRUE(r) << b.error();
    EXPECT_EQ(r->status, 200);
  }
}

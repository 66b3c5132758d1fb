// Timeouts that end a connection whose client stops half-way: client_body_timeout between two reads
// of a request body, send_timeout between two writes the client does not take. (The header and
// keep-alive timeouts are in test_keepalive.cc.)
#include <chrono>
#include <string>
#include <thread>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr size_t kBigFile = 8 * 1024 * 1024;
constexpr size_t kSteadyFile = 6 * 1024 * 1024;

class Timeouts : public ::testing::Test {
 protected:
  void start(const std::string& http_extra) {
    s.write_file("html/big.bin", generate_content(kBigFile, 7));
    s.write_file("html/steady.bin", generate_content(kSteadyFile, 8));
    s.set_config(make_config(
        "[server main]\n"
        "listen = 127.0.0.1:@PORT@\n"
        "root = html\n"
        "\n"
        "[location = /ok]\n"
        "return = 200 ok\n",
        http_extra));
    ASSERT_TRUE(s.start());
    port = s.port();
  }

  BatonServer s;
  int port = 0;
};

double seconds_since(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

TEST_F(Timeouts, ClientBodyTimeoutClosesAStalledBody) {
  start("client_body_timeout = 1s\nclient_header_timeout = 30s\nkeepalive_timeout = 30s\n");
  Client c(port);
  ASSERT_TRUE(c.send("POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789"));
  auto since = SteadyClock::now();
  EXPECT_FALSE(c.is_closed_by_peer(500ms)) << "closed after " << seconds_since(since) << " s";
  EXPECT_TRUE(c.is_closed_by_peer(4500ms)) << "still open after " << seconds_since(since) << " s";
  // The answer does not depend on the body and went out at once; the stalled body still ends the
  // connection (nothing else is answered on it).
  EXPECT_TRUE(c.buffer().starts_with("HTTP/1.1 200 OK\r\n")) << c.buffer();
  EXPECT_TRUE(c.buffer().ends_with("\r\n\r\nok")) << c.buffer();
}

TEST_F(Timeouts, ClientBodyTimeoutCountsFromTheLastRead) {
  // Five pieces 600 ms apart take 3 s in all, but no gap reaches the 1 s timeout.
  start("client_body_timeout = 1s\nclient_header_timeout = 30s\n");
  Client c(port);
  ASSERT_TRUE(c.send("POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n"));
  for (int i = 0; i < 5; i++) {
    std::this_thread::sleep_for(600ms);
    ASSERT_TRUE(c.send("ab")) << "piece " << i;
  }
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->body, "ok");
  EXPECT_FALSE(r->connection_close()) << *r;
}

TEST_F(Timeouts, SendTimeoutClosesAClientThatStopsReading) {
  start("send_timeout = 1s\nkeepalive_timeout = 30s\n");
  Client c(port, {.timeout = 5000ms, .rcvbuf = 4096});
  ASSERT_TRUE(c.send("GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  // Not reading: both socket buffers fill, the server's writes stop making progress.
  std::this_thread::sleep_for(3000ms);
  // Reading now drains what was already sent; a server that kept the connection would go on
  // sending the rest of the file and then keep it alive, and this would time out.
  EXPECT_TRUE(c.is_closed_by_peer(5000ms)) << "the stalled connection was not closed";
  EXPECT_GT(c.buffered(), 0u);
  EXPECT_LT(c.buffered(), kBigFile) << "the whole file arrived: no send_timeout happened";
}

TEST_F(Timeouts, SendTimeoutDoesNotCutASlowButSteadyReader) {
  // A reader that takes a little every 100 ms never stops the data, but the server's socket reports
  // free space only every ~2 s (a third of a send buffer of megabytes): longer than send_timeout.
  start("send_timeout = 1s\n");
  Client c(port, {.timeout = 5000ms, .rcvbuf = 65536});
  ASSERT_TRUE(c.send("GET /steady.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
  std::string got;
  auto deadline = SteadyClock::now() + 60s;
  while (SteadyClock::now() < deadline) {
    std::string piece = c.read_some(4 * 1024 * 1024);
    if (piece.empty()) break;
    got += piece;
    std::this_thread::sleep_for(100ms);
  }
  size_t head_end = got.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  EXPECT_EQ(got.size() - head_end - 4, kSteadyFile) << "the download was cut short";
}

}  // namespace

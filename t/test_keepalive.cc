// Persistent connections: HTTP/1.1 and 1.0 keep-alive, pipelining, keepalive_requests,
// keepalive_timeout, client_header_timeout and request bodies on a kept-alive connection.
#include <chrono>
#include <string>
#include <thread>

#include "harness.h"

using namespace baton_test;

namespace {

class KeepAlive : public ::testing::Test {
 protected:
  void start(const std::string& http_extra = "") {
    for (int i = 0; i < 10; i++) {
      std::string n = std::to_string(i);
      s.write_file("html/p" + n + ".txt", "body " + n + "\n");
    }
    s.write_file("html/a.txt", "file a\n");
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

}  // namespace

TEST_F(KeepAlive, ManyRequestsOnOneConnection) {
  start();
  Client c(port);
  for (int i = 0; i < 5; i++) {
    Response r = c.exchange(req("GET", "/p" + std::to_string(i) + ".txt"));
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(r.body, "body " + std::to_string(i) + "\n");
    EXPECT_FALSE(r.connection_close()) << r;
  }
  Response h = c.exchange(req("HEAD", "/a.txt"), true);
  EXPECT_EQ(h.status, 200) << h;
  Response last = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(last.body, "file a\n");
}

TEST_F(KeepAlive, Http10ClosesByDefault) {
  start();
  Client c(port);
  Response r = c.exchange("GET /a.txt HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.version, "HTTP/1.1");
  EXPECT_EQ(r.body, "file a\n");
  EXPECT_FALSE(r.connection_keep_alive()) << r;
  EXPECT_TRUE(c.is_closed_by_peer(2000ms));
}

TEST_F(KeepAlive, Http10WithKeepAlive) {
  start();
  Client c(port);
  Response r = c.exchange("GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_TRUE(r.connection_keep_alive()) << r;
  EXPECT_EQ(r.header("Content-Length"), "7");
  EXPECT_EQ(r.body, "file a\n");
  Response again = c.exchange("GET /p1.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(again.status, 200) << again;
  EXPECT_EQ(again.body, "body 1\n");
  // Without the header the connection ends after the response.
  Response last = c.exchange("GET /p2.txt HTTP/1.0\r\n\r\n");
  EXPECT_EQ(last.body, "body 2\n");
  EXPECT_TRUE(c.is_closed_by_peer(2000ms));
}

TEST_F(KeepAlive, ClientAsksToClose) {
  start();
  Client c(port);
  Response r = c.exchange(req("GET", "/a.txt", "Connection: close\r\n"));
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_TRUE(r.connection_close()) << r;
  EXPECT_TRUE(c.is_closed_by_peer(2000ms));
}

TEST_F(KeepAlive, PipelinedRequestsAnsweredInOrder) {
  start();
  Client c(port);
  std::string batch;
  for (int i = 0; i < 10; i++) {
    if (i == 4)
      batch += req("GET", "/missing.txt");
    else if (i == 6)
      batch += req("HEAD", "/p6.txt");
    else
      batch += req("GET", "/p" + std::to_string(i) + ".txt");
  }
  ASSERT_TRUE(c.send(batch));
  for (int i = 0; i < 10; i++) {
    std::optional<Response> r = c.read_response(i == 6);
    ASSERT_TRUE(r) << "response " << i << ": " << c.error();
    if (i == 4) {
      EXPECT_EQ(r->status, 404) << *r;
    } else if (i == 6) {
      EXPECT_EQ(r->status, 200) << *r;
      EXPECT_EQ(r->header("Content-Length"), "7");
    } else {
      EXPECT_EQ(r->status, 200) << *r;
      EXPECT_EQ(r->body, "body " + std::to_string(i) + "\n") << "response " << i;
    }
  }
  // Still open for more.
  Response after = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(after.body, "file a\n");
}

TEST_F(KeepAlive, PipelinedRequestsInOneWriteEndingWithClose) {
  start();
  Client c(port);
  ASSERT_TRUE(c.send(req("GET", "/p1.txt") + req("GET", "/p2.txt", "Connection: close\r\n") + req("GET", "/p3.txt")));
  std::optional<Response> a = c.read_response();
  std::optional<Response> b = c.read_response();
  ASSERT_TRUE(a && b) << c.error();
  EXPECT_EQ(a->body, "body 1\n");
  EXPECT_EQ(b->body, "body 2\n");
  EXPECT_TRUE(b->connection_close()) << *b;
  // The request after the one that asked to close is not answered.
  EXPECT_EQ(c.read_all_until_close(2000ms), "");
  EXPECT_TRUE(c.is_closed_by_peer(0ms));
}

TEST_F(KeepAlive, RequestSentInSmallPieces) {
  start();
  Client c(port);
  std::string r = req("GET", "/a.txt", "User-Agent: slow-writer\r\n");
  for (size_t i = 0; i < r.size(); i += 3) {
    ASSERT_TRUE(c.send(r.substr(i, 3)));
    std::this_thread::sleep_for(1ms);
  }
  std::optional<Response> resp = c.read_response();
  ASSERT_TRUE(resp) << c.error();
  EXPECT_EQ(resp->status, 200) << *resp;
  EXPECT_EQ(resp->body, "file a\n");
}

TEST_F(KeepAlive, KeepaliveRequestsLimit) {
  start("keepalive_requests = 3\n");
  Client c(port);
  Response r1 = c.exchange(req("GET", "/p1.txt"));
  Response r2 = c.exchange(req("GET", "/p2.txt"));
  Response r3 = c.exchange(req("GET", "/p3.txt"));
  EXPECT_FALSE(r1.connection_close()) << r1;
  EXPECT_FALSE(r2.connection_close()) << r2;
  EXPECT_TRUE(r3.connection_close()) << r3;
  EXPECT_EQ(r3.body, "body 3\n");
  EXPECT_TRUE(c.is_closed_by_peer(2000ms));
}

TEST_F(KeepAlive, KeepaliveTimeoutClosesIdleConnection) {
  start("keepalive_timeout = 1s\n");
  Client c(port);
  Response r = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(r.status, 200) << r;
  auto idle_since = SteadyClock::now();
  EXPECT_FALSE(c.is_closed_by_peer(500ms)) << "closed after " << seconds_since(idle_since) << " s";
  EXPECT_TRUE(c.is_closed_by_peer(4500ms)) << "still open after " << seconds_since(idle_since) << " s";
  EXPECT_EQ(c.buffered(), 0u) << "unexpected data: " << c.buffer();
}

TEST_F(KeepAlive, ActiveConnectionOutlivesKeepaliveTimeout) {
  start("keepalive_timeout = 1s\n");
  Client c(port);
  // Requests every 300 ms keep it alive past the one-second idle limit.
  for (int i = 0; i < 5; i++) {
    Response r = c.exchange(req("GET", "/a.txt"));
    EXPECT_EQ(r.status, 200) << "request " << i << r;
    std::this_thread::sleep_for(300ms);
  }
}

TEST_F(KeepAlive, ClientHeaderTimeoutClosesStalledRequest) {
  start("client_header_timeout = 1s\nkeepalive_timeout = 10s\n");
  Client c(port);
  ASSERT_TRUE(c.send("GET /a.txt HTTP/1.1\r\nHost: localhost\r\nUser-Ag"));
  auto since = SteadyClock::now();
  EXPECT_FALSE(c.is_closed_by_peer(500ms)) << "closed after " << seconds_since(since) << " s";
  EXPECT_TRUE(c.is_closed_by_peer(4500ms)) << "still open after " << seconds_since(since) << " s";
  // Just closed: no 408.
  EXPECT_EQ(c.buffer(), "");
}

TEST_F(KeepAlive, ChunkedRequestBody) {
  start();
  Client c(port);
  Response r = c.exchange(
      req("POST", "/ok", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "ok");
  EXPECT_FALSE(r.connection_close()) << r;
  Response next = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(next.status, 200) << next;
  EXPECT_EQ(next.body, "file a\n");
}

TEST_F(KeepAlive, ChunkedRequestBodyWithExtensionAndTrailer) {
  start();
  Client c(port);
  Response r = c.exchange(
      req("POST", "/ok", "Transfer-Encoding: chunked\r\n", "5;name=value\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n"));
  EXPECT_EQ(r.status, 200) << r;
  Response next = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(next.body, "file a\n");
}

TEST_F(KeepAlive, ChunkedRequestBodyInPieces) {
  start();
  Client c(port);
  ASSERT_TRUE(c.send(req("POST", "/ok", "Transfer-Encoding: chunked\r\n", "5\r\nhel")));
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(c.send("lo\r\n0\r"));
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(c.send("\n\r\n"));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_EQ(r->status, 200) << *r;
  Response next = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(next.body, "file a\n");
}

TEST_F(KeepAlive, ContentLengthRequestBody) {
  start();
  Client c(port);
  Response r = c.exchange(req("POST", "/ok", "Content-Length: 11\r\n", "hello world"));
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "ok");
  Response next = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(next.status, 200) << next;
  EXPECT_EQ(next.body, "file a\n");
}

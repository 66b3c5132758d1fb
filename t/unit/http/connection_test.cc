// Request-level tests of src/http/http_connection.h over a socketpair (conn_fixture.h): requests in
// one write, pipelined, split byte by byte; HEAD; keep-alive and its end; the early answer and the
// discarded body; back-pressure while a large file waits for a client that does not read; malformed
// requests; and how every connection ends (ConnectionList empty, each descriptor closed once).
#include <sys/ioctl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "conn_fixture.h"

namespace baton::http::conntest {
namespace {

constexpr const char* kConf =
    "[server main]\n"
    "listen = 127.0.0.1:8080\n"
    "root = html\n"
    "\n"
    "[location = /ok]\n"
    "return = 200 ok\n";

// Larger than a response that goes out with its head (32 KiB): sent from the file with sendfile.
constexpr size_t kBigSize = 100 * 1024;

class HttpConnectionTest : public ConnFixture {
 protected:
  void SetUp() override {
    big_ = pattern_bytes(kBigSize);
    ASSERT_NO_FATAL_FAILURE(write_file("html/hello.txt", "hello\n"));
    ASSERT_NO_FATAL_FAILURE(write_file("html/a.txt", "file a\n"));
    ASSERT_NO_FATAL_FAILURE(write_file("html/big.bin", big_));
    ASSERT_NO_FATAL_FAILURE(configure(kConf));
  }

  // A GET on the connection is answered: it is still in a state to take requests.
  void expect_usable(TestClient& c) {
    ASSERT_TRUE(c.send(req("GET", "/a.txt")));
    std::optional<Response> r = c.read_response();
    ASSERT_TRUE(r) << "no answer on a connection that should go on";
    EXPECT_EQ(r->status, 200) << *r;
    EXPECT_EQ(r->body, "file a\n");
  }

  std::string big_;
};

TEST_F(HttpConnectionTest, GetInOneWrite) {
  TestClient& c = connect();
  ASSERT_TRUE(c.send(req("GET", "/hello.txt")));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->version, "HTTP/1.1");
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->header("Content-Length"), "6");
  EXPECT_EQ(r->body, "hello\n");
  EXPECT_FALSE(r->connection_close()) << *r;
  EXPECT_EQ(c.buffer(), "");
  EXPECT_EQ(connections(), 1u);  // kept alive
  expect_usable(c);
}

TEST_F(HttpConnectionTest, RequestThatCameWithTheConnectionIsAnsweredAtAccept) {
  // The bytes are there when the connection is born: it is answered and closed inside on_accept,
  // before the loop ever turns.
  TestClient& c = connect(req("GET", "/hello.txt", "Connection: close\r\n"));
  EXPECT_GT(c.unread(), 0u);
  EXPECT_EQ(connections(), 0u);
  EXPECT_EQ(closes_of(c.server_fd()), 1);
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->body, "hello\n");
  EXPECT_TRUE(r->connection_close()) << *r;
  EXPECT_TRUE(c.wait_eof());
  EXPECT_EQ(c.buffer(), "");
}

TEST_F(HttpConnectionTest, PipelinedRequestsAnsweredInOrderInOneRead) {
  TestClient& c = connect();
  ASSERT_TRUE(c.send(req("GET", "/hello.txt") + req("GET", "/ok") + req("HEAD", "/a.txt") + req("GET", "/missing") +
                     req("GET", "/a.txt")));
  // One turn of the loop answers them all: a single read gets every answer.
  std::string got = c.read_once(1 << 20);
  std::vector<Response> rs;
  const bool head[] = {false, false, true, false, false};
  for (bool h : head) {
    Response r;
    std::string err;
    ASSERT_TRUE(parse_response(got, h, false, &r, &err)) << "answer " << rs.size() << " missing: " << err << "\n" << got;
    got.erase(0, r.wire_bytes);
    rs.push_back(std::move(r));
  }
  EXPECT_EQ(got, "") << "more than five answers";
  EXPECT_EQ(rs[0].status, 200);
  EXPECT_EQ(rs[0].body, "hello\n");
  EXPECT_EQ(rs[1].status, 200);
  EXPECT_EQ(rs[1].body, "ok");
  EXPECT_EQ(rs[2].status, 200);
  EXPECT_EQ(rs[2].header("Content-Length"), "7");
  EXPECT_EQ(rs[2].body, "");
  EXPECT_EQ(rs[3].status, 404);
  EXPECT_EQ(rs[4].status, 200);
  EXPECT_EQ(rs[4].body, "file a\n");
  for (const Response& r : rs) EXPECT_FALSE(r.connection_close()) << r;
  EXPECT_EQ(connections(), 1u);
}

// A request pipelined behind one for a file sent with sendfile (over 32 KiB) waits until that file
// is on its way: the answers go out in order, the file whole.
TEST_F(HttpConnectionTest, PipelinedRequestBehindALargeFileWaitsForTheFile) {
  TestClient& c = connect();
  ASSERT_TRUE(c.send(req("GET", "/big.bin") + req("GET", "/hello.txt")));
  std::optional<Response> first = c.read_response();
  ASSERT_TRUE(first) << "received: " << c.buffer().substr(0, 400);
  EXPECT_EQ(first->status, 200) << *first;
  EXPECT_TRUE(same_bytes(first->body, big_));
  std::optional<Response> second = c.read_response();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 200) << *second;
  EXPECT_EQ(second->body, "hello\n");
}

TEST_F(HttpConnectionTest, LargeFileThenRequestInTheNextWrite) {
  // The same two requests one after the other: the file goes out whole, then the next answer.
  TestClient& c = connect();
  ASSERT_TRUE(c.send(req("GET", "/big.bin")));
  std::optional<Response> first = c.read_response();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200) << *first;
  EXPECT_EQ(first->header("Content-Length"), std::to_string(kBigSize));
  EXPECT_TRUE(same_bytes(first->body, big_));
  ASSERT_TRUE(c.send(req("GET", "/hello.txt")));
  std::optional<Response> second = c.read_response();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->body, "hello\n");
}

TEST_F(HttpConnectionTest, RequestSplitByteByByte) {
  TestClient& c = connect();
  for (int round = 0; round < 2; round++) {
    std::string r = req("GET", "/hello.txt", "User-Agent: one-byte-at-a-time\r\nAccept: */*\r\n");
    for (size_t i = 0; i < r.size(); i++) {
      ASSERT_TRUE(c.send(r.substr(i, 1)));
      turn(0ms);
      if (i + 1 < r.size()) {
        ASSERT_EQ(c.unread(), 0u) << "answered after " << i + 1 << " of " << r.size() << " bytes";
      }
    }
    std::optional<Response> resp = c.read_response();
    ASSERT_TRUE(resp) << "round " << round;
    EXPECT_EQ(resp->status, 200) << *resp;
    EXPECT_EQ(resp->body, "hello\n");
    EXPECT_FALSE(resp->connection_close());
  }
  EXPECT_EQ(connections(), 1u);
}

TEST_F(HttpConnectionTest, HeadHasNoBody) {
  TestClient& c = connect();
  ASSERT_TRUE(c.send(req("HEAD", "/hello.txt")));
  std::optional<Response> r = c.read_response(true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->header("Content-Length"), "6");
  // A file sent with sendfile too: the head only.
  ASSERT_TRUE(c.send(req("HEAD", "/big.bin")));
  r = c.read_response(true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->header("Content-Length"), std::to_string(kBigSize));
  // Nothing followed the heads: the next answer starts where they ended.
  expect_usable(c);
  EXPECT_EQ(c.buffer(), "");
}

TEST_F(HttpConnectionTest, KeepAliveThenCloseOnConnectionClose) {
  TestClient& c = connect();
  ASSERT_TRUE(c.send(req("GET", "/hello.txt")));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->connection_close()) << *r;
  EXPECT_EQ(connections(), 1u);

  ASSERT_TRUE(c.send(req("GET", "/a.txt", "Connection: close\r\n")));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->body, "file a\n");
  EXPECT_TRUE(r->connection_close()) << *r;
  // The request was read to its end: the server closes at once, without lingering.
  EXPECT_TRUE(c.wait_eof());
  EXPECT_EQ(c.buffer(), "");
  EXPECT_EQ(connections(), 0u);
  EXPECT_EQ(closes_of(c.server_fd()), 1);
}

TEST_F(HttpConnectionTest, Http10ClosesAfterTheAnswer) {
  TestClient& c = connect();
  ASSERT_TRUE(c.send("GET /hello.txt HTTP/1.0\r\n\r\n"));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->body, "hello\n");
  EXPECT_TRUE(c.wait_eof());
  EXPECT_EQ(connections(), 0u);
}

TEST_F(HttpConnectionTest, EarlyAnswerToAPostOnAStaticFileThenTheBodyIsDiscarded) {
  TestClient& c = connect();
  const size_t kBody = 1024 * 1024;  // client_max_body_size's default, all of it
  ASSERT_TRUE(c.send("POST /hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + std::to_string(kBody) +
                     "\r\n\r\n"));
  // Not a byte of the body sent yet: the answer does not wait for it.
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << "no answer before the body";
  EXPECT_EQ(r->status, 405) << *r;
  EXPECT_EQ(r->header("Allow"), "GET, HEAD");
  EXPECT_FALSE(r->connection_close()) << *r;
  // The body (many times what the socket holds: the server reads it while the client writes),
  // then the next request in the same stream.
  ASSERT_TRUE(c.send(std::string(kBody, 'b') + req("GET", "/hello.txt")));
  r = c.read_response();
  ASSERT_TRUE(r) << "the request after the body was not answered";
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->body, "hello\n");
  EXPECT_EQ(c.buffer(), "") << "answered something out of the body";
  EXPECT_EQ(connections(), 1u);
}

TEST_F(HttpConnectionTest, EarlyAnswerOfAReturnThenAChunkedBodyIsDiscarded) {
  TestClient& c = connect();
  ASSERT_TRUE(c.send("POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << "no answer before the body";
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->body, "ok");
  std::string body;
  for (int i = 0; i < 15; i++) body += "10000\r\n" + std::string(0x10000, 'c') + "\r\n";  // 15 x 64 KiB
  body += "0\r\n\r\n";
  ASSERT_TRUE(c.send(body + req("GET", "/a.txt")));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->body, "file a\n");
  EXPECT_EQ(connections(), 1u);
}

TEST_F(HttpConnectionTest, BodyBeyondTheLimitEndsTheConnectionAfterTheEarlyAnswer) {
  // The 405 is out before the body; past client_max_body_size the body ends the connection, and
  // the request behind it is not answered.
  TestClient& c = connect();
  ASSERT_TRUE(c.send("POST /hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405) << *r;
  std::string body;
  for (int i = 0; i < 17; i++) body += "10000\r\n" + std::string(0x10000, 'c') + "\r\n";  // 17 x 64 KiB > 1 MiB
  body += "0\r\n\r\n" + req("GET", "/a.txt");
  c.send(body);  // the server may stop reading before the end
  EXPECT_TRUE(c.wait_eof());
  EXPECT_EQ(c.buffer(), "") << "answered after the body went over the limit";
}

TEST_F(HttpConnectionTest, ClientThatOnlyShutsItsSendingSideGetsItsAnswer) {
  TestClient& c = connect();
  ASSERT_TRUE(c.send(req("GET", "/big.bin")));
  c.shutdown_write();
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_TRUE(same_bytes(r->body, big_));
  EXPECT_TRUE(c.wait_eof());
  EXPECT_EQ(connections(), 0u);
}

TEST_F(HttpConnectionTest, EveryDescriptorClosedOnceAndNoConnectionLeft) {
  // Connections in every state a client can leave them in, then all the clients go.
  ASSERT_NO_FATAL_FAILURE(write_file("html/large.bin", pattern_bytes(1024 * 1024)));

  TestClient& idle = connect();
  ASSERT_TRUE(idle.send(req("GET", "/hello.txt")));
  ASSERT_TRUE(idle.read_response());

  TestClient& half_head = connect();
  ASSERT_TRUE(half_head.send("GET /hello.txt HTTP/1.1\r\nHost: loc"));

  TestClient& in_body = connect();
  ASSERT_TRUE(in_body.send("POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\nxyz"));
  ASSERT_TRUE(in_body.read_response());

  // An answer the socket cannot hold, and a request waiting behind it.
  TestClient& not_reading = connect();
  ASSERT_TRUE(not_reading.send(req("GET", "/large.bin")));
  for (int i = 0; i < 3; i++) turn(1ms);
  ASSERT_TRUE(not_reading.send(req("GET", "/a.txt")));

  // Refused with bytes behind the request: the server has shut its side and reads what still comes.
  TestClient& lingering = connect();
  ASSERT_TRUE(lingering.send("GET /hello.txt HTTP/2.0\r\nHost: localhost\r\n\r\n" + req("GET", "/a.txt")));
  ASSERT_TRUE(lingering.wait_eof());

  TestClient& closed_by_server = connect();
  ASSERT_TRUE(closed_by_server.send(req("GET", "/a.txt", "Connection: close\r\n")));
  ASSERT_TRUE(closed_by_server.wait_eof());

  for (int i = 0; i < 5; i++) turn(1ms);
  EXPECT_EQ(connections(), 5u);
  EXPECT_EQ(closes_of(closed_by_server.server_fd()), 1);
  for (TestClient* c : {&idle, &half_head, &in_body, &not_reading, &lingering})
    EXPECT_EQ(closes_of(c->server_fd()), 0) << "fd " << c->server_fd();
  close_clients_and_check();
  EXPECT_EQ(connections(), 0u);
}

// ---- back-pressure ------------------------------------------------------------------------------

constexpr size_t kHugeSize = 8 * 1024 * 1024;

class HttpConnectionBackPressure : public ConnFixture {
 protected:
  void SetUp() override {
    huge_ = pattern_bytes(kHugeSize, 7);
    ASSERT_NO_FATAL_FAILURE(write_file("html/hello.txt", "hello\n"));
    ASSERT_NO_FATAL_FAILURE(write_file("html/huge.bin", huge_));
    ASSERT_NO_FATAL_FAILURE(configure(kConf));
  }

  // Turns the loop until the server has written all the socket takes: what the client has not
  // read stops growing.
  void until_the_server_stalls(TestClient& c) {
    size_t last = SIZE_MAX;
    int same = 0;
    auto deadline = std::chrono::steady_clock::now() + 2000ms;
    while (same < 5 && std::chrono::steady_clock::now() < deadline) {
      turn(2ms);
      size_t now = c.unread();
      same = now == last && now > 0 ? same + 1 : 0;
      last = now;
    }
    ASSERT_EQ(same, 5) << "the server kept writing (or wrote nothing): " << c.unread() << " bytes unread";
  }

  std::string huge_;
};

TEST_F(HttpConnectionBackPressure, LargeFileToAClientThatDoesNotReadStaysAFile) {
  TestClient& c = connect();
  // One request first, so that what a connection allocates once is allocated before measuring.
  ASSERT_TRUE(c.send(req("GET", "/hello.txt")));
  ASSERT_TRUE(c.read_response());
  size_t rss_before = resident_bytes();
  size_t heap_before = heap_in_use();

  ASSERT_TRUE(c.send(req("GET", "/huge.bin")));
  ASSERT_NO_FATAL_FAILURE(until_the_server_stalls(c));
  // The server stopped at what the socket holds and waits; the rest of the file is not copied
  // anywhere: neither the process's resident memory nor its heap grew by anything like its size.
  size_t in_socket = c.unread();
  EXPECT_LT(in_socket, kHugeSize / 4);
  EXPECT_EQ(connections(), 1u);
  size_t rss_after = resident_bytes();
  size_t heap_after = heap_in_use();
  EXPECT_LT(rss_after > rss_before ? rss_after - rss_before : 0, kHugeSize / 4)
      << "resident memory grew from " << rss_before << " to " << rss_after;
  EXPECT_LT(heap_after > heap_before ? heap_after - heap_before : 0, size_t{1024 * 1024})
      << "the heap grew from " << heap_before << " to " << heap_after;

  // Reading now brings the whole file, byte for byte, and the connection goes on.
  std::optional<Response> r = c.read_response(false, 5000ms);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_TRUE(same_bytes(r->body, huge_));
  ASSERT_TRUE(c.send(req("GET", "/hello.txt")));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "hello\n");
}

TEST_F(HttpConnectionBackPressure, NoRequestIsReadWhileAnAnswerWaits) {
  // Requests behind a stalled answer stay in the socket: the server takes no more input than it can
  // answer, and answers them in order once the client reads.
  TestClient& c = connect();
  ASSERT_TRUE(c.send(req("GET", "/huge.bin")));
  ASSERT_NO_FATAL_FAILURE(until_the_server_stalls(c));
  std::string more;
  for (int i = 0; i < 3; i++) more += req("GET", "/hello.txt");
  ASSERT_TRUE(c.send(more));
  for (int i = 0; i < 5; i++) turn(1ms);
  // What the server has not read of its socket.
  int unread_by_server = 0;
  ASSERT_EQ(ioctl(c.server_fd(), FIONREAD, &unread_by_server), 0);
  EXPECT_EQ(static_cast<size_t>(unread_by_server), more.size()) << "the server read requests while its answer waited";
  std::optional<Response> r = c.read_response(false, 5000ms);
  ASSERT_TRUE(r);
  EXPECT_TRUE(same_bytes(r->body, huge_));
  for (int i = 0; i < 3; i++) {
    r = c.read_response();
    ASSERT_TRUE(r) << "answer " << i;
    EXPECT_EQ(r->body, "hello\n");
  }
}

TEST_F(HttpConnectionBackPressure, ClientThatGoesAwayWhileTheServerWaits) {
  TestClient& c = connect();
  ASSERT_TRUE(c.send(req("GET", "/huge.bin")));
  ASSERT_NO_FATAL_FAILURE(until_the_server_stalls(c));
  EXPECT_EQ(closes_of(c.server_fd()), 0);
  close_clients_and_check();
}

// ---- malformed requests -------------------------------------------------------------------------

struct BadRequest {
  const char* name;
  std::string raw;
  int status;
};

std::ostream& operator<<(std::ostream& os, const BadRequest& b) { return os << b.name; }

class Malformed : public ConnFixture, public ::testing::WithParamInterface<BadRequest> {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(write_file("html/hello.txt", "hello\n"));
    ASSERT_NO_FATAL_FAILURE(configure(kConf));
  }
};

// Cross-checks of t/test_malformed.cc at this level: the error page, Connection: close, nothing
// answered after it (not even the request pipelined behind), and the end of the connection.
TEST_P(Malformed, AnsweredAndClosed) {
  const BadRequest& b = GetParam();
  TestClient& c = connect();
  c.send(b.raw + req("GET", "/hello.txt"));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << "no answer";
  EXPECT_EQ(r->status, b.status) << *r;
  EXPECT_EQ(r->header("Content-Type"), "text/html") << *r;
  EXPECT_TRUE(r->connection_close()) << *r;
  EXPECT_TRUE(c.wait_eof()) << "the server did not end the connection";
  EXPECT_EQ(c.buffer(), "") << "data after the error answer";
}

const std::string kGetHead = "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n";

INSTANTIATE_TEST_SUITE_P(
    HttpConnection, Malformed,
    ::testing::Values(
        BadRequest{"BareLf", "GET /hello.txt HTTP/1.1\nHost: localhost\n\n", 400},
        BadRequest{"ObsFold", kGetHead + "X-Long: part one\r\n part two\r\n\r\n", 400},
        BadRequest{"ControlCharacter", kGetHead + "X-A: a\x01z\r\n\r\n", 400},
        BadRequest{"SpaceBeforeColon", kGetHead + "X-A : b\r\n\r\n", 400},
        BadRequest{"MissingHost", "GET /hello.txt HTTP/1.1\r\nUser-Agent: t\r\n\r\n", 400},
        BadRequest{"TwoHosts", kGetHead + "Host: other\r\n\r\n", 400},
        BadRequest{"ContentLengthAndChunked",
                   "POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "0\r\n\r\n",
                   400},
        BadRequest{"TwoContentLengths",
                   "POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
        BadRequest{"TransferEncodingGzip", "POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n",
                   400},
        BadRequest{"NoVersion", "GET /hello.txt\r\nHost: localhost\r\n\r\n", 400},
        BadRequest{"Http2", "GET /hello.txt HTTP/2.0\r\nHost: localhost\r\n\r\n", 505},
        BadRequest{"UnknownMethod", "BREW /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n", 501},
        BadRequest{"Connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405},
        BadRequest{"UriTooLong", "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: localhost\r\n\r\n", 414},
        BadRequest{"HeaderTooLarge", kGetHead + "X-Big: " + std::string(9000, 'b') + "\r\n\r\n", 431},
        BadRequest{"BodyOverLimit", "POST /hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n\r\n",
                   413},
        BadRequest{"UnknownExpectation", kGetHead + "Expect: something\r\n\r\n", 417}),
    [](const ::testing::TestParamInfo<BadRequest>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace baton::http::conntest

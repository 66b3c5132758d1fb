// Malformed and unacceptable requests: 400, 405, 413, 414, 417, 431, 501, 505, 100-continue.
// Where the framing cannot be trusted the response says `Connection: close`, nothing else is
// answered on the connection (not even a request pipelined behind) and the server closes it.
#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

class Malformed : public ::testing::Test {
 protected:
  void SetUp() override {
    s.write_file("html/hello.txt", "hello\n");
    s.set_config(make_config(
        "[server main]\n"
        "listen = 127.0.0.1:@PORT@\n"
        "root = html\n"
        "\n"
        "[location = /ok]\n"
        "return = 200 ok\n",
        "client_header_buffer_size = 1k\n"
        "client_max_body_size = 1k\n"));
    ASSERT_TRUE(s.start());
    port = s.port();
  }

  // Sends `raw` on a new connection; expects one error page `code reason` with Connection: close,
  // then the end of the connection with nothing more.
  void expect_rejected(const std::string& raw, int code, const char* reason) {
    Client c(port);
    ASSERT_TRUE(c.send(raw)) << c.error();
    std::optional<Response> r = c.read_response();
    ASSERT_TRUE(r) << "no response: " << c.error();
    EXPECT_TRUE(is_error_page(*r, code, reason));
    EXPECT_TRUE(has_standard_headers(*r));
    EXPECT_TRUE(r->connection_close()) << *r;
    std::string rest = c.read_all_until_close(2000ms);
    EXPECT_TRUE(c.is_closed_by_peer(0ms)) << "the server did not close the connection";
    EXPECT_TRUE(rest.empty()) << "data after the error response: " << rest.substr(0, 200);
  }

  // The connection is still usable: a GET on it is answered.
  void expect_usable(Client& c) {
    Response r = c.exchange(req("GET", "/hello.txt"));
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(r.body, "hello\n");
  }

  BatonServer s;
  int port = 0;
};

const char* kFollowUp = "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";

}  // namespace

TEST_F(Malformed, BareLfLineEndings) {
  expect_rejected("GET /hello.txt HTTP/1.1\nHost: localhost\n\n", 400, "Bad Request");
}

// The blank line that ends a head is CRLF too: a bare LF there (or after a request line without
// headers) would let a front end and this server disagree on where a request ends.
TEST_F(Malformed, BareLfEndingTheHead) {
  expect_rejected("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\n" + std::string(kFollowUp), 400, "Bad Request");
  expect_rejected("GET /hello.txt HTTP/1.0\n\n", 400, "Bad Request");
  expect_rejected("GET /hello.txt HTTP/1.0\r\n\n", 400, "Bad Request");
}

// An empty Transfer-Encoding is a Transfer-Encoding: with a Content-Length, the request is refused.
TEST_F(Malformed, EmptyTransferEncodingWithContentLength) {
  expect_rejected("POST /hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding:\r\nContent-Length: 3\r\n\r\nabc" +
                      std::string(kFollowUp),
                  400, "Bad Request");
  expect_rejected("POST /hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding:   \r\nContent-Length: 3\r\n\r\nabc",
                  400, "Bad Request");
}

// The chunked body's last line ends with CRLF too.
TEST_F(Malformed, BareLfEndingAChunkedBody) {
  Client c(port);
  ASSERT_TRUE(c.send("POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n" +
                     std::string(kFollowUp)));
  std::string all = c.read_all_until_close(3000ms);
  EXPECT_TRUE(c.is_closed_by_peer(0ms));
  EXPECT_FALSE(contains(all, "hello\n")) << "the request behind the bare LF was answered: " << all.substr(0, 400);
}

// An error answered to HEAD has no body either (RFC 9110 9.3.2).
TEST_F(Malformed, ErrorAnswerToHeadHasNoBody) {
  Client c(port);
  ASSERT_TRUE(c.send("HEAD /hello.txt HTTP/1.1\r\nHost: localhost\r\nExpect: foo\r\n\r\n"));
  std::string all = c.read_all_until_close(3000ms);
  size_t head_end = all.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << all;
  EXPECT_TRUE(all.starts_with("HTTP/1.1 417 ")) << all;
  EXPECT_EQ(all.size(), head_end + 4) << "a body after the head: " << all.substr(head_end + 4, 200);
}

TEST_F(Malformed, BareLfInOneHeaderLine) {
  expect_rejected("GET /hello.txt HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n", 400, "Bad Request");
}

TEST_F(Malformed, ObsFold) {
  expect_rejected("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Long: part one\r\n part two\r\n\r\n", 400,
                  "Bad Request");
}

TEST_F(Malformed, ObsFoldWithTab) {
  expect_rejected("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Long: part one\r\n\tpart two\r\n\r\n", 400,
                  "Bad Request");
}

TEST_F(Malformed, ControlCharacterInHeaderValue) {
  expect_rejected("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: a\x01z\r\n\r\n", 400, "Bad Request");
}

TEST_F(Malformed, DelInHeaderValue) {
  expect_rejected("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: a\x7fz\r\n\r\n", 400, "Bad Request");
}

TEST_F(Malformed, ControlCharacterAtEveryOffset) {
  // The head is checked several bytes at a time: a bad byte is found wherever it falls in a word,
  // and plain bytes around line ends never are.
  for (char bad : {'\x01', '\x1f', '\x7f', '\0'}) {
    for (size_t at = 0; at < 17; at++) {
      std::string value = "abcdefghijklmnopqrstuvwxyz";
      value[at] = bad;
      SCOPED_TRACE("byte " + std::to_string(static_cast<unsigned char>(bad)) + " at " + std::to_string(at));
      expect_rejected("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: " + value + "\r\n\r\n", 400,
                      "Bad Request");
    }
  }
  Client c(port);
  Response r = c.exchange("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Obs-Text: caf\xc3\xa9 \xff\x80\r\n"
                          "X-Tab: a\tb\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r;
}

TEST_F(Malformed, NulInHeaderValue) {
  static const char raw[] = "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: a\0z\r\n\r\n";
  expect_rejected(std::string(raw, sizeof raw - 1), 400, "Bad Request");
}

TEST_F(Malformed, ContentLengthAndTransferEncoding) {
  // A request smuggled behind must not be answered.
  expect_rejected(
      "POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n" +
          std::string(kFollowUp),
      400, "Bad Request");
}

TEST_F(Malformed, TwoEqualContentLengths) {
  expect_rejected("POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc" +
                      std::string(kFollowUp),
                  400, "Bad Request");
}

TEST_F(Malformed, TwoDifferentContentLengths) {
  expect_rejected("POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                  400, "Bad Request");
}

TEST_F(Malformed, NonNumericContentLength) {
  expect_rejected("POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n", 400, "Bad Request");
}

TEST_F(Malformed, NegativeContentLength) {
  expect_rejected("POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n", 400, "Bad Request");
}

TEST_F(Malformed, MissingHostInHttp11) {
  expect_rejected("GET /hello.txt HTTP/1.1\r\nUser-Agent: t\r\n\r\n", 400, "Bad Request");
}

TEST_F(Malformed, MissingHostInHttp10IsFine) {
  Client c(port);
  Response r = c.exchange("GET /hello.txt HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "hello\n");
}

TEST_F(Malformed, TwoHostHeaders) {
  expect_rejected("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nHost: other\r\n\r\n", 400, "Bad Request");
}

TEST_F(Malformed, SpaceBeforeColon) {
  expect_rejected("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A : b\r\n\r\n", 400, "Bad Request");
}

TEST_F(Malformed, SpaceInHeaderName) {
  expect_rejected("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX A: b\r\n\r\n", 400, "Bad Request");
}

TEST_F(Malformed, GarbageProtocol) {
  expect_rejected("GET /hello.txt HTTX/1.1\r\nHost: localhost\r\n\r\n", 400, "Bad Request");
}

TEST_F(Malformed, Http2VersionInRequestLine) {
  expect_rejected("GET /hello.txt HTTP/2.0\r\nHost: localhost\r\n\r\n", 505, "HTTP Version Not Supported");
}

TEST_F(Malformed, Http3VersionInRequestLine) {
  expect_rejected("GET /hello.txt HTTP/3.0\r\nHost: localhost\r\n\r\n", 505, "HTTP Version Not Supported");
}

TEST_F(Malformed, UnknownMethod) {
  expect_rejected("BREW /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n", 501, "Not Implemented");
}

TEST_F(Malformed, TransferEncodingGzip) {
  // RFC 9112 6.3: chunked is not the final coding, so the body's length cannot be known: 400.
  expect_rejected("POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
                  "Bad Request");
}

TEST_F(Malformed, TransferEncodingChunkedNotLast) {
  expect_rejected("POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                  "0\r\n\r\n" + std::string(kFollowUp),
                  400, "Bad Request");
}

TEST_F(Malformed, TransferEncodingCodingBeforeChunked) {
  // Only "chunked" alone is accepted: no other transfer coding is implemented.
  expect_rejected("POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                  "0\r\n\r\n" + std::string(kFollowUp),
                  400, "Bad Request");
}

TEST_F(Malformed, TransferEncodingOnTwoLinesIsOneList) {
  // "gzip" then "chunked" on two lines is the list "gzip, chunked" (RFC 9110 5.3): refused as the
  // one-line form is, never decoded as plain chunked.
  expect_rejected("POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + std::string(kFollowUp),
                  400, "Bad Request");
}

TEST_F(Malformed, TransferEncodingChunkedTwice) {
  expect_rejected("POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n0\r\n\r\n" + std::string(kFollowUp),
                  400, "Bad Request");
}

TEST_F(Malformed, TransferEncodingChunkedWithTab) {
  // llhttp does not read "chunked<TAB>" as chunked; a reader that trims it would. One answer, 400,
  // and the body is never taken for a second request.
  expect_rejected("POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\t\r\n\r\n"
                  "0\r\n\r\n" + std::string(kFollowUp),
                  400, "Bad Request");
}

TEST_F(Malformed, RequestLineWithoutVersion) {
  expect_rejected("GET /hello.txt\r\nHost: localhost\r\n\r\n", 400, "Bad Request");
}

TEST_F(Malformed, RequestLineWithoutVersionAnsweredAtOnce) {
  // Nothing follows the line: the answer must not wait for client_header_timeout (60 s here).
  Client c(port, ClientOptions{.timeout = 3000ms});
  ASSERT_TRUE(c.send("GET /\r\n"));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << "no answer within 3 s: " << c.error();
  EXPECT_TRUE(is_error_page(*r, 400, "Bad Request"));
  EXPECT_TRUE(c.is_closed_by_peer(2000ms));
}

TEST_F(Malformed, UpgradeH2cIsDeclinedAndTheConnectionGoesOn) {
  // curl --http2 on http:// asks for h2c; the answer is HTTP/1.1 and the connection stays usable.
  Client c(port);
  Response r = c.exchange(req("GET", "/hello.txt",
                              "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                              "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"));
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.version, "HTTP/1.1");
  EXPECT_EQ(r.body, "hello\n");
  expect_usable(c);
  expect_usable(c);
}

TEST_F(Malformed, UpgradeWebSocketDeclinedPipelined) {
  Client c(port);
  ASSERT_TRUE(c.send(req("GET", "/hello.txt",
                         "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") +
                     kFollowUp));
  for (int i = 0; i < 2; i++) {
    std::optional<Response> r = c.read_response();
    ASSERT_TRUE(r) << "response " << i << ": " << c.error();
    EXPECT_EQ(r->status, 200) << *r;
    EXPECT_EQ(r->body, "hello\n");
  }
}

TEST_F(Malformed, ConnectIsRefusedWithAllow) {
  Client c(port);
  ASSERT_TRUE(c.send("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01garbage"));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_TRUE(is_error_page(*r, 405, "Method Not Allowed"));
  EXPECT_EQ(r->header("Allow"), "GET, HEAD") << *r;
  EXPECT_TRUE(r->connection_close()) << *r;
  EXPECT_TRUE(c.is_closed_by_peer(3000ms));
  EXPECT_EQ(c.buffered(), 0u) << c.buffer();
}

TEST_F(Malformed, AnswerDoesNotWaitForTheBody) {
  // The answer to a `return` does not depend on the body: it comes before the body is sent, the
  // body is then read and discarded, and the connection goes on.
  Client c(port, ClientOptions{.timeout = 3000ms});
  ASSERT_TRUE(c.send("POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n" +
                     std::string(10, 'x')));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << "no answer before the body: " << c.error();
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->body, "ok");
  EXPECT_FALSE(r->connection_close()) << *r;
  ASSERT_TRUE(c.send(std::string(990, 'x')));
  expect_usable(c);
}

TEST_F(Malformed, ChunkSizeBeyondTheLimitEndsTheConnectionAtOnce) {
  // 0xffffffff bytes announced against client_max_body_size = 1k: refused when the size is read,
  // not after client_body_timeout (60 s) or after the bytes.
  Client c(port, ClientOptions{.timeout = 3000ms});
  ASSERT_TRUE(c.send("POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "ffffffff\r\nabc"));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_TRUE(c.is_closed_by_peer(3000ms)) << "the connection was kept open";
}

TEST_F(Malformed, RequestLineTooLong) {
  expect_rejected("GET /" + std::string(2000, 'a') + " HTTP/1.1\r\nHost: localhost\r\n\r\n", 414, "URI Too Long");
}

TEST_F(Malformed, HeadersTooLarge) {
  std::string raw = "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n";
  for (int i = 0; i < 20; i++) raw += "X-Pad-" + std::to_string(i) + ": " + std::string(100, 'p') + "\r\n";
  raw += "\r\n";
  expect_rejected(raw, 431, "Request Header Fields Too Large");
}

TEST_F(Malformed, OneHugeHeader) {
  expect_rejected("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Big: " + std::string(3000, 'b') + "\r\n\r\n", 431,
                  "Request Header Fields Too Large");
}

TEST_F(Malformed, HeadersJustUnderLimitAccepted) {
  std::string raw = "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + std::string(700, 'p') + "\r\n\r\n";
  Client c(port);
  Response r = c.exchange(raw);
  EXPECT_EQ(r.status, 200) << r;
}

TEST_F(Malformed, BodyOverLimitByContentLength) {
  expect_rejected("POST /hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n", 413,
                  "Content Too Large");
}

TEST_F(Malformed, BodyOverLimitChunked) {
  // The 405 does not depend on the body and goes out at once; the body is discarded up to
  // client_max_body_size, and past it the connection ends: nothing more is answered on it.
  Client c(port);
  std::string chunk(600, 'c');
  std::string raw = "POST /hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; i++) raw += "258\r\n" + chunk + "\r\n";  // 0x258 = 600
  raw += "0\r\n\r\n";
  raw += kFollowUp;
  c.send(raw);  // the server may stop reading early
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_TRUE(is_error_page(*r, 405, "Method Not Allowed"));
  std::string rest = c.read_all_until_close(3000ms);
  EXPECT_TRUE(c.is_closed_by_peer(0ms)) << "the server did not close the connection";
  EXPECT_TRUE(rest.empty()) << "answered after the body went over the limit: " << rest.substr(0, 200);
}

TEST_F(Malformed, ExpectContinue) {
  Client c(port);
  ASSERT_TRUE(c.send("POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  std::optional<Response> interim = c.read_response();
  ASSERT_TRUE(interim) << c.error();
  EXPECT_EQ(interim->status, 100) << *interim;
  EXPECT_EQ(interim->reason, "Continue");
  ASSERT_TRUE(c.send("hello"));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_EQ(r->status, 200) << *r;
  EXPECT_EQ(r->body, "ok");
  expect_usable(c);
}

TEST_F(Malformed, ExpectContinueOverLimitGets413Directly) {
  Client c(port);
  ASSERT_TRUE(
      c.send("POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_TRUE(is_error_page(*r, 413, "Content Too Large"));
}

TEST_F(Malformed, UnknownExpectation) {
  Client c(port);
  Response r = c.exchange("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nExpect: teapot\r\n\r\n");
  EXPECT_TRUE(is_error_page(r, 417, "Expectation Failed"));
  EXPECT_TRUE(has_standard_headers(r));
}

TEST_F(Malformed, PostOnStaticFile) {
  Client c(port);
  Response r = c.exchange(req("POST", "/hello.txt", "Content-Length: 5\r\n", "hello"));
  EXPECT_TRUE(is_error_page(r, 405, "Method Not Allowed"));
  EXPECT_EQ(r.header("Allow"), "GET, HEAD") << r;
  // The small body was read and discarded: the connection goes on.
  EXPECT_FALSE(r.connection_close()) << r;
  expect_usable(c);
}

TEST_F(Malformed, PutAndDeleteOnStaticFile) {
  Client c(port);
  Response put = c.exchange(req("PUT", "/hello.txt", "Content-Length: 3\r\n", "abc"));
  EXPECT_TRUE(is_error_page(put, 405, "Method Not Allowed"));
  EXPECT_EQ(put.header("Allow"), "GET, HEAD");
  Response del = c.exchange(req("DELETE", "/hello.txt"));
  EXPECT_TRUE(is_error_page(del, 405, "Method Not Allowed"));
  EXPECT_EQ(del.header("Allow"), "GET, HEAD");
  expect_usable(c);
  EXPECT_EQ(read_file(s.path("html/hello.txt")), "hello\n");
}

TEST_F(Malformed, PostWithChunkedBodyOnStaticFile) {
  Client c(port);
  Response r = c.exchange(req("POST", "/hello.txt", "Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n0\r\n\r\n"));
  EXPECT_TRUE(is_error_page(r, 405, "Method Not Allowed"));
  EXPECT_EQ(r.header("Allow"), "GET, HEAD");
  expect_usable(c);
}

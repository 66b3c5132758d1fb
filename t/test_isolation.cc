// A request owns its data: nothing about one client appears in another client's answer or log
// line, whatever the order in which their bytes arrive on one worker.
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

class Isolation : public ::testing::Test {
 protected:
  void SetUp() override {
    s.write_generated("html/1k.txt", 1024);
    s.write_generated("html/big.bin", 4 << 20);
    s.set_config(make_config(
        "[server main]\n"
        "listen = 127.0.0.1:@PORT@\n"
        "root = html\n",
        "client_max_body_size = 1k\n"));
    ASSERT_TRUE(s.start());
    port = s.port();
  }

  // The access log's lines (waits until it has at least `n`).
  std::vector<std::string> log_lines(size_t n) {
    std::vector<std::string> lines;
    wait_for(
        [&] {
          lines = split_lines(s.access_log());
          return lines.size() >= n;
        },
        5000ms);
    return lines;
  }

  static std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      out.push_back(text.substr(pos, nl - pos));
      pos = nl + 1;
    }
    return out;
  }

  BatonServer s;
  int port = 0;
};

}  // namespace

TEST_F(Isolation, ABrokenBodyIsLoggedAsItsOwnRequest) {
  // The reproduction of a use-after-free: A's head is read and answered, B's request is parsed by
  // the same worker, then A's body breaks. A's log line must be A's request, never B's URL.
  Client a(port);
  ASSERT_TRUE(a.send("POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"));
  std::optional<Response> ra = a.read_response();
  ASSERT_TRUE(ra) << a.error();
  EXPECT_EQ(ra->status, 405) << *ra;

  Client b(port);
  Response rb = b.exchange(req("GET", "/1k.txt?token=SECRET"));
  EXPECT_EQ(rb.status, 200) << rb;

  ASSERT_TRUE(a.send("zz\r\n"));
  EXPECT_TRUE(a.is_closed_by_peer(3000ms));
  std::string rest = a.buffer();
  EXPECT_EQ(rest.find("SECRET"), std::string::npos) << rest;

  std::vector<std::string> lines = log_lines(2);
  ASSERT_EQ(lines.size(), 2u) << s.access_log();
  int secret_lines = 0;
  for (const std::string& line : lines) {
    if (line.find("SECRET") != std::string::npos) {
      secret_lines++;
      EXPECT_NE(line.find("\"GET /1k.txt?token=SECRET HTTP/1.1\" 200"), std::string::npos) << line;
    } else {
      EXPECT_NE(line.find("\"POST /x HTTP/1.1\" 405"), std::string::npos) << line;
    }
  }
  EXPECT_EQ(secret_lines, 1) << s.access_log();
}

TEST_F(Isolation, ASlowDownloadIsLoggedAsItsOwnRequest) {
  // A's file response outlives many other requests parsed by the same worker; its log line, written
  // at its end, names A's request and A's user agent.
  Client a(port, ClientOptions{.timeout = 10000ms, .rcvbuf = 4096});
  ASSERT_TRUE(a.send("GET /big.bin?who=A HTTP/1.1\r\nHost: localhost\r\nUser-Agent: agent-A\r\n"
                     "Referer: http://a.test/\r\n\r\n"));
  // A's head is parsed and its file begins to go out; B's requests follow on the same worker.
  std::this_thread::sleep_for(200ms);
  for (int i = 0; i < 50; i++) {
    Response r = get(port, "/1k.txt?who=B" + std::to_string(i), "User-Agent: agent-B\r\nReferer: http://b.test/\r\n");
    ASSERT_EQ(r.status, 200) << r;
  }
  std::optional<Response> ra = a.read_response();
  ASSERT_TRUE(ra) << a.error();
  EXPECT_EQ(ra->status, 200);
  std::vector<std::string> lines = log_lines(51);
  ASSERT_EQ(lines.size(), 51u);
  int a_lines = 0;
  for (const std::string& line : lines) {
    bool is_a = line.find("/big.bin") != std::string::npos;
    if (!is_a) {
      EXPECT_NE(line.find("agent-B"), std::string::npos) << line;
      EXPECT_EQ(line.find("agent-A"), std::string::npos) << line;
      continue;
    }
    a_lines++;
    EXPECT_NE(line.find("\"GET /big.bin?who=A HTTP/1.1\" 200 4194304 \"http://a.test/\" \"agent-A\""),
              std::string::npos)
        << line;
  }
  EXPECT_EQ(a_lines, 1);
}

TEST_F(Isolation, ADiscardedBodyIsLoggedAsItsOwnRequest) {
  // A's answer is out before its body; B is served meanwhile; A's line is written when its body
  // ends and names A.
  Client a(port);
  ASSERT_TRUE(a.send("POST /1k.txt?who=A HTTP/1.1\r\nHost: localhost\r\nUser-Agent: agent-A\r\n"
                     "Content-Length: 100\r\n\r\n"));
  std::optional<Response> ra = a.read_response();
  ASSERT_TRUE(ra) << a.error();
  EXPECT_EQ(ra->status, 405);
  Response rb = get(port, "/1k.txt?who=B", "User-Agent: agent-B\r\n");
  EXPECT_EQ(rb.status, 200);
  ASSERT_TRUE(a.send(std::string(100, 'a')));
  Response again = a.exchange(req("GET", "/1k.txt?who=A2"));
  EXPECT_EQ(again.status, 200);
  std::vector<std::string> lines = log_lines(3);
  ASSERT_EQ(lines.size(), 3u) << s.access_log();
  for (const std::string& line : lines) {
    if (line.find("who=B") != std::string::npos) {
      EXPECT_NE(line.find("agent-B"), std::string::npos) << line;
    } else if (line.find("POST") != std::string::npos) {
      EXPECT_NE(line.find("\"POST /1k.txt?who=A HTTP/1.1\" 405"), std::string::npos) << line;
      EXPECT_NE(line.find("agent-A"), std::string::npos) << line;
    }
  }
  EXPECT_NE(s.access_log().find("\"POST /1k.txt?who=A HTTP/1.1\" 405"), std::string::npos) << s.access_log();
}

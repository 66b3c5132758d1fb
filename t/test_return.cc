// `return` with variables (`return = 301 https://$host$request_uri`) and quoted texts, as a client
// sees them; and `-t` refusing an unknown variable with its line.
#include <set>
#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

const char* kServers =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "server_name = main.test www.main.test\n"
    "root = html\n"
    "\n"
    "[location /old/]\n"
    "return = 301 https://$host$request_uri\n"
    "\n"
    "[location = /all]\n"
    "return = 200 \"$scheme|$host|$server_name|$request_uri|$uri|$args|$remote_addr|$server_port|$request_method\"\n"
    "\n"
    "[location = /id]\n"
    "return = 200 $request_id\n"
    "\n"
    "[location = /braces]\n"
    "return = 302 /to/$host${request_uri}x\n"
    "\n"
    "[location = /quoted]\n"
    "return = 200 \"hello world\"\n"
    "\n"
    "[location = /dollar]\n"
    "return = 200 '5$$ each\\n'\n"
    "\n"
    "[location = /header]\n"
    "return = 200 $http_x_test\n"
    "\n"
    "[location /go/]\n"
    "return = 302 https://main.test$uri$is_args$args\n"
    "\n"
    "[location /spa/]\n"
    "try_files = $uri /landing\n"
    "\n"
    "[location = /landing]\n"
    "return = 200 landed at $uri from $request_uri\n";

class Return : public ::testing::Test {
 protected:
  void SetUp() override {
    s.set_config(make_config(kServers));
    ASSERT_TRUE(s.start());
  }
  BatonServer s;
};

TEST_F(Return, TheCommonRedirect) {
  Response r = get(s.port(), "/old/page?a=1&b=2", "");
  EXPECT_EQ(r.status, 301);
  // req() sends Host: localhost.
  EXPECT_EQ(r.header("Location"), "https://localhost/old/page?a=1&b=2");
  Client c(s.port());
  r = c.exchange("GET /old/x HTTP/1.1\r\nHost: WWW.Main.Test:8080\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.status, 301);
  EXPECT_EQ(r.header("Location"), "https://www.main.test/old/x") << "Host without its port, lower-cased";
}

TEST_F(Return, EveryVariable) {
  Client c(s.port());
  Response r = c.exchange("GET /all?q=1 HTTP/1.1\r\nHost: Main.Test\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"), "text/plain");
  EXPECT_EQ(r.body, "http|main.test|main.test|/all?q=1|/all|q=1|127.0.0.1|" + std::to_string(s.port()) + "|GET");
}

TEST_F(Return, HostOfAnHttp10RequestWithoutHostIsTheServerName) {
  Client c(s.port());
  Response r = c.exchange("GET /old/x HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.status, 301);
  EXPECT_EQ(r.header("Location"), "https://main.test/old/x");
}

TEST_F(Return, RequestIdIsUniquePerRequest) {
  std::set<std::string> ids;
  Client c(s.port());
  for (int i = 0; i < 20; i++) {
    Response r = c.exchange(req("GET", "/id"));
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body.size(), 32u) << r.body;
    EXPECT_EQ(r.body.find_first_not_of("0123456789abcdef"), std::string::npos) << r.body;
    EXPECT_TRUE(ids.insert(r.body).second) << "repeated " << r.body;
  }
}

TEST_F(Return, BracesAndQuotesAndDollars) {
  Response r = get(s.port(), "/braces?z");
  EXPECT_EQ(r.status, 302);
  EXPECT_EQ(r.header("Location"), "/to/localhost/braces?zx");
  r = get(s.port(), "/quoted");
  EXPECT_EQ(r.body, "hello world") << "the quotes are the quoting, not the text";
  r = get(s.port(), "/dollar");
  EXPECT_EQ(r.body, "5$ each\n");
}

TEST_F(Return, HeaderVariable) {
  Response r = get(s.port(), "/header", "X-Test: from the client\r\n");
  EXPECT_EQ(r.body, "from the client");
  r = get(s.port(), "/header");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
}

TEST_F(Return, NoLineBreakFromTheRequestReachesTheHead) {
  // $uri is decoded: %0D%0A would end the Location header and start one of the client's choosing.
  Client c(s.port());
  Response r = c.exchange("GET /go/x%0D%0ASet-Cookie:%20owned=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.status, 302);
  EXPECT_FALSE(r.has("Set-Cookie")) << r;
  EXPECT_EQ(r.header("Location"), "https://main.test/go/x%0D%0ASet-Cookie:%20owned=1");
}

TEST_F(Return, QueryOnlyWhenThereIsOne) {
  EXPECT_EQ(get(s.port(), "/go/a?b=c").header("Location"), "https://main.test/go/a?b=c");
  EXPECT_EQ(get(s.port(), "/go/a").header("Location"), "https://main.test/go/a");
}

TEST_F(Return, UriAfterTryFilesIsTheFallback) {
  Response r = get(s.port(), "/spa/deep/link?x=1");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "landed at /landing from /spa/deep/link?x=1");
}

TEST_F(Return, HeadGetsTheHeadOnly) {
  Response r = head(s.port(), "/old/y");
  EXPECT_EQ(r.status, 301);
  EXPECT_EQ(r.header("Location"), "https://localhost/old/y");
  EXPECT_EQ(r.body, "");
}

TEST(ReturnConfig, UnknownVariableIsAnErrorWithItsLine) {
  BatonServer s;
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "[location /]\n"
      "return = 301 https://$hots$request_uri\n"));
  int line = line_of(s.config_text(), "$hots");
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "baton.ini:" + std::to_string(line) + ": unknown \"hots\" variable")) << r.err;
}

TEST(ReturnConfig, LoneDollarIsAnErrorThatSaysHowToWriteOne) {
  BatonServer s;
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "[location /]\n"
      "return = 200 costs 5$\n"));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "$$")) << r.err;
}

}  // namespace

TEST(ReturnInServer, AnswersEveryRequestOfTheServerBeforeItsLocations) {
  // nginx's most common server: plain HTTP that only redirects to HTTPS.
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(
      "[server redirect]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = main.test\n"
      "return = 301 https://$host$request_uri\n"
      "\n"
      "[location /a.txt]\n"
      "return = 200 never\n"
      "\n"
      "[server other]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = other.test\n"
      "root = html\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  Response r = c.exchange("GET /a.txt?x=1 HTTP/1.1\r\nHost: main.test\r\n\r\n");
  EXPECT_EQ(r.status, 301) << r;
  EXPECT_EQ(r.header("Location"), "https://main.test/a.txt?x=1") << r;
  r = c.exchange("GET / HTTP/1.1\r\nHost: MAIN.test:8080\r\n\r\n");
  EXPECT_EQ(r.status, 301) << r;
  EXPECT_EQ(r.header("Location"), "https://main.test/") << r;
  // The other server on the same address is not affected.
  r = c.exchange("GET /a.txt HTTP/1.1\r\nHost: other.test\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "a");
}

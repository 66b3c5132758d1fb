// Unit tests of error_page in src/http/http_config.h: its forms, the set inherited http -> server ->
// location and replaced by a level of its own, and the values refused with file:line.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "http/http_config.h"

namespace baton::http {
namespace {

class ErrorPageConfTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/baton-error-page-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    prefix_ = tmpl;
    ASSERT_EQ(mkdir((prefix_ + "/html").c_str(), 0755), 0);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(prefix_, ec);
  }

  std::unique_ptr<HttpConf> parse(std::string_view text) {
    conf_ = read_conf_text("t.ini", text);
    return parse_http_conf(conf_, prefix_);
  }

  // Expects text to be refused at line with a message that contains what.
  void expect_error(std::string_view text, int line, std::string_view what) {
    std::string err;
    try {
      parse(text);
      ADD_FAILURE() << "accepted:\n" << text;
      return;
    } catch (const ConfError& e) {
      err = e.what();
    }
    std::string where = "t.ini:" + std::to_string(line) + ": ";
    EXPECT_EQ(err.rfind(where, 0), 0u) << "want " << where << "..., got: " << err;
    EXPECT_NE(err.find(what), std::string::npos) << "want \"" << what << "\" in: " << err;
  }

  std::string prefix_;
  ConfFile conf_;
};

TEST_F(ErrorPageConfTest, Forms) {
  auto http = parse(
      "[server a]\n"
      "error_page = 404 /404.html\n"
      "error_page = 500 502  503\t504 /errors/../50x.html\n"
      "error_page = 403 =200 /empty.gif\n"
      "error_page = 410 = /fallback?from=gone\n"
      "error_page = 401 http://example.com/login\n"
      "error_page = 429 =307 https://example.com/slow%20down\n");
  const Settings& s = http->servers[0]->s;
  ASSERT_EQ(s.error_pages.size(), 9u);

  const ErrorPage* p = s.error_page_for(404);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->response, -1);
  EXPECT_FALSE(p->redirect);
  EXPECT_EQ(p->path, "/404.html");
  EXPECT_EQ(p->line, 2);

  for (int code : {500, 502, 503, 504}) {
    p = s.error_page_for(code);
    ASSERT_NE(p, nullptr) << code;
    EXPECT_EQ(p->status, code);
    EXPECT_EQ(p->uri, "/errors/../50x.html");
    EXPECT_EQ(p->path, "/50x.html");  // looked up as the location a request for it would reach
    EXPECT_EQ(p->line, 3);
  }
  p = s.error_page_for(403);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->response, 200);
  EXPECT_EQ(p->path, "/empty.gif");

  p = s.error_page_for(410);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->response, 0);
  EXPECT_EQ(p->path, "/fallback");
  EXPECT_EQ(p->args, "from=gone");

  p = s.error_page_for(401);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->redirect);
  EXPECT_EQ(p->response, -1);
  EXPECT_EQ(p->uri, "http://example.com/login");

  p = s.error_page_for(429);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->redirect);
  EXPECT_EQ(p->response, 307);

  EXPECT_EQ(s.error_page_for(400), nullptr);
}

TEST_F(ErrorPageConfTest, InheritedAsASetAndReplacedByALevelWithAny) {
  auto http = parse(
      "[http]\n"
      "error_page = 404 /http404.html\n"
      "error_page = 502 /http50x.html\n"
      "[server a]\n"
      "[location /inherits/]\n"
      "[location /own/]\n"
      "error_page = 500 /own50x.html\n"
      "[server b]\n"
      "listen = 8081\n"
      "error_page = 404 /b404.html\n"
      "[location /x/]\n");
  const Server& a = *http->servers[0];
  ASSERT_EQ(a.s.error_pages.size(), 2u);
  EXPECT_EQ(a.s.error_page_for(404)->path, "/http404.html");
  const Settings& inherits = a.find_location("/inherits/y")->s;
  ASSERT_NE(inherits.error_page_for(502), nullptr);
  EXPECT_EQ(inherits.error_page_for(502)->path, "/http50x.html");
  const Settings& own = a.find_location("/own/y")->s;
  ASSERT_EQ(own.error_pages.size(), 1u);
  EXPECT_EQ(own.error_page_for(404), nullptr);
  EXPECT_EQ(own.error_page_for(500)->path, "/own50x.html");
  // What no location matches is served with the server's set.
  EXPECT_EQ(a.find_location("/elsewhere")->s.error_page_for(404)->path, "/http404.html");

  const Server& b = *http->servers[1];
  ASSERT_EQ(b.s.error_pages.size(), 1u);
  EXPECT_EQ(b.s.error_page_for(502), nullptr);
  EXPECT_EQ(b.find_location("/x/y")->s.error_page_for(404)->path, "/b404.html");
}

TEST_F(ErrorPageConfTest, ANginxDirectiveNoLonger) {
  // Once "not supported yet": now a key of [http], [server] and [location], and not of the others.
  parse("[http]\nerror_page = 404 /a\n[server a]\nerror_page = 404 /b\n[location /]\nerror_page = 404 /c\n");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nerror_page = 404 /a\n", 3,
               "\"error_page\" belongs in [http], [server] or [location]");
}

TEST_F(ErrorPageConfTest, BadValues) {
  expect_error("[http]\nerror_page = /404.html\n", 2, "needs one or more status codes and a page");
  expect_error("[http]\nerror_page = 404\n", 2, "needs one or more status codes and a page");
  expect_error("[http]\nerror_page = =200 /x\n", 2, "needs a status code before");
  expect_error("[http]\nerror_page = 200 /x\n", 2, "invalid status code \"200\" in \"error_page\" (300 to 599)");
  expect_error("[http]\nerror_page = 600 /x\n", 2, "invalid status code \"600\"");
  expect_error("[http]\nerror_page = 404 abc /x\n", 2, "invalid status code \"abc\"");
  expect_error("[http]\nerror_page = 404 =2x0 /x\n", 2, "invalid response code \"=2x0\"");
  expect_error("[http]\nerror_page = 404 =204 /x\n", 2, "invalid response code \"=204\"");
  expect_error("[http]\nerror_page = 404 =100 /x\n", 2, "invalid response code \"=100\"");
  expect_error("[http]\nerror_page = 304 /x\n", 2, "cannot replace 304");
  expect_error("[http]\nerror_page = 404 =200 = /x\n", 2, "invalid status code \"=200\"");
  expect_error("[http]\nerror_page = 404 404.html\n", 2, "invalid page \"404.html\"");
  expect_error("[http]\nerror_page = 404 @fallback\n", 2, "named locations are not supported");
  expect_error("[http]\nerror_page = 404 /$uri.html\n", 2, "variables in \"error_page\" are not supported yet");
  expect_error("[http]\nerror_page = 404 /../x\n", 2, "invalid page \"/../x\"");
  expect_error("[http]\nerror_page = 404 /%zz\n", 2, "invalid page");
  expect_error("[http]\nerror_page = 404 = http://example.com/\n", 2, "301, 302, 303, 307 or 308");
  expect_error("[http]\nerror_page = 404 =200 http://example.com/\n", 2, "301, 302, 303, 307 or 308");
  expect_error("[http]\nerror_page = 404 /a\nerror_page = 404 /b\n", 3,
               "the error page for 404 is already set at line 2");
  expect_error("[http]\nerror_page = 404 500 404 /a\n", 2, "status code 404 is given twice");
}

TEST_F(ErrorPageConfTest, APageInAProxiedLocationIsRefused) {
  expect_error(
      "[server a]\n"
      "error_page = 502 504 /50x.html\n"
      "[location /]\n"
      "proxy_pass = http://127.0.0.1:9000\n",
      2, "the error page \"/50x.html\" falls in [location /] (line 3) of [server a], which has \"proxy_pass\"");
  // Inherited from [http]: the line is the [http] one.
  expect_error(
      "[http]\n"
      "error_page = 404 /404.html\n"
      "[server a]\n"
      "[location /api/]\n"
      "proxy_pass = http://127.0.0.1:9000\n"
      "[location ^~ /]\n"
      "proxy_pass = http://127.0.0.1:9000\n",
      2, "falls in [location ^~ /] (line 6)");
  // A location of its own for the page is the way.
  parse(
      "[server a]\n"
      "error_page = 502 504 /50x.html\n"
      "[location /]\n"
      "proxy_pass = http://127.0.0.1:9000\n"
      "[location = /50x.html]\n"
      "root = html\n");
  // A redirect is no page of the server's.
  parse(
      "[server a]\n"
      "error_page = 502 http://status.example.com/\n"
      "[location /]\n"
      "proxy_pass = http://127.0.0.1:9000\n");
}

}  // namespace
}  // namespace baton::http

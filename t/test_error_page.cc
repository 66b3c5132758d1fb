// error_page as a client sees it: a custom page served for the errors baton answers itself (static
// files, `return` without a text, a failed or timed-out upstream) under the error's status or the
// one `=` gives, a redirect to a URL, inheritance of the set of pages, and the built-in page when
// the custom one cannot be served. Responses the upstream sent itself and requests refused while
// parsing keep what they were.
#include <string>

#include "harness.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

const std::string kNotFound = "<html><body>custom not found</body></html>\n";
const std::string kBroken = "<html><body>we are down, back soon</body></html>\n";

// A port nobody listens on: one a server picked and gave back.
int dead_port() {
  BatonServer other;
  return other.port();
}

class ErrorPage : public ::testing::Test {
 protected:
  void SetUp() override {
    s.write_file("html/index.html", "index\n");
    s.write_file("html/404.html", kNotFound);
    s.write_file("html/errors/50x.html", kBroken);
    s.write_file("html/empty.gif", "GIF89a");
  }
  void start(std::string_view servers, std::string_view http_extra = "") {
    s.set_config(make_config(servers, http_extra));
    ASSERT_TRUE(s.start());
  }
  BatonServer s;
};

TEST_F(ErrorPage, A404PageFromAFileKeepsTheStatus) {
  start(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "error_page = 404 /404.html\n");
  Client c(s.port());
  Response r = c.exchange(req("GET", "/missing.html"));
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_EQ(r.reason, "Not Found");
  EXPECT_EQ(r.body, kNotFound);
  EXPECT_EQ(r.header("Content-Type"), "text/html");
  EXPECT_EQ(r.header("Content-Length"), std::to_string(kNotFound.size()));
  EXPECT_TRUE(has_standard_headers(r));
  // Validators and ranges describe the page file, not the error: a cache must not take them.
  EXPECT_FALSE(r.has("ETag")) << r;
  EXPECT_FALSE(r.has("Last-Modified")) << r;
  EXPECT_FALSE(r.has("Accept-Ranges")) << r;
  // The connection stays as it was: kept alive.
  EXPECT_FALSE(r.connection_close()) << r;
  Response again = c.exchange(req("GET", "/index.html"));
  EXPECT_EQ(again.status, 200) << again;
  EXPECT_EQ(again.body, "index\n");
  // Conditions and ranges of the request were about what it asked for, not about the page.
  Response cond = c.exchange(req("GET", "/missing.html", "If-None-Match: *\r\nRange: bytes=0-3\r\n"));
  EXPECT_EQ(cond.status, 404) << cond;
  EXPECT_EQ(cond.body, kNotFound);
  // The page itself is an ordinary file.
  Response page = c.exchange(req("GET", "/404.html"));
  EXPECT_EQ(page.status, 200) << page;
  EXPECT_EQ(page.body, kNotFound);
  // The access log has the status the client got.
  EXPECT_TRUE(wait_for([&] { return contains(s.access_log(), "\"GET /missing.html HTTP/1.1\" 404 " +
                                                               std::to_string(kNotFound.size())); },
                       2000ms))
      << s.access_log();
}

TEST_F(ErrorPage, EqualsSignChangesTheStatus) {
  start(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "\n"
      "[location /img/]\n"
      "error_page = 404 =200 /empty.gif\n"
      "\n"
      "[location /soft/]\n"
      "error_page = 404 405 = /fallback\n"
      "\n"
      "[location /teapot/]\n"
      "error_page = 404 =410 /404.html\n"
      "\n"
      "[location = /fallback]\n"
      "return = 202 \"fell back to $uri from $request_uri, method $request_method\"\n");
  Response r = get(s.port(), "/img/missing.gif");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "GIF89a");
  // `=` alone: the status of the page's own answer.
  Response soft = get(s.port(), "/soft/x?a=1");
  EXPECT_EQ(soft.status, 202) << soft;
  EXPECT_EQ(soft.body, "fell back to /fallback from /soft/x?a=1, method GET");
  // A page is fetched with GET whatever the method of the request (a POST here is a 405).
  Response post = Client(s.port()).exchange(req("POST", "/soft/x", "Content-Length: 2\r\nConnection: close\r\n", "hi"));
  EXPECT_EQ(post.status, 202) << post;
  EXPECT_EQ(post.body, "fell back to /fallback from /soft/x, method GET");
  Response gone = get(s.port(), "/teapot/x");
  EXPECT_EQ(gone.status, 410) << gone;
  EXPECT_EQ(gone.reason, "Gone");
  EXPECT_EQ(gone.body, kNotFound);
}

TEST_F(ErrorPage, InheritedAsASetAndReplacedByALevelOfItsOwn) {
  s.write_file("html/http404.html", "http level\n");
  s.write_file("html/server404.html", "server level\n");
  start(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "\n"
      "[location /inherits/]\n"
      "expires = 1h\n"
      "\n"
      "[location /own/]\n"
      "error_page = 500 502 /errors/50x.html\n"
      "\n"
      "[server other]\n"
      "listen = 127.0.0.1:@PORT2@\n"
      "root = html\n"
      "error_page = 403 /403.html\n"
      "error_page = 404 /server404.html\n"
      "\n"
      "[location /deeper/]\n"
      "root = html\n",
      "error_page = 404 /http404.html\n");
  EXPECT_EQ(get(s.port(), "/missing").body, "http level\n");
  Response inherited = get(s.port(), "/inherits/missing");
  EXPECT_EQ(inherited.status, 404) << inherited;
  EXPECT_EQ(inherited.body, "http level\n");
  // A location with a page of its own no longer has the inherited 404 page.
  EXPECT_TRUE(is_error_page(get(s.port(), "/own/missing"), 404, "Not Found"));
  Response server = get(s.port(1), "/missing");
  EXPECT_EQ(server.status, 404) << server;
  EXPECT_EQ(server.body, "server level\n");
  EXPECT_EQ(get(s.port(1), "/deeper/missing").body, "server level\n");
}

TEST_F(ErrorPage, AUrlIsARedirect) {
  start(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "error_page = 403 http://example.com/forbidden.html\n"
      "error_page = 404 =301 https://example.com/gone\n"
      "\n"
      "[location = /private]\n"
      "return = 403\n");
  Response r = get(s.port(), "/private");
  EXPECT_EQ(r.status, 302) << r;
  EXPECT_EQ(r.header("Location"), "http://example.com/forbidden.html");
  Response moved = get(s.port(), "/missing");
  EXPECT_EQ(moved.status, 301) << moved;
  EXPECT_EQ(moved.header("Location"), "https://example.com/gone");
}

TEST_F(ErrorPage, AMissingPageFallsBackToTheBuiltInPage) {
  start(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "error_page = 404 405 /nowhere.html\n"
      "\n"
      "[location /loop/]\n"
      "error_page = 404 /loop/missing-too.html\n");
  Client c(s.port());
  EXPECT_TRUE(is_error_page(c.exchange(req("GET", "/missing")), 404, "Not Found"));
  // A page that is itself missing in a location whose 404 page it is: no loop, one answer.
  EXPECT_TRUE(is_error_page(c.exchange(req("GET", "/loop/x")), 404, "Not Found"));
  Response method = c.exchange(req("DELETE", "/index.html"));
  EXPECT_TRUE(is_error_page(method, 405, "Method Not Allowed"));
  EXPECT_EQ(method.header("Allow"), "GET, HEAD");
  // Still one answer per request: the connection goes on.
  Response next = c.exchange(req("GET", "/index.html"));
  EXPECT_EQ(next.status, 200) << next;
  EXPECT_EQ(c.buffered(), 0u);
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), "/nowhere.html"); }, 2000ms)) << s.error_log();
}

TEST_F(ErrorPage, TheErrorsOwnHeadersStay) {
  start(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "error_page = 405 /404.html\n");
  Response r = Client(s.port()).exchange(req("DELETE", "/index.html", "Connection: close\r\n"));
  EXPECT_EQ(r.status, 405) << r;
  EXPECT_EQ(r.body, kNotFound);
  EXPECT_EQ(r.header("Allow"), "GET, HEAD");
  EXPECT_TRUE(r.connection_close()) << r;
}

TEST_F(ErrorPage, HeadGetsTheHeadOfThePageAndNoBody) {
  start(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "error_page = 404 /404.html\n");
  Client c(s.port());
  Response r = c.exchange(req("HEAD", "/missing"), true);
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_EQ(r.header("Content-Length"), std::to_string(kNotFound.size()));
  EXPECT_EQ(r.body, "");
  // No body bytes came after the head: the next response is the next thing on the connection.
  Response next = c.exchange(req("GET", "/index.html"));
  EXPECT_EQ(next.status, 200) << next;
  EXPECT_EQ(next.body, "index\n");
}

TEST_F(ErrorPage, AReturnWithoutTextGetsThePageAReturnWithTextKeepsIt) {
  start(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "error_page = 404 503 /404.html\n"
      "\n"
      "[location = /gone]\n"
      "return = 404\n"
      "\n"
      "[location = /told]\n"
      "return = 404 \"told you\"\n"
      "\n"
      "[server closed]\n"
      "listen = 127.0.0.1:@PORT2@\n"
      "root = html\n"
      "error_page = 503 /errors/50x.html\n"
      "return = 503\n");
  Response gone = get(s.port(), "/gone");
  EXPECT_EQ(gone.status, 404) << gone;
  EXPECT_EQ(gone.body, kNotFound);
  Response told = get(s.port(), "/told");
  EXPECT_EQ(told.status, 404) << told;
  EXPECT_EQ(told.body, "told you");
  // A server-wide return: the page is looked up among the server's locations all the same.
  Response closed = get(s.port(1), "/anything");
  EXPECT_EQ(closed.status, 503) << closed;
  EXPECT_EQ(closed.body, kBroken);
}

TEST_F(ErrorPage, RequestsRefusedWhileParsingKeepTheBuiltInPage) {
  start(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "error_page = 400 /404.html\n");
  Client c(s.port());
  ASSERT_TRUE(c.send("GET /a b HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_TRUE(is_error_page(*r, 400, "Bad Request"));
}

// ---- behind the proxy ----

std::string proxy_servers(const std::string& upstream, std::string_view upstream_extra = "") {
  return "[upstream app]\n"
         "server = " + upstream + "\n" + std::string(upstream_extra) +
         "\n[server main]\n"
         "listen = 127.0.0.1:@PORT@\n"
         "root = html\n"
         "error_page = 404 /404.html\n"
         "error_page = 502 504 /50x.html\n"
         "\n"
         "[location /]\n"
         "proxy_pass = http://app\n"
         "\n"
         "[location = /50x.html]\n"
         "root = html/errors\n"
         "\n"
         "[location = /404.html]\n";
}

TEST_F(ErrorPage, ADeadUpstreamGetsThe502Page) {
  // Large enough to be sent from the file rather than from memory.
  std::string big = s.write_generated("html/errors/50x.html", 100000, 7);
  start(proxy_servers("127.0.0.1:" + std::to_string(dead_port())));
  Response r = get(s.port(), "/x");
  EXPECT_EQ(r.status, 502) << r.status << " " << r.reason;
  EXPECT_EQ(r.reason, "Bad Gateway");
  EXPECT_TRUE(same_bytes(r.body, big));
  EXPECT_TRUE(r.connection_close());  // asked for by get()
  // Kept alive, and a HEAD gets the head alone.
  Client c(s.port());
  Response h = c.exchange(req("HEAD", "/y"), true);
  EXPECT_EQ(h.status, 502) << h;
  EXPECT_EQ(h.header("Content-Length"), "100000");
  Response again = c.exchange(req("GET", "/z"));
  EXPECT_EQ(again.status, 502);
  EXPECT_TRUE(same_bytes(again.body, big));
  EXPECT_TRUE(wait_for([&] { return contains(s.access_log(), "\"GET /x HTTP/1.1\" 502 100000"); }, 2000ms))
      << s.access_log();
}

TEST_F(ErrorPage, AnUpstreamTimeoutGetsThe504Page) {
  TestUpstream up;
  ASSERT_TRUE(up.start()) << up.error();
  start(proxy_servers(up.address(), "read_timeout = 1s\n"));
  // What the upstream answers itself is passed on as it is, errors included.
  Response own = get(s.port(), "/status/404");
  EXPECT_EQ(own.status, 404) << own;
  EXPECT_EQ(own.body, "status 404\n");
  Response bad = get(s.port(), "/status/502");
  EXPECT_EQ(bad.status, 502) << bad;
  EXPECT_EQ(bad.body, "status 502\n");
  Response r = get(s.port(), "/delay/3000/size/1");
  EXPECT_EQ(r.status, 504) << r;
  EXPECT_EQ(r.reason, "Gateway Timeout");
  EXPECT_EQ(r.body, kBroken);
}

TEST_F(ErrorPage, APageInAProxiedLocationIsRefused) {
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "error_page = 502 /50x.html\n"
      "\n"
      "[location /]\n"
      "proxy_pass = http://127.0.0.1:@PORT2@\n"));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "baton.ini:" + std::to_string(line_of(s.config_text(), "error_page")) + ":")) << r.err;
  EXPECT_TRUE(contains(r.err, "proxy_pass")) << r.err;
}

}  // namespace

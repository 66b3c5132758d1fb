// add_header and server_tokens: the headers a location adds to its responses (2xx and redirects, or
// every status with `always`), inherited as a set as in nginx, with variables; `Server: baton` and
// error pages without the version when server_tokens is off.
#include <string>

#include "harness.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

std::string site(const std::string& http_extra, const std::string& server_extra, const std::string& locations) {
  return make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n" + server_extra + locations, http_extra, 1);
}

}  // namespace

TEST(AddHeader, InheritedAsASetAndAddedToSuccessfulResponses) {
  BatonServer s;
  s.write_file("html/a.txt", "a\n");
  s.write_file("html/own/b.txt", "b\n");
  s.set_config(site("add_header = X-Frame-Options DENY\nadd_header = X-Content-Type-Options nosniff\n", "",
                    "[location /own/]\nadd_header = Cache-Control \"public, max-age=60\"\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/a.txt");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("X-Frame-Options"), "DENY") << r;
  EXPECT_EQ(r.header("X-Content-Type-Options"), "nosniff") << r;
  // A level with its own set has only its own (nginx's rule).
  r = get(s.port(), "/own/b.txt");
  EXPECT_EQ(r.header("Cache-Control"), "public, max-age=60") << r;
  EXPECT_EQ(r.header("X-Frame-Options"), "") << r;
  // Not on an error, without `always`.
  r = get(s.port(), "/missing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("X-Frame-Options"), "") << r;
  // A 304 gets them (it is in nginx's list).
  Response first = get(s.port(), "/a.txt");
  r = get(s.port(), "/a.txt", "If-None-Match: " + first.header("ETag") + "\r\n");
  EXPECT_EQ(r.status, 304);
  EXPECT_EQ(r.header("X-Frame-Options"), "DENY") << r;
}

TEST(AddHeader, AlwaysAddsToErrorsToo) {
  BatonServer s;
  s.set_config(site("", "add_header = Strict-Transport-Security \"max-age=31536000\" always\n"
                        "add_header = X-Only-On-Success yes\n", ""));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/missing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("Strict-Transport-Security"), "max-age=31536000") << r;
  EXPECT_EQ(r.header("X-Only-On-Success"), "") << r;
}

TEST(AddHeader, ValuesTakeVariables) {
  BatonServer s;
  s.set_config(site("", "", "[location = /v]\nadd_header = X-Seen \"$request_method $request_uri from $remote_addr\"\n"
                            "return = 200 ok\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/v?x=1");
  EXPECT_EQ(r.header("X-Seen"), "GET /v?x=1 from 127.0.0.1") << r;
}

TEST(AddHeader, ProxiedResponsesGetThemToo) {
  TestUpstream up;
  ASSERT_TRUE(up.start({})) << up.error();
  BatonServer s;
  s.set_config(make_config("[upstream app]\nserver = " + up.address() +
                               "\n[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                               "[location /]\nproxy_pass = http://app\nadd_header = X-Via-Baton 1\n",
                           "", 1));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/size/10");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("X-Via-Baton"), "1") << r;
}

TEST(AddHeader, BadLinesAreRefusedWithTheirLine) {
  BatonServer s;
  s.set_config(site("add_header = X-Only-A-Name\n", "", ""));
  RunResult r = s.test_config();
  EXPECT_TRUE(contains(r.err, "baton.ini:10: \"add_header\" needs a name and a value")) << r.err;
  s.set_config(site("add_header = Bad:Name x\n", "", ""));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, "invalid header name \"Bad:Name\"")) << r.err;
  s.set_config(site("add_header = Content-Length 5\n", "", ""));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, "cannot be added")) << r.err;
  s.set_config(site("add_header = X-A $no_such_variable\n", "", ""));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, "baton.ini:10: unknown \"no_such_variable\" variable")) << r.err;
  EXPECT_TRUE(contains(r.err, "no_such_variable")) << r.err;
}

TEST(ServerTokens, OffHidesTheVersion) {
  BatonServer s;
  s.set_config(site("server_tokens = off\n", "", ""));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/missing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("Server"), "baton");
  EXPECT_TRUE(contains(r.body, "<hr><p>baton</p>")) << r.body;
  EXPECT_FALSE(contains(r.body, "baton/")) << r.body;
}

TEST(ServerTokens, OnByDefault) {
  BatonServer s;
  s.set_config(site("", "", ""));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/missing");
  EXPECT_EQ(r.header("Server").rfind("baton/", 0), 0u) << r;
}

TEST(Charset, AddedToTextTypesOnly) {
  BatonServer s;
  s.write_file("html/page.html", "<p>é</p>\n");
  s.write_file("html/data.bin", "x");
  s.set_config(site("charset = utf-8\n", "", "[location = /r]\nreturn = 200 text\n[location /plain/]\ncharset = off\n"));
  s.write_file("html/plain/page.html", "<p>x</p>\n");
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/page.html").header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(get(s.port(), "/data.bin").header("Content-Type"), "application/octet-stream");
  EXPECT_EQ(get(s.port(), "/missing").header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(get(s.port(), "/plain/page.html").header("Content-Type"), "text/html");
}

// A custom error page gets the headers of its final status: `always` ones (an added Cache-Control
// too, although the page's own file fields are dropped), and not the others on an error.
TEST(AddHeader, ErrorPagesGetTheHeadersOfTheirFinalStatus) {
  BatonServer s;
  s.write_file("html/404.html", "custom\n");
  s.set_config(site("", "error_page = 404 /404.html\nadd_header = Cache-Control no-store always\n"
                        "add_header = X-Only-On-Success yes\n", ""));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/missing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "custom\n");
  EXPECT_EQ(r.header("Cache-Control"), "no-store") << r;
  EXPECT_EQ(r.header("X-Only-On-Success"), "") << r;
  EXPECT_EQ(r.count("Cache-Control"), 1u) << r;
}

// A [server] `return` answers with the server's headers, not those of the location the request
// would have gone to.
TEST(AddHeader, AServerReturnUsesTheServersHeaders) {
  BatonServer s;
  s.set_config(site("", "return = 301 https://example.com$request_uri\nadd_header = X-Server yes always\n",
                    "[location /static/]\nadd_header = X-Location yes\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/static/x");
  EXPECT_EQ(r.status, 301);
  EXPECT_EQ(r.header("X-Server"), "yes") << r;
  EXPECT_EQ(r.header("X-Location"), "") << r;
}

TEST(Charset, AReturnTextGetsIt) {
  BatonServer s;
  s.set_config(site("charset = utf-8\n", "default_type = text/plain\n", "[location = /r]\nreturn = 200 text\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/r").header("Content-Type"), "text/plain; charset=utf-8");
}

// A request refused while its head is read is answered with the default server's headers, not with
// those of the location the connection's previous request went to.
TEST(AddHeader, AnErrorBeforeRoutingDoesNotTakeThePreviousRequestsHeaders) {
  BatonServer s;
  s.set_config(site("", "", "[location = /v]\nadd_header = X-Location yes always\nreturn = 200 ok\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  Response r = c.exchange(req("GET", "/v"));
  EXPECT_EQ(r.header("X-Location"), "yes");
  r = c.exchange("GET /v HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.header("X-Location"), "") << r;
}

// $request_id is one value per request: the same in an added header and in the answer.
TEST(AddHeader, RequestIdIsTheSameInTheHeaderAndTheAnswer) {
  BatonServer s;
  s.set_config(site("", "", "[location = /id]\nadd_header = X-Request-Id $request_id\nreturn = 200 $request_id\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/id");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("X-Request-Id").size(), 32u) << r;
  EXPECT_EQ(r.header("X-Request-Id"), r.body) << r;
}

// ... and the same in the request sent upstream.
TEST(AddHeader, RequestIdIsTheSameUpstream) {
  TestUpstream up;
  ASSERT_TRUE(up.start({})) << up.error();
  BatonServer s;
  s.set_config(make_config("[upstream app]\nserver = " + up.address() +
                               "\n[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                               "[location /]\nproxy_pass = http://app\nproxy_set_header = X-Request-Id $request_id\n"
                               "add_header = X-Request-Id $request_id\n",
                           "", 1));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/headers");
  ASSERT_EQ(r.status, 200);
  std::string id = r.header("X-Request-Id");
  ASSERT_EQ(id.size(), 32u) << r;
  EXPECT_TRUE(contains(r.body, "X-Request-Id: " + id + "\r\n")) << r.body;
}

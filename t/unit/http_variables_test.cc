// Unit tests of src/http/http_variables.h: compiling a value with variables (and its errors), and
// evaluating it for a request.
#include "http/http_variables.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "http/http_config.h"
#include "http/http_request.h"

namespace baton::http {
namespace {

class VariablesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    req_.method = "GET";
    req_.target = "/a%20b/c?x=1&y=2";
    req_.path = "/a b/c";
    req_.query = "x=1&y=2";
    req_.host_lower = "example.com";
    req_.headers[0] = {"User-Agent", "test/1.0"};
    req_.headers[1] = {"X-Forwarded-For", "192.0.2.7"};
    req_.header_count = 2;
    server_.primary_name = "main.test";
    SockAddr peer;
    ASSERT_EQ(parse_sockaddr("198.51.100.4:40000", &peer), "");
    peer_ = PeerAddr(peer);
    ASSERT_EQ(parse_sockaddr("0.0.0.0:8080", &local_), "");
    ctx_.req = &req_;
    ctx_.server = &server_;
    ctx_.peer = &peer_;
    ctx_.local = &local_;
  }

  std::string eval(std::string_view text, Escape escape = Escape::kNone) {
    Template t;
    std::string err = t.compile(text);
    EXPECT_EQ(err, "") << text;
    std::string out;
    t.evaluate(ctx_, &out, escape);
    return out;
  }

  std::string compile_error(std::string_view text) {
    Template t;
    return t.compile(text);
  }

  Request req_;
  Server server_;
  PeerAddr peer_;
  SockAddr local_;
  VarContext ctx_;
};

TEST_F(VariablesTest, LiteralTextStaysAsItIs) {
  Template t;
  ASSERT_EQ(t.compile("https://example.com/new"), "");
  EXPECT_FALSE(t.has_variables());
  EXPECT_EQ(t.literal(), "https://example.com/new");
  EXPECT_EQ(eval(""), "");
  EXPECT_EQ(eval("plain text"), "plain text");
}

TEST_F(VariablesTest, EveryVariable) {
  EXPECT_EQ(eval("$scheme"), "http");
  EXPECT_EQ(eval("$host"), "example.com");
  EXPECT_EQ(eval("$server_name"), "main.test");
  EXPECT_EQ(eval("$server_port"), "8080");
  EXPECT_EQ(eval("$request_uri"), "/a%20b/c?x=1&y=2");
  EXPECT_EQ(eval("$uri"), "/a b/c");
  EXPECT_EQ(eval("$args"), "x=1&y=2");
  EXPECT_EQ(eval("$query_string"), "x=1&y=2");
  EXPECT_EQ(eval("$is_args"), "?");
  EXPECT_EQ(eval("$request_method"), "GET");
  EXPECT_EQ(eval("$remote_addr"), "198.51.100.4");
  EXPECT_EQ(eval("$http_user_agent"), "test/1.0");
  EXPECT_EQ(eval("$http_X_FORWARDED_FOR"), "192.0.2.7");
  EXPECT_EQ(eval("[$http_no_such_header]"), "[]");
}

TEST_F(VariablesTest, TheCommonRedirect) {
  EXPECT_EQ(eval("https://$host$request_uri"), "https://example.com/a%20b/c?x=1&y=2");
  EXPECT_EQ(eval("$scheme://$host:$server_port$uri$is_args$args"), "http://example.com:8080/a b/c?x=1&y=2");
}

TEST_F(VariablesTest, BracesSeparateANameFromWhatFollows) {
  EXPECT_EQ(eval("$host${request_uri}x"), "example.com/a%20b/c?x=1&y=2x");
  EXPECT_EQ(eval("${host}_suffix"), "example.com_suffix");
  // Without braces the name runs on.
  EXPECT_NE(compile_error("$host_suffix"), "");
}

TEST_F(VariablesTest, NamesEndAtTheFirstOtherCharacter) {
  EXPECT_EQ(eval("$host/$uri."), "example.com//a b/c.");
  EXPECT_EQ(eval("$host-$request_method"), "example.com-GET");
}

TEST_F(VariablesTest, DoubleDollarIsADollarSign) {
  EXPECT_EQ(eval("price: $$5"), "price: $5");
  EXPECT_EQ(eval("$$host"), "$host");
  EXPECT_EQ(eval("$$$host"), "$example.com");
  Template t;
  ASSERT_EQ(t.compile("$$"), "");
  EXPECT_FALSE(t.has_variables());
  EXPECT_EQ(t.literal(), "$");
}

TEST_F(VariablesTest, HostFallsBackToTheServerName) {
  req_.host_lower.clear();  // HTTP/1.0 without Host
  EXPECT_EQ(eval("https://$host/"), "https://main.test/");
  server_.primary_name.clear();
  EXPECT_EQ(eval("https://$host/"), "https:///");
}

TEST_F(VariablesTest, NoQueryNoQuestionMark) {
  req_.target = "/a";
  req_.path = "/a";
  req_.query = {};
  EXPECT_EQ(eval("$uri$is_args$args"), "/a");
}

TEST_F(VariablesTest, UriAfterAnInternalRedirect) {
  ctx_.uri = "/fallback";
  EXPECT_EQ(eval("$uri"), "/fallback");
  EXPECT_EQ(eval("$request_uri"), "/a%20b/c?x=1&y=2");
}

TEST_F(VariablesTest, ServerPortOfIPv6AndUnixListeners) {
  ASSERT_EQ(parse_sockaddr("[::1]:8443", &local_), "");
  EXPECT_EQ(eval("$server_port"), "8443");
  ASSERT_EQ(parse_sockaddr("unix:/tmp/x.sock", &local_), "");
  EXPECT_EQ(eval("[$server_port]"), "[]");
}

TEST_F(VariablesTest, RequestIdIsRandomHexAndStableWithinARequest) {
  std::string a = eval("$request_id");
  ASSERT_EQ(a.size(), 32u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
  // Two uses in one request: one id, even through another context (the head's added fields, the
  // request sent upstream and the answer each make their own).
  EXPECT_EQ(eval("$request_id"), a);
  {
    VarContext other = ctx_;
    Template t;
    ASSERT_EQ(t.compile("$request_id"), "");
    std::string out;
    t.evaluate(other, &out);
    EXPECT_EQ(out, a);
  }
  std::set<std::string> seen{a};
  for (int i = 0; i < 1000; i++) {
    req_.reset();  // the next request
    std::string out = eval("$request_id");
    EXPECT_TRUE(seen.insert(out).second) << "repeated id " << out;
  }
}

TEST_F(VariablesTest, UrlEscapingKeepsLineBreaksOutOfAHeader) {
  req_.path = "/x\r\nSet-Cookie: a=b";
  std::string out = eval("https://$host$uri", Escape::kUrl);
  EXPECT_EQ(out, "https://example.com/x%0D%0ASet-Cookie:%20a=b");
  req_.path = "/caf\xc3\xa9";
  EXPECT_EQ(eval("$uri", Escape::kUrl), "/caf%C3%A9");
  // Literal text is the configuration's and is left alone; only values are escaped.
  EXPECT_EQ(eval("/a b$uri", Escape::kUrl), "/a b/caf%C3%A9");
  // Without escaping (a text body) the value is as it is.
  EXPECT_EQ(eval("$uri"), "/caf\xc3\xa9");
}

TEST_F(VariablesTest, AppendsToWhatIsThere) {
  Template t;
  ASSERT_EQ(t.compile("$request_method $uri"), "");
  std::string out = "> ";
  t.evaluate(ctx_, &out);
  EXPECT_EQ(out, "> GET /a b/c");
}

TEST_F(VariablesTest, Errors) {
  EXPECT_NE(compile_error("$hots").find("unknown \"hots\" variable"), std::string::npos) << compile_error("$hots");
  EXPECT_NE(compile_error("https://$host$request_urii").find("\"request_urii\""), std::string::npos);
  EXPECT_EQ(compile_error("$1"), "");  // a regex group
  EXPECT_NE(compile_error("$named").find("unknown \"named\" variable"), std::string::npos);
  EXPECT_NE(compile_error("$http_").find("unknown \"http_\" variable"), std::string::npos);
  EXPECT_NE(compile_error("cost: 5$").find("invalid variable name"), std::string::npos);
  EXPECT_NE(compile_error("5$ each").find("\"$$\""), std::string::npos) << "the error names the way out";
  EXPECT_NE(compile_error("${host").find("closing bracket"), std::string::npos);
  EXPECT_NE(compile_error("${}").find("invalid variable name"), std::string::npos) << compile_error("${}");
  EXPECT_NE(compile_error("${ho st}").find("invalid variable name"), std::string::npos);
  EXPECT_NE(compile_error("${nope}").find("unknown \"nope\" variable"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The proxy's variables

TEST_F(VariablesTest, RemotePort) {
  EXPECT_EQ(eval("$remote_port"), "40000");
  EXPECT_EQ(eval("$remote_addr:$remote_port"), "198.51.100.4:40000");
  SockAddr v6;
  ASSERT_EQ(parse_sockaddr("[2001:db8::5]:61000", &v6), "");
  peer_ = PeerAddr(v6);
  EXPECT_EQ(eval("$remote_port"), "61000");
  // A client on a unix socket has no port; no peer at all neither.
  SockAddr un;
  ASSERT_EQ(parse_sockaddr("unix:/tmp/x.sock", &un), "");
  peer_ = PeerAddr(un);
  EXPECT_EQ(eval("[$remote_port]"), "[]");
  ctx_.peer = nullptr;
  EXPECT_EQ(eval("[$remote_port]"), "[]");
}

TEST_F(VariablesTest, ProxyHostIsWhatTheProxyFillsIn) {
  EXPECT_EQ(eval("[$proxy_host]"), "[]");  // outside a proxied request: empty, as in nginx
  ctx_.proxy_host = "app.internal:8080";
  EXPECT_EQ(eval("$proxy_host"), "app.internal:8080");
  EXPECT_EQ(eval("Host: ${proxy_host}."), "Host: app.internal:8080.");
}

TEST_F(VariablesTest, ProxyAddXForwardedForAppendsTheClient) {
  EXPECT_EQ(eval("$proxy_add_x_forwarded_for"), "192.0.2.7, 198.51.100.4");
  // Several X-Forwarded-For lines, in any case, in the order they came; other headers between.
  req_.headers[2] = {"Accept", "*/*"};
  req_.headers[3] = {"x-forwarded-for", "203.0.113.1, 203.0.113.2"};
  req_.header_count = 4;
  EXPECT_EQ(eval("$proxy_add_x_forwarded_for"), "192.0.2.7, 203.0.113.1, 203.0.113.2, 198.51.100.4");
  // None: the client alone.
  req_.headers[1] = {"X-Other", "1"};
  req_.headers[3] = {"X-Other", "2"};
  EXPECT_EQ(eval("$proxy_add_x_forwarded_for"), "198.51.100.4");
  // An empty one adds no empty item.
  req_.headers[3] = {"X-Forwarded-For", ""};
  EXPECT_EQ(eval("$proxy_add_x_forwarded_for"), "198.51.100.4");
  // No peer (never for a TCP client): the values alone, no dangling comma.
  req_.headers[3] = {"X-Forwarded-For", "192.0.2.9"};
  ctx_.peer = nullptr;
  EXPECT_EQ(eval("[$proxy_add_x_forwarded_for]"), "[192.0.2.9]");
}

TEST_F(VariablesTest, ProxyAddXForwardedForOfAnIPv6Client) {
  SockAddr v6;
  ASSERT_EQ(parse_sockaddr("[2001:db8::5]:61000", &v6), "");
  peer_ = PeerAddr(v6);
  EXPECT_EQ(eval("$proxy_add_x_forwarded_for"), "192.0.2.7, 2001:db8::5");
}

TEST_F(VariablesTest, TheProxyVariablesAreKnown) {
  for (const char* name : {"remote_port", "proxy_host", "proxy_add_x_forwarded_for"})
    EXPECT_NE(std::string_view(known_variables()).find(std::string("$") + name + " "), std::string_view::npos) << name;
}

TEST_F(VariablesTest, CompileStartsOver) {
  Template t;
  ASSERT_NE(t.compile("$nope"), "");
  ASSERT_EQ(t.compile("plain"), "");
  EXPECT_FALSE(t.has_variables());
  std::string out;
  t.evaluate(ctx_, &out);
  EXPECT_EQ(out, "plain");
}

}  // namespace
}  // namespace baton::http

namespace baton::http {
namespace {

// The groups of a regex match as variables: numbered with one digit, named ones once the
// configuration declares their names, escaped for a query string with Escape::kArgs.
TEST_F(VariablesTest, RegexGroups) {
  Regex re;
  ASSERT_EQ(re.compile("^/(?<first>[^/]+)/(x)?(.*)$", false), "");
  EXPECT_EQ(re.groups(), 3u);
  ASSERT_EQ(re.names().size(), 1u);
  EXPECT_EQ(re.number_of("first"), 1);
  EXPECT_EQ(re.number_of("second"), -1);
  // Before any match: nothing.
  EXPECT_EQ(eval("[$1|$0]"), "[|]");
  ASSERT_EQ(re.match("/a b/c&d", &req_.captures), Regex::Result::kMatch);
  set_capture_names({"first"});
  // $2 took no part; $12 is $1 then "2"; $9 is beyond the groups.
  EXPECT_EQ(eval("$0|$1|$2|$3|$12|$9|$first|${first}s"), "/a b/c&d|a b||c&d|a b2||a b|a bs");
  EXPECT_EQ(eval("q=$3&w=$1", Escape::kArgs), "q=c%26d&w=a%20b");
  // A failed match leaves the groups of the last one.
  EXPECT_EQ(re.match("no slash", &req_.captures), Regex::Result::kNoMatch);
  EXPECT_EQ(eval("$1"), "a b");
  set_capture_names({});
  EXPECT_NE(compile_error("$first"), "");
}

TEST(Regex, CaselessAndBadPatterns) {
  Regex re;
  ASSERT_EQ(re.compile("\\.png$", true), "");
  EXPECT_EQ(re.match("/A.PNG", nullptr), Regex::Result::kMatch);
  EXPECT_EQ(re.match("/A.PNGX", nullptr), Regex::Result::kNoMatch);
  std::string err = re.compile("(unclosed", false);
  EXPECT_NE(err.find("invalid regular expression \"(unclosed\""), std::string::npos) << err;
  // The earlier pattern stays usable.
  EXPECT_EQ(re.match("/b.png", nullptr), Regex::Result::kMatch);
}

TEST(ResolveSegments, KeepsARewrittenPathUnderTheRoot) {
  std::string p = "/a/./b//c/../d";
  ASSERT_TRUE(resolve_segments(&p));
  EXPECT_EQ(p, "/a/b/d");
  p = "/a/../../etc";
  EXPECT_FALSE(resolve_segments(&p));
  p = "relative";
  EXPECT_FALSE(resolve_segments(&p));
  p = "/%2e%2e/x";  // a decoded path is not decoded again
  ASSERT_TRUE(resolve_segments(&p));
  EXPECT_EQ(p, "/%2e%2e/x");
}

}  // namespace
}  // namespace baton::http

// Unit tests of src/http/http_request.h: normalize_path, which decides what file a target can reach.
#include "http/http_request.h"

#include <gtest/gtest.h>

#include <string>

namespace baton::http {
namespace {

struct Normalized {
  bool ok;
  std::string path;
  std::string query;
};

Normalized norm(std::string_view target) {
  Normalized n;
  std::string_view q = "unchanged";
  n.ok = normalize_path(target, &n.path, &q);
  n.query = std::string(q);
  return n;
}

std::string path_of(std::string_view target) {
  Normalized n = norm(target);
  EXPECT_TRUE(n.ok) << "target \"" << target << "\" was refused";
  return n.path;
}

TEST(NormalizePath, PlainPaths) {
  EXPECT_EQ(path_of("/"), "/");
  EXPECT_EQ(path_of("/a/b"), "/a/b");
  EXPECT_EQ(path_of("/a/b/"), "/a/b/");
  EXPECT_EQ(path_of("/index.html"), "/index.html");
}

TEST(NormalizePath, DotSegmentsAndDoubleSlashes) {
  EXPECT_EQ(path_of("/a/./b"), "/a/b");
  EXPECT_EQ(path_of("//a//b"), "/a/b");
  EXPECT_EQ(path_of("/a//"), "/a/");
  EXPECT_EQ(path_of("/a/../b"), "/b");
  EXPECT_EQ(path_of("/a/b/.."), "/a/");
  EXPECT_EQ(path_of("/a/b/../"), "/a/");
  EXPECT_EQ(path_of("/a/."), "/a/");
  EXPECT_EQ(path_of("/."), "/");
  EXPECT_EQ(path_of("/a/.."), "/");
  EXPECT_EQ(path_of("/a/b/../../c"), "/c");
  EXPECT_EQ(path_of("/a/./././b/./"), "/a/b/");
  EXPECT_EQ(path_of("/a/.hidden/..x/...y"), "/a/.hidden/..x/...y");  // not dot segments
}

TEST(NormalizePath, PercentDecoding) {
  EXPECT_EQ(path_of("/%41"), "/A");
  EXPECT_EQ(path_of("/%7e%7E"), "/~~");
  EXPECT_EQ(path_of("/a%20b"), "/a b");
  EXPECT_EQ(path_of("/a%2fb"), "/a/b");  // a decoded slash separates segments like any other
  EXPECT_EQ(path_of("/a%2Fb/%2e/c"), "/a/b/c");
  EXPECT_EQ(path_of("/a/%2e%2e/b"), "/b");
  EXPECT_EQ(path_of("/%3f"), "/?");  // an encoded '?' is part of the path, not the query
}

TEST(NormalizePath, QueryIsSplitOff) {
  Normalized n = norm("/a/../b?x=1&y=%41");
  ASSERT_TRUE(n.ok);
  EXPECT_EQ(n.path, "/b");
  EXPECT_EQ(n.query, "x=1&y=%41");  // the query is not decoded

  n = norm("/?");
  ASSERT_TRUE(n.ok);
  EXPECT_EQ(n.path, "/");
  EXPECT_EQ(n.query, "");

  n = norm("/p");
  ASSERT_TRUE(n.ok);
  EXPECT_EQ(n.query, "");  // reset when there is none

  n = norm("/p?a?b");
  ASSERT_TRUE(n.ok);
  EXPECT_EQ(n.path, "/p");
  EXPECT_EQ(n.query, "a?b");

  n = norm("/%zz-not-checked?/../x");  // a bad escape in the path still fails
  EXPECT_FALSE(n.ok);
  n = norm("/ok?%zz/../../");  // but the query is not a path
  ASSERT_TRUE(n.ok);
  EXPECT_EQ(n.path, "/ok");
}

TEST(NormalizePath, FragmentIsDropped) {
  EXPECT_EQ(path_of("/a#frag"), "/a");
  EXPECT_EQ(path_of("/a/#/../.."), "/a/");
}

TEST(NormalizePath, ClimbingAboveRootIsRefused) {
  EXPECT_FALSE(norm("/../x").ok);
  EXPECT_FALSE(norm("/..").ok);
  EXPECT_FALSE(norm("/%2e%2e/x").ok);
  EXPECT_FALSE(norm("/%2E%2E").ok);
  EXPECT_FALSE(norm("/a/../../x").ok);
  EXPECT_FALSE(norm("/a/b/../../../x").ok);
  EXPECT_FALSE(norm("/a%2f..%2f..%2fx").ok);
  EXPECT_FALSE(norm("//../x").ok);
  EXPECT_FALSE(norm("/./../x").ok);
}

TEST(NormalizePath, BadBytesAndEscapesAreRefused) {
  EXPECT_FALSE(norm("/%00").ok);
  EXPECT_FALSE(norm("/a%00.html").ok);
  EXPECT_FALSE(norm("/%zz").ok);
  EXPECT_FALSE(norm("/%4").ok);
  EXPECT_FALSE(norm("/%").ok);
  EXPECT_FALSE(norm("/%4g").ok);
  EXPECT_FALSE(norm("/a%").ok);
}

TEST(NormalizePath, NotOriginFormIsRefused) {
  EXPECT_FALSE(norm("").ok);
  EXPECT_FALSE(norm("x").ok);
  EXPECT_FALSE(norm("*").ok);
  EXPECT_FALSE(norm("a/b").ok);
  EXPECT_FALSE(norm("?a=1").ok);
}

TEST(NormalizePath, OutputIsReplacedNotAppended) {
  std::string out = "garbage";
  std::string_view q;
  ASSERT_TRUE(normalize_path("/x", &out, &q));
  EXPECT_EQ(out, "/x");
}

TEST(Request, HeaderLookupIsCaseInsensitiveAndFirstWins) {
  Request r;
  r.headers[0] = {"Host", "example.com"};
  r.headers[1] = {"X-Thing", "one"};
  r.headers[2] = {"x-thing", "two"};
  r.header_count = 3;
  EXPECT_EQ(r.header("host"), "example.com");
  EXPECT_EQ(r.header("X-THING"), "one");
  EXPECT_EQ(r.header("Missing"), "");
  EXPECT_EQ(r.header("Hos"), "");
  r.header_count = 1;  // only the counted headers are looked at
  EXPECT_EQ(r.header("x-thing"), "");
}

TEST(Request, ResetClearsTheRequest) {
  Request r;
  r.method = "GET";
  r.target = "/x?y";
  r.header_count = 2;
  r.host = "a";
  r.host_count = 2;
  r.path = "/x";
  r.host_lower = "a";
  r.keep_alive = r.has_body = r.chunked = true;
  r.content_length = 10;
  r.range = "bytes=0-1";
  r.reset();
  EXPECT_EQ(r.method, "");
  EXPECT_EQ(r.target, "");
  EXPECT_EQ(r.header_count, 0u);
  EXPECT_EQ(r.host, "");
  EXPECT_EQ(r.host_count, 0);
  EXPECT_EQ(r.path, "");
  EXPECT_EQ(r.host_lower, "");
  EXPECT_FALSE(r.keep_alive);
  EXPECT_FALSE(r.has_body);
  EXPECT_FALSE(r.chunked);
  EXPECT_EQ(r.content_length, 0u);
  EXPECT_EQ(r.range, "");
}

}  // namespace
}  // namespace baton::http

namespace baton::http {
namespace {

TEST(RequestOwn, ViewsMoveOntoTheRequestsCopy) {
  std::string buf = "GET /a?b=1 HTTP/1.1\r\nHost: x.test\r\nUser-Agent: ua\r\n\r\n";
  Request r;
  r.method = "GET";  // a constant, as llhttp_method_name() returns
  const char* method_before = r.method.data();
  r.target = std::string_view(buf).substr(4, 6);
  r.uri = r.target;
  r.query = std::string_view(buf).substr(7, 3);
  r.headers[0] = Header{std::string_view(buf).substr(21, 4), std::string_view(buf).substr(27, 6)};
  r.headers[1] = Header{std::string_view(buf).substr(35, 10), std::string_view(buf).substr(47, 2)};
  r.header_count = 2;
  r.host = r.headers[0].value;
  r.user_agent = r.headers[1].value;
  r.own(buf.data(), buf.data() + buf.size());
  // The original bytes are overwritten, as a shared read buffer is by the next request.
  std::fill(buf.begin(), buf.end(), 'Z');
  EXPECT_EQ(r.method.data(), method_before);
  EXPECT_EQ(r.target, "/a?b=1");
  EXPECT_EQ(r.uri, "/a?b=1");
  EXPECT_EQ(r.query, "b=1");
  EXPECT_EQ(r.headers[0].name, "Host");
  EXPECT_EQ(r.host, "x.test");
  EXPECT_EQ(r.user_agent, "ua");
  EXPECT_EQ(r.header("user-agent"), "ua");
  // Owning again is a no-op; a reset request owns nothing.
  r.own(r.target.data() - 4, r.target.data() + 40);
  EXPECT_EQ(r.target, "/a?b=1");
  r.reset();
  EXPECT_TRUE(r.target.empty());
}

}  // namespace
}  // namespace baton::http

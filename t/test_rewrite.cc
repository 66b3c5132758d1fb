// Regular-expression locations ([location ~ REGEX], [location ~* REGEX]) and `rewrite`: nginx's
// order of locations, the groups of a match as $1..$9 and named variables, the four flags, the
// request's arguments, the order of a level's rewrites and its return, cycles, and a rewritten URI
// that is sent upstream, checked on what clients and a real upstream see.
#include <chrono>
#include <string>

#include "harness.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

std::string site(const std::string& server_extra, const std::string& locations, const std::string& http_extra = "") {
  return make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n" + server_extra + locations, http_extra, 1);
}

std::string body_of(int port, const std::string& target) {
  Response r = get(port, target);
  return std::to_string(r.status) + " " + r.body;
}

}  // namespace

TEST(RegexLocation, NginxOrderExactThenNoRegexPrefixThenRegexesInOrderThenLongestPrefix) {
  BatonServer s;
  s.set_config(site("", R"([location /]
return = 200 prefix-root
[location /images/]
return = 200 prefix-images
[location ^~ /static/]
return = 200 no-regex
[location ~ \.(gif|jpg)$]
return = 200 "regex-image $1"
[location ~* \.PNG$]
return = 200 regex-png
[location = /exact.gif]
return = 200 exact
[location ~ ^/images/.+\.jpg$]
return = 200 second-regex
[location ~ ^/[0-9]+$]
return = 200 digits
[location ~ ^/semi;colon#hash$]
return = 200 semicolon
)"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(body_of(s.port(), "/exact.gif"), "200 exact");
  EXPECT_EQ(body_of(s.port(), "/static/a.gif"), "200 no-regex");
  // The first regex in file order wins over a longer prefix and over a later, longer regex.
  EXPECT_EQ(body_of(s.port(), "/images/a.jpg"), "200 regex-image jpg");
  EXPECT_EQ(body_of(s.port(), "/images/a.txt"), "200 prefix-images");
  EXPECT_EQ(body_of(s.port(), "/x/A.png"), "200 regex-png");
  EXPECT_EQ(body_of(s.port(), "/x/a.PnG"), "200 regex-png");
  // `~` minds the case.
  EXPECT_EQ(body_of(s.port(), "/x/a.GIF"), "200 prefix-root");
  // A pattern with brackets, ';' and '#' in its section header.
  EXPECT_EQ(body_of(s.port(), "/123"), "200 digits");
  EXPECT_EQ(body_of(s.port(), "/12a"), "200 prefix-root");
  EXPECT_EQ(body_of(s.port(), "/semi;colon%23hash"), "200 semicolon");
  // The path matched is the decoded, normalised one.
  EXPECT_EQ(body_of(s.port(), "/x/../a%2Egif"), "200 regex-image gif");
}

TEST(RegexLocation, GroupsAreVariablesNumberedAndNamed) {
  BatonServer s;
  // The named group is used in [server] before the location that defines it.
  s.set_config(site("add_header = X-Id \"id-$id\"\n",
                    R"([location ~ ^/users/(?<id>[0-9]+)/(\w+)$]
return = 200 "id=$id second=$2 whole=$0 none=$7 twelve=$12"
)"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/users/42/posts");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "id=42 second=posts whole=/users/42/posts none= twelve=422") << r;
  EXPECT_EQ(r.header("X-Id"), "id-42") << r;
  // A request that matched no regex has no groups.
  s.write_file("html/plain.txt", "p\n");
  r = get(s.port(), "/plain.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("X-Id"), "id-") << r;
}

TEST(Rewrite, LastRestartsTheLocationSearchWithTheNewUriAndKeepsTheArguments) {
  BatonServer s;
  s.set_config(site("rewrite = ^/old/(.*)$ /new/$1 last\n",
                    "[location /new/]\nreturn = 200 \"new uri=$uri args=$args request_uri=$request_uri\"\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(body_of(s.port(), "/old/a?x=1"), "200 new uri=/new/a args=x=1 request_uri=/old/a?x=1");
  EXPECT_EQ(body_of(s.port(), "/old/b"), "200 new uri=/new/b args= request_uri=/old/b");
  // What the access log shows is the request as sent.
  EXPECT_TRUE(wait_for([&] { return contains(s.access_log(), "\"GET /old/b HTTP/1.1\" 200"); }, 5000ms)) << s.access_log();
}

TEST(Rewrite, ArgumentsOfTheReplacementComeFirstAndAQuestionMarkAtTheEndDropsTheRequests) {
  BatonServer s;
  s.set_config(site(R"(rewrite = (?s)^/q/(.*)$ /search?q=$1
rewrite = ^/drop$ /search?
rewrite = ^/only$ /search?a=1?
)",
                    "[location = /search]\nreturn = 200 \"args=$args is_args=$is_args\"\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(body_of(s.port(), "/q/z?page=2"), "200 args=q=z&page=2 is_args=?");
  // A group's value is one argument's data: a space, '&' or a line break in it is escaped.
  EXPECT_EQ(body_of(s.port(), "/q/a%20b%26c%0D%0AX:1"), "200 args=q=a%20b%26c%0D%0AX:1 is_args=?");
  EXPECT_EQ(body_of(s.port(), "/drop?x=1"), "200 args= is_args=");
  EXPECT_EQ(body_of(s.port(), "/only?x=1"), "200 args=a=1 is_args=?");
}

TEST(Rewrite, RedirectPermanentAndUrlsAnswerTheClient) {
  BatonServer s;
  s.set_config(site(R"(rewrite = ^/r/(.*)$ /target/$1 redirect
rewrite = ^/p/(.*)$ /target/$1?from=p permanent
rewrite = ^/ext/(.*)$ https://example.com/$1
rewrite = (?s)^/sp/(.*)$ /target/$1 redirect
)",
                    ""));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/r/x?a=1");
  EXPECT_EQ(r.status, 302) << r;
  EXPECT_EQ(r.header("Location"), "/target/x?a=1") << r;
  r = get(s.port(), "/p/y?a=1");
  EXPECT_EQ(r.status, 301) << r;
  EXPECT_EQ(r.header("Location"), "/target/y?from=p&a=1") << r;
  r = get(s.port(), "/ext/z");
  EXPECT_EQ(r.status, 302) << r;
  EXPECT_EQ(r.header("Location"), "https://example.com/z") << r;
  // A decoded line break cannot reach the head: it is escaped in the Location.
  r = get(s.port(), "/sp/a%0D%0ASet-Cookie:%20x");
  EXPECT_EQ(r.status, 302) << r;
  EXPECT_EQ(r.header("Location"), "/target/a%0D%0ASet-Cookie:%20x") << r;
  EXPECT_FALSE(r.has("Set-Cookie")) << r;
}

TEST(Rewrite, BreakServesTheNewUriInTheSameLocationAndSkipsItsReturn) {
  BatonServer s;
  s.write_file("html/files/a.txt", "file a\n");
  s.write_file("html/files/b.txt", "file b\n");
  s.set_config(site("", R"([location /b/]
rewrite = ^/b/(.*)$ /files/$1 break
return = 403
[location /files/]
return = 200 "files location"
[location /h/]
rewrite = ^/h/$ /files/$http_x_path break
)"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(body_of(s.port(), "/b/a.txt"), "200 file a\n");
  // A request value may move the URI, but never above the root.
  Response r = get(s.port(), "/h/", "X-Path: x/../b.txt\r\n");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "file b\n");
  r = get(s.port(), "/h/", "X-Path: ../../../etc/passwd\r\n");
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_FALSE(contains(r.body, "root:")) << r;
}

TEST(Rewrite, WithoutAFlagTheLevelGoesOnAndTheOrderOfRewriteAndReturnIsKept) {
  BatonServer s;
  s.set_config(site("", R"([location /n/]
rewrite = ^/n/(.*)$ /m/$1
return = 200 "n: $uri"
[location /p/]
rewrite = ^/p/(.*)$ /q/$1
rewrite = ^/q/(.*)$ /new/$1
[location /new/]
return = 200 "new: $uri"
[location /first/]
return = 200 first
rewrite = ^ /new/x last
)"));
  ASSERT_TRUE(s.start());
  // The location's return follows its rewrites.
  EXPECT_EQ(body_of(s.port(), "/n/x"), "200 n: /m/x");
  // Each rewrite sees what the one before made; then the location is looked for again.
  EXPECT_EQ(body_of(s.port(), "/p/x"), "200 new: /new/x");
  // A return written before a rewrite comes first.
  EXPECT_EQ(body_of(s.port(), "/first/y"), "200 first");
}

TEST(Rewrite, ACycleIsAnErrorNotAHang) {
  BatonServer s;
  s.set_config(site("", "[location /loop/]\nrewrite = ^/loop/(.*)$ /loop/x$1 last\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/loop/a");
  EXPECT_EQ(r.status, 500) << r;
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), "rewrite or internal redirection cycle"); }, 5000ms))
      << s.error_log();
  // The connection and the server are fine afterwards.
  EXPECT_EQ(get(s.port(), "/loop").status, 404);
}

TEST(Rewrite, AServerRewriteBeforeItsReturnAndOneAfter) {
  BatonServer s;
  s.set_config(site("rewrite = ^/keep/(.*)$ /kept/$1 break\nreturn = 301 https://example.com$request_uri\n"
                    "rewrite = ^/never$ /kept/never last\n",
                    "[location /kept/]\nreturn = 200 \"kept $uri\"\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(body_of(s.port(), "/keep/x"), "200 kept /kept/x");
  Response r = get(s.port(), "/never");
  EXPECT_EQ(r.status, 301) << r;
  EXPECT_EQ(r.header("Location"), "https://example.com/never");
}

TEST(Rewrite, TheUpstreamGetsTheRewrittenUri) {
  TestUpstream up;
  ASSERT_TRUE(up.start()) << up.error();
  BatonServer s;
  std::string to = "http://" + up.address();
  s.set_config(site("", "[location /api/]\nrewrite = ^/api/(.*)$ /v2/$1?via=rewrite break\nproxy_pass = " + to +
                            "/base/\n"
                            "[location /old/]\nrewrite = ^/old/(.*)$ /cur/$1 last\n"
                            "[location /cur/]\nproxy_pass = " + to + "/base/\n"
                            "[location ~ ^/re/(.*)$]\nproxy_pass = " + to + "\n"
                            "[location /inject/]\nrewrite = (?s)^/inject/(.*)$ /i?p=$1 break\nproxy_pass = " + to + "\n"));
  ASSERT_TRUE(s.start());
  // After `break`, the URI part of proxy_pass no longer applies: the whole new URI is sent.
  EXPECT_EQ(get(s.port(), "/api/a%20b?x=1").status, 200);
  // After `last`, the new location's prefix is replaced as usual.
  EXPECT_EQ(get(s.port(), "/old/c").status, 200);
  // A regex location passes the request URI as it came.
  EXPECT_EQ(get(s.port(), "/re/%41?y").status, 200);
  // A decoded line break goes upstream escaped, never as a line of its own.
  EXPECT_EQ(get(s.port(), "/inject/a%0D%0AX-Injected:%20yes").status, 200);
  std::vector<std::string> targets;
  for (const auto& l : up.log_lines()) targets.push_back(l.target);
  ASSERT_EQ(targets.size(), 4u) << up.log_text();
  EXPECT_EQ(targets[0], "/v2/a%20b?via=rewrite&x=1");
  EXPECT_EQ(targets[1], "/base/c");
  EXPECT_EQ(targets[2], "/re/%41?y");
  EXPECT_EQ(targets[3], "/i?p=a%0D%0AX-Injected:%20yes");
}

TEST(RewriteConfig, MistakesNameTheirLine) {
  BatonServer s;
  struct Case {
    std::string server_extra, locations, needle, message;
  };
  const Case cases[] = {
      {"", "[location ~ ^/(unclosed$]\n", "[location ~ ^/(unclosed$]", "invalid regular expression \"^/(unclosed$\""},
      {"rewrite = ^/(a $1\n", "", "rewrite = ^/(a", "invalid regular expression"},
      {"rewrite = ^/a /b sideways\n", "", "rewrite = ^/a /b sideways", "invalid flag \"sideways\""},
      {"rewrite = ^/a\n", "", "rewrite = ^/a", "\"rewrite\" takes a regular expression, a replacement"},
      {"rewrite = ^/a b\n", "", "rewrite = ^/a b", "the replacement \"b\" of \"rewrite\" must start with \"/\""},
      {"rewrite = ^/a https://x/ last\n", "", "rewrite = ^/a https", "a \"rewrite\" to a URL redirects the client: \"last\" cannot apply"},
      {"rewrite = \"^/a b /c\n", "", "rewrite = \"^/a", "unterminated quoted text"},
      {"", "[location ~ ^/x]\nproxy_pass = http://127.0.0.1:1/base/\n", "proxy_pass", "\"proxy_pass\" cannot have a URI part"},
      {"", "[location ~ ^/x]\nalias = /tmp/\n", "alias", "\"alias\" in a regular expression location"},
      {"", "[location ~ ^/x]\nreturn = 200 $nosuchgroup\n", "return", "unknown \"nosuchgroup\" variable"},
      {"", "[location ~ ^/(?<host>x)]\n", "(?<host>", "the group \"host\" of a regular expression has the name of a variable"},
      {"rewrite = \"^/a\" \"/b c\"\n", "", "/b c", "a space in the replacement of \"rewrite\""},
  };
  for (const Case& c : cases) {
    s.set_config(site(c.server_extra, c.locations));
    RunResult r = s.test_config();
    EXPECT_NE(r.exit_code, 0) << c.message;
    std::string where = "baton.ini:" + std::to_string(line_of(s.config_text(), c.needle)) + ": ";
    EXPECT_TRUE(contains(r.err, where + c.message)) << "expected \"" << where << c.message << "\" in:\n" << r.err;
  }
  // Not in [http] (nginx has no server-wide rewrite there either).
  s.set_config(site("", "", "rewrite = ^/a /b\n"));
  RunResult r = s.test_config();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "rewrite")) << r.err;
  // A quoted regex may hold a space.
  s.set_config(site("rewrite = \"^/a b$\" /c last\n", ""));
  r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(RegexLocation, AMatchThatRunsOutOfRoomIsAnErrorNeverAFallThrough) {
  BatonServer s;
  s.set_config(site("", R"([location /]
return = 200 public
[location ~ ^/admin(/[a-z]+)*$]
return = 403
[location ~ ^/slow/(\w+\s?)*$]
return = 200 slow
)"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/admin/a/b").status, 403);
  // A long path: many repetitions of the group (a small JIT stack runs out on them).
  std::string path = "/admin";
  for (int i = 0; i < 830; i++) path += "/a";
  Response r = get(s.port(), path);
  EXPECT_EQ(r.status, 403) << r;
  // A pattern that backtracks without end on a hostile path: stopped early, and a 500, never the
  // location a failed match would fall through to.
  auto started = std::chrono::steady_clock::now();
  r = get(s.port(), "/slow/" + std::string(4000, 'a') + "!");
  EXPECT_EQ(r.status, 500) << r;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), "^/slow/(\\w+\\s?)*$"); }, 5000ms)) << s.error_log();
}

TEST(Rewrite, AnIncludedRewriteKeepsItsPlaceBeforeTheReturn) {
  BatonServer s;
  s.write_file("conf/redirects.ini", "rewrite = ^/old/(.*)$ /new/$1 permanent\n");
  s.write_file("conf/late.ini", "return = 200 late\n");
  s.set_config(site("", "[location /old/]\ninclude = redirects.ini\nreturn = 404\n"
                        "[location /late/]\ninclude = late.ini\nrewrite = ^ /new/x permanent\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/old/x");
  EXPECT_EQ(r.status, 301) << r;
  EXPECT_EQ(r.header("Location"), "/new/x");
  // A return read from an included file before a rewrite still comes first.
  EXPECT_EQ(body_of(s.port(), "/late/y"), "200 late");
}

TEST(Rewrite, ValuesAreEscapedByWhereTheyComeFrom) {
  BatonServer s;
  s.set_config(site(R"(rewrite = ^/r/(.*)$ /t/$1 redirect
rewrite = ^/a$ /b?x=1&$args?
)",
                    "[location = /b]\nreturn = 200 \"args=$args\"\n"));
  ASSERT_TRUE(s.start());
  // A decoded group keeps its '%' and '#' escaped in a URL.
  Response r = get(s.port(), "/r/100%25");
  EXPECT_EQ(r.header("Location"), "/t/100%25") << r;
  r = get(s.port(), "/r/a%23b%3Fc");
  EXPECT_EQ(r.header("Location"), "/t/a%23b%3Fc") << r;
  // The request's arguments are already escaped: they are not escaped again.
  EXPECT_EQ(body_of(s.port(), "/a?p=1&q=%20"), "200 args=x=1&p=1&q=%20");
}

TEST(Rewrite, TenChangesAreAllowedTheEleventhIsACycle) {
  BatonServer s;
  std::string locations;
  for (int i = 0; i < 11; i++)
    locations += "[location /c" + std::to_string(i) + "/]\nrewrite = ^/c" + std::to_string(i) + "/$ /c" +
                 std::to_string(i + 1) + "/ last\n";
  locations += "[location /c11/]\nrewrite = ^/nomatch$ /x last\nreturn = 200 eleven\n";
  locations += "[location /c10/x]\nrewrite = ^/nomatch$ /x last\nreturn = 200 ten\n";
  s.set_config(site("error_page = 500 /oops\n", locations + "[location = /oops]\nreturn = 200 \"oops\"\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(body_of(s.port(), "/c1/"), "200 eleven");   // ten changes
  // Eleven changes: a 500, which is an error like any other (its page; no body for HEAD).
  Response r = get(s.port(), "/c0/");
  EXPECT_EQ(r.status, 500) << r;
  EXPECT_EQ(r.body, "oops");
  Client c(s.port());
  r = c.exchange(req("HEAD", "/c0/"), true);
  EXPECT_EQ(r.status, 500) << r;
  EXPECT_TRUE(r.body.empty()) << r;
  // The connection stays open after it.
  EXPECT_EQ(c.exchange(req("GET", "/c10/x")).body, "ten");
}

TEST(Rewrite, ATryFilesFallbackIsRoutedAgainThroughRewritesAndLocations) {
  TestUpstream up;
  ASSERT_TRUE(up.start({"--name", "app"})) << up.error();
  BatonServer s;
  s.write_file("html/tf/real.txt", "real\n");
  s.set_config(site("", "[location /tf/]\ntry_files = $uri /legacy/x\n"
                        "[location /legacy/]\nrewrite = ^ /new/ last\nreturn = 200 legacy\n"
                        "[location /new/]\nreturn = 200 \"new $uri\"\n"
                        "[location /spa/]\ntry_files = $uri /app/index?from=spa\n"
                        "[location /app/]\nproxy_pass = http://" + up.address() + "\n"
                        "[location /circle/]\ntry_files = $uri /circle/again\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(body_of(s.port(), "/tf/real.txt"), "200 real\n");
  // The fallback's location runs its rewrites (nginx's internal redirect), not only its return.
  EXPECT_EQ(body_of(s.port(), "/tf/missing"), "200 new /new/");
  // A fallback into a proxied location is proxied, with the fallback's URI and arguments.
  Response r = get(s.port(), "/spa/deep/link");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("X-Upstream"), "app") << r;
  ASSERT_EQ(up.log_lines().size(), 1u) << up.log_text();
  EXPECT_EQ(up.log_lines()[0].target, "/app/index?from=spa");
  // A fallback that falls back to itself ends in a 500.
  EXPECT_EQ(get(s.port(), "/circle/x").status, 500);
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), "rewrite or internal redirection cycle"); }, 5000ms));
}

// allow / deny: first match wins, inherited as a set, IPv4, IPv6 and unix-socket clients, a 403 that
// goes through error_page and an nginx-style error-log line, checked before every handler.
#include <string>

#include "harness.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

// One server on 127.0.0.1:PORT serving html/, its own keys `server_extra`, then `locations`.
std::string site(const std::string& server_extra, const std::string& locations = "",
                 const std::string& http_extra = "") {
  return make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n" + server_extra + locations,
                     http_extra, 1);
}

// html/a.txt, and an a.txt in each directory the tests' locations use.
void write_files(BatonServer& s) {
  for (const char* dir : {"", "a/", "b/", "c/", "d/", "open/", "closed/", "secret/", "private/"})
    s.write_file(std::string("html/") + dir + "a.txt", "file\n");
}

// `baton.ini:N: ` for the configuration line that holds `text`.
std::string where(const BatonServer& s, std::string_view text) {
  return "baton.ini:" + std::to_string(line_of(s.config_text(), text)) + ": ";
}

}  // namespace

// ---- allow / deny -------------------------------------------------------------------------------

TEST(Access, FirstMatchWinsInTheOrderWritten) {
  BatonServer s;
  write_files(s);
  s.set_config(site("",
                    "[location /a/]\ndeny = 127.0.0.1\nallow = 127.0.0.0/8\n"
                    "[location /b/]\nallow = 127.0.0.0/8\ndeny = 127.0.0.1\n"
                    "[location /c/]\nallow = 10.0.0.0/8\ndeny = all\n"
                    "[location /d/]\ndeny = 10.0.0.0/8\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/a/a.txt");
  EXPECT_TRUE(is_error_page(r, 403, "Forbidden")) << r;
  EXPECT_EQ(get(s.port(), "/b/a.txt").status, 200);
  EXPECT_EQ(get(s.port(), "/c/a.txt").status, 403);
  // No rule matches: the client is let in.
  EXPECT_EQ(get(s.port(), "/d/a.txt").status, 200);
  EXPECT_EQ(get(s.port(), "/a.txt").status, 200);
  // HEAD is refused the same way, without a body.
  EXPECT_EQ(head(s.port(), "/a/a.txt").status, 403);
}

// A level with its own allow/deny lines has only those; one without inherits its parent's set.
TEST(Access, InheritedAsASet) {
  BatonServer s;
  write_files(s);
  s.set_config(site("deny = all\n",
                    "[location /open/]\nallow = 127.0.0.1\n"
                    "[location /closed/]\nroot = html\n"
                    "[location /d/]\ndeny = 10.0.0.0/8\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/open/a.txt").status, 200);
  EXPECT_EQ(get(s.port(), "/closed/a.txt").status, 403);
  EXPECT_EQ(get(s.port(), "/a.txt").status, 403);  // the server's own rules, for what no location takes
  // The location's single rule does not match and the server's `deny = all` is not part of its set.
  EXPECT_EQ(get(s.port(), "/d/a.txt").status, 200);
}

TEST(Access, InheritedFromHttp) {
  BatonServer s;
  write_files(s);
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                           "[server other]\nlisten = 127.0.0.1:@PORT2@\nroot = html\nallow = 127.0.0.1\n",
                           "deny = all\n", 1));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(0), "/a.txt").status, 403);
  EXPECT_EQ(get(s.port(1), "/a.txt").status, 200);
}

// The check comes before every handler: a `return`, a [server] `return` and the proxy too.
TEST(Access, RefusedBeforeReturnAndProxy) {
  TestUpstream up;
  ASSERT_TRUE(up.start({})) << up.error();
  BatonServer s;
  s.set_config(make_config("[upstream app]\nserver = " + up.address() +
                               "\n[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                               "[location = /r]\ndeny = all\nreturn = 200 hello\n"
                               "[location /up/]\ndeny = 127.0.0.0/8\nproxy_pass = http://app\n"
                               "[server redirect]\nlisten = 127.0.0.1:@PORT2@\ndeny = all\n"
                               "return = 301 https://example.com$request_uri\n",
                           "", 1));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/r");
  EXPECT_EQ(r.status, 403) << r;
  EXPECT_FALSE(contains(r.body, "hello")) << r;
  EXPECT_EQ(get(s.port(), "/up/x").status, 403);
  EXPECT_EQ(up.stats().requests, 0);
  r = get(s.port(1), "/x");
  EXPECT_EQ(r.status, 403) << r;
  EXPECT_FALSE(r.has("Location")) << r;
}

TEST(Access, ErrorLogLineAsNginxWritesIt) {
  BatonServer s;
  write_files(s);
  s.set_config(site("server_name = example.test\n", "[location /secret/]\ndeny = all\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/secret/a.txt?x=1").status, 403);
  std::string line = "access forbidden by rule, client: 127.0.0.1, server: example.test, "
                     "request: \"GET /secret/a.txt?x=1 HTTP/1.1\", host: \"localhost\"";
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), line); }, 2000ms)) << s.error_log();
  EXPECT_TRUE(contains(s.error_log(), "[error]")) << s.error_log();
  EXPECT_TRUE(wait_for([&] { return contains(s.access_log(), "\"GET /secret/a.txt?x=1 HTTP/1.1\" 403 "); }, 2000ms))
      << s.access_log();
}

TEST(Access, ForbiddenGoesThroughErrorPage) {
  BatonServer s;
  write_files(s);
  s.write_file("html/errors/403.html", "go away\n");
  s.set_config(site("error_page = 403 /errors/403.html\n",
                    "[location /secret/]\ndeny = all\n"
                    "[location = /r]\ndeny = all\nreturn = 200 hello\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/secret/a.txt");
  EXPECT_EQ(r.status, 403) << r;
  EXPECT_EQ(r.body, "go away\n");
  // A location's `return` with a text has no error pages of its own; a refused request gets them.
  r = get(s.port(), "/r");
  EXPECT_EQ(r.status, 403) << r;
  EXPECT_EQ(r.body, "go away\n");
}

// The redirect to the page is checked like any request (nginx's rule): a page in a location the
// client may not see is not served, and the built-in page goes out instead.
TEST(Access, AnErrorPageTheClientMayNotSeeGivesTheBuiltInPage) {
  BatonServer s;
  write_files(s);
  s.write_file("html/403.html", "go away\n");
  s.set_config(site("deny = all\nerror_page = 403 /403.html\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/a.txt");
  EXPECT_TRUE(is_error_page(r, 403, "Forbidden")) << r;
}

// A try_files fallback is an internal redirect: the location it lands in checks the client again.
TEST(Access, TryFilesFallbackIntoARefusedLocation) {
  BatonServer s;
  write_files(s);
  s.set_config(site("", "[location /]\ntry_files = $uri /private/a.txt\n[location /private/]\ndeny = all\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a.txt").status, 200);
  EXPECT_EQ(get(s.port(), "/missing").status, 403);
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), "access forbidden by rule, client: 127.0.0.1"); }, 2000ms))
      << s.error_log();
}

TEST(Access, Ipv6) {
  if (!ipv6_loopback_available()) GTEST_SKIP() << "no IPv6 loopback on this machine";
  BatonServer s;
  write_files(s);
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nlisten = [::1]:@PORT2@\nroot = html\n"
                           "[location /a/]\nallow = ::1\ndeny = all\n"
                           "[location /b/]\ndeny = ::/0\n"
                           "[location /c/]\nallow = 127.0.0.1\ndeny = ::1/128\nallow = all\n"
                           "[location /d/]\ndeny = fe80::/10\n",
                           "", 1));
  ASSERT_TRUE(s.start());
  auto over_v6 = [&](const std::string& path) {
    Client c("::1", s.port(1));
    return c.exchange("GET " + path + " HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n").status;
  };
  EXPECT_EQ(over_v6("/a/a.txt"), 200);
  EXPECT_EQ(get(s.port(), "/a/a.txt").status, 403);
  EXPECT_EQ(over_v6("/b/a.txt"), 403);
  EXPECT_EQ(get(s.port(), "/b/a.txt").status, 200);  // an IPv6 range is no IPv4 one
  EXPECT_EQ(over_v6("/c/a.txt"), 403);
  EXPECT_EQ(get(s.port(), "/c/a.txt").status, 200);
  EXPECT_EQ(over_v6("/d/a.txt"), 200);
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), "access forbidden by rule, client: ::1,"); }, 2000ms))
      << s.error_log();
}

// A unix-socket client has no address: `all` and `unix:` match it, no IP range does.
TEST(Access, UnixSocketClients) {
  BatonServer s;
  write_files(s);
  std::string sock = s.path("http.sock");
  s.set_config(make_config("[server main]\nlisten = unix:@PREFIX@/http.sock\nroot = html\n"
                           "[location /a/]\ndeny = 0.0.0.0/0\ndeny = ::/0\n"
                           "[location /b/]\ndeny = all\n"
                           "[location /c/]\ndeny = unix:\n"
                           "[location /d/]\nallow = unix:\ndeny = all\n",
                           "", 1));
  ASSERT_TRUE(s.start([&] { return file_exists(sock); }));
  auto status = [&](const std::string& path) {
    Client c = Client::unix_socket(sock);
    return c.exchange(req("GET", path, "Connection: close\r\n")).status;
  };
  EXPECT_EQ(status("/a/a.txt"), 200);
  EXPECT_EQ(status("/b/a.txt"), 403);
  EXPECT_EQ(status("/c/a.txt"), 403);
  EXPECT_EQ(status("/d/a.txt"), 200);
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), "access forbidden by rule, client: unix:,"); }, 2000ms))
      << s.error_log();
}

TEST(Access, BadLinesAreRefusedWithTheirLine) {
  BatonServer s;
  s.set_config(site("allow = 10.0.0.300\n"));
  RunResult r = s.test_config();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, where(s, "allow = 10.0.0.300") + "invalid address \"10.0.0.300\" in \"allow\"")) << r.err;

  s.set_config(site("", "[location /]\ndeny = 10.0.0.0/33\n"));
  r = s.test_config();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, where(s, "deny = 10.0.0.0/33") + "invalid prefix length \"/33\" in \"deny\"")) << r.err;

  s.set_config(site("deny = 2001:db8::/129\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "deny = 2001:db8") + "invalid prefix length \"/129\"")) << r.err;

  s.set_config(site("allow = example.com\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "allow = example.com") + "invalid address")) << r.err;

  s.set_config(make_config("[upstream app]\nserver = 127.0.0.1:9\nallow = 127.0.0.1\n"
                           "[server main]\nlisten = 127.0.0.1:@PORT@\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "allow = 127.0.0.1") + "\"allow\" belongs in [http], [server] or [location]"))
      << r.err;

  // satisfy is not part of access control yet.
  s.set_config(site("satisfy = any\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "satisfy") + "\"satisfy\" is not supported yet")) << r.err;
}

// Bits past the prefix mean nothing: nginx warns and uses the network, and so does baton.
TEST(Access, HostBitsPastThePrefixAreAWarning) {
  BatonServer s;
  write_files(s);
  s.set_config(site("", "[location /a/]\ndeny = 127.0.0.1/8\n"));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "[warn]")) << r.err;
  EXPECT_TRUE(contains(r.err, where(s, "deny = 127.0.0.1/8") + "low address bits of 127.0.0.1/8 are meaningless"))
      << r.err;
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a/a.txt").status, 403);  // 127.0.0.0/8
}

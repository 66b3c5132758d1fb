// allow / deny (first match wins, inherited as a set, IPv4, IPv6 and unix-socket clients, a 403 that
// goes through error_page and an nginx-style error-log line) and the real client address
// (set_real_ip_from, real_ip_header, real_ip_recursive): what $remote_addr, the access log,
// allow/deny, ip_hash and the upstream's X-Real-IP / X-Forwarded-For see.
#include <map>
#include <set>
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

// The access log line of the request with User-Agent `agent` ("" if none appears within 2 s).
std::string log_line(BatonServer& s, std::string_view agent) {
  std::string needle = "\"" + std::string(agent) + "\"";
  std::string found;
  wait_for(
      [&] {
        std::string log = s.access_log();
        size_t pos = log.find(needle);
        if (pos == std::string::npos) return false;
        size_t start = log.rfind('\n', pos);
        start = start == std::string::npos ? 0 : start + 1;
        found = log.substr(start, log.find('\n', pos) - start);
        return true;
      },
      2000ms);
  return found;
}

// `baton.ini:N: ` for the configuration line that holds `text`.
std::string where(const BatonServer& s, std::string_view text) {
  return "baton.ini:" + std::to_string(line_of(s.config_text(), text)) + ": ";
}

// A location that answers with the address it sees.
const char* kShowAddr = "[location = /addr]\nreturn = 200 \"$remote_addr|$remote_port\"\n";

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

  // satisfy weighs allow/deny against basic authentication: all or any (see test_auth.cc).
  s.set_config(site("satisfy = either\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "satisfy") + "invalid value (all or any) \"either\" in \"satisfy\"")) << r.err;
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

// ---- the real client address ---------------------------------------------------------------------

TEST(RealIp, XRealIpFromATrustedPeer) {
  BatonServer s;
  s.set_config(site("set_real_ip_from = 127.0.0.1\n", kShowAddr));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/addr", "X-Real-IP: 203.0.113.7\r\nUser-Agent: real-1\r\n");
  // The header names no port: $remote_port is empty, as in nginx.
  EXPECT_EQ(r.body, "203.0.113.7|") << r;
  EXPECT_EQ(log_line(s, "real-1").rfind("203.0.113.7 - - [", 0), 0u) << s.access_log();
  r = get(s.port(), "/addr", "X-Real-IP: [2001:db8::7]:4430\r\n");
  EXPECT_EQ(r.body, "2001:db8::7|4430") << r;
  // Without the header, the peer is the client.
  r = get(s.port(), "/addr", "User-Agent: real-2\r\n");
  EXPECT_EQ(r.body.rfind("127.0.0.1|", 0), 0u) << r;
  EXPECT_GT(r.body.size(), std::string("127.0.0.1|").size()) << r;
  EXPECT_EQ(log_line(s, "real-2").rfind("127.0.0.1 - - [", 0), 0u) << s.access_log();
  // The address belongs to the request, not to the connection: the next request on it starts over.
  Client c(s.port());
  EXPECT_EQ(c.exchange(req("GET", "/addr", "X-Real-IP: 203.0.113.7\r\n")).body, "203.0.113.7|");
  r = c.exchange(req("GET", "/addr"));
  EXPECT_EQ(r.body.rfind("127.0.0.1|", 0), 0u) << r;
}

TEST(RealIp, HeaderOfAnUntrustedPeerIsIgnored) {
  BatonServer s;
  s.set_config(site("set_real_ip_from = 10.0.0.0/8\nset_real_ip_from = 2001:db8::/32\n", kShowAddr));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/addr", "X-Real-IP: 203.0.113.7\r\nUser-Agent: untrusted\r\n");
  EXPECT_EQ(r.body.rfind("127.0.0.1|", 0), 0u) << r;
  EXPECT_EQ(log_line(s, "untrusted").rfind("127.0.0.1 - - [", 0), 0u) << s.access_log();
}

TEST(RealIp, MalformedValuesLeaveThePeer) {
  BatonServer s;
  s.set_config(site("set_real_ip_from = 127.0.0.1\n", std::string(kShowAddr) +
                                                          "[location = /xff]\nreal_ip_header = X-Forwarded-For\n"
                                                          "return = 200 $remote_addr\n"));
  ASSERT_TRUE(s.start());
  for (const char* bad : {"unknown", "203.0.113.7.1", "203.0.113.7:99999", "[2001:db8::7]", "\"203.0.113.7\""}) {
    Response r = get(s.port(), "/addr", std::string("X-Real-IP: ") + bad + "\r\n");
    EXPECT_EQ(r.body.rfind("127.0.0.1|", 0), 0u) << bad << ": " << r;
  }
  EXPECT_EQ(get(s.port(), "/xff", "X-Forwarded-For: 203.0.113.7, garbage\r\n").body, "127.0.0.1");
  EXPECT_EQ(get(s.port(), "/xff", "X-Forwarded-For: 203.0.113.7\r\n").body, "203.0.113.7");
}

TEST(RealIp, XForwardedForWithAndWithoutRecursion) {
  BatonServer s;
  s.set_config(site("set_real_ip_from = 127.0.0.1\nset_real_ip_from = 10.0.0.0/8\nreal_ip_header = X-Forwarded-For\n",
                    "[location = /last]\nreturn = 200 $remote_addr\n"
                    "[location = /walk]\nreal_ip_recursive = on\nreturn = 200 $remote_addr\n"));
  ASSERT_TRUE(s.start());
  const std::string chain = "X-Forwarded-For: 198.51.100.1, 203.0.113.7, 10.0.0.2\r\n";
  // Without recursion the last address is the client, trusted or not.
  EXPECT_EQ(get(s.port(), "/last", chain).body, "10.0.0.2");
  // With it, the walk from the right skips trusted proxies and stops at the first other address.
  EXPECT_EQ(get(s.port(), "/walk", chain).body, "203.0.113.7");
  // Several lines make one list; every address trusted gives the leftmost.
  EXPECT_EQ(get(s.port(), "/walk", "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 10.1.1.1, 10.0.0.2\r\n").body,
            "203.0.113.9");
  EXPECT_EQ(get(s.port(), "/walk", "X-Forwarded-For: 10.9.9.9, 10.0.0.2\r\n").body, "10.9.9.9");
  // X-Real-IP is not read when the header is X-Forwarded-For.
  EXPECT_EQ(get(s.port(), "/last", "X-Real-IP: 203.0.113.7\r\n").body, "127.0.0.1");
}

TEST(RealIp, AnyHeaderName) {
  BatonServer s;
  s.set_config(site("set_real_ip_from = 127.0.0.1\nreal_ip_header = CF-Connecting-IP\n",
                    "[location = /a]\nreturn = 200 $remote_addr\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a", "cf-connecting-ip: 198.51.100.20\r\n").body, "198.51.100.20");
  EXPECT_EQ(get(s.port(), "/a", "X-Real-IP: 198.51.100.20\r\n").body, "127.0.0.1");
}

// allow/deny see the real address, and so does the error-log line of a refusal.
TEST(RealIp, DecidesAllowAndDeny) {
  BatonServer s;
  write_files(s);
  s.set_config(site("set_real_ip_from = 127.0.0.1\ndeny = 203.0.113.0/24\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a.txt").status, 200);
  EXPECT_EQ(get(s.port(), "/a.txt", "X-Real-IP: 198.51.100.1\r\n").status, 200);
  EXPECT_EQ(get(s.port(), "/a.txt", "X-Real-IP: 203.0.113.7\r\n").status, 403);
  EXPECT_TRUE(
      wait_for([&] { return contains(s.error_log(), "access forbidden by rule, client: 203.0.113.7,"); }, 2000ms))
      << s.error_log();
  // An IPv4-mapped IPv6 address is matched as the IPv4 address it is.
  EXPECT_EQ(get(s.port(), "/a.txt", "X-Real-IP: ::ffff:203.0.113.8\r\n").status, 403);
  EXPECT_EQ(get(s.port(), "/a.txt", "X-Real-IP: ::ffff:198.51.100.1\r\n").status, 200);
}

// The upstream is told the real address, and ip_hash balances on it.
TEST(RealIp, ThroughTheProxy) {
  TestUpstream a, b;
  ASSERT_TRUE(a.start({"--name", "a"})) << a.error();
  ASSERT_TRUE(b.start({"--name", "b"})) << b.error();
  BatonServer s;
  s.set_config(make_config("[upstream app]\nserver = " + a.address() + "\nbalance = ip_hash\n"
                           "[upstream pair]\nserver = " + a.address() + "\nserver = " + b.address() +
                               "\nbalance = ip_hash\n"
                               "[server main]\nlisten = 127.0.0.1:@PORT@\nset_real_ip_from = 127.0.0.1\n"
                               "[location /]\nproxy_pass = http://app\n"
                               "[location /pair/]\nproxy_pass = http://pair/\n",
                           "", 1));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/headers", "X-Real-IP: 203.0.113.7\r\n");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_TRUE(contains(r.body, "\r\nX-Real-IP: 203.0.113.7\r\n")) << r.body;
  EXPECT_TRUE(contains(r.body, "\r\nX-Forwarded-For: 203.0.113.7\r\n")) << r.body;
  // A list the client sent is kept, and the real address appended (nginx's
  // $proxy_add_x_forwarded_for).
  r = get(s.port(), "/headers", "X-Real-IP: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.1\r\n");
  EXPECT_TRUE(contains(r.body, "\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.7\r\n")) << r.body;

  // Every request comes from 127.0.0.1; the clients it names spread over both servers, each
  // staying on its own.
  std::map<std::string, std::string> where;
  std::set<std::string> servers;
  for (int net = 1; net <= 16; net++) {
    std::string client = "198.51." + std::to_string(net) + ".7";
    std::string got = get(s.port(), "/pair/size/1", "X-Real-IP: " + client + "\r\n").header("X-Upstream");
    ASSERT_TRUE(got == "a" || got == "b") << client << ": " << got;
    where[client] = got;
    servers.insert(got);
  }
  EXPECT_EQ(servers.size(), 2u) << "16 client networks all went to one server";
  for (const auto& [client, server] : where)
    EXPECT_EQ(get(s.port(), "/pair/size/1?again", "X-Real-IP: " + client + "\r\n").header("X-Upstream"), server)
        << client;
}

// On a proxy_protocol address the PROXY header's client is the peer. real_ip_header =
// proxy_protocol believes that header only from the proxies set_real_ip_from trusts; the other
// fields are trusted by the proxy's own address, not by the client the header names.
TEST(RealIp, ProxyProtocol) {
  BatonServer s;
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@ proxy_protocol\n"
                           "[location = /plain]\nreturn = 200 \"$remote_addr|$remote_port\"\n"
                           "[location = /trusted]\nset_real_ip_from = 127.0.0.1\nreal_ip_header = proxy_protocol\n"
                           "return = 200 \"$remote_addr|$remote_port\"\n"
                           "[location = /untrusted]\nset_real_ip_from = 10.0.0.0/8\nreal_ip_header = proxy_protocol\n"
                           "return = 200 \"$remote_addr|$remote_port\"\n"
                           "[location = /field]\nset_real_ip_from = 127.0.0.1\nreturn = 200 $remote_addr\n"
                           "[location = /field-by-client]\nset_real_ip_from = 192.0.2.10\nreturn = 200 $remote_addr\n",
                           "", 1));
  ASSERT_TRUE(s.start());
  auto ask = [&](const std::string& path, const std::string& headers = "") {
    Client c(s.port());
    std::string proxy_header = "PROXY TCP4 192.0.2.10 192.0.2.1 40000 80\r\n";
    return c.exchange(proxy_header + req("GET", path, headers + "Connection: close\r\n")).body;
  };
  EXPECT_EQ(ask("/plain"), "192.0.2.10|40000");
  EXPECT_EQ(ask("/trusted"), "192.0.2.10|40000");
  std::string untrusted = ask("/untrusted");
  EXPECT_EQ(untrusted.rfind("127.0.0.1|", 0), 0u) << untrusted;
  EXPECT_NE(untrusted, "127.0.0.1|40000");
  EXPECT_EQ(ask("/field", "X-Real-IP: 203.0.113.7\r\n"), "203.0.113.7");
  EXPECT_EQ(ask("/field-by-client", "X-Real-IP: 203.0.113.7\r\n"), "192.0.2.10");
}

TEST(RealIp, BadLinesAreRefusedWithTheirLine) {
  BatonServer s;
  s.set_config(site("set_real_ip_from = all\n"));
  RunResult r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "set_real_ip_from = all") + "invalid address \"all\" in \"set_real_ip_from\""))
      << r.err;
  EXPECT_TRUE(contains(r.err, "0.0.0.0/0")) << r.err;
  s.set_config(site("set_real_ip_from = 10.0.0.0/40\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "set_real_ip_from") + "invalid prefix length \"/40\"")) << r.err;
  s.set_config(site("real_ip_header = X Real IP\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "real_ip_header") + "invalid header name")) << r.err;
  s.set_config(site("real_ip_recursive = yes\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "real_ip_recursive") + "invalid switch")) << r.err;
  s.set_config(site("real_ip_header = X-Real-IP\nreal_ip_header = X-Forwarded-For\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, "\"real_ip_header\" is duplicate")) << r.err;
  s.set_config(make_config("[upstream app]\nserver = 127.0.0.1:9\nset_real_ip_from = 127.0.0.1\n"
                           "[server main]\nlisten = 127.0.0.1:@PORT@\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "set_real_ip_from") + "\"set_real_ip_from\" belongs in")) << r.err;
}

// Unit tests of the proxy side of src/http/http_config.h: [upstream] sections into UpstreamGroup
// objects (servers resolved, options, balancing), proxy_pass into a location's ProxyPass (named
// and implicit groups, nginx's URI rule), the inherited proxy_* settings, and the errors, each with
// file:line.
#include <gtest/gtest.h>
#include <netdb.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <set>
#include <string>

#include "http/http_config.h"
#include "http/http_request.h"

namespace baton::http {
namespace {

class ProxyConfTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/baton-proxy-conf-XXXXXX";
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

  std::string error(std::string_view text) {
    try {
      parse(text);
    } catch (const ConfError& e) {
      return e.what();
    }
    ADD_FAILURE() << "accepted:\n" << text;
    return "";
  }

  // Expects an error at line that mentions what.
  void expect_error(std::string_view text, int line, std::string_view what) {
    std::string err = error(text);
    std::string where = "t.ini:" + std::to_string(line) + ": ";
    EXPECT_EQ(err.rfind(where, 0), 0u) << "want " << where << "..., got: " << err << "\nin:\n" << text;
    EXPECT_NE(err.find(what), std::string::npos) << "want \"" << what << "\" in: " << err;
  }

  std::string prefix_;
  ConfFile conf_;
};

const UpstreamGroup* group(const HttpConf& http, std::string_view name) {
  for (const auto& g : http.upstreams)
    if (g->name == name) return g.get();
  ADD_FAILURE() << "no group " << name;
  return nullptr;
}

const Location* loc(const HttpConf& http, std::string_view path, size_t server = 0) {
  const Location* l = http.servers.at(server)->find_location(path);
  EXPECT_NE(l, nullptr) << path;
  return l;
}

// The value of a proxy_set_header template for a small request.
std::string value_of(const ProxySetHeader& h) {
  Request req;
  req.method = "GET";
  req.target = "/x?y=1";
  req.path = "/x";
  req.query = "y=1";
  req.host_lower = "example.com";
  req.headers[0] = {"X-Forwarded-For", "192.0.2.1"};
  req.headers[1] = {"X-Custom", "custom value"};
  req.header_count = 2;
  SockAddr peer_addr;
  EXPECT_EQ(parse_sockaddr("198.51.100.4:40000", &peer_addr), "");
  PeerAddr peer(peer_addr);
  VarContext ctx;
  ctx.req = &req;
  ctx.peer = &peer;
  ctx.proxy_host = "app";
  std::string out;
  h.value.evaluate(ctx, &out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// [upstream NAME]

TEST_F(ProxyConfTest, UpstreamWithDefaults) {
  auto http = parse(
      "[upstream app]\n"
      "server = 127.0.0.1:9000\n");
  ASSERT_EQ(http->upstreams.size(), 1u);
  const UpstreamGroup& g = *http->upstreams[0];
  EXPECT_EQ(g.name, "app");
  EXPECT_EQ(g.line, 1);
  EXPECT_FALSE(g.implicit);
  EXPECT_EQ(g.balance, Balance::kRoundRobin);
  EXPECT_EQ(g.keepalive, 32u);
  EXPECT_EQ(g.keepalive_timeout_ms, 60000);
  EXPECT_EQ(g.keepalive_requests, 1000u);
  EXPECT_EQ(g.connect_timeout_ms, 5000);
  EXPECT_EQ(g.read_timeout_ms, 60000);
  EXPECT_EQ(g.send_timeout_ms, 60000);
  ASSERT_EQ(g.servers.size(), 1u);
  const UpstreamServer& s = g.servers[0];
  EXPECT_EQ(s.text, "127.0.0.1:9000");
  EXPECT_EQ(s.addr.to_string(), "127.0.0.1:9000");
  EXPECT_EQ(s.line, 2);
  EXPECT_EQ(s.weight, 1);
  EXPECT_EQ(s.max_fails, 1);
  EXPECT_EQ(s.fail_timeout_ms, 10000);
  EXPECT_FALSE(s.backup);
  EXPECT_FALSE(s.down);
}

TEST_F(ProxyConfTest, ServerOptions) {
  auto http = parse(
      "[upstream app]\n"
      "server = 127.0.0.1:9000 weight=3 max_fails=5 fail_timeout=30s\n"
      "server = 127.0.0.2:9001 max_fails=0 down\n"
      "server = 127.0.0.3 backup\n"
      "server = [::1]:9002 weight=1000\n"
      "server = unix:/run/app.sock weight=2\n");
  const UpstreamGroup* g = group(*http, "app");
  ASSERT_NE(g, nullptr);
  ASSERT_EQ(g->servers.size(), 5u);
  EXPECT_EQ(g->servers[0].weight, 3);
  EXPECT_EQ(g->servers[0].max_fails, 5);
  EXPECT_EQ(g->servers[0].fail_timeout_ms, 30000);
  EXPECT_EQ(g->servers[1].max_fails, 0);
  EXPECT_TRUE(g->servers[1].down);
  EXPECT_FALSE(g->servers[1].backup);
  // No port: 80, as in nginx.
  EXPECT_EQ(g->servers[2].text, "127.0.0.3:80");
  EXPECT_TRUE(g->servers[2].backup);
  EXPECT_EQ(g->servers[2].line, 4);
  EXPECT_EQ(g->servers[3].text, "[::1]:9002");
  EXPECT_EQ(g->servers[3].addr.family(), AF_INET6);
  EXPECT_EQ(g->servers[3].weight, 1000);
  EXPECT_EQ(g->servers[4].addr.family(), AF_UNIX);
  EXPECT_EQ(g->servers[4].text, "unix:/run/app.sock");
  EXPECT_EQ(g->servers[4].weight, 2);
}

TEST_F(ProxyConfTest, GroupOptions) {
  auto http = parse(
      "[upstream app]\n"
      "server = 127.0.0.1:9000\n"
      "balance = least_conn\n"
      "keepalive = 0\n"
      "keepalive_timeout = 4s\n"
      "keepalive_requests = 100\n"
      "connect_timeout = 500ms\n"
      "read_timeout = 2m\n"
      "send_timeout = 7s\n");
  const UpstreamGroup* g = group(*http, "app");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->balance, Balance::kLeastConn);
  EXPECT_EQ(g->keepalive, 0u);
  EXPECT_EQ(g->keepalive_timeout_ms, 4000);
  EXPECT_EQ(g->keepalive_requests, 100u);
  EXPECT_EQ(g->connect_timeout_ms, 500);
  EXPECT_EQ(g->read_timeout_ms, 120000);
  EXPECT_EQ(g->send_timeout_ms, 7000);
  // The upstream's keepalive_timeout and send_timeout are its own: the clients' stay as they were.
  EXPECT_EQ(http->base.keepalive_timeout_ms, 75000);
  EXPECT_EQ(http->base.send_timeout_ms, 60000);
}

TEST_F(ProxyConfTest, BalanceMethods) {
  auto balance_of = [&](std::string_view value) {
    auto http = parse("[upstream app]\nserver = 127.0.0.1:9000\nbalance = " + std::string(value) + "\n");
    return http->upstreams.at(0)->balance;
  };
  EXPECT_EQ(balance_of("round_robin"), Balance::kRoundRobin);
  EXPECT_EQ(balance_of("least_conn"), Balance::kLeastConn);
  EXPECT_EQ(balance_of("ip_hash"), Balance::kIpHash);
  EXPECT_EQ(balance_of("hash $request_uri"), Balance::kHash);
  // nginx needs "consistent" for it; here hashing always is, and the word is accepted.
  EXPECT_EQ(balance_of("hash $request_uri consistent"), Balance::kHash);
}

TEST_F(ProxyConfTest, HashKeyIsATemplate) {
  auto http = parse("[upstream app]\nserver = 127.0.0.1:9000\nbalance = hash $host$request_uri consistent\n");
  const UpstreamGroup& g = *http->upstreams.at(0);
  ASSERT_EQ(g.balance, Balance::kHash);
  EXPECT_TRUE(g.hash_key.has_variables());
  Request req;
  req.target = "/a?b";
  req.host_lower = "example.com";
  VarContext ctx;
  ctx.req = &req;
  std::string key;
  g.hash_key.evaluate(ctx, &key);
  EXPECT_EQ(key, "example.com/a?b");
}

// A name is resolved when the configuration is read, into one server per address (nginx's rule),
// each server named by its address. What "localhost" gives depends on the machine: the test asks
// the resolver itself.
TEST_F(ProxyConfTest, NameGivesOneServerPerAddress) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  ASSERT_EQ(getaddrinfo("localhost", nullptr, &hints, &res), 0);
  std::set<std::string> want;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    SockAddr a;
    memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
    a.len = ai->ai_addrlen;
    if (a.family() == AF_INET) reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(9000);
    else if (a.family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(9000);
    else continue;
    want.insert(a.to_string());
  }
  freeaddrinfo(res);
  ASSERT_FALSE(want.empty());

  auto http = parse("[upstream app]\nserver = localhost:9000 weight=2 backup\n");
  const UpstreamGroup& g = *http->upstreams.at(0);
  std::set<std::string> got;
  for (const UpstreamServer& s : g.servers) {
    EXPECT_TRUE(got.insert(s.text).second) << "twice: " << s.text;
    EXPECT_EQ(s.addr.to_string(), s.text);
    // Every address carries the line's options.
    EXPECT_EQ(s.weight, 2);
    EXPECT_TRUE(s.backup);
    EXPECT_EQ(s.line, 2);
  }
  EXPECT_EQ(got, want);
}

TEST_F(ProxyConfTest, GroupsInFileOrderAndNamesKeptAsWritten) {
  auto http = parse(
      "[upstream b]\nserver = 127.0.0.1:9001\n"
      "[upstream App-1.internal_x]\nserver = 127.0.0.1:9002\n");
  ASSERT_EQ(http->upstreams.size(), 2u);
  EXPECT_EQ(http->upstreams[0]->name, "b");
  EXPECT_EQ(http->upstreams[1]->name, "App-1.internal_x");
  EXPECT_EQ(http->upstreams[1]->line, 3);
}

TEST_F(ProxyConfTest, UpstreamErrors) {
  expect_error("[upstream app]\nkeepalive = 8\n", 1, "no servers are inside upstream \"app\"");
  expect_error("[upstream]\nserver = 127.0.0.1:9000\n", 1, "[upstream] needs a name");
  expect_error("[upstream a/b]\nserver = 127.0.0.1:9000\n", 1, "invalid upstream name \"a/b\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\n[upstream app]\nserver = 127.0.0.1:9001\n", 3,
               "duplicate upstream \"app\" (first at line 1)");
  // Names compare without regard to case, as host names do.
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\n[upstream APP]\nserver = 127.0.0.1:9001\n", 3,
               "duplicate upstream \"APP\"");
  expect_error("[upstream app]\nserver = no-such-host.invalid:9000\n", 2,
               "host not found in upstream \"no-such-host.invalid:9000\"");
  expect_error("[upstream app]\nserver = no-such-host.invalid\n", 2,
               "host not found in upstream \"no-such-host.invalid:80\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000 weight=0\n", 2, "invalid parameter \"weight=0\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000 weight=1001\n", 2, "invalid parameter \"weight=1001\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000 weight=x\n", 2, "invalid parameter \"weight=x\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000 weight\n", 2, "invalid parameter \"weight\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000 max_fails=-1\n", 2, "invalid parameter \"max_fails=-1\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000 fail_timeout=soon\n", 2, "invalid parameter \"fail_timeout=soon\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000 fail_timeout=0\n", 2, "max_fails=0");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000 sticky\n", 2, "invalid parameter \"sticky\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000 weight=2 weight=3\n", 2, "\"weight\" is given twice");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000 max_conns=10\n", 2, "\"max_conns\" of \"server\" is not supported yet");
  expect_error("[upstream app]\nserver = 127.0.0.1:0\n", 2, "invalid port");
  expect_error("[upstream app]\nserver = 127.0.0.1:65536\n", 2, "invalid port");
  expect_error("[upstream app]\nserver = ::1:9000\n", 2, "in brackets");
  expect_error("[upstream app]\nserver = [::1\n", 2, "invalid IPv6 address");
  expect_error("[upstream app]\nserver = [not-v6]:9000\n", 2, "host not found in upstream \"[not-v6]:9000\"");
  expect_error("[upstream app]\nserver = http://127.0.0.1:9000\n", 2, "without a scheme");
  expect_error("[upstream app]\nserver =\n", 2, "invalid server");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nbalance = fastest\n", 3, "invalid value \"fastest\" in \"balance\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nbalance = random\n", 3, "\"balance = random\" is not supported yet");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nbalance = hash\n", 3, "takes one key");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nbalance = hash $a $b\n", 3, "takes one key");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nbalance = hash $nope\n", 3, "unknown \"nope\" variable");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nbalance = ip_hash now\n", 3, "unexpected \"now\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nkeepalive = many\n", 3, "invalid number \"many\" in \"keepalive\"");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nkeepalive_requests = 0\n", 3, "\"keepalive_requests\" must be between 1");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nconnect_timeout = 0\n", 3, "\"connect_timeout\" must be more than 0");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nread_timeout = soon\n", 3, "invalid duration");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nbalance = ip_hash\nbalance = least_conn\n", 4,
               "\"balance\" is duplicate (first at line 3)");
}

TEST_F(ProxyConfTest, BackupWithAHashIsRefusedAsInNginx) {
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nserver = 127.0.0.1:9001 backup\nbalance = ip_hash\n", 3,
               "balancing method \"ip_hash\" (line 4) does not support parameter \"backup\"");
  expect_error("[upstream app]\nbalance = hash $uri\nserver = 127.0.0.1:9000\nserver = 127.0.0.1:9001 backup\n", 4,
               "balancing method \"hash\" (line 2) does not support parameter \"backup\"");
  // The other methods take a backup; a hash takes "down".
  parse("[upstream app]\nbalance = least_conn\nserver = 127.0.0.1:9000\nserver = 127.0.0.1:9001 backup\n");
  parse("[upstream app]\nbalance = ip_hash\nserver = 127.0.0.1:9000\nserver = 127.0.0.1:9001 down\n");
}

TEST_F(ProxyConfTest, KeysInsideAndOutsideUpstream) {
  // Keys of other sections inside [upstream] say where they belong.
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nroot = html\n", 3, "\"root\" belongs in [http], [server] or [location]");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nproxy_pass = http://x\n", 3, "\"proxy_pass\" belongs in [location]");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nlisten = 8080\n", 3, "\"listen\" belongs in [server]");
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nbalanse = ip_hash\n", 3,
               "unknown key \"balanse\" in [upstream]; did you mean \"balance\"?");
  // nginx writes the balancing method as a key of its own.
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nleast_conn = on\n", 3, "is written \"balance = least_conn\"");
  // The keys of [upstream] elsewhere say that they belong there.
  expect_error("[http]\nbalance = ip_hash\n", 2, "\"balance\" belongs in [upstream]");
  expect_error("[server a]\nkeepalive = 16\n", 2, "\"keepalive\" belongs in [upstream]; for client connections it is \"keepalive_timeout\"");
  expect_error("[http]\nserver = 127.0.0.1:9000\n", 2, "\"server\" belongs in [upstream]; a virtual server is a section");
  expect_error("[server a]\n[location /]\nconnect_timeout = 5s\n", 3,
               "\"connect_timeout\" belongs in [upstream]; in a location it is \"proxy_connect_timeout\"");
  expect_error("[server a]\nread_timeout = 5s\n", 2, "\"read_timeout\" belongs in [upstream]");
  // The proxy_* keys are not upstream keys.
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\nproxy_connect_timeout = 1s\n", 3,
               "\"proxy_connect_timeout\" belongs in [http], [server] or [location]");
  // Other nginx proxy directives are still said to be unsupported.
  expect_error("[server a]\n[location /]\nproxy_http_version = 1.0\n", 3,
               "\"proxy_http_version = 1.0\" is not supported: baton speaks HTTP/1.1 to upstreams");
  expect_error("[http]\nproxy_cache_path = /tmp\n", 2, "\"proxy_cache_path\" is not supported yet");
}

TEST_F(ProxyConfTest, ALocationAfterAnUpstreamBelongsToNoServer) {
  expect_error("[server a]\n[upstream app]\nserver = 127.0.0.1:9000\n[location /]\nroot = html\n", 4,
               "[location] must follow a [server] section");
}

// ---------------------------------------------------------------------------------------------
// proxy_pass

TEST_F(ProxyConfTest, ProxyPassToANamedGroupFurtherDown) {
  auto http = parse(
      "[server a]\n"
      "[location /api/]\n"
      "proxy_pass = http://app\n"
      "[location /other/]\n"
      "root = html\n"
      "[upstream app]\n"
      "server = 127.0.0.1:9000\n");
  const Location* l = loc(*http, "/api/x");
  ASSERT_NE(l->proxy_pass, nullptr);
  const ProxyPass& pp = *l->proxy_pass;
  EXPECT_EQ(pp.group, group(*http, "app"));
  EXPECT_EQ(pp.line, 3);
  EXPECT_EQ(pp.proxy_host, "app");
  EXPECT_FALSE(pp.has_uri);
  EXPECT_EQ(pp.uri, "");
  // Not inherited: neither by other locations nor by what no location matches.
  EXPECT_EQ(loc(*http, "/other/x")->proxy_pass, nullptr);
  EXPECT_EQ(loc(*http, "/elsewhere")->proxy_pass, nullptr);
  // No implicit group was made for a named one.
  EXPECT_EQ(http->upstreams.size(), 1u);
}

TEST_F(ProxyConfTest, NamesMatchWithoutRegardToCase) {
  auto http = parse(
      "[upstream App]\nserver = 127.0.0.1:9000\n"
      "[server a]\n[location /]\nproxy_pass = HTTP://app/\n");
  const ProxyPass& pp = *loc(*http, "/")->proxy_pass;
  EXPECT_EQ(pp.group, group(*http, "App"));
  EXPECT_EQ(pp.proxy_host, "App");
}

TEST_F(ProxyConfTest, ProxyPassToHostAndPortMakesAnImplicitGroup) {
  auto http = parse(
      "[server a]\n"
      "[location /a/]\n"
      "proxy_pass = http://127.0.0.1:9000\n"
      "[location /b/]\n"
      "proxy_pass = http://127.0.0.1:9000/b2/\n"
      "[location /c/]\n"
      "proxy_pass = http://127.0.0.1:9001\n"
      "[server b]\n"
      "listen = 8081\n"
      "[location /]\n"
      "proxy_pass = http://127.0.0.1:9000/\n");
  ASSERT_EQ(http->upstreams.size(), 2u);
  const UpstreamGroup* g = group(*http, "127.0.0.1:9000");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(g->implicit);
  EXPECT_EQ(g->line, 3);
  ASSERT_EQ(g->servers.size(), 1u);
  EXPECT_EQ(g->servers[0].text, "127.0.0.1:9000");
  EXPECT_EQ(g->servers[0].line, 3);
  // The defaults of a group.
  EXPECT_EQ(g->balance, Balance::kRoundRobin);
  EXPECT_EQ(g->keepalive, 32u);
  EXPECT_EQ(g->connect_timeout_ms, 5000);
  // One group per address, shared by every location (of any server) that names it.
  EXPECT_EQ(loc(*http, "/a/")->proxy_pass->group, g);
  EXPECT_EQ(loc(*http, "/b/")->proxy_pass->group, g);
  EXPECT_EQ(loc(*http, "/", 1)->proxy_pass->group, g);
  EXPECT_EQ(loc(*http, "/c/")->proxy_pass->group, group(*http, "127.0.0.1:9001"));
  EXPECT_EQ(loc(*http, "/a/")->proxy_pass->proxy_host, "127.0.0.1:9000");
}

TEST_F(ProxyConfTest, ProxyHostDropsTheDefaultPort) {
  auto http = parse(
      "[server a]\n"
      "[location /a/]\nproxy_pass = http://127.0.0.1\n"
      "[location /b/]\nproxy_pass = http://127.0.0.1:80/\n"
      "[location /c/]\nproxy_pass = http://[::1]:8080\n"
      "[location /d/]\nproxy_pass = http://[::1]\n"
      "[location /e/]\nproxy_pass = http://LocalHost:8080\n");
  EXPECT_EQ(loc(*http, "/a/")->proxy_pass->proxy_host, "127.0.0.1");
  EXPECT_EQ(loc(*http, "/b/")->proxy_pass->proxy_host, "127.0.0.1");
  // Both name one address: one group.
  EXPECT_EQ(loc(*http, "/a/")->proxy_pass->group, loc(*http, "/b/")->proxy_pass->group);
  EXPECT_EQ(loc(*http, "/a/")->proxy_pass->group->name, "127.0.0.1:80");
  EXPECT_EQ(loc(*http, "/c/")->proxy_pass->proxy_host, "[::1]:8080");
  EXPECT_EQ(loc(*http, "/c/")->proxy_pass->group->servers.at(0).text, "[::1]:8080");
  EXPECT_EQ(loc(*http, "/d/")->proxy_pass->proxy_host, "[::1]");
  // As written, case included (what nginx sends as Host); the group's name is lower-cased.
  EXPECT_EQ(loc(*http, "/e/")->proxy_pass->proxy_host, "LocalHost:8080");
  EXPECT_EQ(loc(*http, "/e/")->proxy_pass->group->name, "localhost:8080");
}

// nginx's rule: with a URI part (even "/") the part of the request's path that the location
// matched is replaced by it; without, the request's URI goes as it came.
TEST_F(ProxyConfTest, ProxyPassUriPart) {
  auto http = parse(
      "[upstream app]\nserver = 127.0.0.1:9000\n"
      "[server a]\n"
      "[location /none/]\nproxy_pass = http://app\n"
      "[location /root/]\nproxy_pass = http://app/\n"
      "[location /old/]\nproxy_pass = http://app/new/\n"
      "[location = /exact]\nproxy_pass = http://127.0.0.1:9000/other?x=1\n");
  const ProxyPass* none = loc(*http, "/none/")->proxy_pass.get();
  EXPECT_FALSE(none->has_uri);
  EXPECT_EQ(none->uri, "");
  const ProxyPass* root = loc(*http, "/root/")->proxy_pass.get();
  EXPECT_TRUE(root->has_uri);
  EXPECT_EQ(root->uri, "/");
  const ProxyPass* old = loc(*http, "/old/")->proxy_pass.get();
  EXPECT_TRUE(old->has_uri);
  EXPECT_EQ(old->uri, "/new/");
  const ProxyPass* exact = loc(*http, "/exact")->proxy_pass.get();
  EXPECT_TRUE(exact->has_uri);
  EXPECT_EQ(exact->uri, "/other?x=1");
}

TEST_F(ProxyConfTest, HttpsUpstreamsDefaultTo443AndTheirHost) {
  auto http = parse("[server a]\n[location /]\nproxy_pass = https://127.0.0.1\n[location /b/]\n"
                    "proxy_pass = https://127.0.0.1:8443/x/\nproxy_ssl_name = api.example\nproxy_ssl_server_name = on\n");
  const ProxyPass* a = loc(*http, "/")->proxy_pass.get();
  EXPECT_TRUE(a->https);
  ASSERT_EQ(a->group->servers.size(), 1u);
  EXPECT_EQ(a->group->servers[0].text, "127.0.0.1:443");
  EXPECT_EQ(a->proxy_host, "127.0.0.1");
  EXPECT_EQ(a->tls_name, "127.0.0.1");
  EXPECT_FALSE(a->tls_sni);
  EXPECT_TRUE(a->tls);
  const ProxyPass* b = loc(*http, "/b/")->proxy_pass.get();
  EXPECT_EQ(b->proxy_host, "127.0.0.1:8443");
  EXPECT_EQ(b->redirect_from, "https://127.0.0.1:8443/x/");
  EXPECT_EQ(b->tls_name, "api.example");
  EXPECT_TRUE(b->tls_sni);
}

TEST_F(ProxyConfTest, ProxyPassErrors) {
  const std::string up = "[upstream app]\nserver = 127.0.0.1:9000\n[server a]\n[location /]\n";  // lines 1-4
  expect_error(up + "proxy_pass = https://app:8443\n", 5, "upstream \"app\" may not have port 8443");
  expect_error(up + "proxy_pass = https://app\nproxy_ssl_verify = on\n", 6, "\"proxy_ssl_verify\" needs the CAs");
  expect_error(up + "proxy_pass = ftp://app\n", 5, "invalid URL prefix in \"ftp://app\"");
  expect_error(up + "proxy_pass = app\n", 5, "invalid URL prefix in \"app\"");
  expect_error(up + "proxy_pass = http://\n", 5, "no host in \"http://\"");
  expect_error(up + "proxy_pass = http:///x\n", 5, "no host");
  expect_error(up + "proxy_pass = http://app:8080\n", 5, "upstream \"app\" may not have port 8080");
  expect_error(up + "proxy_pass = http://nosuch\n", 5,
               "host not found in upstream \"nosuch\" (and there is no [upstream nosuch] section)");
  expect_error(up + "proxy_pass = http://nosuch.invalid:8080/x\n", 5, "host not found in upstream \"nosuch.invalid:8080\"");
  expect_error(up + "proxy_pass = http://127.0.0.1:99999\n", 5, "invalid port");
  expect_error(up + "proxy_pass = http://user@app\n", 5, "user info");
  expect_error(up + "proxy_pass = http://unix:/run/app.sock\n", 5, "unix socket is not supported yet");
  expect_error(up + "proxy_pass = http://$host\n", 5, "variables in \"proxy_pass\" are not supported yet");
  expect_error(up + "proxy_pass = http://app /x\n", 5, "takes one URL");
  expect_error(up + "proxy_pass =\n", 5, "invalid URL");
  expect_error(up + "proxy_pass = http://app\nproxy_pass = http://app/\n", 6, "\"proxy_pass\" is duplicate (first at line 5)");
  // Only in a location.
  expect_error("[upstream app]\nserver = 127.0.0.1:9000\n[server a]\nproxy_pass = http://app\n", 4,
               "\"proxy_pass\" belongs in [location]");
  expect_error("[http]\nproxy_pass = http://127.0.0.1:9000\n", 2, "\"proxy_pass\" belongs in [location]");
}

TEST_F(ProxyConfTest, ProxyPassAndAnotherAnswerInOneLocation) {
  const std::string up = "[server a]\n[location /]\nproxy_pass = http://127.0.0.1:9000\n";  // lines 1-3
  expect_error(up + "return = 200 ok\n", 3, "\"proxy_pass\" and \"return\" cannot be combined");
  expect_error(up + "try_files = $uri =404\n", 3, "\"proxy_pass\" and \"try_files\" cannot be combined");
  expect_error(up + "alias = /srv\n", 3, "\"proxy_pass\" and \"alias\" cannot be combined");
  // A return in [server] answers before any location, as in nginx: no conflict.
  parse("[server a]\nreturn = 301 https://$host$request_uri\n[location /]\nproxy_pass = http://127.0.0.1:9000\n");
}

// ---------------------------------------------------------------------------------------------
// The inherited proxy_* keys

TEST_F(ProxyConfTest, ProxySettingsDefaults) {
  auto http = parse("[server a]\n[location /]\nproxy_pass = http://127.0.0.1:9000\n");
  const ProxySettings& p = loc(*http, "/")->s.proxy;
  EXPECT_TRUE(p.set_headers.empty());
  EXPECT_TRUE(p.hide_headers.empty());
  EXPECT_TRUE(p.pass_headers.empty());
  EXPECT_EQ(p.next_upstream, static_cast<uint32_t>(kNextError | kNextTimeout));
  EXPECT_EQ(p.next_upstream_tries, 0u);
  EXPECT_EQ(p.next_upstream_timeout_ms, 0);
  EXPECT_TRUE(p.buffering);
  EXPECT_TRUE(p.request_buffering);
  EXPECT_EQ(p.client_body_buffer_size, 65536u);
  EXPECT_EQ(p.buffer_size, 8192u);
  EXPECT_EQ(p.buffers_size, 65536u);
  EXPECT_TRUE(p.redirect_default);
  EXPECT_EQ(p.connect_timeout_ms, -1);
  EXPECT_EQ(p.read_timeout_ms, -1);
  EXPECT_EQ(p.send_timeout_ms, -1);
}

TEST_F(ProxyConfTest, EveryProxySetting) {
  auto http = parse(
      "[server a]\n"
      "[location /]\n"
      "proxy_next_upstream = error timeout http_502 http_503 http_504 non_idempotent\n"
      "proxy_next_upstream_tries = 3\n"
      "proxy_next_upstream_timeout = 10s\n"
      "proxy_buffering = off\n"
      "proxy_request_buffering = off\n"
      "client_body_buffer_size = 16k\n"
      "proxy_buffer_size = 4k\n"
      "proxy_buffers = 8 4k\n"
      "proxy_redirect = off\n"
      "proxy_connect_timeout = 2s\n"
      "proxy_read_timeout = 90s\n"
      "proxy_send_timeout = 1500ms\n");
  const ProxySettings& p = loc(*http, "/")->s.proxy;
  EXPECT_EQ(p.next_upstream, static_cast<uint32_t>(kNextError | kNextTimeout | kNextHttp502 | kNextHttp503 |
                                                   kNextHttp504 | kNextNonIdempotent));
  EXPECT_EQ(p.next_upstream_tries, 3u);
  EXPECT_EQ(p.next_upstream_timeout_ms, 10000);
  EXPECT_FALSE(p.buffering);
  EXPECT_FALSE(p.request_buffering);
  EXPECT_EQ(p.client_body_buffer_size, 16384u);
  EXPECT_EQ(p.buffer_size, 4096u);
  EXPECT_EQ(p.buffers_size, 8u * 4096);
  EXPECT_FALSE(p.redirect_default);
  EXPECT_EQ(p.connect_timeout_ms, 2000);
  EXPECT_EQ(p.read_timeout_ms, 90000);
  EXPECT_EQ(p.send_timeout_ms, 1500);
}

TEST_F(ProxyConfTest, NextUpstreamWords) {
  auto bits = [&](std::string_view value) {
    auto http = parse("[http]\nproxy_next_upstream = " + std::string(value) + "\n");
    return http->base.proxy.next_upstream;
  };
  EXPECT_EQ(bits("off"), 0u);
  EXPECT_EQ(bits("error"), static_cast<uint32_t>(kNextError));
  // invalid_header is an error of the upstream's: nginx's word for it.
  EXPECT_EQ(bits("invalid_header"), static_cast<uint32_t>(kNextError));
  EXPECT_EQ(bits("http_500 http_403 http_404 http_429"),
            static_cast<uint32_t>(kNextHttp500 | kNextHttp403 | kNextHttp404 | kNextHttp429));
  EXPECT_EQ(bits("timeout timeout"), static_cast<uint32_t>(kNextTimeout));
  expect_error("[http]\nproxy_next_upstream = error off\n", 2, "\"off\" in \"proxy_next_upstream\" stands alone");
  expect_error("[http]\nproxy_next_upstream = http_501\n", 2, "invalid value \"http_501\" in \"proxy_next_upstream\"");
  expect_error("[http]\nproxy_next_upstream =\n", 2, "invalid value");
}

TEST_F(ProxyConfTest, SettingsInheritDownwards) {
  auto http = parse(
      "[http]\n"
      "proxy_read_timeout = 30s\n"
      "proxy_buffering = off\n"
      "[server a]\n"
      "proxy_read_timeout = 40s\n"
      "[location /x/]\n"
      "proxy_pass = http://127.0.0.1:9000\n"
      "[location /y/]\n"
      "proxy_read_timeout = 50s\n");
  EXPECT_EQ(http->base.proxy.read_timeout_ms, 30000);
  EXPECT_EQ(http->servers[0]->s.proxy.read_timeout_ms, 40000);
  EXPECT_FALSE(http->servers[0]->s.proxy.buffering);
  EXPECT_EQ(loc(*http, "/x/")->s.proxy.read_timeout_ms, 40000);
  EXPECT_FALSE(loc(*http, "/x/")->s.proxy.buffering);
  EXPECT_EQ(loc(*http, "/y/")->s.proxy.read_timeout_ms, 50000);
  EXPECT_EQ(loc(*http, "/elsewhere")->s.proxy.read_timeout_ms, 40000);
}

TEST_F(ProxyConfTest, ProxySetHeaderListIsReplacedByALevelThatSetsAny) {
  auto http = parse(
      "[http]\n"
      "proxy_set_header = X-A a\n"
      "proxy_set_header = X-B b\n"
      "[server one]\n"
      "listen = 8080\n"
      "[location /inherits/]\n"
      "[location /own/]\n"
      "proxy_set_header = X-C c\n"
      "[server two]\n"
      "listen = 8081\n"
      "proxy_set_header = Host $host\n"
      "[location /inherits/]\n"
      "[location /own/]\n"
      "proxy_set_header = X-D d\n"
      "proxy_set_header = X-E e\n");
  auto names = [](const ProxySettings& p) {
    std::vector<std::string> out;
    for (const ProxySetHeader& h : p.set_headers) out.push_back(h.name);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names(http->base.proxy), (V{"X-A", "X-B"}));
  EXPECT_EQ(names(http->servers[0]->s.proxy), (V{"X-A", "X-B"}));
  EXPECT_EQ(names(loc(*http, "/inherits/", 0)->s.proxy), (V{"X-A", "X-B"}));
  // A level that sets one header has only its own: X-A and X-B are gone, as in nginx.
  EXPECT_EQ(names(loc(*http, "/own/", 0)->s.proxy), (V{"X-C"}));
  EXPECT_EQ(names(http->servers[1]->s.proxy), (V{"Host"}));
  EXPECT_EQ(names(loc(*http, "/inherits/", 1)->s.proxy), (V{"Host"}));
  EXPECT_EQ(names(loc(*http, "/own/", 1)->s.proxy), (V{"X-D", "X-E"}));
  // Whatever the order of the keys of a level.
  http = parse("[server a]\nproxy_set_header = X-A a\n[location /]\nproxy_read_timeout = 5s\nproxy_set_header = X-B b\n"
               "proxy_buffering = off\nproxy_set_header = X-C c\n");
  EXPECT_EQ(names(loc(*http, "/")->s.proxy), (V{"X-B", "X-C"}));
}

TEST_F(ProxyConfTest, ProxySetHeaderValues) {
  auto http = parse(
      "[server a]\n"
      "[location /]\n"
      "proxy_set_header = Host $host\n"
      "proxy_set_header = X-Forwarded-For $proxy_add_x_forwarded_for\n"
      "proxy_set_header = X-Real-IP $remote_addr\n"
      "proxy_set_header = Connection \"\"\n"
      "proxy_set_header = Accept-Encoding ''\n"
      "proxy_set_header = X-Custom-Copy $http_x_custom\n"
      "proxy_set_header = X-Quoted \"a \\\"b\\\" c\"\n"
      "proxy_set_header = X-Words several words as they are\n"
      "proxy_set_header = X-Upstream-Host $proxy_host:$remote_port\n");
  const auto& h = loc(*http, "/")->s.proxy.set_headers;
  ASSERT_EQ(h.size(), 9u);
  EXPECT_EQ(h[0].name, "Host");
  EXPECT_EQ(h[0].lower, "host");
  EXPECT_EQ(value_of(h[0]), "example.com");
  EXPECT_EQ(h[1].lower, "x-forwarded-for");
  EXPECT_EQ(value_of(h[1]), "192.0.2.1, 198.51.100.4");
  EXPECT_EQ(value_of(h[2]), "198.51.100.4");
  // An empty value (which removes the header).
  EXPECT_EQ(h[3].lower, "connection");
  EXPECT_FALSE(h[3].value.has_variables());
  EXPECT_EQ(h[3].value.literal(), "");
  EXPECT_EQ(value_of(h[3]), "");
  EXPECT_EQ(h[4].value.literal(), "");
  // $http_NAME: a request header.
  EXPECT_EQ(value_of(h[5]), "custom value");
  EXPECT_EQ(value_of(h[6]), "a \"b\" c");
  EXPECT_EQ(value_of(h[7]), "several words as they are");
  EXPECT_EQ(value_of(h[8]), "app:40000");
}

TEST_F(ProxyConfTest, ProxySetHeaderErrors) {
  const std::string at = "[server a]\n[location /]\n";  // lines 1-2
  expect_error(at + "proxy_set_header = X-A\n", 3, "needs a header name and a value");
  expect_error(at + "proxy_set_header =\n", 3, "needs a header name and a value");
  expect_error(at + "proxy_set_header = X(A) b\n", 3, "invalid header name \"X(A)\"");
  expect_error(at + "proxy_set_header = X-A $nope\n", 3, "unknown \"nope\" variable");
  expect_error(at + "proxy_set_header = X-A \"open\n", 3, "unterminated quoted text in \"proxy_set_header\"");
  expect_error(at + "proxy_set_header = X-A \"a\" b\n", 3, "after the quoted text");
  expect_error(at + "proxy_set_header = X-A \"a\\rb\"\n", 3, "control character");
  // The proxy frames the body: no second say in it.
  expect_error(at + "proxy_set_header = Content-Length 5\n", 3, "cannot set \"Content-Length\"");
  expect_error(at + "proxy_set_header = transfer-encoding chunked\n", 3, "cannot set \"transfer-encoding\"");
}

TEST_F(ProxyConfTest, HideAndPassHeaderLists) {
  auto http = parse(
      "[http]\n"
      "proxy_hide_header = X-Powered-By\n"
      "proxy_hide_header = Server-Timing\n"
      "proxy_pass_header = Server\n"
      "[server a]\n"
      "[location /own/]\n"
      "proxy_hide_header = X-Debug\n"
      "[location /inherits/]\n");
  using V = std::vector<std::string>;
  EXPECT_EQ(http->base.proxy.hide_headers, (V{"x-powered-by", "server-timing"}));
  EXPECT_EQ(http->base.proxy.pass_headers, (V{"server"}));
  EXPECT_EQ(loc(*http, "/inherits/")->s.proxy.hide_headers, (V{"x-powered-by", "server-timing"}));
  // A level with its own list replaces the inherited one (nginx's rule); the other list stays.
  EXPECT_EQ(loc(*http, "/own/")->s.proxy.hide_headers, (V{"x-debug"}));
  EXPECT_EQ(loc(*http, "/own/")->s.proxy.pass_headers, (V{"server"}));
  expect_error("[http]\nproxy_hide_header = A B\n", 2, "one name per line");
  expect_error("[http]\nproxy_pass_header =\n", 2, "invalid header name");
}

TEST_F(ProxyConfTest, ProxySettingErrors) {
  expect_error("[http]\nproxy_buffering = maybe\n", 2, "invalid switch (on or off) \"maybe\" in \"proxy_buffering\"");
  expect_error("[http]\nproxy_request_buffering = 1\n", 2, "in \"proxy_request_buffering\"");
  expect_error("[http]\nproxy_next_upstream_tries = -1\n", 2, "invalid number");
  expect_error("[http]\nproxy_next_upstream_timeout = soon\n", 2, "invalid duration");
  expect_error("[http]\nclient_body_buffer_size = 12q\n", 2, "invalid size");
  expect_error("[http]\nproxy_buffer_size = 100\n", 2, "\"proxy_buffer_size\" must be between 1k and 1m");
  expect_error("[http]\nproxy_buffer_size = 2m\n", 2, "\"proxy_buffer_size\" must be between 1k and 1m");
  expect_error("[http]\nproxy_buffers = 8\n", 2, "expected NUMBER SIZE");
  expect_error("[http]\nproxy_buffers = 8k 8\n", 2, "expected NUMBER SIZE");
  expect_error("[http]\nproxy_buffers = 1 64k\n", 2, "there must be at least 2 \"proxy_buffers\"");
  expect_error("[http]\nproxy_buffers = 4 0\n", 2, "invalid size in \"proxy_buffers\"");
  expect_error("[http]\nproxy_redirect = http://a/ /\n", 2, "is not supported yet (only default or off)");
  expect_error("[http]\nproxy_connect_timeout = 0\n", 2, "\"proxy_connect_timeout\" must be more than 0");
  expect_error("[http]\nproxy_read_timeout = 5w\n", 2, "invalid duration");
  // Keys that cannot repeat, given twice.
  expect_error("[http]\nproxy_buffering = on\nproxy_buffering = off\n", 3, "\"proxy_buffering\" is duplicate (first at line 2)");
  expect_error("[server a]\n[location /]\nproxy_redirect = off\nproxy_redirect = default\n", 4, "\"proxy_redirect\" is duplicate");
  // The lists repeat.
  parse("[http]\nproxy_hide_header = A\nproxy_hide_header = B\nproxy_pass_header = C\nproxy_pass_header = D\n");
}

}  // namespace
}  // namespace baton::http

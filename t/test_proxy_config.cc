// The reverse proxy's configuration as an operator meets it: [upstream] sections, proxy_pass and
// the proxy_* keys pass `baton -t` and start; every mistake stops -t, the start and a reload with
// `file:line` and nginx's words where nginx has them. (Proxying itself is tested where it lives.)
#include <string>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

// A configuration that uses every proxy key. The upstream addresses are the test's free ports, on
// which nothing listens: a configuration names upstreams, it does not need them to be up.
const char* kUpstreams =
    "[upstream app]\n"
    "server = 127.0.0.1:@PORT2@ weight=2 max_fails=3 fail_timeout=10s\n"
    "server = localhost:@PORT3@ backup\n"
    "server = [::1]:@PORT3@ down\n"
    "balance = least_conn\n"
    "keepalive = 16\n"
    "keepalive_timeout = 30s\n"
    "keepalive_requests = 500\n"
    "connect_timeout = 2s\n"
    "read_timeout = 30s\n"
    "send_timeout = 30s\n"
    "\n"
    "[upstream hashed]\n"
    "server = 127.0.0.1:@PORT2@\n"
    "server = 127.0.0.1:@PORT3@\n"
    "balance = hash $request_uri consistent\n";

const char* kProxyServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n"
    "proxy_set_header = Host $host\n"
    "proxy_set_header = X-Forwarded-For $proxy_add_x_forwarded_for\n"
    "proxy_set_header = X-Real-IP $remote_addr\n"
    "proxy_set_header = X-Client-Port $remote_port\n"
    "proxy_set_header = X-Original-Agent $http_user_agent\n"
    "proxy_set_header = Connection \"\"\n"
    "\n"
    "[location /api/]\n"
    "proxy_pass = http://app/v1/\n"
    "proxy_read_timeout = 90s\n"
    "proxy_http_version = 1.1\n"  // an nginx habit, accepted: baton always speaks 1.1 upstream
    "\n"
    "[location /hashed/]\n"
    "proxy_pass = http://hashed\n"
    "\n"
    "[location /direct/]\n"
    "proxy_pass = http://127.0.0.1:@PORT2@\n"
    "proxy_set_header = Host $proxy_host\n"
    "\n"
    "[location /]\n"
    "try_files = $uri =404\n";

const char* kProxyHttp =
    "proxy_hide_header = X-Powered-By\n"
    "proxy_pass_header = Server\n"
    "proxy_next_upstream = error timeout http_502 http_503 http_504\n"
    "proxy_next_upstream_tries = 3\n"
    "proxy_next_upstream_timeout = 10s\n"
    "proxy_buffering = on\n"
    "proxy_request_buffering = off\n"
    "client_body_buffer_size = 16k\n"
    "proxy_buffer_size = 8k\n"
    "proxy_buffers = 8 8k\n"
    "proxy_redirect = default\n"
    "proxy_connect_timeout = 3s\n"
    "proxy_send_timeout = 30s\n";

std::string good_config() { return make_config(std::string(kUpstreams) + "\n" + kProxyServer, kProxyHttp); }

// Runs `baton -t` on `config`: it fails, naming the line that contains `marker`, with `message`.
void expect_error_at(const std::string& config, const std::string& marker, const std::string& message) {
  BatonServer s;
  s.set_config(config);
  int line = line_of(s.config_text(), marker);
  ASSERT_GT(line, 0) << "test bug: marker not in config: " << marker;
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  std::string want = "baton.ini:" + std::to_string(line) + ": " + message;
  EXPECT_TRUE(contains(r.err, want)) << "expected \"" << want << "\" in stderr:\n" << r.err << "\nconfig:\n"
                                     << s.config_text();
}

// A server on @PORT@ and `sections` after it (upstreams, locations).
std::string with(const std::string& sections) {
  return make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n\n" + sections);
}

}  // namespace

TEST(ProxyConfig, GoodConfigurationPassesTest) {
  BatonServer s;
  s.set_config(good_config());
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "configuration file " + s.config_path() + " test is successful")) << r.err;
  // -T prints it as it was read.
  r = s.test_config({"-T"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "[upstream app]\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "balance = hash $request_uri consistent\n")) << r.out;
}

TEST(ProxyConfig, StartsWithNoUpstreamRunning) {
  // Upstreams are looked up, not connected to, when the configuration is read: the server starts
  // and serves what is not proxied.
  BatonServer s;
  s.write_file("html/a.txt", "static\n");
  s.set_config(good_config());
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/a.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "static\n");
}

TEST(ProxyConfig, UpstreamSectionErrors) {
  const std::string ok = "[location /]\nproxy_pass = http://app\n\n";
  expect_error_at(with(ok + "[upstream app]\nkeepalive = 8\n"), "[upstream app]", "no servers are inside upstream \"app\"");
  expect_error_at(with(ok + "[upstream app]\nserver = no-such-host.invalid:9000\n"), "no-such-host",
                  "host not found in upstream \"no-such-host.invalid:9000\"");
  expect_error_at(with(ok + "[upstream app]\nserver = 127.0.0.1:9000 wieght=2\n"), "wieght",
                  "invalid parameter \"wieght=2\"");
  expect_error_at(with(ok + "[upstream app]\nserver = 127.0.0.1:9000 weight=0\n"), "weight=0",
                  "invalid parameter \"weight=0\"");
  expect_error_at(with(ok + "[upstream app]\nserver = 127.0.0.1:9000\n\n[upstream app] ; again\nserver = 127.0.0.1:9001\n"),
                  "; again", "duplicate upstream \"app\"");
  expect_error_at(with(ok + "[upstream app]\nserver = 127.0.0.1:9000\nroot = html ; here\n"), "; here",
                  "\"root\" belongs in [http], [server] or [location]");
  expect_error_at(with(ok + "[upstream app]\nserver = 127.0.0.1:9000\nserver = 127.0.0.1:9001 backup\nbalance = ip_hash\n"),
                  "backup", "balancing method \"ip_hash\"");
  expect_error_at(with(ok + "[upstream app]\nserver = 127.0.0.1:9000\nbalance = hash $nope\n"), "$nope",
                  "unknown \"nope\" variable");
}

TEST(ProxyConfig, UpstreamKeysOutsideUpstreamSayWhereTheyBelong) {
  expect_error_at(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nbalance = ip_hash\n"), "balance",
                  "\"balance\" belongs in [upstream]");
  expect_error_at(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\n", "keepalive = 16\n"), "keepalive = 16",
                  "\"keepalive\" belongs in [upstream]");
  expect_error_at(with("[location /]\nconnect_timeout = 1s\n"), "connect_timeout",
                  "\"connect_timeout\" belongs in [upstream]; in a location it is \"proxy_connect_timeout\"");
  expect_error_at(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\n", "server = 127.0.0.1:9000\n"),
                  "server = 127", "\"server\" belongs in [upstream]");
}

TEST(ProxyConfig, ProxyPassErrors) {
  const std::string app = "\n[upstream app]\nserver = 127.0.0.1:9000\n";
  expect_error_at(with("[location /]\nproxy_pass = https://app\nproxy_ssl_certificate = conf/none.pem\n" + app),
                  "proxy_ssl_certificate", "\"proxy_ssl_certificate\" and \"proxy_ssl_certificate_key\" go together");
  expect_error_at(with("[location /]\nproxy_pass = fastcgi://app\n" + app), "fastcgi://",
                  "invalid URL prefix in \"fastcgi://app\"");
  expect_error_at(with("[location /]\nproxy_pass = http://nosuch\n" + app), "nosuch",
                  "host not found in upstream \"nosuch\" (and there is no [upstream nosuch] section)");
  expect_error_at(with("[location /]\nproxy_pass = http://nosuch.invalid:8080/\n"), "nosuch.invalid",
                  "host not found in upstream \"nosuch.invalid:8080\"");
  expect_error_at(with("[location /]\nproxy_pass = http://app:9000\n" + app), "http://app:9000",
                  "upstream \"app\" may not have port 9000");
  expect_error_at(with("[location /]\nproxy_pass = http://app\nproxy_pass = http://app/ ; again\n" + app), "; again",
                  "\"proxy_pass\" is duplicate");
  expect_error_at(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nproxy_pass = http://127.0.0.1:9000\n"),
                  "proxy_pass", "\"proxy_pass\" belongs in [location]");
  expect_error_at(with("[location /]\nproxy_pass = http://127.0.0.1:9000\nreturn = 200 ok\n"), "proxy_pass",
                  "\"proxy_pass\" and \"return\" cannot be combined in one location");
}

TEST(ProxyConfig, ProxySettingErrors) {
  expect_error_at(with("[location /]\nproxy_set_header = X-Only-A-Name\n"), "X-Only-A-Name",
                  "\"proxy_set_header\" needs a header name and a value");
  expect_error_at(with("[location /]\nproxy_set_header = X-A $no_such_var\n"), "no_such_var",
                  "unknown \"no_such_var\" variable");
  expect_error_at(with("[location /]\nproxy_next_upstream = error http_501\n"), "http_501",
                  "invalid value \"http_501\" in \"proxy_next_upstream\"");
  expect_error_at(with("[location /]\nproxy_redirect = http://a/ /\n"), "proxy_redirect",
                  "\"proxy_redirect = http://a/ /\" is not supported yet (only default or off)");
  expect_error_at(with("[location /]\nproxy_buffers = 1 8k\n"), "proxy_buffers",
                  "there must be at least 2 \"proxy_buffers\"");
  expect_error_at(with("[location /]\nproxy_buffering = on\nproxy_buffering = off ; again\n"), "; again",
                  "\"proxy_buffering\" is duplicate");
  // A proxy directive baton does not have yet is said to be one.
  expect_error_at(with("[location /]\nproxy_http_version = 1.0\n"), "proxy_http_version",
                  "\"proxy_http_version = 1.0\" is not supported: baton speaks HTTP/1.1 to upstreams");
}

TEST(ProxyConfig, UnresolvableUpstreamStopsTheStart) {
  BatonServer s;
  s.set_config(with("[location /]\nproxy_pass = http://app\n\n[upstream app]\nserver = gone.invalid:9000\n"));
  RunResult r = run_baton({"-p", s.prefix(), "-c", s.config_path()}, 5000ms);
  EXPECT_EQ(r.exit_code, 1);
  std::string want = "baton.ini:" + std::to_string(line_of(s.config_text(), "gone.invalid")) +
                     ": host not found in upstream \"gone.invalid:9000\"";
  EXPECT_TRUE(contains(r.err + s.error_log(), want)) << r.err << s.error_log();
  EXPECT_FALSE(can_connect(s.port(0), 200ms));
}

TEST(ProxyConfig, ReloadResolvesAgain) {
  // Names are looked up on every reload: one that no longer resolves refuses the reload, with its
  // line, and the running configuration goes on serving.
  BatonServer s;
  s.write_file("html/a.txt", "one\n");
  auto config = [](const std::string& host) {
    return make_runtime_config(
        "[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n\n"
        "[location /api/]\nproxy_pass = http://app\n\n"
        "[upstream app]\nserver = " + host + ":@PORT2@\n",
        "", 1);
  };
  s.set_config(config("localhost"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a.txt").body, "one\n");

  s.set_config(config("gone.invalid"));
  RunResult r = s.ctl("reload");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  std::string want = s.config_path() + ":" + std::to_string(line_of(s.config_text(), "gone.invalid")) +
                     ": host not found in upstream \"gone.invalid:" + std::to_string(s.port(1)) + "\"";
  EXPECT_TRUE(contains(r.err, want)) << "want " << want << " in: " << r.err;
  EXPECT_TRUE(s.running());
  EXPECT_EQ(get(s.port(), "/a.txt").body, "one\n");

  s.set_config(config("127.0.0.1"));
  r = s.ctl("reload");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(get(s.port(), "/a.txt").body, "one\n");
}

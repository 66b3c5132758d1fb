// Command line and configuration checking: `-t`, `-T`, `-v`, and errors reported as `file:line:`.
#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

const char* kGoodServers =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "server_name = localhost printed.example.com *.printed.example.com\n"
    "root = html\n"
    "index = index.html index.htm\n"
    "\n"
    "[location = /healthz]\n"
    "return = 200 ok\n"
    "\n"
    "[location /]\n"
    "try_files = $uri $uri/ =404\n"
    "\n"
    "[location ^~ /static/]\n"
    "expires = 7d\n"
    "disable_symlinks = on\n";

const char* kMinimalServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n";

const char* kGoodHttpExtra =
    "keepalive_timeout = 75s\n"
    "keepalive_requests = 1000\n"
    "client_header_timeout = 60s\n"
    "client_body_timeout = 1m\n"
    "send_timeout = 1500ms\n"
    "client_max_body_size = 1m\n"
    "client_header_buffer_size = 8k\n";

// Runs `baton -t` on `config` and checks that it fails, naming the line that contains `marker`.
void expect_error_at(const std::string& config, const std::string& marker) {
  BatonServer s;
  s.set_config(config);
  int line = line_of(s.config_text(), marker);
  ASSERT_GT(line, 0) << "test bug: marker not in config: " << marker;
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  std::string where = "baton.ini:" + std::to_string(line) + ":";
  EXPECT_TRUE(contains(r.err, where)) << "expected \"" << where << "\" in stderr:\n" << r.err << "\nconfig:\n"
                                      << s.config_text();
}

// The body of GET `target` with `Host: host`.
std::string body_for_host(int port, const std::string& host, const std::string& target = "/") {
  Client c(port);
  Response r = c.exchange("GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.status, 200) << "Host: " << host << r;
  return r.body;
}

}  // namespace

TEST(Config, GoodConfigurationPassesTest) {
  BatonServer s;
  s.set_config(make_config(kGoodServers, kGoodHttpExtra));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "configuration file " + s.config_path() + " test is successful")) << r.err;
}

TEST(Config, ContinuationLineExtendsValue) {
  // A value too long for one line ends with "\" and goes on on the next line.
  BatonServer s;
  s.write_file("html/index.html", "main\n");
  s.write_file("other/index.html", "other\n");
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = one.example.com two.example.com \\\n"
      "    three.example.com four.example.com\n"
      "root = html\n"
      "\n"
      "[server other]\n"
      "listen = 127.0.0.1:@PORT@ default_server\n"
      "server_name = other.example.com\n"
      "root = other\n"));
  RunResult r = s.test_config();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(s.start());
  EXPECT_EQ(body_for_host(s.port(), "four.example.com"), "main\n");
  EXPECT_EQ(body_for_host(s.port(), "one.example.com"), "main\n");
  EXPECT_EQ(body_for_host(s.port(), "elsewhere.example.com"), "other\n");
}

// The example: an nginx user indents by habit. The indented root used to be read as more
// server names, -t passed, and the server served the default root.
TEST(Config, IndentedKeyIsItsOwnKey) {
  BatonServer s;
  s.write_file("html/index.html", "default root\n");
  s.write_file("srv/a/index.html", "site a\n");
  s.set_config(make_config(
      "[server a]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = a.test\n"
      "    root = @PREFIX@/srv/a\n"
      "    index = index.html\n"
      "\n"
      "  [location = /healthz]\n"
      "    return = 200 ok\n"));
  RunResult r = s.test_config();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(s.start());
  EXPECT_EQ(body_for_host(s.port(), "a.test"), "site a\n");
  EXPECT_EQ(body_for_host(s.port(), "a.test", "/healthz"), "ok");
}

TEST(Config, ContinuationIntoAKeyIsRefused) {
  // A "\" left at the end of a line would swallow the next key: named, never guessed.
  expect_error_at(make_config("[server main]\n"
                              "listen = 127.0.0.1:@PORT@\n"
                              "server_name = a.test \\\n"
                              "root = html ; swallowed\n"),
                  "; swallowed");
}

TEST(Config, DumpPrintsConfiguration) {
  BatonServer s;
  s.set_config(make_config(kGoodServers, kGoodHttpExtra));
  RunResult r = s.test_config({"-T"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "# configuration file " + s.config_path() + ":\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "server_name = localhost printed.example.com *.printed.example.com")) << r.out;
  EXPECT_TRUE(contains(r.out, "[location ^~ /static/]")) << r.out;
  EXPECT_TRUE(contains(r.err, "test is successful")) << r.err;
}

TEST(Config, DumpPrintsEveryFileRead) {
  // The mime types file is part of the configuration too, as nginx prints its includes.
  BatonServer s;
  s.write_file("conf/mime.types", "[types]\ntext/x-dumped = dumped\n");
  s.set_config(make_config(kMinimalServer));
  RunResult r = s.test_config({"-T"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string main_header = "# configuration file " + s.config_path() + ":\n";
  std::string types_header = "# configuration file " + s.path("conf/mime.types") + ":\n";
  size_t main_at = r.out.find(main_header), types_at = r.out.find(types_header);
  ASSERT_NE(main_at, std::string::npos) << r.out;
  ASSERT_NE(types_at, std::string::npos) << r.out;
  EXPECT_LT(main_at, types_at) << r.out;
  EXPECT_TRUE(contains(r.out, types_header + "[types]\ntext/x-dumped = dumped\n")) << r.out;
  EXPECT_TRUE(contains(r.out.substr(main_at, types_at - main_at), "types = conf/mime.types")) << r.out;
}

TEST(Config, VersionFlag) {
  RunResult r = run_baton({"-v"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out + r.err, "baton/0.1.0")) << "stdout: " << r.out << "\nstderr: " << r.err;
}

TEST(Config, UnknownOptionPrintsUsage) {
  RunResult r = run_baton({"-Z"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(to_lower(r.err), "usage")) << r.err;
}

TEST(Config, UnknownKey) {
  expect_error_at(make_config("[server main]\n"
                              "listen = 127.0.0.1:@PORT@\n"
                              "root = html\n"
                              "flux_capacitor = on\n"),
                  "flux_capacitor");
}

TEST(Config, UnknownKeyInHttp) {
  expect_error_at(make_config(kMinimalServer, "sendfile_magic = on\n"),
                  "sendfile_magic");
}

// Runs `baton -t` on `config` and returns stderr, checking that it fails.
static std::string test_error(const std::string& config) {
  BatonServer s;
  s.set_config(config);
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  return r.err;
}

TEST(Config, DuplicateKey) {
  std::string config = make_config("[server main]\n"
                                    "listen = 127.0.0.1:@PORT@\n"
                                    "root = html\n"
                                    "index = index.html\n"
                                    "root = html ; again\n");
  expect_error_at(config, "; again");
  std::string want = ":" + std::to_string(line_of(config, "; again")) + ": \"root\" is duplicate (first at line " +
                     std::to_string(line_of(config, "root = html")) + ")";
  std::string err = test_error(config);
  EXPECT_TRUE(contains(err, want)) << "want " << want << " in:\n" << err;
}

TEST(Config, ValueEndingInSemicolonGetsAHint) {
  std::string config = make_config("[server main]\n"
                                   "listen = 127.0.0.1:@PORT@\n"
                                   "root = html;\n");
  expect_error_at(config, "root = html;");
  EXPECT_TRUE(contains(test_error(config),
                       "\"root\" value ends with \";\" (baton's configuration needs no \";\" at the end of a line)"));
}

TEST(Config, UnsupportedNginxDirective) {
  std::string config = make_config(kMinimalServer, "ssi = on\n");
  expect_error_at(config, "ssi");
  EXPECT_TRUE(contains(test_error(config), "\"ssi\" is not supported yet"));
}

TEST(Config, TypoGetsASuggestion) {
  std::string config = make_config(kMinimalServer, "keepalive_timout = 5s\n");
  expect_error_at(config, "keepalive_timout");
  EXPECT_TRUE(contains(test_error(config), "unknown key \"keepalive_timout\" in [http]; did you mean \"keepalive_timeout\"?"));
}

TEST(Config, KeyInTheWrongSectionSaysWhereItBelongs) {
  std::string config = make_config(kMinimalServer, "worker_connections = 512\n");
  expect_error_at(config, "worker_connections");
  EXPECT_TRUE(contains(test_error(config), "\"worker_connections\" belongs in [main]"));
  config = make_config(kMinimalServer, "listen = 127.0.0.1:8 ; misplaced\n");
  expect_error_at(config, "; misplaced");
  EXPECT_TRUE(contains(test_error(config), "\"listen\" belongs in [server]"));
}

TEST(Config, MaxBackoffBelowInitialBackoff) {
  expect_error_at(make_config_main("restart_initial_backoff = 10s\nrestart_max_backoff = 2s\n", kMinimalServer),
                  "restart_max_backoff");
}

TEST(Config, ZeroUpgradeAndQuitTimeouts) {
  expect_error_at(make_config_main("upgrade_timeout = 0\n", kMinimalServer), "upgrade_timeout");
  expect_error_at(make_config_main("quit_timeout = 0s\n", kMinimalServer), "quit_timeout");
}

TEST(Config, ControlSocketPathLongerThanSunPath) {
  // 108 bytes with the NUL: a longer path cannot be bound, which used to show only at the start.
  std::string path = "/tmp/" + std::string(110, 'c') + ".sock";
  std::string config = make_config_main("control_socket = " + path + "\n", kMinimalServer);
  expect_error_at(config, "control_socket");
  EXPECT_TRUE(contains(test_error(config), "too long")) << test_error(config);
}

TEST(Config, ControlCharacterInReturnText) {
  expect_error_at(make_config("[server main]\n"
                              "listen = 127.0.0.1:@PORT@\n"
                              "root = html\n"
                              "\n"
                              "[location = /x]\n"
                              "return = 200 bell\x07here\n"),
                  "return = 200 bell");
}

TEST(Config, DefaultServerTwiceInOneServer) {
  expect_error_at(make_config("[server main]\n"
                              "listen = 127.0.0.1:@PORT@ default_server\n"
                              "root = html\n"
                              "listen = 127.0.0.1:@PORT@ default_server ; again\n"),
                  "; again");
}

TEST(Config, UnknownSection) {
  expect_error_at(make_config("[server main]\n"
                              "listen = 127.0.0.1:@PORT@\n"
                              "root = html\n"
                              "\n"
                              "[frobnicate]\n"
                              "x = 1\n"),
                  "[frobnicate]");
}

TEST(Config, BadSizeValue) {
  expect_error_at(make_config(kMinimalServer, "client_max_body_size = 12q\n"), "client_max_body_size");
}

TEST(Config, BadDuration) {
  expect_error_at(make_config(kMinimalServer, "keepalive_timeout = soon\n"),
                  "keepalive_timeout");
}

TEST(Config, BadDurationUnit) {
  expect_error_at(make_config(kMinimalServer, "send_timeout = 5w\n"),
                  "send_timeout");
}

TEST(Config, DuplicateListenInOneServer) {
  expect_error_at(make_config("[server main]\n"
                              "listen = 127.0.0.1:@PORT@\n"
                              "root = html\n"
                              "listen = 127.0.0.1:@PORT@ ; again\n"),
                  "; again");
}

TEST(Config, DuplicateListenWithSameNameInTwoServers) {
  // Two servers on one address answering to the same name: the second can never be reached.
  expect_error_at(make_config("[server one]\n"
                              "listen = 127.0.0.1:@PORT@\n"
                              "server_name = same.example.com\n"
                              "root = html\n"
                              "\n"
                              "[server two]\n"
                              "listen = 127.0.0.1:@PORT@ ; second\n"
                              "server_name = same.example.com\n"
                              "root = html\n"),
                  "; second");
}

TEST(Config, TwoDefaultServersOnOneAddress) {
  expect_error_at(make_config("[server one]\n"
                              "listen = 127.0.0.1:@PORT@ default_server\n"
                              "server_name = one.example.com\n"
                              "root = html\n"
                              "\n"
                              "[server two]\n"
                              "listen = 127.0.0.1:@PORT@ default_server ; second\n"
                              "server_name = two.example.com\n"
                              "root = html\n"),
                  "; second");
}

TEST(Config, LocationBeforeAnyServer) {
  expect_error_at(make_config("[location /early/]\n"
                              "root = html\n"
                              "\n"
                              "[server main]\n"
                              "listen = 127.0.0.1:@PORT@\n"
                              "root = html\n"),
                  "[location /early/]");
}

TEST(Config, MissingTypesFile) {
  std::string config = make_config(kMinimalServer);
  config = replace_all(config, "types = conf/mime.types", "types = conf/no-such-mime.types");
  expect_error_at(config, "no-such-mime.types");
}

TEST(Config, LineLongerThan200Bytes) {
  // Lines are limited to 200 bytes: a longer one must be an error, never silently cut.
  std::string names = "server_name = ";
  for (int i = 0; names.size() <= 260; i++) names += "host" + std::to_string(i) + ".example.com ";
  names += "; long";
  expect_error_at(make_config("[server main]\n"
                              "listen = 127.0.0.1:@PORT@\n"
                              "root = html\n" +
                              names + "\n"),
                  "; long");
}

TEST(Config, BadListenAddress) {
  expect_error_at(make_config("[server main]\n"
                              "listen = 127.0.0.1:notaport\n"
                              "root = html\n"),
                  "notaport");
}

TEST(Config, BadWorkerProcesses) {
  std::string config = make_config(kMinimalServer);
  config = replace_all(config, "worker_processes = 1", "worker_processes = many");
  expect_error_at(config, "worker_processes");
}

TEST(Config, ErrorStopsServerStart) {
  // The same checks apply when starting: a bad configuration never runs.
  BatonServer s;
  s.set_config(make_config(std::string(kMinimalServer) + "bogus_key = 1\n"));
  RunResult r = run_baton({"-p", s.prefix(), "-c", s.config_path()}, 5000ms);
  EXPECT_EQ(r.exit_code, 1);
  std::string where = "baton.ini:" + std::to_string(line_of(s.config_text(), "bogus_key")) + ":";
  EXPECT_TRUE(contains(r.err + s.error_log(), where)) << r.err << s.error_log();
  EXPECT_FALSE(can_connect(s.port(0), 200ms));
}

TEST(Config, KeepaliveTimeoutZeroTurnsKeepAliveOff) {
  // As in nginx: 0 is not a connection that times out at once but one that is not kept.
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kMinimalServer, "keepalive_timeout = 0\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  Response r = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "a");
  EXPECT_TRUE(r.connection_close()) << r;
  EXPECT_TRUE(c.is_closed_by_peer(2000ms));
  // HTTP/1.0 asking for keep-alive gets no keep-alive either.
  Client c10(s.port());
  r = c10.exchange("GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.connection_keep_alive()) << r;
  EXPECT_TRUE(c10.is_closed_by_peer(2000ms));
}

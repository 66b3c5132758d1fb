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

}  // namespace

TEST(Config, GoodConfigurationPassesTest) {
  BatonServer s;
  s.set_config(make_config(kGoodServers, kGoodHttpExtra));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "configuration file " + s.config_path() + " test is successful")) << r.err;
}

TEST(Config, ContinuationLineExtendsValue) {
  // A value too long for one line is continued on indented lines.
  BatonServer s;
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = one.example.com two.example.com\n"
      "    three.example.com four.example.com\n"
      "root = html\n"));
  RunResult r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Config, DumpPrintsConfiguration) {
  BatonServer s;
  s.set_config(make_config(kGoodServers, kGoodHttpExtra));
  RunResult r = s.test_config({"-T"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "server_name = localhost printed.example.com *.printed.example.com")) << r.out;
  EXPECT_TRUE(contains(r.out, "[location ^~ /static/]")) << r.out;
  EXPECT_TRUE(contains(r.err, "test is successful")) << r.err;
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

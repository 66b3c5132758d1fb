// error_log in [http], [server] and [location]: the lines about a request go to the error log of the
// level that answers it, the process's own lines stay in [main]'s; the files are opened at the start
// and on reload (a file that cannot be opened stops either, with its line) and reopened on USR1.
#include <signal.h>
#include <stdio.h>

#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

// A server that logs two kinds of request errors: a client refused by `deny` (the access phase, on
// the client's connection) and an upstream that refuses the connection (found on the upstream's).
// @DEAD@ is a port nothing listens on.
std::string server(const std::string& name, int port_index, const std::string& extra) {
  std::string port = port_index == 0 ? "@PORT@" : "@PORT" + std::to_string(port_index + 1) + "@";
  return "[server " + name + "]\n"
         "listen = 127.0.0.1:" + port + "\n"
         "root = html\n" + extra +
         "[location /deny/]\n"
         "deny = all\n"
         "[location /up/]\n"
         "proxy_pass = http://127.0.0.1:@DEAD@\n"
         "\n";
}

std::string with_dead_port(std::string config, int port) {
  return replace_all(std::move(config), "@DEAD@", std::to_string(port));
}

// Whether `needle` shows in the file within a moment.
bool shows(const std::string& path, const std::string& needle) {
  return wait_for([&] { return contains(read_file(path), needle); }, 3000ms);
}

TEST(ErrorLogPerServer, RequestErrorsGoToTheServersOwnFile) {
  BatonServer s;
  s.set_config(with_dead_port(
      make_config(server("one", 0, "error_log = logs/one.error.log\n") + server("two", 1, "")), s.port(2)));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(0), "/deny/one-denied").status, 403);
  EXPECT_EQ(get(s.port(0), "/up/one-upstream").status, 502);
  EXPECT_EQ(get(s.port(1), "/deny/two-denied").status, 403);
  EXPECT_EQ(get(s.port(1), "/up/two-upstream").status, 502);

  const std::string own = s.path("logs/one.error.log");
  EXPECT_TRUE(shows(own, "access forbidden by rule")) << read_file(own);
  EXPECT_TRUE(shows(own, "/deny/one-denied")) << read_file(own);
  EXPECT_TRUE(shows(own, "/up/one-upstream")) << read_file(own);
  EXPECT_TRUE(shows(s.path("logs/error.log"), "/deny/two-denied")) << s.error_log();
  EXPECT_TRUE(shows(s.path("logs/error.log"), "/up/two-upstream")) << s.error_log();

  // Each line in one file only; the process's own lines (the start) stay in [main]'s.
  EXPECT_FALSE(contains(s.error_log(), "one-denied")) << s.error_log();
  EXPECT_FALSE(contains(s.error_log(), "one-upstream")) << s.error_log();
  EXPECT_FALSE(contains(read_file(own), "two-")) << read_file(own);
  EXPECT_TRUE(contains(s.error_log(), "started")) << s.error_log();
  EXPECT_FALSE(contains(read_file(own), "started")) << read_file(own);
  // A line of the server's file has the error log's form.
  const std::string text = read_file(own);
  bool formed = false;
  for (size_t at = 0, end; (end = text.find('\n', at)) != std::string::npos; at = end + 1) {
    std::string line = text.substr(at, end - at);
    if (contains(line, "one-denied"))
      formed = matches_pattern(line, "%d%d%d%d/%d%d/%d%d %d%d:%d%d:%d%d [error] %+#0: access forbidden by rule%*");
  }
  EXPECT_TRUE(formed) << read_file(own);

  // Stopping is the process's business: its lines go to [main]'s log.
  s.stop(SIGQUIT);
  EXPECT_FALSE(contains(read_file(own), "exit")) << read_file(own);
}

TEST(ErrorLogPerServer, InheritedFromHttpAndOverriddenInALocation) {
  BatonServer s;
  std::string one = server("one", 0, "") +
                    "[location /quiet/]\n"
                    "error_log = logs/quiet.error.log\n"
                    "deny = all\n";
  s.set_config(with_dead_port(make_config(one + server("two", 1, "error_log = logs/two.error.log\n"),
                                          "error_log = logs/http.error.log\n"),
                              s.port(2)));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(0), "/deny/from-http").status, 403);
  EXPECT_EQ(get(s.port(0), "/quiet/from-location").status, 403);
  EXPECT_EQ(get(s.port(1), "/up/from-server").status, 502);

  EXPECT_TRUE(shows(s.path("logs/http.error.log"), "/deny/from-http")) << read_file(s.path("logs/http.error.log"));
  EXPECT_TRUE(shows(s.path("logs/quiet.error.log"), "/quiet/from-location"))
      << read_file(s.path("logs/quiet.error.log"));
  EXPECT_TRUE(shows(s.path("logs/two.error.log"), "/up/from-server")) << read_file(s.path("logs/two.error.log"));
  EXPECT_FALSE(contains(read_file(s.path("logs/http.error.log")), "from-location"));
  EXPECT_FALSE(contains(read_file(s.path("logs/http.error.log")), "from-server"));
  EXPECT_FALSE(contains(s.error_log(), "from-")) << s.error_log();
}

TEST(ErrorLogPerServer, Usr1ReopensIt) {
  BatonServer s;
  s.set_config(with_dead_port(make_config(server("one", 0, "error_log = logs/one.error.log\n")), s.port(2)));
  ASSERT_TRUE(s.start());
  const std::string own = s.path("logs/one.error.log");
  ASSERT_EQ(get(s.port(), "/deny/before").status, 403);
  ASSERT_TRUE(shows(own, "/deny/before")) << read_file(own);

  ASSERT_EQ(::rename(own.c_str(), (own + ".1").c_str()), 0);
  ASSERT_TRUE(s.signal(SIGUSR1));
  // The workers reopen a little after the master: probe until a line lands in the new file.
  int probe = 0;
  bool landed = wait_for(
      [&] {
        std::string target = "/deny/after" + std::to_string(probe++);
        if (get(s.port(), target).status != 403) return false;
        return wait_for([&] { return contains(read_file(own), target); }, 300ms);
      },
      5000ms, 50ms);
  EXPECT_TRUE(landed) << "new file:\n" << read_file(own);
  EXPECT_TRUE(contains(read_file(own + ".1"), "/deny/before"));
  EXPECT_FALSE(contains(read_file(own), "/deny/before"));
  EXPECT_FALSE(contains(s.error_log(), "/deny/")) << s.error_log();
  EXPECT_TRUE(s.running());
}

TEST(ErrorLogPerServer, StderrAsInMain) {
  BatonServer s;
  s.set_config(with_dead_port(make_config(server("one", 0, "error_log = stderr\n")), s.port(2)));
  ASSERT_TRUE(s.start());
  ASSERT_EQ(get(s.port(), "/deny/to-stderr").status, 403);
  EXPECT_TRUE(wait_for([&] { return contains(s.server_stderr(), "/deny/to-stderr"); }, 3000ms)) << s.server_stderr();
  EXPECT_FALSE(contains(s.error_log(), "to-stderr")) << s.error_log();
  EXPECT_FALSE(file_exists(s.path("stderr")));
}

TEST(ErrorLogPerServer, AFileThatCannotBeOpenedStopsTheStartWithItsLine) {
  BatonServer s;
  s.make_dir("logs/one.error.log");  // a directory: not even root opens it for writing
  s.set_config(with_dead_port(make_config(server("one", 0, "error_log = logs/one.error.log\n")), s.port(2)));
  std::string where = s.config_path() + ":" + std::to_string(line_of(s.config_text(), "one.error.log")) + ": ";

  RunResult t = s.test_config();
  EXPECT_EQ(t.exit_code, 1) << describe(t);
  EXPECT_TRUE(contains(t.err, where)) << describe(t);
  EXPECT_TRUE(contains(t.err, "Is a directory")) << describe(t);

  RunResult r = run_baton_with({"-p", s.prefix(), "-c", s.config_path()}, RunOptions{});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, where + "open() \"" + s.path("logs/one.error.log") + "\" failed (Is a directory)"))
      << describe(r);
  EXPECT_FALSE(can_connect(s.port(), 200ms));
}

TEST(ErrorLogPerServer, AFileThatCannotBeOpenedFailsTheReload) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(with_dead_port(make_config(server("one", 0, "")), s.port(2)));
  ASSERT_TRUE(s.start());
  s.make_dir("logs/one.error.log");
  s.set_config(with_dead_port(make_config(server("one", 0, "error_log = logs/one.error.log\n")), s.port(2)));
  std::string where = s.config_path() + ":" + std::to_string(line_of(s.config_text(), "one.error.log")) + ": ";
  RunResult r = s.ctl("reload");
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, where)) << describe(r);
  EXPECT_TRUE(contains(r.err, "Is a directory")) << describe(r);
  // The running configuration stays, and its errors still go to [main]'s log.
  EXPECT_EQ(get(s.port(), "/a.txt").status, 200);
  EXPECT_EQ(get(s.port(), "/deny/still-main").status, 403);
  EXPECT_TRUE(shows(s.path("logs/error.log"), "/deny/still-main")) << s.error_log();
}

}  // namespace

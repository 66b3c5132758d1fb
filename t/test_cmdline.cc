// Options that change how the server runs (-g, -e) and the [main] settings that shape its processes:
// daemon, worker_connections, user.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

#include "harness.h"

using namespace baton_test;

namespace {

const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n";

std::vector<pid_t> wait_for_workers(BatonServer& s, size_t n) {
  std::vector<pid_t> w;
  wait_for(
      [&] {
        w = s.workers_of(s.master_pid());
        return w.size() == n;
      },
      5000ms, 10ms);
  return w;
}

// A script that runs baton with extra options first: start() runs it in place of the binary.
std::string wrapper(BatonServer& s, const std::string& extra) {
  std::string path = s.path("wrapper.sh");
  std::string text = "#!/bin/sh\nexec '" + baton_binary() + "' " + extra + " \"$@\"\n";
  s.write_file("wrapper.sh", text);
  ::chmod(path.c_str(), 0755);
  return path;
}

// /proc/<pid>/status "Uid:" real uid.
long uid_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Uid:", 0) == 0) return std::stol(line.substr(4));
  return -1;
}

TEST(CmdLine, GlobalsGivenWithDashG) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer, "", 1));
  s.set_binary(wrapper(s, "-g 'worker_processes = 2; log_level = info'"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(wait_for_workers(s, 2).size(), 2u) << "-g did not override worker_processes = 1";
  EXPECT_EQ(get(s.port(), "/a.txt").body, "a");
}

TEST(CmdLine, BadDashGIsReportedAndNothingStarts) {
  BatonServer s;
  s.set_config(make_config(kServer));
  RunResult r = run_baton({"-p", s.path(""), "-c", s.config_path(), "-g", "no_such_key = 1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "-g:")) << r.err;
  EXPECT_TRUE(contains(r.err, "no_such_key")) << r.err;
  EXPECT_FALSE(can_connect(s.port(), 300ms));
}

TEST(CmdLine, DashEChoosesTheErrorLog) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer));
  s.set_binary(wrapper(s, "-e logs/other.log"));
  ASSERT_TRUE(s.start());
  EXPECT_TRUE(wait_for([&] { return contains(read_file(s.path("logs/other.log")), "started"); }, 3000ms))
      << read_file(s.path("logs/other.log"));
  EXPECT_FALSE(contains(s.error_log(), "started")) << "the configured error_log was used despite -e";
}

TEST(CmdLine, DaemonDetachesAndKeepsServing) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer));
  DaemonGuard stop_daemon{s};
  RunResult r = run_baton({"-p", s.path(""), "-c", s.config_path(), "-g", "daemon = on"}, 5000ms);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  pid_t master = 0;
  ASSERT_TRUE(wait_for([&] { return (master = read_pid_file(s.pid_path())) > 0 && process_alive(master); }, 3000ms));
  EXPECT_TRUE(wait_for([&] { return can_connect(s.port(), 200ms); }, 3000ms));
  EXPECT_EQ(get(s.port(), "/a.txt").body, "a");
  EXPECT_TRUE(is_master_title(process_cmdline(master))) << process_cmdline(master);
  ASSERT_EQ(::kill(master, SIGTERM), 0);
  EXPECT_TRUE(wait_for([&] { return !process_alive(master); }, 5000ms));
  EXPECT_FALSE(file_exists(s.pid_path()));
}

// -s finds the master through the configuration being edited: a broken line elsewhere or an unknown
// key in [main] must not send it to the default pid file (a different master, or none).
TEST(CmdLine, SignalFindsTheMasterWhileTheConfigurationIsBroken) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  std::string config = make_config("[server main]\n"
                                   "listen = 127.0.0.1:@PORT@\n"
                                   "root = html\n");
  config = replace_all(config, "pid = logs/baton.pid\n", "pid = logs/elsewhere.pid\ncontrol_socket = logs/elsewhere.sock\n");
  s.set_config(config);
  ASSERT_TRUE(s.start());
  ASSERT_TRUE(wait_for([&] { return read_pid_file(s.path("logs/elsewhere.pid")) == s.master_pid(); }, 3000ms));
  // The edit in progress: an unknown key in [main], a broken [server].
  std::string broken = replace_all(config, "control_socket = logs/elsewhere.sock\n",
                                   "control_socket = logs/elsewhere.sock\nworker_proceses = 2\n");
  broken = replace_all(broken, "root = html\n", "root html;\n");
  s.set_config(broken);
  ASSERT_EQ(s.test_config().exit_code, 1);

  RunResult status = s.ctl("status");
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_TRUE(contains(status.out, "master: pid=" + std::to_string(s.master_pid()))) << status.out;
  // A reload reaches the master, which refuses the configuration and says where it is wrong.
  RunResult reload = s.ctl("reload");
  EXPECT_EQ(reload.exit_code, 1) << reload.out;
  EXPECT_TRUE(contains(reload.err, "baton.ini:" + std::to_string(line_of(broken, "root html;")) + ":")) << reload.err;
  EXPECT_EQ(get(s.port(), "/a.txt").body, "a");

  RunResult quit = s.ctl("quit");
  EXPECT_EQ(quit.exit_code, 0) << quit.err;
  std::optional<int> st = s.wait_exit(5000ms);
  ASSERT_TRUE(st) << "the master did not stop on -s quit";
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << *st;
}

TEST(CmdLine, VersionNamesTheTlsLibrary) {
  RunResult v = run_baton({"-V"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_TRUE(contains(v.out, "\nbuilt with OpenSSL 3.")) << v.out;
}

// "configure arguments: ... --pid-path=P" of `baton -V`, or the default.
std::string configured(const std::string& option, const std::string& fallback) {
  RunResult v = run_baton({"-V"});
  std::string key = "--" + option + "=";
  size_t at = v.out.find(key);
  if (at == std::string::npos) return fallback;
  size_t end = v.out.find_first_of(" \n", at);
  return v.out.substr(at + key.size(), end - at - key.size());
}

// configure --pid-path and --error-log-path are the defaults the server uses, and -s looks where
// the server writes.
TEST(CmdLine, ConfiguredPathsAreTheDefaults) {
  std::string pid = configured("pid-path", "logs/baton.pid");
  std::string error_log = configured("error-log-path", "logs/error.log");
  if (pid[0] == '/' || error_log[0] == '/') GTEST_SKIP() << "configured with absolute paths: " << pid << " " << error_log;
  BatonServer s;
  s.write_file("html/a.txt", "a");
  for (const std::string& file : {pid, error_log})
    if (file.find('/') != std::string::npos) s.make_dir(file.substr(0, file.rfind('/')));
  // No pid and no error_log: the compiled-in ones.
  s.set_config("[main]\nworker_processes = 1\n\n[http]\ntypes = conf/mime.types\n\n"
               "[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n");
  ASSERT_TRUE(s.start());
  EXPECT_TRUE(wait_for([&] { return read_pid_file(s.path(pid)) == s.master_pid(); }, 3000ms)) << s.path(pid);
  EXPECT_TRUE(wait_for([&] { return contains(read_file(s.path(error_log)), "started"); }, 3000ms)) << s.path(error_log);
  RunResult quit = s.ctl("quit");
  EXPECT_EQ(quit.exit_code, 0) << quit.err;
  EXPECT_TRUE(s.wait_exit(5000ms)) << "the master did not stop on -s quit";
}

TEST(Limits, WorkerConnectionsCapsAWorkerAndItResumes) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config_main("worker_connections = 2\n", kServer, "keepalive_timeout = 30s\n", 1));
  ASSERT_TRUE(s.start());
  // Two connections in the middle of a request head: neither may be closed to make room (idle ones
  // may: see test_connections.cc).
  Client first(s.port()), second(s.port());
  ASSERT_TRUE(first.send("GET /a.txt HTTP/1.1\r\n"));
  ASSERT_TRUE(second.send("GET /a.txt HTTP/1.1\r\n"));
  std::this_thread::sleep_for(200ms);
  // The third connection waits in the listening queue: the worker is full.
  Client third(s.port(), {.timeout = 300ms});
  ASSERT_TRUE(third.send(req("GET", "/a.txt")));
  EXPECT_FALSE(third.read_response()) << "a third connection was served beyond worker_connections = 2";
  // One leaves: the waiting connection is taken and answered.
  first.close();
  third.set_timeout(3000ms);
  std::optional<Response> r = third.read_response();
  ASSERT_TRUE(r) << third.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(contains(s.error_log(), "worker_connections are not enough")) << s.error_log();
  // The second one finishes its request and is answered.
  ASSERT_TRUE(second.send("Host: localhost\r\n\r\n"));
  std::optional<Response> r2 = second.read_response();
  ASSERT_TRUE(r2) << second.error();
  EXPECT_EQ(r2->status, 200);
}

TEST(Limits, WorkersRunAsTheConfiguredUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> workers = wait_for_workers(s, 1);
  ASSERT_EQ(workers.size(), 1u);
  // A worker has its title from the fork on, and changes user a moment later: once it has answered
  // a request, it runs as what it will serve as.
  EXPECT_EQ(get(s.port(), "/a.txt").body, "a");
  EXPECT_EQ(uid_of(s.master_pid()), 0) << "the master keeps root (it holds the sockets and logs)";
  EXPECT_EQ(uid_of(workers[0]), 65534) << "without `user`, workers run as nobody";
}

}  // namespace

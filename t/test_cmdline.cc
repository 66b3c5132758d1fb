// Options that change how the server runs (-g, -e) and the [main] settings that shape its processes:
// daemon, worker_connections, user.
#include <sys/stat.h>
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
  // The daemon is nobody's child here: whatever happens below, it is stopped at the end.
  struct StopDaemon {
    const BatonServer& s;
    ~StopDaemon() {
      pid_t p = read_pid_file(s.pid_path());
      if (p > 0 && is_master_title(process_cmdline(p))) ::kill(p, SIGKILL);
    }
  } stop_daemon{s};
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
  EXPECT_EQ(uid_of(s.master_pid()), 0) << "the master keeps root (it holds the sockets and logs)";
  EXPECT_EQ(uid_of(workers[0]), 65534) << "without `user`, workers run as nobody";
  EXPECT_EQ(get(s.port(), "/a.txt").body, "a");
}

}  // namespace

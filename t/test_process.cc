// Processes and signals: workers, titles, pid file, graceful (QUIT) and fast (TERM, INT) shutdown,
// worker restart, and no descriptor leaks in a worker under a mixed load.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

std::string trim_newline(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n";

std::vector<pid_t> wait_for_workers(BatonServer& s, size_t n) {
  std::vector<pid_t> w;
  wait_for(
      [&] {
        w = s.worker_pids();
        return w.size() == n;
      },
      5000ms);
  return w;
}

}  // namespace

TEST(Process, WorkerProcessesAndTitles) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer, "", 2));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> workers = wait_for_workers(s, 2);
  ASSERT_EQ(workers.size(), 2u) << "workers: " << s.worker_pids().size();
  EXPECT_EQ(process_cmdline(s.master_pid()).rfind("baton: master process", 0), 0u)
      << process_cmdline(s.master_pid());
  for (pid_t w : workers)
    EXPECT_EQ(process_cmdline(w).rfind("baton: worker process", 0), 0u) << process_cmdline(w);
  EXPECT_EQ(get(s.port(), "/a.txt").body, "a");
}

TEST(Process, PidFileWrittenAndRemoved) {
  BatonServer s;
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  std::string pid_path = s.path("logs/baton.pid");
  ASSERT_TRUE(wait_for([&] { return !trim_newline(read_file(pid_path)).empty(); }, 3000ms));
  EXPECT_EQ(trim_newline(read_file(pid_path)), std::to_string(s.master_pid()));
  std::optional<int> status = s.stop(SIGTERM, 5000ms);
  ASSERT_TRUE(status) << "master did not exit on SIGTERM";
  EXPECT_FALSE(file_exists(pid_path));
}

TEST(Process, TermExitsPromptlyWithOpenConnections) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.write_generated("html/big.bin", 16 * 1024 * 1024, 5);
  s.set_config(make_config(kServer, "", 2));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> workers = wait_for_workers(s, 2);
  // An idle keep-alive connection and a download the client does not read.
  Client idle(s.port());
  EXPECT_EQ(idle.exchange(req("GET", "/a.txt")).status, 200);
  Client stalled(s.port(), {.timeout = 5000ms, .rcvbuf = 4096});
  ASSERT_TRUE(stalled.send(req("GET", "/big.bin")));
  std::this_thread::sleep_for(100ms);

  auto t0 = SteadyClock::now();
  ASSERT_TRUE(s.signal(SIGTERM));
  std::optional<int> status = s.wait_exit(3000ms);
  ASSERT_TRUE(status) << "master still running 3 s after SIGTERM";
  EXPECT_LT(SteadyClock::now() - t0, 3000ms);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  EXPECT_TRUE(wait_for(
      [&] {
        return std::none_of(workers.begin(), workers.end(), [](pid_t w) { return process_alive(w); });
      },
      2000ms))
      << "workers outlived the master";
  EXPECT_FALSE(file_exists(s.path("logs/baton.pid")));
  EXPECT_TRUE(idle.is_closed_by_peer(2000ms));
}

TEST(Process, IntExitsPromptly) {
  BatonServer s;
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  ASSERT_TRUE(s.signal(SIGINT));
  std::optional<int> status = s.wait_exit(3000ms);
  ASSERT_TRUE(status) << "master still running 3 s after SIGINT";
  EXPECT_FALSE(file_exists(s.path("logs/baton.pid")));
}

TEST(Process, QuitFinishesSlowDownload) {
  constexpr size_t kSize = 20 * 1024 * 1024;
  BatonServer s;
  std::string content = s.write_generated("html/big.bin", kSize, 11);
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  int port = s.port();

  Client c(port, {.timeout = 5000ms, .rcvbuf = 16384});
  ASSERT_TRUE(c.send(req("GET", "/big.bin")));
  std::string data;
  size_t head_end;
  while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
    std::string chunk = c.read_some(4096);
    ASSERT_FALSE(chunk.empty()) << c.error();
    data += chunk;
  }
  std::string head = data.substr(0, head_end + 4);
  std::string body = data.substr(head_end + 4);
  ASSERT_EQ(head.rfind("HTTP/1.1 200 ", 0), 0u) << head;
  ASSERT_TRUE(contains(head, "Content-Length: " + std::to_string(kSize))) << head;

  // Read slowly for a while, then ask for a graceful stop in the middle of the download.
  for (int i = 0; i < 20; i++) {
    body += c.read_some(8192);
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_LT(body.size(), kSize / 2) << "the download is not in flight any more";
  ASSERT_TRUE(s.signal(SIGQUIT));

  // New connections are refused once the listeners are closed.
  EXPECT_TRUE(wait_for([&] { return !can_connect(port, 200ms); }, 3000ms)) << "still accepting after SIGQUIT";
  EXPECT_TRUE(s.running()) << "master exited before the download finished";
  for (int i = 0; i < 20; i++) {
    body += c.read_some(8192);
    std::this_thread::sleep_for(10ms);
  }
  // Then the rest as fast as it comes.
  int buf = 1 << 20;
  ::setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  while (body.size() < kSize) {
    std::string chunk = c.read_some(1 << 20);
    if (chunk.empty()) break;
    body += chunk;
  }
  EXPECT_TRUE(same_bytes(body, content)) << c.error();

  std::optional<int> status = s.wait_exit(10000ms);
  ASSERT_TRUE(status) << "master still running after the download finished";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  EXPECT_FALSE(file_exists(s.path("logs/baton.pid")));
  EXPECT_TRUE(c.is_closed_by_peer(1000ms));
}

TEST(Process, QuitWithIdleConnectionsExitsQuickly) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  Client idle(s.port());
  EXPECT_EQ(idle.exchange(req("GET", "/a.txt")).status, 200);
  ASSERT_TRUE(s.signal(SIGQUIT));
  // An idle keep-alive connection is closed rather than waited for.
  EXPECT_TRUE(idle.is_closed_by_peer(3000ms));
  EXPECT_TRUE(s.wait_exit(5000ms)) << "master still running 5 s after SIGQUIT with only idle connections";
}

TEST(Process, CrashedWorkerIsReplaced) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> before = wait_for_workers(s, 1);
  ASSERT_EQ(before.size(), 1u);
  ASSERT_EQ(::kill(before[0], SIGKILL), 0);
  std::vector<pid_t> after;
  bool replaced = wait_for(
      [&] {
        after = s.worker_pids();
        return after.size() == 1 && after[0] != before[0];
      },
      8000ms, 50ms);
  ASSERT_TRUE(replaced) << "no new worker after the old one was killed" << "\n" << s.error_log();
  EXPECT_EQ(get(s.port(), "/a.txt").body, "a");
  EXPECT_TRUE(s.running());
}

TEST(Process, NoDescriptorLeakInWorker) {
  BatonServer s;
  s.write_file("html/a.txt", "small file\n");
  s.write_generated("html/big.bin", 1024 * 1024, 9);
  s.write_file("html/dir/index.html", "index\n");
  s.set_config(make_config(kServer, "keepalive_requests = 1000\n"));
  ASSERT_TRUE(s.start());
  int port = s.port();
  std::vector<pid_t> workers = wait_for_workers(s, 1);
  ASSERT_EQ(workers.size(), 1u);
  pid_t worker = workers[0];

  // Warm up (lazily opened files such as logs are then open), and let the connection go.
  {
    Client warm(port);
    EXPECT_EQ(warm.exchange(req("GET", "/a.txt")).status, 200);
    EXPECT_EQ(warm.exchange(req("GET", "/nope")).status, 404);
  }
  EXPECT_EQ(get(port, "/a.txt").status, 200);
  std::this_thread::sleep_for(200ms);
  int baseline = count_open_fds(worker);
  ASSERT_GT(baseline, 0);

  int requests = 0;
  // Keep-alive connections, requests pipelined ten at a time.
  for (int conn = 0; conn < 50; conn++) {
    Client c(port);
    for (int batch = 0; batch < 10; batch++) {
      std::string reqs;
      for (int i = 0; i < 10; i++) reqs += req(i == 5 ? "HEAD" : "GET", i == 7 ? "/missing" : "/a.txt");
      ASSERT_TRUE(c.send(reqs)) << c.error();
      for (int i = 0; i < 10; i++) {
        std::optional<Response> r = c.read_response(i == 5);
        ASSERT_TRUE(r) << c.error();
        ASSERT_EQ(r->status, i == 7 ? 404 : 200);
        requests++;
      }
    }
  }
  // One request per connection, closed by the server.
  for (int i = 0; i < 4000; i++) {
    Client c(port);
    Response r = c.exchange(req("GET", i % 10 == 0 ? "/dir/" : "/a.txt", "Connection: close\r\n"));
    ASSERT_EQ(r.status, 200);
    requests++;
  }
  // Two requests, then the client goes away from an idle keep-alive connection.
  for (int i = 0; i < 500; i++) {
    Client c(port);
    ASSERT_EQ(c.exchange(req("GET", "/a.txt")).status, 200);
    ASSERT_EQ(c.exchange(req("GET", "/dir", "X-N: " + std::to_string(i) + "\r\n")).status, 301);
    requests += 2;
  }
  // Connections that end badly: malformed requests, a client leaving mid-request and mid-response,
  // range requests.
  for (int i = 0; i < 100; i++) {
    {
      Client c(port);
      ASSERT_TRUE(c.send("GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"));
      EXPECT_TRUE(c.is_closed_by_peer(2000ms));
      requests++;
    }
    {
      Client c(port);
      ASSERT_TRUE(c.send("GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Partial"));
    }
    {
      Client c(port);
      ASSERT_TRUE(c.send(req("GET", "/big.bin")));
      ASSERT_FALSE(c.read_some(1024).empty());
      requests++;
    }
    {
      Client c(port);
      Response r = c.exchange(req("GET", "/big.bin", "Range: bytes=0-9,100-199\r\nConnection: close\r\n"));
      ASSERT_EQ(r.status, 206);
      requests++;
    }
  }
  EXPECT_GE(requests, 10000);

  int after = -1;
  bool settled = wait_for(
      [&] {
        after = count_open_fds(worker);
        return after == baseline;
      },
      5000ms, 50ms);
  EXPECT_TRUE(settled) << "worker had " << baseline << " descriptors before, " << after << " after " << requests
                       << " requests";
  std::vector<pid_t> now = s.worker_pids();
  EXPECT_EQ(now, std::vector<pid_t>{worker}) << "the worker changed (crashed?) during the load";
}

// limit_rate and limit_rate_after: a response goes out no faster than its rate (after its first
// limit_rate_after bytes), for files (sendfile and TLS alike) and proxied responses, with every byte
// intact; without a limit nothing is slowed, and send_timeout does not end a limited response that is
// moving. Times are asserted as generous bounds only.
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "lib/proxy_util.h"
#include "lib/tls_util.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

constexpr size_t kKiB = 1024;

double seconds_since(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

// One GET on a connection of its own, read as it arrives: the head and body, how long the whole
// response took, and how long until `mark` bytes of the body had arrived.
struct Timed {
  std::string head;
  std::string body;
  double total_s = 0;
  double mark_s = -1;  // -1: the mark was never reached
};

Timed timed_get(int port, const std::string& target, size_t mark = 0) {
  Timed t;
  ClientOptions opts;
  opts.timeout = 15000ms;
  Client c(port, opts);
  auto start = SteadyClock::now();
  if (!c.send(req("GET", target, "Connection: close\r\n"))) return t;
  std::string all;
  size_t head_end = std::string::npos;
  while (true) {
    std::string piece = c.read_some(1 << 20);
    if (piece.empty()) break;
    all += piece;
    if (head_end == std::string::npos) head_end = all.find("\r\n\r\n");
    if (t.mark_s < 0 && mark > 0 && head_end != std::string::npos && all.size() - head_end - 4 >= mark)
      t.mark_s = seconds_since(start);
  }
  t.total_s = seconds_since(start);
  if (head_end == std::string::npos) return t;
  t.head = all.substr(0, head_end + 4);
  t.body = all.substr(head_end + 4);
  return t;
}

// The CPU time a process has used (user and system), in seconds; -1 when it cannot be read.
double cpu_seconds(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  // After the name: state (field 3) ... utime (14), stime (15).
  std::istringstream in(stat.substr(paren + 2));
  std::string field;
  long utime = -1, stime = -1;
  for (int i = 3; i <= 15 && in >> field; i++) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  if (utime < 0 || stime < 0) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string file_server(std::string_view extra = "", std::string_view locations = "") {
  return "[server main]\n"
         "listen = 127.0.0.1:@PORT@\n"
         "root = html\n" +
         std::string(extra) + std::string(locations);
}

TEST(LimitRate, AFileGoesNoFasterThanTheRate) {
  BatonServer s;
  std::string content = s.write_generated("html/big.bin", 512 * kKiB);
  s.set_config(make_config(file_server("limit_rate = 256k\n")));
  ASSERT_TRUE(s.start());
  std::vector<pid_t> workers = s.worker_pids();
  ASSERT_EQ(workers.size(), 1u);
  double cpu_before = cpu_seconds(workers[0]);
  Timed t = timed_get(s.port(), "/big.bin");
  ASSERT_TRUE(contains(t.head, "200 OK")) << t.head;
  EXPECT_TRUE(same_bytes(t.body, content));
  // 512 KiB at 256 KiB a second: two seconds, less the first piece that leaves at once.
  EXPECT_GE(t.total_s, 1.5);
  EXPECT_LT(t.total_s, 8.0);
  // The worker waits on a timer meanwhile: no loop that spins until the next bytes are allowed.
  double cpu = cpu_seconds(workers[0]) - cpu_before;
  ASSERT_GE(cpu_before, 0);
  EXPECT_LT(cpu, 0.5) << "the worker used " << cpu << " s of CPU over " << t.total_s << " s";
}

TEST(LimitRate, TheFirstLimitRateAfterBytesGoAtOnce) {
  BatonServer s;
  std::string content = s.write_generated("html/big.bin", 512 * kKiB);
  s.set_config(make_config(file_server("limit_rate = 128k\nlimit_rate_after = 256k\n")));
  ASSERT_TRUE(s.start());
  Timed t = timed_get(s.port(), "/big.bin", 256 * kKiB - 1024);
  EXPECT_TRUE(same_bytes(t.body, content));
  ASSERT_GE(t.mark_s, 0);
  EXPECT_LT(t.mark_s, 0.75) << "the first 256 KiB took " << t.mark_s << " s";
  // The other 256 KiB at 128 KiB a second.
  EXPECT_GE(t.total_s, 1.4);
  EXPECT_LT(t.total_s, 8.0);
}

TEST(LimitRate, InheritedAndTurnedOffInALocation) {
  BatonServer s;
  std::string big = s.write_generated("html/fast/big.bin", 512 * kKiB);
  std::string small = s.write_generated("html/slow/small.bin", 96 * kKiB, 2);
  s.set_config(make_config(file_server("", "[location /fast/]\nlimit_rate = 0\n[location /slow/]\n"),
                           "limit_rate = 64k\n"));
  ASSERT_TRUE(s.start());
  // Without the limit, 512 KiB on the loopback is a matter of milliseconds (8 s at 64k).
  Timed fast = timed_get(s.port(), "/fast/big.bin");
  EXPECT_TRUE(same_bytes(fast.body, big));
  EXPECT_LT(fast.total_s, 1.0);
  // [http]'s limit where none is set: 96 KiB at 64 KiB a second.
  Timed slow = timed_get(s.port(), "/slow/small.bin");
  EXPECT_TRUE(same_bytes(slow.body, small));
  EXPECT_GE(slow.total_s, 1.0);
  EXPECT_LT(slow.total_s, 6.0);
}

TEST(LimitRate, EachResponseOfAKeptAliveConnectionHasItsOwn) {
  BatonServer s;
  std::string limited = s.write_generated("html/slow/a.bin", 192 * kKiB);
  std::string free = s.write_generated("html/b.bin", 512 * kKiB, 3);
  s.set_config(make_config(file_server("", "[location /slow/]\nlimit_rate = 128k\n")));
  ASSERT_TRUE(s.start());
  ClientOptions opts;
  opts.timeout = 10000ms;
  Client c(s.port(), opts);
  for (int i = 0; i < 2; i++) {
    // Each limited response starts its count afresh: neither goes at once.
    auto start = SteadyClock::now();
    Response r = c.exchange(req("GET", "/slow/a.bin"));
    ASSERT_EQ(r.status, 200);
    EXPECT_TRUE(same_bytes(r.body, limited));
    EXPECT_GE(seconds_since(start), 1.0) << "response " << i;
  }
  // And a response without a limit after them is not slowed by theirs.
  auto start = SteadyClock::now();
  Response r = c.exchange(req("GET", "/b.bin"));
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(same_bytes(r.body, free));
  EXPECT_LT(seconds_since(start), 1.0);
}

TEST(LimitRate, SendTimeoutDoesNotEndALimitedResponseThatMoves) {
  BatonServer s;
  std::string content = s.write_generated("html/big.bin", 384 * kKiB);
  s.set_config(make_config(file_server("limit_rate = 128k\nsend_timeout = 1s\n")));
  ASSERT_TRUE(s.start());
  Timed t = timed_get(s.port(), "/big.bin");
  EXPECT_TRUE(same_bytes(t.body, content));
  EXPECT_GE(t.total_s, 2.0);  // three times send_timeout, and whole
  EXPECT_LT(t.total_s, 10.0);
}

TEST(LimitRate, AProxiedResponseIsLimitedToo) {
  TestUpstream up;
  ASSERT_TRUE(up.start()) << up.error();
  BatonServer s;
  s.set_config(proxy_conf({up.address()}, "", "limit_rate = 256k\n"));
  ASSERT_TRUE(s.start());
  for (const char* path : {"/size/524288", "/chunked/524288"}) {
    Timed t = timed_get(s.port(), path);
    ASSERT_TRUE(contains(t.head, "200 OK")) << path << "\n" << t.head;
    if (contains(t.head, "Content-Length")) {
      EXPECT_EQ(t.body.size(), 524288u) << path;
      EXPECT_EQ(upstream_content_mismatch(t.body, 0), std::string::npos) << path;
    } else {
      // Chunked as it came (read raw here): the whole of it, and its last chunk.
      EXPECT_GT(t.body.size(), 524288u) << path;
      EXPECT_TRUE(t.body.ends_with("\r\n0\r\n\r\n")) << path;
    }
    EXPECT_GE(t.total_s, 1.5) << path;
    EXPECT_LT(t.total_s, 8.0) << path;
  }
}

TEST(LimitRate, OverTls) {
  if (tool_path("openssl").empty()) GTEST_SKIP() << "openssl is not installed (auto/deps --test)";
  if (tool_path("curl").empty()) GTEST_SKIP() << "curl is not installed (auto/deps --test)";
  BatonServer s;
  ASSERT_TRUE(make_certificate("a.test", s.path("conf/a.crt"), s.path("conf/a.key")));
  std::string content = s.write_generated("html/big.bin", 512 * kKiB);
  s.set_config(make_config("[server a]\n"
                           "listen = 127.0.0.1:@PORT@ ssl\n"
                           "server_name = a.test\n"
                           "root = html\n"
                           "ssl_certificate = conf/a.crt\n"
                           "ssl_certificate_key = conf/a.key\n"
                           "limit_rate = 256k\n"));
  ASSERT_TRUE(s.start());
  std::string out = s.path("got.bin");
  auto start = SteadyClock::now();
  RunResult r = run_tool("curl", {"-s", "--cacert", s.path("conf/a.crt"), "--resolve",
                                  "a.test:" + std::to_string(s.port()) + ":127.0.0.1", "-o", out,
                                  "https://a.test:" + std::to_string(s.port()) + "/big.bin"});
  double took = seconds_since(start);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(same_bytes(read_file(out), content));
  EXPECT_GE(took, 1.5);
  EXPECT_LT(took, 8.0);
}

}  // namespace

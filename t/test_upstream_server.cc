// The test upstream itself (objs/baton_upstream, t/lib/upstream.h): every behaviour the proxy tests
// rely on, checked directly over real sockets, with no baton in between; plus the content function,
// the hash and the harness class.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

class UpstreamServer : public ::testing::Test {
 protected:
  void start(const std::vector<std::string>& args = {"--name", "A"}) {
    ASSERT_TRUE(up.start(args)) << up.error();
    port = up.port();
  }

  TestUpstream up;
  int port = 0;
};

double seconds_since(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

// What the socket says next once the client's buffer is empty: "data", "eof", "reset", "timeout".
std::string next_event(Client& c, Millis timeout) {
  struct pollfd p = {c.fd(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return "timeout";
  char b;
  ssize_t n = ::recv(c.fd(), &b, 1, MSG_PEEK);
  if (n > 0) return "data";
  if (n == 0) return "eof";
  return errno == ECONNRESET ? "reset" : std::string("error: ") + std::strerror(errno);
}

// Raw bytes of a response until the server closes (or `timeout`).
std::string raw_exchange(int port, std::string_view request, Millis timeout = 5000ms) {
  Client c(port);
  if (!c.connected() || !c.send(request)) return std::string();
  return c.read_all_until_close(timeout);
}

// Descriptor number -> what /proc/PID/fd/N points to.
std::map<int, std::string> fd_targets(pid_t pid) {
  std::map<int, std::string> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      char buf[4096];
      ssize_t n = ::readlink((dir + "/" + e->d_name).c_str(), buf, sizeof buf);
      if (n > 0) out[std::atoi(e->d_name)] = std::string(buf, static_cast<size_t>(n));
    }
    ::closedir(d);
  }
  return out;
}

// Writes all of `data` on a non-blocking socket (for a second thread, beside the Client's reads).
bool send_raw(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      struct pollfd p = {fd, POLLOUT, 0};
      if (::poll(&p, 1, 5000) <= 0) return false;
    } else {
      return false;
    }
  }
  return true;
}

std::string chunked(const std::vector<std::string>& chunks, std::string_view trailer = "") {
  std::string s;
  char line[32];
  for (const std::string& c : chunks) {
    std::snprintf(line, sizeof line, "%zx\r\n", c.size());
    s += line + c + "\r\n";
  }
  return s + "0\r\n" + std::string(trailer) + "\r\n";
}

}  // namespace

// ---- content and hash (no process) ----

TEST(UpstreamServerContent, DependsOnTheOffsetOnly) {
  std::string whole = upstream_content(0, 300000);
  EXPECT_EQ(upstream_content(0, 300000), whole);
  for (size_t off : {1u, 7u, 8u, 9u, 4095u, 65536u, 123457u})
    EXPECT_EQ(upstream_content(off, 1000), whole.substr(off, 1000)) << "offset " << off;
  for (size_t i : {0u, 1u, 5u, 8u, 299999u})
    EXPECT_EQ(upstream_content_byte(i), static_cast<unsigned char>(whole[i])) << "byte " << i;
  std::set<unsigned char> values(whole.begin(), whole.begin() + 8192);
  EXPECT_EQ(values.size(), 256u);
  // A shift by any small amount (a dropped or repeated byte, block or word) shows at once.
  for (size_t shift : {1u, 8u, 16u, 4096u, 65536u})
    EXPECT_NE(whole.substr(shift, 4096), whole.substr(0, 4096)) << "shift " << shift;
  EXPECT_EQ(upstream_content_mismatch(whole.substr(1000, 5000), 1000), std::string_view::npos);
  std::string bad = whole.substr(1000, 5000);
  bad[4321] ^= 1;
  EXPECT_EQ(upstream_content_mismatch(bad, 1000), 4321u);
  EXPECT_EQ(upstream_content_mismatch(whole.substr(1000, 5000), 1001), 0u);
}

TEST(UpstreamServerContent, Fnv1aKnownValuesAndIncrementalForm) {
  EXPECT_EQ(fnv1a(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a("foobar"), 0x85944171f73967e8ull);
  EXPECT_EQ(fnv1a("bar", fnv1a("foo")), fnv1a("foobar"));
  EXPECT_EQ(hash_hex(0xaf63dc4c8601ec8cull), "af63dc4c8601ec8c");
  EXPECT_EQ(hash_hex(1), "0000000000000001");
  std::string c = upstream_content(3, 200000);
  EXPECT_EQ(upstream_content_hash(3, 200000), fnv1a(c));
  EXPECT_EQ(upstream_content_hash(100003, 100000, upstream_content_hash(3, 100000)), fnv1a(c));
}

// ---- the process and the harness ----

TEST_F(UpstreamServer, ReportsItsPortAndStops) {
  int before = count_open_fds(::getpid());
  start();
  EXPECT_GT(port, 0);
  EXPECT_EQ(up.address(), "127.0.0.1:" + std::to_string(port));
  pid_t pid = up.pid();
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(process_alive(pid));
  EXPECT_TRUE(up.running());
  // Nothing of the harness stays open in the test process (nothing to leak into later children)...
  EXPECT_EQ(count_open_fds(::getpid()), before);
  // ...and the program holds stdin, stdout, stderr, its listener and its log, and nothing else but
  // what the test binary itself inherited without close-on-exec.
  std::map<int, std::string> inherited = fd_targets(::getpid());
  std::erase_if(inherited, [](const auto& fd) { return fd.first <= 2 || (::fcntl(fd.first, F_GETFD) & FD_CLOEXEC); });
  int sockets = 0, logs = 0;
  for (const auto& [fd, target] : fd_targets(pid)) {
    if (fd <= 2) continue;
    if (target.rfind("socket:", 0) == 0 && ++sockets == 1) continue;
    if (target == up.log_path() && ++logs == 1) continue;
    EXPECT_TRUE(inherited.count(fd) && inherited[fd] == target) << "descriptor " << fd << " -> " << target;
  }
  EXPECT_EQ(sockets, 1);
  EXPECT_EQ(logs, 1);
  EXPECT_TRUE(can_connect(port));
  up.stop();
  EXPECT_FALSE(process_alive(pid));
  EXPECT_FALSE(up.running());
  EXPECT_FALSE(can_connect(port, 200ms));
}

TEST_F(UpstreamServer, BadArgumentsDoNotStart) {
  TestUpstream bad;
  EXPECT_FALSE(bad.start({"--no-such-option"}));
  EXPECT_TRUE(contains(bad.error(), "did not report its port")) << bad.error();
  EXPECT_FALSE(bad.running());
  EXPECT_FALSE(bad.start({"--idle-close", "soon"}));
}

TEST_F(UpstreamServer, ListensOnAGivenAddress) {
  int p = 0;
  {
    TestUpstream probe;  // a port that was free a moment ago
    ASSERT_TRUE(probe.start()) << probe.error();
    p = probe.port();
  }
  start({"--listen", "127.0.0.1:" + std::to_string(p)});
  EXPECT_EQ(port, p);
  EXPECT_EQ(get(port, "/").status, 200);
}

TEST_F(UpstreamServer, SeveralInAVectorAndMoved) {
  std::vector<pid_t> pids;
  {
    std::vector<TestUpstream> ups;
    for (const char* name : {"one", "two", "three"}) {
      ups.emplace_back();
      ASSERT_TRUE(ups.back().start({"--name", name})) << ups.back().error();
      pids.push_back(ups.back().pid());
    }
    EXPECT_EQ(get(ups[0].port(), "/").header("X-Upstream"), "one");
    EXPECT_EQ(get(ups[2].port(), "/").header("X-Upstream"), "three");
    TestUpstream moved = std::move(ups[1]);
    EXPECT_EQ(ups[1].pid(), -1);
    EXPECT_EQ(moved.pid(), pids[1]);
    EXPECT_EQ(get(moved.port(), "/size/1").header("X-Upstream"), "two");
    EXPECT_EQ(moved.received("GET", "/size/1"), 1u);
    moved = TestUpstream();  // stops "two"
    EXPECT_FALSE(process_alive(pids[1]));
    EXPECT_TRUE(process_alive(pids[0]));
  }
  for (pid_t p : pids) EXPECT_FALSE(process_alive(p));
}

TEST_F(UpstreamServer, RestartComesBackOnTheSamePort) {
  start({"--name", "A", "--max-requests", "1"});
  EXPECT_EQ(get(port, "/size/1").status, 200);
  pid_t first = up.pid();
  up.stop();
  EXPECT_FALSE(can_connect(port, 200ms));
  ASSERT_TRUE(up.restart()) << up.error();
  EXPECT_EQ(up.port(), port);
  EXPECT_NE(up.pid(), first);
  Client c(port);
  Response r = c.exchange(req("GET", "/size/1"));
  EXPECT_EQ(r.header("X-Upstream"), "A");
  EXPECT_TRUE(r.connection_close()) << r;  // the same arguments
  TestUpstream::Stats s = up.stats();
  EXPECT_EQ(s.connections, 1);
  EXPECT_EQ(s.requests, 1);
  EXPECT_EQ(up.received("GET", "/size/1"), 2u) << up.log_text();  // one log for both runs
}

// ---- behaviours ----

TEST_F(UpstreamServer, SizeIsByteExactWithLength) {
  start();
  Client c(port);
  std::string conn;
  int n = 0;
  for (size_t size : {0u, 1u, 1000000u}) {
    Response r = c.exchange(req("GET", "/size/" + std::to_string(size)));
    n++;
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(r.header("Content-Length"), std::to_string(size));
    EXPECT_FALSE(r.has("Transfer-Encoding"));
    EXPECT_EQ(r.header("X-Upstream"), "A");
    EXPECT_EQ(r.header("X-Upstream-Request"), std::to_string(n));
    if (conn.empty()) conn = r.header("X-Upstream-Connection");
    EXPECT_EQ(r.header("X-Upstream-Connection"), conn);
    EXPECT_FALSE(r.connection_close()) << r;
    EXPECT_EQ(r.body.size(), size);
    EXPECT_EQ(upstream_content_mismatch(r.body, 0), std::string::npos);
  }
  Response h = c.exchange(req("HEAD", "/size/5"), true);
  EXPECT_EQ(h.header("Content-Length"), "5");
  EXPECT_EQ(c.buffered(), 0u);
  EXPECT_EQ(c.exchange(req("GET", "/size/3")).body, upstream_content(0, 3));
}

TEST_F(UpstreamServer, LargeBodiesAreByteExact) {
  start();
  Client c(port);
  constexpr size_t kSize = 32u << 20;
  Response r = c.exchange(req("GET", "/size/" + std::to_string(kSize)));
  ASSERT_EQ(r.body.size(), kSize);
  EXPECT_EQ(upstream_content_mismatch(r.body, 0), std::string::npos);
  r = c.exchange(req("GET", "/chunked/" + std::to_string(kSize)));
  ASSERT_EQ(r.body.size(), kSize);
  EXPECT_EQ(upstream_content_mismatch(r.body, 0), std::string::npos);
}

TEST_F(UpstreamServer, ChunkedUsesVariedChunkSizes) {
  start();
  std::string raw = raw_exchange(port, req("GET", "/chunked/300000", "Connection: close\r\n"));
  size_t head_end = raw.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << raw.substr(0, 200);
  std::string head = raw.substr(0, head_end + 2);
  EXPECT_TRUE(contains(head, "\r\nTransfer-Encoding: chunked\r\n")) << head;
  EXPECT_FALSE(contains(head, "Content-Length")) << head;
  std::string_view rest = std::string_view(raw).substr(head_end + 4);
  std::vector<size_t> sizes;
  std::string body;
  while (true) {
    size_t eol = rest.find("\r\n");
    ASSERT_NE(eol, std::string_view::npos);
    size_t size = std::stoul(std::string(rest.substr(0, eol)), nullptr, 16);
    rest.remove_prefix(eol + 2);
    if (size == 0) break;
    ASSERT_GE(rest.size(), size + 2);
    body.append(rest.substr(0, size));
    EXPECT_EQ(rest.substr(size, 2), "\r\n");
    rest.remove_prefix(size + 2);
    sizes.push_back(size);
  }
  EXPECT_EQ(rest, "\r\n");
  ASSERT_GE(sizes.size(), 9u);
  std::vector<size_t> first(sizes.begin(), sizes.begin() + 9);
  EXPECT_EQ(first, (std::vector<size_t>{1, 10, 100, 1000, 4096, 8191, 16384, 65536, 65537}));
  EXPECT_EQ(body.size(), 300000u);
  EXPECT_EQ(upstream_content_mismatch(body, 0), std::string::npos);

  // and on a kept-alive connection, one after another
  Client c(port);
  for (int i = 0; i < 2; i++) {
    Response r = c.exchange(req("GET", "/chunked/70000"));
    EXPECT_EQ(r.header("Transfer-Encoding"), "chunked");
    EXPECT_TRUE(same_bytes(r.body, upstream_content(0, 70000)));
  }
  Response h = c.exchange(req("HEAD", "/chunked/70000"), true);
  EXPECT_EQ(h.header("Transfer-Encoding"), "chunked");
  EXPECT_EQ(c.exchange(req("GET", "/size/2")).body, upstream_content(0, 2));
}

TEST_F(UpstreamServer, CloseDelimitedBody) {
  start();
  Client c(port);
  Response r = c.exchange(req("GET", "/close/50000"));
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.has("Content-Length")) << r;
  EXPECT_FALSE(r.has("Transfer-Encoding")) << r;
  EXPECT_TRUE(r.connection_close()) << r;
  EXPECT_TRUE(same_bytes(r.body, upstream_content(0, 50000)));
  EXPECT_TRUE(c.is_closed_by_peer(1000ms));
}

TEST_F(UpstreamServer, StatusCodes) {
  start();
  Client c(port);
  Response r = c.exchange(req("GET", "/status/404"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.reason, "Not Found");
  EXPECT_EQ(r.body, "status 404\n");
  EXPECT_EQ(r.header("X-Upstream"), "A");
  r = c.exchange(req("GET", "/status/503"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.reason, "Service Unavailable");
  r = c.exchange(req("GET", "/status/204"));
  EXPECT_EQ(r.status, 204);
  EXPECT_FALSE(r.has("Content-Length")) << r;
  EXPECT_EQ(c.exchange(req("GET", "/status/599")).status, 599);
  EXPECT_EQ(c.exchange(req("GET", "/size/1")).status, 200);  // nothing left over from the 204
  EXPECT_EQ(get(port, "/status/99").status, 400);
  EXPECT_EQ(get(port, "/status/abc").status, 400);
  EXPECT_EQ(get(port, "/size/-1").status, 400);
}

TEST_F(UpstreamServer, DelayWaitsThenBehavesAsTheRest) {
  start();
  auto t0 = SteadyClock::now();
  Response r = get(port, "/delay/300/size/10");
  double took = seconds_since(t0);
  EXPECT_EQ(r.body, upstream_content(0, 10));
  EXPECT_GE(took, 0.29);
  EXPECT_LT(took, 5.0);
  t0 = SteadyClock::now();
  r = get(port, "/delay/200/delay/100/status/503");
  EXPECT_EQ(r.status, 503);
  EXPECT_GE(seconds_since(t0), 0.29);
  r = get(port, "/delay/10");
  EXPECT_EQ(r.body, "A GET /delay/10\n");
}

TEST_F(UpstreamServer, BodyDelaySendsTheHeadThenStalls) {
  start();
  for (std::string kind : {"size", "chunked"}) {
    Client c(port);
    auto t0 = SteadyClock::now();
    ASSERT_TRUE(c.send(req("GET", "/body-delay/1000/" + kind + "/1000", "Connection: close\r\n")));
    ASSERT_EQ(next_event(c, 2000ms), "data");
    EXPECT_LT(seconds_since(t0), 0.8);
    std::string head = c.read_some(65536);
    EXPECT_TRUE(head.size() > 4 && head.substr(head.size() - 4) == "\r\n\r\n") << head;
    EXPECT_EQ(next_event(c, 100ms), "timeout") << kind;
    std::string rest = c.read_all_until_close(5000ms);
    EXPECT_GE(seconds_since(t0), 0.99);
    if (kind == "size") {
      EXPECT_TRUE(same_bytes(rest, upstream_content(0, 1000)));
    } else {
      EXPECT_TRUE(rest.rfind("1\r\n", 0) == 0) << rest.substr(0, 20);
    }
  }
}

TEST_F(UpstreamServer, MidDelayStallsAfterTheFirstHalfOfTheBody) {
  start();
  for (std::string kind : {"size", "close"}) {
    Client c(port);
    auto t0 = SteadyClock::now();
    ASSERT_TRUE(c.send(req("GET", "/mid-delay/1000/" + kind + "/200000", "Connection: close\r\n")));
    std::string got;
    while (got.find("\r\n\r\n") == std::string::npos || got.size() - got.find("\r\n\r\n") - 4 < 100000) {
      std::string more = c.read_some(1 << 20);
      ASSERT_FALSE(more.empty()) << kind << ": " << c.error();
      got += more;
    }
    EXPECT_LT(seconds_since(t0), 0.8) << kind;
    std::string body = got.substr(got.find("\r\n\r\n") + 4);
    EXPECT_EQ(body.size(), 100000u) << kind;
    EXPECT_EQ(next_event(c, 100ms), "timeout") << kind;
    body += c.read_all_until_close(5000ms);
    EXPECT_GE(seconds_since(t0), 0.99) << kind;
    EXPECT_TRUE(same_bytes(body, upstream_content(0, 200000))) << kind;
  }
}

TEST_F(UpstreamServer, HeadersAnswersTheRequestHeadAsReceived) {
  start();
  std::string request =
      "GET /headers?x=1 HTTP/1.1\r\n"
      "Host: h.example\r\n"
      "X-Odd:   spaced value  \r\n"
      "x-lower: v\r\n"
      "Connection: keep-alive, X-Odd\r\n"
      "\r\n";
  Client c(port);
  Response r = c.exchange(request);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, request);
}

TEST_F(UpstreamServer, EchoAnswersTheBody) {
  start();
  Client c(port);
  std::string body = upstream_content(5, 100000);
  Response r = c.exchange(req("POST", "/echo",
                              "Content-Type: text/x-test\r\nContent-Length: " + std::to_string(body.size()) + "\r\n",
                              body));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"), "text/x-test");
  EXPECT_EQ(r.header("Content-Length"), std::to_string(body.size()));
  EXPECT_TRUE(same_bytes(r.body, body));

  r = c.exchange(req("PUT", "/echo", "Transfer-Encoding: chunked\r\n",
                     chunked({"hello ", std::string(20000, 'x'), "end"}, "X-Trailer: 1\r\n")));
  EXPECT_EQ(r.header("Transfer-Encoding"), "chunked") << r;
  EXPECT_FALSE(r.has("Content-Length")) << r;
  EXPECT_EQ(r.header("Content-Type"), "application/octet-stream");
  EXPECT_EQ(r.body, "hello " + std::string(20000, 'x') + "end");

  r = c.exchange(req("POST", "/echo", "Content-Length: 0\r\n"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
}

TEST_F(UpstreamServer, SinkAnswersLengthAndHash) {
  start();
  Client c(port);
  constexpr size_t kSize = 3u << 20;
  std::string body = upstream_content(0, kSize);
  Response r = c.exchange(req("POST", "/sink", "Content-Length: " + std::to_string(kSize) + "\r\n", body));
  EXPECT_EQ(r.body, "bytes=" + std::to_string(kSize) + " hash=" + hash_hex(upstream_content_hash(0, kSize)));

  r = c.exchange(req("POST", "/sink", "Transfer-Encoding: chunked\r\n",
                     "3;ext=1\r\nabc\r\n" + chunked({"def"}, "Trailer-A: x\r\nTrailer-B: y\r\n")));
  EXPECT_EQ(r.body, "bytes=6 hash=" + hash_hex(fnv1a("abcdef")));
  r = c.exchange(req("GET", "/sink"));
  EXPECT_EQ(r.body, "bytes=0 hash=" + hash_hex(fnv1a("")));
}

TEST_F(UpstreamServer, ExpectContinueGets100First) {
  start();
  Client c(port);
  ASSERT_TRUE(c.send(req("POST", "/sink", "Expect: 100-continue\r\nContent-Length: 5\r\n")));
  std::optional<Response> cont = c.read_response();
  ASSERT_TRUE(cont) << c.error();
  EXPECT_EQ(cont->status, 100);
  ASSERT_TRUE(c.send("hello"));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_EQ(r->body, "bytes=5 hash=" + hash_hex(fnv1a("hello")));
}

TEST_F(UpstreamServer, SlowSinkReadsSlowly) {
  start();
  // 96 KiB at 64 KiB/s: about 1.5 s.
  std::string body = upstream_content(0, 96 * 1024);
  auto t0 = SteadyClock::now();
  Client c(port);
  Response r = c.exchange(req("POST", "/slow-sink/64", "Content-Length: " + std::to_string(body.size()) + "\r\n", body));
  double took = seconds_since(t0);
  EXPECT_EQ(r.body, "bytes=98304 hash=" + hash_hex(fnv1a(body)));
  EXPECT_GE(took, 1.0);
  EXPECT_LT(took, 15.0);
  r = c.exchange(req("POST", "/slow-sink/1000/echo", "Content-Length: 3\r\n", "abc"));
  EXPECT_EQ(r.body, "abc");

  // The sender feels it: with a small send buffer it cannot hand over 8 MiB in half a second,
  // while /sink takes them at once.
  auto sent_in = [&](const std::string& target, Millis within) {
    Client s(port);
    int small = 64 * 1024;
    ::setsockopt(s.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    std::string data = req("POST", target, "Content-Length: 8388608\r\n", upstream_content(0, 8u << 20));
    size_t sent = 0;
    auto deadline = SteadyClock::now() + within;
    while (sent < data.size() && SteadyClock::now() < deadline) {
      ssize_t n = ::send(s.fd(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else {
        struct pollfd p = {s.fd(), POLLOUT, 0};
        ::poll(&p, 1, 10);
      }
    }
    return sent;
  };
  EXPECT_LT(sent_in("/slow-sink/64", 500ms), 4u << 20);
  EXPECT_GT(sent_in("/sink", 5000ms), 8u << 20);
}

TEST_F(UpstreamServer, HangKeepsTheConnectionWithoutAnswer) {
  start({"--name", "A", "--idle-close", "0.3"});
  Client c(port);
  ASSERT_TRUE(c.send(req("POST", "/hang", "Content-Length: 2\r\n", "hi")));
  EXPECT_EQ(next_event(c, 1000ms), "timeout");  // longer than --idle-close: that does not apply
  EXPECT_EQ(up.received("POST", "/hang"), 1u) << up.log_text();
  EXPECT_TRUE(c.send("more bytes, dropped"));
  EXPECT_EQ(next_event(c, 200ms), "timeout");
}

TEST_F(UpstreamServer, ResetWithoutAnswer) {
  start();
  Client c(port);
  ASSERT_TRUE(c.send(req("GET", "/reset")));
  EXPECT_EQ(next_event(c, 2000ms), "reset");
  EXPECT_EQ(c.buffered(), 0u);
  EXPECT_EQ(up.received("GET", "/reset"), 1u) << up.log_text();
}

TEST_F(UpstreamServer, ResetAfterHead) {
  start();
  Client c(port);
  ASSERT_TRUE(c.send(req("GET", "/reset-after-head")));
  std::string got;
  std::string event;
  while ((event = next_event(c, 2000ms)) == "data") {
    char buf[4096];
    ssize_t n = ::recv(c.fd(), buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(event, "reset");
  EXPECT_TRUE(got.rfind("HTTP/1.1 200 OK\r\n", 0) == 0) << got;
  EXPECT_TRUE(contains(got, "\r\nContent-Length: 1000\r\n")) << got;
  EXPECT_TRUE(got.size() > 4 && got.substr(got.size() - 4) == "\r\n\r\n") << got;
}

TEST_F(UpstreamServer, MalformedResponses) {
  start();
  struct Case {
    const char* kind;
    std::string bytes;
  };
  const Case cases[] = {
      {"status-line", "HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok"},
      {"cl-and-te", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
      {"two-cl", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!"},
      {"invalid-cl", "HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok"},
      {"no-crlf", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"},
      {"truncated-head", "HTTP/1.1 200 OK\r\nContent-Len"},
      {"truncated-body", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + upstream_content(0, 10)},
      {"bad-chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"},
      {"not-http", "SSH-2.0-OpenSSH_9.2\r\n"},
  };
  for (const Case& k : cases) {
    std::string target = std::string("/bad/") + k.kind;
    EXPECT_EQ(raw_exchange(port, req("GET", target)), k.bytes) << target;
  }
  EXPECT_EQ(get(port, "/bad/nothing-of-the-kind").status, 400);
}

TEST_F(UpstreamServer, CloseAfterResponseSaysNothingAndCloses) {
  start();
  Client c(port);
  Response r = c.exchange(req("GET", "/close-after-response"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "closing\n");
  EXPECT_EQ(r.header("Content-Length"), "8");
  EXPECT_FALSE(r.has("Connection")) << r;
  EXPECT_TRUE(c.is_closed_by_peer(1000ms));
}

TEST_F(UpstreamServer, WebSocketUpgradeThenEcho) {
  start();
  Client c(port);
  // RFC 6455's own example key, and bytes sent right behind the head, in the same write.
  ASSERT_TRUE(c.send(req("GET", "/ws",
                         "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n") +
                     "early"));
  std::optional<Response> r = c.read_response(true);
  ASSERT_TRUE(r) << c.error();
  EXPECT_EQ(r->status, 101);
  EXPECT_EQ(r->reason, "Switching Protocols");
  EXPECT_EQ(r->header("Upgrade"), "websocket");
  EXPECT_EQ(r->header("Connection"), "Upgrade");
  EXPECT_EQ(r->header("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_EQ(r->header("X-Upstream"), "A");
  std::string got;
  while (got.size() < 5) {
    std::string part = c.read_some(5 - got.size());
    if (part.empty()) break;
    got += part;
  }
  EXPECT_EQ(got, "early");

  ASSERT_TRUE(c.send("hello"));
  got.clear();
  while (got.size() < 5) {
    std::string part = c.read_some(5 - got.size());
    if (part.empty()) break;
    got += part;
  }
  EXPECT_EQ(got, "hello");

  // Both ways at once: 4 MiB sent by one thread while this one reads the echo.
  std::string big = upstream_content(0, 4u << 20);
  std::thread sender([&] { EXPECT_TRUE(send_raw(c.fd(), big)); });
  got.clear();
  while (got.size() < big.size()) {
    std::string part = c.read_some(big.size() - got.size());
    if (part.empty()) break;
    got += part;
  }
  sender.join();
  EXPECT_TRUE(same_bytes(got, big));

  ::shutdown(c.fd(), SHUT_WR);  // the client is done: the server closes in turn
  EXPECT_TRUE(c.is_closed_by_peer(2000ms));
  EXPECT_EQ(c.buffered(), 0u);
}

TEST_F(UpstreamServer, WebSocketAcceptForAnotherKeyAndOtherUpgrades) {
  start();
  Client c(port);
  Response r = c.exchange(
      req("GET", "/ws", "Upgrade: WebSocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"),
      true);
  EXPECT_EQ(r.status, 101);
  EXPECT_EQ(r.header("Sec-WebSocket-Accept"), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");

  Client other(port);
  r = other.exchange(req("GET", "/ws", "Upgrade: foo/2\r\nConnection: Upgrade\r\n"), true);
  EXPECT_EQ(r.status, 101);
  EXPECT_EQ(r.header("Upgrade"), "foo/2");
  EXPECT_FALSE(r.has("Sec-WebSocket-Accept"));
  ASSERT_TRUE(other.send("x"));
  EXPECT_EQ(other.read_some(1), "x");

  EXPECT_EQ(get(port, "/ws").status, 426);
  EXPECT_EQ(get(port, "/ws", "Upgrade: websocket\r\n").status, 426);  // Connection lacks upgrade
  EXPECT_EQ(get(port, "/ws", "Upgrade: websocket\r\nConnection: upgrade\r\n").status, 400);  // no key
}

TEST_F(UpstreamServer, StatsCountConnectionsAndRequests) {
  start();
  TestUpstream::Stats s = up.stats();
  EXPECT_EQ(s.connections, 0);
  EXPECT_EQ(s.requests, 0);
  {
    Client a(port);
    for (int i = 0; i < 3; i++) EXPECT_EQ(a.exchange(req("GET", "/size/1")).status, 200);
    // /__stats on a counted connection: the connection stays counted, the request is not
    Response st = a.exchange(req("GET", "/__stats"));
    EXPECT_EQ(st.header("Content-Type"), "application/json");
    EXPECT_EQ(st.body, "{\"connections\":1,\"requests\":3}");
    EXPECT_EQ(a.exchange(req("GET", "/size/1")).header("X-Upstream-Request"), "4");
  }
  EXPECT_EQ(get(port, "/status/500").status, 500);
  s = up.stats();
  EXPECT_EQ(s.connections, 2);
  EXPECT_EQ(s.requests, 5);
  s = up.stats();  // the stats' own connections and requests are never counted
  EXPECT_EQ(s.connections, 2);
  EXPECT_EQ(s.requests, 5);
  // a connection with no request at all is counted
  { Client idle(port); }
  EXPECT_TRUE(wait_for([&] { return up.stats().connections == 3; }, 2000ms));
  up.stop();
  s = up.stats();
  EXPECT_EQ(s.connections, -1);
}

TEST_F(UpstreamServer, LogHasALinePerRequestBeforeItsResponse) {
  start();
  {
    Client c(port);
    c.exchange(req("POST", "/sink?a=1", "Content-Length: 3\r\n", "abc"));
    c.exchange(req("GET", "/size/1"));
    c.exchange(req("POST", "/echo", "Transfer-Encoding: chunked\r\n", chunked({"ab", "cd"})));
  }
  get(port, "/sink?a=1");
  std::vector<TestUpstream::LogLine> lines = up.log_lines();
  ASSERT_EQ(lines.size(), 4u) << up.log_text();
  EXPECT_EQ(lines[0].connection, lines[1].connection);
  EXPECT_EQ(lines[0].request, 1);
  EXPECT_EQ(lines[0].method, "POST");
  EXPECT_EQ(lines[0].target, "/sink?a=1");
  EXPECT_EQ(lines[0].body_length, 3u);
  EXPECT_EQ(lines[0].body_hash, fnv1a("abc"));
  EXPECT_TRUE(lines[0].complete);
  EXPECT_EQ(lines[1].request, 2);
  EXPECT_EQ(lines[1].method, "GET");
  EXPECT_EQ(lines[1].body_length, 0u);
  EXPECT_EQ(lines[1].body_hash, fnv1a(""));
  EXPECT_EQ(lines[2].request, 3);
  EXPECT_EQ(lines[2].body_length, 4u);
  EXPECT_EQ(lines[2].body_hash, fnv1a("abcd"));
  EXPECT_NE(lines[3].connection, lines[0].connection);
  EXPECT_EQ(lines[3].request, 1);
  EXPECT_EQ(up.received("POST", "/sink?a=1"), 1u);
  EXPECT_EQ(up.received("GET", "/sink?a=1"), 1u);
  EXPECT_EQ(up.received("POST", "/sink"), 0u);
  EXPECT_TRUE(contains(up.log_text(), "method=POST target=/sink?a=1 body=3 hash=" + hash_hex(fnv1a("abc")) +
                                          " complete=1\n"))
      << up.log_text();

  // Before the response: the line is there while the response is still delayed.
  Client slow(port);
  ASSERT_TRUE(slow.send(req("POST", "/delay/3000/sink", "Content-Length: 1\r\n", "z")));
  EXPECT_TRUE(wait_for([&] { return up.received("POST", "/delay/3000/sink") == 1; }, 2000ms)) << up.log_text();
  EXPECT_EQ(next_event(slow, 0ms), "timeout");

  // A body cut short by the peer: logged with what arrived.
  {
    Client cut(port);
    ASSERT_TRUE(cut.send(req("PUT", "/sink", "Content-Length: 100\r\n", "0123456789")));
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(wait_for([&] { return up.received("PUT", "/sink") == 1; }, 2000ms)) << up.log_text();
  for (const TestUpstream::LogLine& l : up.log_lines()) {
    if (l.method != "PUT") continue;
    EXPECT_FALSE(l.complete);
    EXPECT_EQ(l.body_length, 10u);
    EXPECT_EQ(l.body_hash, fnv1a("0123456789"));
  }
}

TEST_F(UpstreamServer, IdleCloseClosesAnIdleConnection) {
  start({"--name", "A", "--idle-close", "0.5"});
  Client c(port);
  Response r = c.exchange(req("GET", "/size/1"));
  EXPECT_FALSE(r.has("Keep-Alive")) << r;
  auto t0 = SteadyClock::now();
  EXPECT_TRUE(c.is_closed_by_peer(5000ms));
  double took = seconds_since(t0);
  EXPECT_GE(took, 0.3);
  EXPECT_LT(took, 3.0);

  // Requests closer together than that keep the connection: one connection serves them all.
  Client busy(port);
  std::string conn;
  for (int i = 0; i < 4; i++) {
    Response b = busy.exchange(req("GET", "/size/1"));
    EXPECT_EQ(b.status, 200);
    if (conn.empty()) conn = b.header("X-Upstream-Connection");
    EXPECT_EQ(b.header("X-Upstream-Connection"), conn);
    std::this_thread::sleep_for(250ms);
  }

  // A connection that never sends anything is idle from the start.
  Client fresh(port);
  t0 = SteadyClock::now();
  EXPECT_TRUE(fresh.is_closed_by_peer(5000ms));
  EXPECT_GE(seconds_since(t0), 0.4);
}

TEST_F(UpstreamServer, KeepAliveHeaderAnnouncesTheTimeout) {
  start({"--name", "A", "--idle-close", "1.5", "--keepalive-header"});
  Client c(port);
  Response r = c.exchange(req("GET", "/size/1"));
  EXPECT_EQ(r.header("Keep-Alive"), "timeout=1") << r;
  EXPECT_TRUE(r.connection_keep_alive()) << r;
  r = c.exchange(req("GET", "/size/1", "Connection: close\r\n"));
  EXPECT_FALSE(r.has("Keep-Alive")) << r;
  EXPECT_TRUE(r.connection_close()) << r;
}

TEST_F(UpstreamServer, MaxRequestsClosesAfterTheLast) {
  start({"--name", "A", "--max-requests", "2"});
  Client c(port);
  Response r = c.exchange(req("GET", "/size/1"));
  EXPECT_FALSE(r.connection_close()) << r;
  r = c.exchange(req("GET", "/size/1"));
  EXPECT_TRUE(r.connection_close()) << r;
  EXPECT_TRUE(c.is_closed_by_peer(2000ms));
  Client d(port);
  EXPECT_EQ(d.exchange(req("GET", "/size/1")).status, 200);
  TestUpstream::Stats s = up.stats();
  EXPECT_EQ(s.connections, 2);
  EXPECT_EQ(s.requests, 3);
}

TEST_F(UpstreamServer, ConnectionCloseAndHttp10) {
  start();
  {
    Client c(port);
    Response r = c.exchange(req("GET", "/size/4", "Connection: close\r\n"));
    EXPECT_TRUE(r.connection_close()) << r;
    EXPECT_TRUE(c.is_closed_by_peer(2000ms));
  }
  {
    Client c(port);
    Response r = c.exchange("GET /size/4 HTTP/1.0\r\n\r\n");
    EXPECT_EQ(r.body, upstream_content(0, 4));
    EXPECT_TRUE(c.is_closed_by_peer(2000ms));
  }
  {
    Client c(port);
    Response r = c.exchange("GET /size/4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_TRUE(r.connection_keep_alive()) << r;
    r = c.exchange("GET /chunked/70000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_FALSE(r.has("Transfer-Encoding")) << r;  // never chunked to HTTP/1.0
    EXPECT_TRUE(r.connection_close()) << r;
    EXPECT_TRUE(same_bytes(r.body, upstream_content(0, 70000)));
  }
}

TEST_F(UpstreamServer, PipelinedRequestsAnswerInOrder) {
  start();
  Client c(port);
  ASSERT_TRUE(c.send(req("GET", "/size/3") + req("POST", "/sink", "Content-Length: 2\r\n", "ab") +
                     req("GET", "/status/404")));
  std::optional<Response> a = c.read_response(), b = c.read_response(), d = c.read_response();
  ASSERT_TRUE(a && b && d) << c.error();
  EXPECT_EQ(a->body, upstream_content(0, 3));
  EXPECT_EQ(b->body, "bytes=2 hash=" + hash_hex(fnv1a("ab")));
  EXPECT_EQ(d->status, 404);
  EXPECT_EQ(d->header("X-Upstream-Request"), "3");
}

TEST_F(UpstreamServer, HeaderParametersAddResponseHeaders) {
  start();
  Response r = get(port, "/status/302?header=Location:http%3A//a.example/b&header=X-Two:a%20b&other=1");
  EXPECT_EQ(r.status, 302);
  EXPECT_EQ(r.header("Location"), "http://a.example/b");
  EXPECT_EQ(r.header("X-Two"), "a b");
  r = get(port, "/size/1?header=Connection:X-Hop&header=X-Hop:1");
  EXPECT_EQ(r.header("X-Hop"), "1");
  EXPECT_EQ(r.count("Connection"), 2u) << r;  // its own close and the one asked for
  EXPECT_EQ(get(port, "/size/1?header=X-Bad:a%0d%0aInjected:1").status, 400);
  EXPECT_EQ(get(port, "/size/1?header=nocolon").status, 400);
}

TEST_F(UpstreamServer, AnyOtherTargetNamesUpstreamAndTarget) {
  start({"--name", "backend-2"});
  Response r = get(port, "/some/path?q=1");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("X-Upstream"), "backend-2");
  EXPECT_EQ(r.header("Server"), "baton-test-upstream");
  EXPECT_EQ(r.body, "backend-2 GET /some/path?q=1\n");
  EXPECT_EQ(get(port, "/").body, "backend-2 GET /\n");
}

TEST_F(UpstreamServer, MalformedRequestsAre400AndNotCounted) {
  start();
  const char* bad[] = {
      "GET /size/1 HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET /size/1 HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
      "GET /size/1 HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "GET /size/1 HTTP/2.0\r\n\r\n",
      "GET  /size/1 HTTP/1.1\r\n\r\n",
      "GET /size/1 HTTP/1.1\r\nNo colon here\r\n\r\n",
  };
  for (const char* request : bad) {
    Client c(port);
    Response r = c.exchange(request);
    EXPECT_EQ(r.status, 400) << request;
    EXPECT_TRUE(r.connection_close()) << r;
    EXPECT_TRUE(c.is_closed_by_peer(2000ms));
  }
  EXPECT_EQ(up.stats().requests, 0);
  EXPECT_EQ(up.log_text(), "");
}

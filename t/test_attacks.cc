// Defects found by attacking the request, connection and file cache layers as a hostile client
// would: closing with bytes unread, unbounded discards, silent PROXY-protocol connections, stale
// files through links, half-closed clients, log floods. Each test is a reproduction over real
// sockets and failed on the build it was found on.
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

// A request that makes its connection the last one (keepalive_requests is reached), followed in
// the same write by more than one read of pipelined bytes: the answers already due must still
// reach the client. Closing with unread bytes in the socket makes the kernel send a reset, which
// throws away the answers it still holds (they were written with MSG_MORE, to leave with the FIN).
TEST(Attacks, LastRequestWithMorePipelinedBytesThanOneReadIsStillAnswered) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n",
      "keepalive_requests = 2\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  std::string one = req("GET", "/a.txt");
  // The second request is the connection's last; a client that pipelines does not know that.
  std::string data = one + one + std::string(200 * 1024, 'x');
  ASSERT_TRUE(c.send(data)) << c.error();
  std::optional<Response> r1 = c.read_response();
  ASSERT_TRUE(r1) << "no first answer: " << c.error();
  EXPECT_EQ(r1->status, 200);
  std::optional<Response> r2 = c.read_response();
  ASSERT_TRUE(r2) << "no second answer: " << c.error();
  EXPECT_EQ(r2->status, 200);
  EXPECT_TRUE(r2->connection_close()) << *r2;
}

// The same with `Connection: close` on the only request and a large pipelined tail.
TEST(Attacks, ConnectionCloseWithLargePipelinedTailIsStillAnswered) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  ASSERT_TRUE(c.send(req("GET", "/a.txt", "Connection: close\r\n") + req("GET", "/a.txt") +
                     std::string(200 * 1024, 'x')))
      << c.error();
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << "no answer: " << c.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "a");
}

// A chunked body that is discarded after an early answer is bounded by client_max_body_size, but
// its trailer section and chunk extensions are not counted: a client keeps the connection (and the
// worker's time) as long as it likes by sending an endless trailer field or chunk extension. Bytes
// past the bound must end the connection, as body bytes past it do.
void expect_unbounded_framing_closed(const std::string& head) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n",
      "client_max_body_size = 1k\n"
      "client_header_buffer_size = 1k\n"
      "client_body_timeout = 60s\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port(), ClientOptions{.timeout = 1000ms});
  ASSERT_TRUE(c.send(head)) << c.error();
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r) << c.error();
  EXPECT_EQ(r->status, 405);
  // 64 times the limit, in pieces: the server must have stopped reading long before the end.
  std::string piece(16 * 1024, 'a');
  bool refused = false;
  for (int i = 0; i < 64 && !refused; i++) refused = !c.send(piece);
  EXPECT_TRUE(refused || c.is_closed_by_peer(2000ms))
      << "1 MiB of chunk framing accepted with client_max_body_size = 1k";
}

TEST(Attacks, DiscardedChunkedTrailerIsBounded) {
  expect_unbounded_framing_closed(
      "POST /a.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: ");
}

TEST(Attacks, DiscardedChunkExtensionIsBounded) {
  expect_unbounded_framing_closed(
      "POST /a.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=");
}

// Connections on a proxy_protocol listener that have sent nothing (or only their PROXY header)
// are never counted as reusable: a full worker cannot make room, and every client - on every
// listener of that worker - is shut out until client_header_timeout, the very thing a full worker
// closing idle connections was meant to end.
class AttacksProxyRoom : public ::testing::Test {
 protected:
  static constexpr int kSlots = 16;
  void SetUp() override {
    s.write_file("html/a.txt", "a");
    s.set_config(make_config_main("worker_connections = " + std::to_string(kSlots) + "\n",
                                  "[server main]\n"
                                  "listen = 127.0.0.1:@PORT@\n"
                                  "listen = 127.0.0.1:@PORT2@ proxy_protocol\n"
                                  "root = html\n",
                                  "client_header_timeout = 60s\n", 1));
    ASSERT_TRUE(s.start());
  }
  BatonServer s;
};

TEST_F(AttacksProxyRoom, SilentProxyConnectionsDoNotShutOthersOut) {
  std::vector<Client> silent;
  for (int i = 0; i < kSlots * 2; i++) silent.emplace_back(s.port(1));
  std::this_thread::sleep_for(300ms);
  Client c(s.port(), ClientOptions{.timeout = 3000ms});
  Response r = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(r.status, 200) << c.error();
}

TEST_F(AttacksProxyRoom, ProxyConnectionsThatSentOnlyTheirHeaderDoNotShutOthersOut) {
  std::vector<Client> idle;
  for (int i = 0; i < kSlots; i++) idle.emplace_back(s.port(1));
  // The headers come after the connections were accepted, as from a proxy's pool.
  std::this_thread::sleep_for(200ms);
  for (int i = 0; i < kSlots; i++)
    ASSERT_TRUE(idle[static_cast<size_t>(i)].send("PROXY TCP4 192.0.2." + std::to_string(i + 1) +
                                                   " 192.0.2.200 40000 80\r\n"));
  std::this_thread::sleep_for(200ms);
  Client c(s.port(), ClientOptions{.timeout = 3000ms});
  Response r = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(r.status, 200) << c.error();
}

// The file cache watches the directories of the path as requested and the file a link ends at,
// but not the directories a link's target passes through. A link whose target path changes
// without touching those (a directory renamed in an unwatched directory, a deploy's "current"
// link swapped) keeps the old bytes in memory for good, while the uncached path serves the new file.
TEST(Attacks, FileReachedThroughALinkIsNotServedStaleAfterItsTargetDirectoryChanges) {
  BatonServer s;
  s.write_file("html/b/sub/file.txt", "one\n");
  s.make_dir("html/a");
  s.make_symlink("../b/sub/file.txt", "html/a/link.txt");
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  ASSERT_EQ(c.exchange(req("GET", "/a/link.txt")).body, "one\n");
  ASSERT_EQ(c.exchange(req("GET", "/a/link.txt")).body, "one\n");  // from memory now
  ASSERT_EQ(::rename(s.path("html/b/sub").c_str(), s.path("html/b/sub.old").c_str()), 0);
  s.write_file("html/b/sub/file.txt", "two\n");
  // Without the cache the server opens the path each time: the link names the new file.
  EXPECT_EQ(c.exchange(req("GET", "/b/sub/file.txt")).body, "two\n");
  std::this_thread::sleep_for(1100ms);  // past the once-a-second root check, to be generous
  EXPECT_EQ(c.exchange(req("GET", "/a/link.txt")).body, "two\n");
}

// The deploy layout: a directory under the root links to the release that "current" names
// (disable_symlinks = off), and a deploy swaps "current" with a rename.
TEST(Attacks, CachedFilesFollowASwappedReleaseLink) {
  BatonServer s;
  s.write_file("releases/r1/assets/app.js", "r1\n");
  s.write_file("releases/r2/assets/app.js", "r2\n");
  s.make_symlink("r1", "releases/current");
  s.make_dir("html");
  s.make_symlink(s.path("releases/current/assets"), "html/assets");
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "disable_symlinks = off\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  ASSERT_EQ(c.exchange(req("GET", "/assets/app.js")).body, "r1\n");
  ASSERT_EQ(c.exchange(req("GET", "/assets/app.js")).body, "r1\n");
  s.make_symlink("r2", "releases/current.new");
  ASSERT_EQ(::rename(s.path("releases/current.new").c_str(), s.path("releases/current").c_str()), 0);
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(c.exchange(req("GET", "/assets/app.js")).body, "r2\n");
}

// A client that half-closes its side after its request (`nc -N`, a script's shutdown(SHUT_WR))
// still wants the whole answer. On a connection that ends after this answer (Connection: close,
// HTTP/1.0, the last of keepalive_requests, a drain), the server keeps reading while the file goes
// out, takes the end of the client's stream for the end of the exchange, and closes with most of
// the file unsent.
TEST(Attacks, HalfClosedClientGetsTheWholeFileOnAClosingConnection) {
  BatonServer s;
  const size_t kSize = 16u << 20;  // more than the kernel buffers hold on loopback
  s.write_generated("html/big.bin", kSize);
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port(), ClientOptions{.timeout = 10000ms, .rcvbuf = 8192});
  // The request comes after the connection was accepted, as it does over a real network (a
  // request already there when the connection is accepted takes another path, which holds).
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(c.send(req("GET", "/big.bin", "Connection: close\r\n"))) << c.error();
  ASSERT_EQ(::shutdown(c.fd(), SHUT_WR), 0);
  std::this_thread::sleep_for(300ms);
  std::string all = c.read_all_until_close(20000ms);
  size_t head_end = all.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  EXPECT_EQ(all.size() - head_end - 4, kSize) << "the answer was cut short";
}

// "One warning a second at most" holds for the warning about closing idle connections, but the
// warning written when a full worker pauses accepting comes again at every pause: when every slot
// is busy and clients keep coming, each request that ends lets one new client in, the worker is
// full again and pauses again, and the error log gets one line per connection.
TEST(Attacks, FullWorkerWarnsOnceASecondNotOncePerConnection) {
  BatonServer s;
  constexpr int kSlots = 16;
  constexpr int kRounds = 20;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config_main("worker_connections = " + std::to_string(kSlots) + "\n",
                                "[server main]\n"
                                "listen = 127.0.0.1:@PORT@\n"
                                "root = html\n",
                                "client_header_timeout = 60s\n", 1));
  ASSERT_TRUE(s.start());
  std::vector<Client> busy;
  for (int i = 0; i < kSlots; i++) {
    busy.emplace_back(s.port());
    ASSERT_TRUE(busy.back().send("GET /a.txt HTTP/1.1\r\n"));
  }
  std::this_thread::sleep_for(200ms);
  auto start = SteadyClock::now();
  for (int i = 0; i < kRounds; i++) {
    // A new client waits in the listen queue with its request begun; one busy client finishes.
    busy.emplace_back(s.port());
    ASSERT_TRUE(busy.back().send("GET /a.txt HTTP/1.1\r\n"));
    Client& done = busy[static_cast<size_t>(i)];
    ASSERT_TRUE(done.send("Host: localhost\r\n\r\n"));
    std::optional<Response> r = done.read_response();
    ASSERT_TRUE(r) << done.error();
    EXPECT_EQ(r->status, 200);
    std::this_thread::sleep_for(20ms);
  }
  double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  std::string log = s.error_log();
  size_t lines = 0;
  for (size_t pos = log.find("worker_connections are not enough"); pos != std::string::npos;
       pos = log.find("worker_connections are not enough", pos + 1))
    lines++;
  EXPECT_LE(lines, static_cast<size_t>(seconds) + 3) << kRounds << " rounds in " << seconds << " s:\n" << log;
}

}  // namespace

// Connections handed to the new generation: on a reload or a live upgrade the old workers hand their
// idle keep-alive connections and their tunnels (through the master) to workers of the new
// generation, which carry on with them; the old generation leaves as soon as its requests in flight
// are done.
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

constexpr const char* kBody = "hello from the hand-over test\n";
// A long keep-alive timeout: an idle connection must not end for being idle while a test waits.
constexpr const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n"
    "keepalive_timeout = 60s\n";

std::vector<pid_t> workers_now(BatonServer& s, size_t n) {
  std::vector<pid_t> w;
  wait_for(
      [&] {
        w = s.current_workers();
        return w.size() == n;
      },
      5000ms, 10ms);
  return w;
}

// Kept-alive clients: HTTP/1.1, and HTTP/1.0 asking for keep-alive; each has made one request.
struct Idle {
  Client c11;
  Client c10;
  explicit Idle(int port) : c11(port), c10(port) {
    Response r = c11.exchange(req("GET", "/a.txt"));
    EXPECT_EQ(r.status, 200);
    EXPECT_FALSE(r.connection_close());
    r = c10.exchange("GET /a.txt HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("Connection"), "keep-alive") << "the HTTP/1.0 connection is not kept alive";
  }
  // Their next requests are served, and the connections stay.
  void expect_served(const std::string& when) {
    Response r = c11.exchange(req("GET", "/a.txt"));
    EXPECT_EQ(r.status, 200) << when << " (HTTP/1.1)";
    EXPECT_EQ(r.body, kBody) << when;
    EXPECT_FALSE(r.connection_close()) << when;
    r = c10.exchange("GET /a.txt HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_EQ(r.status, 200) << when << " (HTTP/1.0)";
    EXPECT_EQ(r.body, kBody) << when;
    EXPECT_EQ(r.header("Connection"), "keep-alive") << when;
  }
};

long received_by_workers(BatonServer& s) {
  std::optional<StatusReport> st = status_of(s);
  long n = 0;
  if (st)
    for (const auto& w : st->workers) n += w.received;
  return n;
}

}  // namespace

TEST(Handover, IdleKeepAliveConnectionsOutliveReloads) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  // A long quit_timeout: the old workers must leave because they have nothing left, not because
  // their time is up.
  s.set_config(make_runtime_config(kServer, "quit_timeout = 30s\n", 2));
  ASSERT_TRUE(s.start());
  Idle idle(s.port());
  for (int i = 1; i <= 3; i++) {
    std::vector<pid_t> old = workers_now(s, 2);
    ASSERT_EQ(old.size(), 2u);
    RunResult r = s.ctl("reload");
    ASSERT_EQ(r.exit_code, 0) << describe(r);
    EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 5000ms))
        << "reload " << i << ": the old workers stay although their connections were idle\n" << s.census().describe();
    // Only workers of the new generation are left: whatever answers now is one of them.
    idle.expect_served("after reload " + std::to_string(i));
  }
  // (A status answer may come from a ping sent before the last move.)
  EXPECT_TRUE(wait_for([&] { return received_by_workers(s) == 2; }, 3000ms))
      << "-s status counts the connections the workers received";
  EXPECT_TRUE(contains(s.error_log(), "connection(s) to the new generation")) << s.error_log();
}

TEST(Handover, IdleKeepAliveConnectionsOutliveAnUpgrade) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  s.set_config(make_runtime_config(kServer, "quit_timeout = 30s\n", 2));
  ASSERT_TRUE(s.start());
  Idle idle(s.port());
  std::vector<pid_t> old = workers_now(s, 2);
  ASSERT_EQ(old.size(), 2u);
  RunResult r = s.ctl("upgrade");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 5000ms))
      << "the old workers stay although their connections were idle\n" << s.census().describe();
  idle.expect_served("after the upgrade");
}

// A client that pipelines requests while a reload moves its connection: every response comes, in
// order, none says `Connection: close`, and once the new configuration answers the old never does
// again.
TEST(Handover, PipeliningClientKeepsItsOrderAcrossReloads) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  auto conf = [](int g) {
    return make_runtime_config(std::string(kServer) + "\n[location = /v]\nreturn = 200 g" + std::to_string(g) + "\n",
                               "quit_timeout = 30s\n", 2);
  };
  s.set_config(conf(1));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  int generation = 1;
  int seen = 1;
  for (int round = 0; round < 60; round++) {
    if (round % 15 == 5) {
      generation++;
      s.set_config(conf(generation));
      ASSERT_EQ(s.ctl("reload").exit_code, 0);
    }
    std::string batch;
    for (int i = 0; i < 3; i++) batch += req("GET", "/v", "X-Round: " + std::to_string(round) + "\r\n");
    ASSERT_TRUE(c.send(batch)) << c.error();
    for (int i = 0; i < 3; i++) {
      std::optional<Response> r = c.read_response();
      ASSERT_TRUE(r) << "round " << round << ", response " << i + 1 << ": " << c.error();
      ASSERT_EQ(r->status, 200);
      EXPECT_FALSE(r->connection_close()) << "round " << round;
      ASSERT_EQ(r->body.size(), 2u) << r->body;
      int g = r->body[1] - '0';
      EXPECT_GE(g, seen) << "round " << round << ": an older configuration answered after a newer one";
      seen = std::max(seen, g);
    }
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(seen, generation) << "the connection never reached the newest generation";
}

// A graceful stop hands nothing over: idle connections are closed, and the server exits.
TEST(Handover, QuitDoesNotHandConnectionsOver) {
  BatonServer s;
  s.write_file("html/a.txt", kBody);
  s.set_config(make_runtime_config(kServer, "", 1));
  ASSERT_TRUE(s.start());
  Idle idle(s.port());
  ASSERT_TRUE(s.signal(SIGQUIT));
  EXPECT_TRUE(idle.c11.is_closed_by_peer(5000ms));
  EXPECT_TRUE(s.wait_exit(5000ms));
  EXPECT_FALSE(contains(s.error_log(), "to the new generation")) << s.error_log();
}

namespace {

// A server proxying everything to the test upstream, whose /ws answers an Upgrade with 101 and then
// echoes every byte. A long quit_timeout: an old worker must leave because it handed its tunnels
// over, not because its time was up.
std::string tunnel_config(const TestUpstream& up) {
  return make_runtime_config("[upstream app]\nserver = " + up.address() +
                                 "\n\n[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                                 "\n[location /]\nproxy_pass = http://app\nproxy_read_timeout = 60s\n",
                             "quit_timeout = 60s\nworker_connections = 4096\n", 2);
}

// Opens a tunnel: the Upgrade request, then its 101.
bool open_tunnel(Client& c, const std::string& protocol, std::string* why) {
  std::string request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: " + protocol + "\r\nConnection: Upgrade\r\n";
  if (protocol == "websocket") request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  request += "\r\n";
  if (!c.send(request)) {
    *why = "send: " + c.error();
    return false;
  }
  std::optional<Response> r = c.read_response();
  if (!r || r->status != 101) {
    *why = r ? "status " + std::to_string(r->status) : "no answer: " + c.error();
    return false;
  }
  return true;
}

// A client's WebSocket text frame (RFC 6455 5.2: FIN, opcode 1, masked), short payloads only.
std::string ws_text_frame(const std::string& payload, uint32_t mask) {
  std::string f;
  f.push_back(static_cast<char>(0x81));
  f.push_back(static_cast<char>(0x80 | payload.size()));
  for (int i = 0; i < 4; i++) f.push_back(static_cast<char>((mask >> (8 * (3 - i))) & 0xff));
  for (size_t i = 0; i < payload.size(); i++) f.push_back(static_cast<char>(payload[i] ^ f[2 + i % 4]));
  return f;
}

// Exactly n bytes from c within `timeout`, or what came before it gave up.
std::string read_exactly(Client& c, size_t n, Millis timeout) {
  std::string got;
  auto deadline = SteadyClock::now() + timeout;
  while (got.size() < n && SteadyClock::now() < deadline) {
    std::string more = c.read_some(n - got.size());
    if (more.empty()) break;
    got += more;
  }
  return got;
}

// Reload and upgrade, alternately, `changes` times; after each the old generation's workers must be
// gone within 10 s (quit_timeout is a minute), and `between` (if any) is called. The number of
// changes made so far is in *done.
void change_generations(BatonServer& s, int changes, std::atomic<int>* done,
                        const std::function<void(int)>& between = {}) {
  for (int i = 0; i < changes; i++) {
    std::vector<pid_t> old = workers_now(s, 2);
    EXPECT_EQ(old.size(), 2u) << "change " << i;
    const char* what = i % 2 == 0 ? "reload" : "upgrade";
    RunResult r = s.ctl(what);
    EXPECT_EQ(r.exit_code, 0) << what << " " << i << ": " << describe(r);
    EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 10000ms))
        << what << " " << i << ": a worker of the old generation is still there after 10 s\n" << s.census().describe();
    done->store(i + 1);
    if (between) between(i);
  }
}

struct Sha256 {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  Sha256() { EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx); }
  void add(const void* p, size_t n) { EVP_DigestUpdate(ctx, p, n); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    static const char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; i++) {
      out.push_back(kHex[md[i] >> 4]);
      out.push_back(kHex[md[i] & 15]);
    }
    return out;
  }
};

// The test upstream, a baton in front of it, and a client with a tunnel open through both.
struct ProxiedTunnel {
  TestUpstream up;
  BatonServer s;
  std::optional<Client> c;

  // Starts everything and opens the tunnel; false, with the reason, when something did not come up.
  bool open(const std::string& protocol, std::string* why) {
    if (!up.start({})) {
      *why = up.error();
      return false;
    }
    s.set_config(tunnel_config(up));
    if (!s.start()) {
      *why = "baton did not start";
      return false;
    }
    c.emplace(s.port());
    c->set_timeout(10000ms);
    return open_tunnel(*c, protocol, why);
  }
  // The client's socket, made blocking for bulk transfers, each call bounded by two minutes (a
  // writer may wait through several changes of generation on a slow machine).
  int blocking_fd() {
    int fd = c->fd();
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    timeval tv{120, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
  }
};

}  // namespace

// A WebSocket through the proxy, a message every 50 ms, across 10 reloads and 10 upgrades: every
// message comes back in order, the tunnel is never closed, and each old generation leaves at once.
TEST(Handover, WebSocketThroughTheProxyOutlivesTenReloadsAndTenUpgrades) {
  ProxiedTunnel t;
  std::string why;
  ASSERT_TRUE(t.open("websocket", &why)) << why;
  BatonServer& s = t.s;
  Client& c = *t.c;

  std::atomic<bool> stop{false};
  std::atomic<int> echoed{0};
  std::mutex mu;
  std::string failure;  // under mu
  auto failed = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return !failure.empty();
  };
  std::thread talker([&] {
    for (int i = 0; !stop.load(); i++) {
      std::string frame = ws_text_frame("message " + std::to_string(i), 0x5a17c3e1u + static_cast<uint32_t>(i));
      if (!c.send(frame)) {
        std::lock_guard<std::mutex> lock(mu);
        failure = "message " + std::to_string(i) + ": send failed: " + c.error();
        return;
      }
      std::string back = read_exactly(c, frame.size(), 5000ms);
      if (back != frame) {
        std::lock_guard<std::mutex> lock(mu);
        failure = "message " + std::to_string(i) + ": " + std::to_string(back.size()) + " of " +
                  std::to_string(frame.size()) + " bytes came back" + (back.empty() ? "" : ", not the same") +
                  " (" + c.error() + ")";
        return;
      }
      echoed.store(i + 1);
      std::this_thread::sleep_for(50ms);
    }
  });
  std::atomic<int> changes{0};
  // Each generation carries messages before the next comes.
  change_generations(s, 20, &changes, [&](int i) {
    int before = echoed.load();
    EXPECT_TRUE(wait_for([&] { return echoed.load() >= before + 2 || failed(); }, 5000ms))
        << "no message came back after change " << i;
  });
  stop.store(true);
  talker.join();
  EXPECT_EQ(failure, "");
  EXPECT_GE(echoed.load(), 40) << "messages exchanged";
  EXPECT_TRUE(contains(s.error_log(), "connection(s) to the new generation")) << s.error_log();
  // The tunnel is still whole: the client ends it, the upstream hears of it and ends in turn.
  shutdown(c.fd(), SHUT_WR);
  EXPECT_TRUE(c.is_closed_by_peer(5000ms));
}

// A raw Upgrade tunnel carrying 100 MB each way while the generations change under it (10 reloads,
// 10 upgrades): what comes back is byte for byte what was sent.
TEST(Handover, UpgradeTunnelCarriesAHundredMegabytesEachWayAcrossChanges) {
  ProxiedTunnel t;
  std::string why;
  ASSERT_TRUE(t.open("x-raw-test", &why)) << why;
  BatonServer& s = t.s;
  Client& c = *t.c;
  ASSERT_EQ(c.buffered(), 0u);

  constexpr size_t kPiece = 1 << 20;
  constexpr size_t kPieces = 100;
  constexpr int kChanges = 20;
  std::atomic<int> changes{0};
  std::string sent_hash;
  std::string send_failure;
  const int fd = t.blocking_fd();
  std::thread writer([&] {
    Sha256 h;
    std::string piece(kPiece, '\0');
    for (size_t k = 0; k < kPieces; k++) {
      piece = upstream_content(k * kPiece, kPiece);
      h.add(piece.data(), piece.size());
      size_t off = 0;
      while (off < piece.size()) {
        ssize_t n = ::send(fd, piece.data() + off, piece.size() - off, MSG_NOSIGNAL);
        if (n <= 0) {
          send_failure = "send failed after " + std::to_string(k * kPiece + off) + " bytes: " + strerror(errno);
          return;
        }
        off += static_cast<size_t>(n);
      }
    }
    sent_hash = h.hex();
  });
  std::thread changer([&] { change_generations(s, kChanges, &changes); });
  Sha256 h;
  size_t received = 0;
  std::vector<char> buf(1 << 16);
  while (received < kPiece * kPieces) {
    // The transfer spans the changes: the client reads five pieces per change and then waits for
    // the next, so that bytes are mostly queued in the server, both ways, when the tunnel moves.
    size_t allowed = 0;
    for (;;) {
      int done = changes.load();
      allowed = done >= kChanges ? kPiece * kPieces : (static_cast<size_t>(done) + 1) * 5 * kPiece;
      if (received < allowed) break;
      std::this_thread::sleep_for(2ms);
    }
    ssize_t n = ::recv(fd, buf.data(), std::min(buf.size(), allowed - received), 0);
    if (n <= 0) break;
    h.add(buf.data(), static_cast<size_t>(n));
    received += static_cast<size_t>(n);
  }
  writer.join();
  changer.join();
  EXPECT_EQ(send_failure, "");
  ASSERT_EQ(received, kPiece * kPieces) << "the tunnel ended early";
  EXPECT_EQ(h.hex(), sent_hash) << "the bytes that came back differ from those sent";
  EXPECT_EQ(changes.load(), kChanges);
  shutdown(fd, SHUT_WR);
  EXPECT_TRUE(c.is_closed_by_peer(5000ms));
}

// A client that sends and does not read fills every buffer on the way: the tunnel moves with the
// bytes queued in the server (more than a description's text carries), first from the proxy's
// worker, then from the tunnel's new worker, and nothing is lost or reordered.
TEST(Handover, ATunnelMovesWithTheBytesQueuedInTheServer) {
  ProxiedTunnel t;
  std::string why;
  ASSERT_TRUE(t.open("x-raw-test", &why)) << why;
  BatonServer& s = t.s;
  Client& c = *t.c;
  const int fd = t.blocking_fd();

  constexpr size_t kTotal = 64u << 20;
  const std::string data = upstream_content(0, kTotal);
  std::atomic<size_t> sent{0};
  std::thread writer([&] {
    while (sent.load() < kTotal) {
      ssize_t n = ::send(fd, data.data() + sent.load(), std::min<size_t>(1 << 16, kTotal - sent.load()), MSG_NOSIGNAL);
      if (n <= 0) {
        ADD_FAILURE() << "send failed after " << sent.load() << " bytes: " << strerror(errno);
        return;
      }
      sent += static_cast<size_t>(n);
    }
  });
  // Stalled: every buffer between the writer and the unread socket is full.
  auto stalled = [&] {
    size_t before = sent.load();
    std::this_thread::sleep_for(300ms);
    return sent.load() == before && before < kTotal;
  };
  ASSERT_TRUE(wait_for(stalled, 20000ms)) << "the writer never stalled (" << sent.load() << " bytes sent)";
  std::atomic<int> changes{0};
  change_generations(s, 2, &changes);
  ASSERT_EQ(c.buffered(), 0u);
  std::vector<char> buf(1 << 16);
  size_t received = 0;
  bool same = true;
  while (received < kTotal) {
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    if (memcmp(buf.data(), data.data() + received, static_cast<size_t>(n)) != 0) same = false;
    received += static_cast<size_t>(n);
  }
  writer.join();
  EXPECT_EQ(sent.load(), kTotal);
  EXPECT_EQ(received, kTotal);
  EXPECT_TRUE(same) << "the bytes that came back differ from those sent";
}

// A graceful stop hands no tunnel over: it stays on its worker until quit_timeout closes it.
TEST(Handover, QuitDoesNotHandTunnelsOver) {
  TestUpstream up;
  ASSERT_TRUE(up.start({})) << up.error();
  BatonServer s;
  s.set_config(make_runtime_config("[upstream app]\nserver = " + up.address() +
                                       "\n\n[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                                       "\n[location /]\nproxy_pass = http://app\n",
                                   "quit_timeout = 1s\n", 1));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  std::string why;
  ASSERT_TRUE(open_tunnel(c, "websocket", &why)) << why;
  std::vector<pid_t> worker = workers_now(s, 1);
  ASSERT_EQ(worker.size(), 1u);
  ASSERT_TRUE(s.signal(SIGQUIT));
  // The worker drains (its title says so) before the tunnel is used again.
  ASSERT_TRUE(wait_for([&] { return contains(read_file("/proc/" + std::to_string(worker[0]) + "/cmdline"), "shutting down"); },
                       5000ms));
  ASSERT_TRUE(c.send("still here"));
  EXPECT_EQ(read_exactly(c, 10, 3000ms), "still here") << "the tunnel was cut before quit_timeout";
  EXPECT_TRUE(c.is_closed_by_peer(5000ms));
  EXPECT_TRUE(s.wait_exit(5000ms));
  EXPECT_FALSE(contains(s.error_log(), "to the new generation")) << s.error_log();
}

// Connections handed over faster than the master takes them wait in the old worker's channel queue,
// however many: here a thousand proxied requests end at the same moment, after the drain, while the master
// is stopped; each connection then moves, none is closed, and they are spread over the new workers.
TEST(Handover, HandOversWaitWhileTheMasterCannotTakeThem) {
  // More than a channel's socket buffer holds (some hundred messages) for each old worker.
  constexpr int kConnections = 1000;
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < kConnections + 512)
    GTEST_SKIP() << "the descriptor limit (" << lim.rlim_max << ") is too low for " << kConnections << " connections";
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < kConnections + 512) {
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? kConnections + 1024 : std::min<rlim_t>(lim.rlim_max, kConnections + 1024);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
  }
  TestUpstream up;
  ASSERT_TRUE(up.start({})) << up.error();
  BatonServer s;
  s.set_config(tunnel_config(up));
  ASSERT_TRUE(s.start());
  // The answers come 8 s after the requests: by then the master must be stopped (a generous bound
  // for a slow machine; the setup takes about 2 s under the sanitizers).
  constexpr auto kDelay = 8000ms;
  std::vector<Client> clients;
  auto t0 = SteadyClock::now();
  for (int i = 0; i < kConnections; i++) {
    clients.emplace_back(s.port());
    ASSERT_TRUE(clients.back().send(req("GET", "/delay/8000/size/10"))) << i;
  }
  std::vector<pid_t> old = workers_now(s, 2);
  ASSERT_EQ(old.size(), 2u);
  ASSERT_TRUE(wait_for([&] { return up.stats().requests >= kConnections; }, 5000ms)) << "the requests did not arrive";
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  ASSERT_EQ(kill(s.master_pid(), SIGSTOP), 0);
  // (Otherwise the hand-overs could have found the master running: the test would prove nothing.)
  ASSERT_LT(SteadyClock::now() - t0, kDelay - 1000ms) << "too slow to stop the master before the answers";
  std::this_thread::sleep_until(t0 + kDelay + 1500ms);
  ASSERT_EQ(kill(s.master_pid(), SIGCONT), 0);
  int served = 0;
  for (Client& c : clients) {
    std::optional<Response> first = c.read_response();
    if (!first || first->status != 200) continue;
    Response next = c.exchange(req("GET", "/size/10"));
    if (next.status == 200 && !next.connection_close()) served++;
  }
  EXPECT_EQ(served, kConnections);
  EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 10000ms))
      << "the old workers stay although their connections were idle\n" << s.census().describe();
  EXPECT_TRUE(wait_for([&] { return received_by_workers(s) == kConnections; }, 3000ms))
      << "received: " << received_by_workers(s);
  std::optional<StatusReport> st = status_of(s);
  ASSERT_TRUE(st);
  for (const auto& w : st->workers) EXPECT_GE(w.received, kConnections / 4) << "worker " << w.pid;
}

// A reload while a WebSocket waits for the upstream's 101: the tunnel moves once it is switched,
// without waiting for a byte to pass, and the old worker leaves.
TEST(Handover, ATunnelSwitchedDuringTheDrainMovesAtOnce) {
  ProxiedTunnel t;
  ASSERT_TRUE(t.up.start({})) << t.up.error();
  t.s.set_config(tunnel_config(t.up));
  ASSERT_TRUE(t.s.start());
  Client c(t.s.port());
  std::vector<pid_t> old = workers_now(t.s, 2);
  ASSERT_EQ(old.size(), 2u);
  ASSERT_TRUE(c.send("GET /delay/1500/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
  ASSERT_TRUE(wait_for([&] { return t.up.stats().requests >= 1; }, 5000ms));
  RunResult r = t.s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  std::optional<Response> head = c.read_response();
  ASSERT_TRUE(head) << c.error();
  ASSERT_EQ(head->status, 101);
  // Nothing is sent: the server must move the tunnel by itself.
  EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 10000ms))
      << "the old worker holds the tunnel\n" << t.s.census().describe();
  ASSERT_TRUE(c.send("after the move"));
  EXPECT_EQ(read_exactly(c, 14, 5000ms), "after the move");
}

// A reload that stops listening on the address a tunnel's client came to does not cut the tunnel.
TEST(Handover, ATunnelOutlivesItsListener) {
  TestUpstream up;
  ASSERT_TRUE(up.start({})) << up.error();
  BatonServer s;
  int second = s.port(1);
  auto conf = [&](bool both) {
    return make_runtime_config("[upstream app]\nserver = " + up.address() +
                                   "\n\n[server main]\nlisten = 127.0.0.1:@PORT@\n" +
                                   (both ? "listen = 127.0.0.1:" + std::to_string(second) + "\n" : std::string()) +
                                   "root = html\n\n[location /]\nproxy_pass = http://app\n",
                               "quit_timeout = 60s\n", 1);
  };
  s.set_config(conf(true));
  ASSERT_TRUE(s.start());
  Client c(second);
  std::string why;
  ASSERT_TRUE(open_tunnel(c, "websocket", &why)) << why;
  std::vector<pid_t> old = workers_now(s, 1);
  s.set_config(conf(false));
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(wait_for([&] { return none_alive(old); }, 10000ms)) << s.census().describe();
  ASSERT_TRUE(c.send("still open"));
  EXPECT_EQ(read_exactly(c, 10, 5000ms), "still open");
}

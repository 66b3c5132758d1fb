// The reverse proxy as a client sees it, in front of real upstream processes (t/upstream): bodies
// byte-exact both ways and in every framing, the pool reused and never racing an upstream's idle
// close, the header rules, the error answers, retries only when safe.
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "lib/proxy_util.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

size_t count_occurrences(std::string_view text, std::string_view needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + 1)) n++;
  return n;
}

// One baton in front of the given upstream servers: proxy_conf() of t/lib/proxy_util.h.
std::string proxy_config(const std::vector<std::string>& servers, std::string_view upstream_extra = "",
                         std::string_view location_extra = "", std::string_view http_extra = "") {
  return proxy_conf(servers, upstream_extra, location_extra, http_extra);
}

class Proxy : public ::testing::Test {
 public:
  void start_upstream(const std::vector<std::string>& args = {}) { ASSERT_TRUE(up.start(args)) << up.error(); }
  void start_baton(std::string_view upstream_extra = "", std::string_view location_extra = "",
                   std::string_view http_extra = "") {
    s.set_config(proxy_config({up.address()}, upstream_extra, location_extra, http_extra));
    ASSERT_TRUE(s.start());
  }
  TestUpstream up;
  BatonServer s;
};

TEST_F(Proxy, PassesAResponseByteExact) {
  start_upstream({"--name", "one"});
  start_baton();
  Response r = get(s.port(), "/size/100000");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body.size(), 100000u);
  EXPECT_EQ(upstream_content_mismatch(r.body, 0), std::string::npos);
  EXPECT_EQ(r.header("X-Upstream"), "one");
  // The response is the server's own: its Server and Date, not the upstream's.
  EXPECT_TRUE(has_standard_headers(r));
  EXPECT_EQ(r.count("Server"), 1u);
}

TEST_F(Proxy, ChunkedAndCloseDelimitedResponsesReachA11ClientChunked) {
  start_upstream();
  start_baton();
  for (std::string path : {"/chunked/300000", "/close/300000"}) {
    Client c(s.port());
    Response r = c.exchange(req("GET", path));
    ASSERT_EQ(r.status, 200) << path << r;
    EXPECT_EQ(r.header("Transfer-Encoding"), "chunked") << path;
    EXPECT_EQ(r.body.size(), 300000u) << path;
    EXPECT_EQ(upstream_content_mismatch(r.body, 0), std::string::npos) << path;
    // And the client connection is still good for another request.
    Response again = c.exchange(req("GET", "/size/10"));
    EXPECT_EQ(again.status, 200) << path;
  }
}

// An HTTP/1.0 client that asks for keep-alive gets a response of unknown length delimited by the
// end of the connection: the connection does end after it, and a request it sent behind the first
// is not answered into the first one's body.
TEST_F(Proxy, AnHttp10KeepAliveClientGetsACloseDelimitedResponseAndTheClose) {
  start_upstream();
  start_baton();
  Client c(s.port());
  ASSERT_TRUE(c.send("GET /chunked/5000 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
                     "GET /size/3 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"));
  auto t0 = std::chrono::steady_clock::now();
  std::string all = c.read_all_until_close(5000ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3000ms) << "the connection stayed open after the response";
  size_t head_end = all.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << all.substr(0, 300);
  std::string head = to_lower(all.substr(0, head_end));
  EXPECT_TRUE(contains(head, "connection: close")) << head;
  EXPECT_FALSE(contains(head, "content-length")) << head;
  std::string body = all.substr(head_end + 4);
  EXPECT_EQ(body.size(), 5000u);
  EXPECT_TRUE(body == upstream_content(0, 5000));
}

TEST_F(Proxy, AnHttp10ClientNeverGetsChunks) {
  start_upstream();
  start_baton();
  Client c(s.port());
  ASSERT_TRUE(c.send("GET /chunked/50000 HTTP/1.0\r\nHost: x\r\n\r\n"));
  std::string all = c.read_all_until_close(5000ms);
  size_t head_end = all.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << all;
  std::string head = all.substr(0, head_end);
  EXPECT_FALSE(contains(to_lower(head), "transfer-encoding")) << head;
  EXPECT_TRUE(contains(head, " 200 ")) << head;
  std::string body = all.substr(head_end + 4);
  EXPECT_EQ(body.size(), 50000u);
  EXPECT_EQ(upstream_content_mismatch(body, 0), std::string::npos);
}

TEST_F(Proxy, HeadGetsTheHeadOnly) {
  start_upstream();
  start_baton();
  Client c(s.port());
  Response r = c.exchange(req("HEAD", "/size/5000"), true);
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Length"), "5000");
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(c.exchange(req("GET", "/size/7")).body, upstream_content(0, 7));
}

TEST_F(Proxy, RequestBodiesPassByteExactWithEitherFraming) {
  start_upstream();
  start_baton("", "", "client_max_body_size = 64m\n");
  Client c(s.port());
  std::string body = upstream_content(5, 3 * 1024 * 1024 + 17);
  Response r = c.exchange(req("POST", "/sink", "Content-Length: " + std::to_string(body.size()) + "\r\n", body));
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "bytes=" + std::to_string(body.size()) + " hash=" + hash_hex(fnv1a(body)));

  // Chunked from the client, in pieces of several sizes.
  std::string chunked;
  size_t pos = 0, piece = 1;
  while (pos < body.size()) {
    size_t n = std::min(piece, body.size() - pos);
    char size[32];
    snprintf(size, sizeof(size), "%zx\r\n", n);
    chunked += size;
    chunked += body.substr(pos, n);
    chunked += "\r\n";
    pos += n;
    piece = piece * 7 + 3;
  }
  chunked += "0\r\n\r\n";
  r = c.exchange(req("POST", "/sink", "Transfer-Encoding: chunked\r\n", chunked));
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "bytes=" + std::to_string(body.size()) + " hash=" + hash_hex(fnv1a(body)));

  // A small one comes back as it went.
  r = c.exchange(req("POST", "/echo", "Content-Length: 5\r\n", "hello"));
  EXPECT_EQ(r.body, "hello");
}

TEST_F(Proxy, UpstreamConnectionsAreReused) {
  start_upstream();
  start_baton();
  Client c(s.port());
  for (int i = 0; i < 20; i++) {
    Response r = c.exchange(req("GET", "/size/100"));
    ASSERT_EQ(r.status, 200) << r;
  }
  // Separate client connections share the pool too.
  for (int i = 0; i < 5; i++) EXPECT_EQ(get(s.port(), "/size/10").status, 200);
  TestUpstream::Stats st = up.stats();
  EXPECT_EQ(st.requests, 25);
  EXPECT_EQ(st.connections, 1);
}

TEST_F(Proxy, HeaderRulesTowardsTheUpstream) {
  start_upstream();
  start_baton();
  Client c(s.port());
  Response r = c.exchange(req("GET", "/headers?x=1",
                              "X-Forwarded-For: 203.0.113.7\r\n"
                              "Connection: keep-alive, X-Hop\r\n"
                              "X-Hop: secret\r\n"
                              "Keep-Alive: timeout=5\r\n"
                              "TE: trailers\r\n"
                              "X-Kept: yes\r\n"));
  ASSERT_EQ(r.status, 200) << r;
  std::string head = r.body;
  EXPECT_TRUE(head.starts_with("GET /headers?x=1 HTTP/1.1\r\n")) << head;
  EXPECT_TRUE(contains(head, "\r\nHost: app\r\n")) << head;
  EXPECT_TRUE(contains(head, "\r\nX-Forwarded-For: 203.0.113.7, 127.0.0.1\r\n")) << head;
  EXPECT_TRUE(contains(head, "\r\nX-Real-IP: 127.0.0.1\r\n")) << head;
  EXPECT_TRUE(contains(head, "\r\nX-Forwarded-Proto: http\r\n")) << head;
  EXPECT_TRUE(contains(head, "\r\nX-Kept: yes\r\n")) << head;
  EXPECT_FALSE(contains(to_lower(head), "x-hop")) << head;
  EXPECT_FALSE(contains(to_lower(head), "keep-alive: timeout")) << head;
  EXPECT_FALSE(contains(to_lower(head), "\r\nte:")) << head;
}

TEST_F(Proxy, ProxySetHeaderOverridesAndRemoves) {
  start_upstream();
  start_baton("", "proxy_set_header = Host $host\nproxy_set_header = X-Real-IP \"\"\nproxy_set_header = X-Id req-$request_method\n");
  Client c(s.port());
  Response r = c.exchange("GET /headers HTTP/1.1\r\nHost: www.example.test\r\n\r\n");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_TRUE(contains(r.body, "\r\nHost: www.example.test\r\n")) << r.body;
  EXPECT_FALSE(contains(r.body, "X-Real-IP")) << r.body;
  EXPECT_TRUE(contains(r.body, "\r\nX-Id: req-GET\r\n")) << r.body;
  EXPECT_EQ(count_occurrences(to_lower(r.body), "\r\nhost:"), 1u) << r.body;
}

TEST_F(Proxy, HopByHopResponseFieldsStayBehind) {
  start_upstream();
  start_baton();
  Response r = get(s.port(), "/size/3?header=Connection:X-Foo&header=X-Foo:1&header=X-Bar:2&header=Keep-Alive:timeout=9");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_FALSE(r.has("X-Foo")) << r;
  EXPECT_FALSE(r.has("Keep-Alive")) << r;
  EXPECT_EQ(r.header("X-Bar"), "2");
}

TEST_F(Proxy, ADeadUpstreamIs502AtOnce) {
  // A port nobody listens on.
  int dead = 0;
  {
    BatonServer other;
    dead = other.port();
  }
  s.set_config(proxy_config({"127.0.0.1:" + std::to_string(dead)}));
  ASSERT_TRUE(s.start());
  auto t0 = std::chrono::steady_clock::now();
  Response r = get(s.port(), "/x");
  EXPECT_TRUE(is_error_page(r, 502, "Bad Gateway")) << r;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

TEST_F(Proxy, ASlowUpstreamIs504AfterReadTimeout) {
  start_upstream();
  start_baton("read_timeout = 1s\n");
  auto t0 = std::chrono::steady_clock::now();
  Response r = get(s.port(), "/delay/4000/size/10");
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(is_error_page(r, 504, "Gateway Timeout")) << r;
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 3500ms);
}

TEST_F(Proxy, InvalidUpstreamResponsesAre502) {
  start_upstream();
  start_baton();
  for (std::string bad : {"status-line", "cl-and-te", "two-cl", "invalid-cl", "no-crlf", "truncated-head", "not-http"}) {
    Response r = get(s.port(), "/bad/" + bad);
    EXPECT_TRUE(is_error_page(r, 502, "Bad Gateway")) << bad << "\n" << r;
  }
  // Held to the rules a client's request is held to: no control bytes, field names are tokens.
  for (std::string bad : {"/size/1?header=X-Bad:a%01b", "/size/1?header=X%20Y:1"}) {
    Response r = get(s.port(), bad);
    EXPECT_TRUE(is_error_page(r, 502, "Bad Gateway")) << bad << "\n" << r;
  }
  std::string log = read_file(s.path("logs/error.log"));
  EXPECT_TRUE(contains(log, up.address())) << log;
}

TEST_F(Proxy, InterimHeadsAndHeadsInPiecesAreReadWhole) {
  start_upstream();
  start_baton();
  for (std::string kind : {"hints-then-200", "split-head", "hints-split"}) {
    Response r = get(s.port(), "/shape/" + kind);
    EXPECT_EQ(r.status, 200) << kind << "\n" << r;
    EXPECT_EQ(r.body, "ok") << kind;
    // The interim response was the upstream's business with the proxy.
    EXPECT_FALSE(r.has("Link")) << kind << "\n" << r;
  }
  EXPECT_EQ(get(s.port(), "/shape/split-head").header("X-Part"), "1");
}

TEST_F(Proxy, AResponseBrokenInTheBodyIsNotTakenForWhole) {
  start_upstream();
  start_baton();
  for (std::string bad : {"/bad/truncated-body", "/bad/bad-chunk", "/reset-after-head"}) {
    Client c(s.port());
    ASSERT_TRUE(c.send(req("GET", bad)));
    std::string all = c.read_all_until_close(5000ms);
    // Whatever arrived, the connection ended, and a length-framed body is short.
    EXPECT_TRUE(c.is_closed_by_peer(100ms)) << bad;
    if (contains(all, "Content-Length: 1000")) {
      size_t head_end = all.find("\r\n\r\n");
      EXPECT_LT(all.size() - head_end - 4, 1000u) << bad;
    } else if (contains(all, "chunked")) {
      EXPECT_FALSE(all.ends_with("0\r\n\r\n")) << bad;
    }
  }
}

// The classic random 502: an upstream closes idle connections after a second, and requests come
// right at that second. None may fail, and no POST may reach the upstream twice.
void idle_close_race(Proxy* t, bool announce) {
  std::vector<std::string> args = {"--idle-close", "1"};
  if (announce) args.push_back("--keepalive-header");
  ASSERT_TRUE(t->up.start(args)) << t->up.error();
  t->s.set_config(proxy_config({t->up.address()}));
  ASSERT_TRUE(t->s.start());
  Client c(t->s.port());
  int failures = 0;
  for (int i = 0; i < 8; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(980 + 10 * (i % 4)));
    std::string target = "/sink?n=" + std::to_string(i);
    Response r = i % 2 ? c.exchange(req("POST", target, "Content-Length: 3\r\n", "abc"))
                       : c.exchange(req("GET", "/size/10?n=" + std::to_string(i)));
    if (r.status != 200) failures++;
  }
  EXPECT_EQ(failures, 0);
  for (int i = 1; i < 8; i += 2)
    EXPECT_EQ(t->up.received("POST", "/sink?n=" + std::to_string(i)), 1u) << i;
}

TEST_F(Proxy, IdleCloseRaceWithoutKeepAliveHeader) { idle_close_race(this, false); }
TEST_F(Proxy, IdleCloseRaceWithKeepAliveHeader) { idle_close_race(this, true); }

TEST_F(Proxy, AFailedServerIsSkippedForTheNext) {
  start_upstream({"--name", "live"});
  int dead = 0;
  {
    BatonServer other;
    dead = other.port();
  }
  s.set_config(proxy_config({"127.0.0.1:" + std::to_string(dead), up.address()}));
  ASSERT_TRUE(s.start());
  for (int i = 0; i < 6; i++) {
    Response r = get(s.port(), "/size/10");
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(r.header("X-Upstream"), "live");
  }
  // A POST that never reached the dead one (connect refused) may go to the next server too.
  Client c(s.port());
  Response r = c.exchange(req("POST", "/sink", "Content-Length: 2\r\n", "hi"));
  EXPECT_EQ(r.status, 200) << r;
}

// A status that proxy_next_upstream names sends the request to the next server, also when that
// server's connection comes from the pool (ready at once): its answer is the client's, and each
// server gets the request once.
TEST_F(Proxy, AStatusRetryOnAPooledConnectionGetsTheNextAnswer) {
  BatonServer a, b;
  a.set_config(make_config("[server a]\nlisten = 127.0.0.1:@PORT@\nroot = html\n[location /]\nreturn = 503\n"));
  b.set_config(make_config("[server b]\nlisten = 127.0.0.1:@PORT@\nroot = html\n[location /]\nreturn = 200 from b\n"));
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  s.set_config(proxy_config({"127.0.0.1:" + std::to_string(a.port()) + " max_fails=0",
                             "127.0.0.1:" + std::to_string(b.port()) + " max_fails=0"},
                            "keepalive = 8\n", "proxy_next_upstream = error timeout http_503 non_idempotent\n"));
  ASSERT_TRUE(s.start());
  for (int i = 0; i < 6; i++) {
    Client c(s.port());
    Response r = i % 2 ? c.exchange(req("POST", "/x", "Content-Length: 2\r\n", "hi")) : c.exchange(req("GET", "/x"));
    EXPECT_EQ(r.status, 200) << i << " " << r << s.error_log();
    EXPECT_EQ(r.body, "from b") << i;
  }
  EXPECT_FALSE(contains(s.error_log(), "invalid response head")) << s.error_log();
}

TEST_F(Proxy, APostThatMayHaveArrivedIsNeverSentTwice) {
  TestUpstream second;
  start_upstream({"--name", "a"});
  ASSERT_TRUE(second.start({"--name", "b"})) << second.error();
  // Passive health stays out of the way (max_fails=0): every request reaches a server.
  s.set_config(proxy_config({up.address() + " max_fails=0", second.address() + " max_fails=0"}, "",
                            "proxy_next_upstream = error timeout http_502\n"));
  ASSERT_TRUE(s.start());
  for (int i = 0; i < 4; i++) {
    Client c(s.port());
    Response r = c.exchange(req("POST", "/reset?p=" + std::to_string(i), "Content-Length: 2\r\n", "hi"));
    EXPECT_TRUE(is_error_page(r, 502, "Bad Gateway")) << r;
    EXPECT_EQ(up.received("POST", "/reset?p=" + std::to_string(i)) +
                  second.received("POST", "/reset?p=" + std::to_string(i)),
              1u);
  }
  // A GET that fails the same way is tried on the other server (and fails there too).
  Response r = get(s.port(), "/reset?g=1");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(up.received("GET", "/reset?g=1") + second.received("GET", "/reset?g=1"), 2u);
}

TEST_F(Proxy, WeightsShareTheLoad) {
  TestUpstream second;
  start_upstream({"--name", "a"});
  ASSERT_TRUE(second.start({"--name", "b"})) << second.error();
  s.set_config(proxy_config({up.address() + " weight=3", second.address()}));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  int a = 0, b = 0;
  for (int i = 0; i < 40; i++) {
    Response r = c.exchange(req("GET", "/size/1"));
    if (r.header("X-Upstream") == "a") a++;
    if (r.header("X-Upstream") == "b") b++;
  }
  EXPECT_EQ(a, 30);
  EXPECT_EQ(b, 10);
}

TEST_F(Proxy, URIPartReplacesTheLocationPrefix) {
  start_upstream();
  s.set_config(make_config("[upstream app]\nserver = " + up.address() +
                           "\n[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                           "[location /api/]\nproxy_pass = http://app/v2/\n"
                           "[location /raw/]\nproxy_pass = http://app\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/api/users/a%20b?q=1");
  EXPECT_EQ(r.body, "upstream GET /v2/users/a%20b?q=1\n") << r;
  r = get(s.port(), "/raw/x/../y?z");
  EXPECT_EQ(r.body, "upstream GET /raw/x/../y?z\n") << r;
}

// Two headers rewritten by proxy_redirect, each kept whole (the second must not move the first).
TEST_F(Proxy, EveryRedirectHeaderIsRewrittenWhole) {
  start_upstream();
  s.set_config(make_config("[upstream app]\nserver = " + up.address() +
                           "\n[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                           "[location /api/]\nproxy_pass = http://app/v2/\n"));
  ASSERT_TRUE(s.start());
  std::string first(40, 'S'), second(300, 'L');
  Response r = get(s.port(), "/api/x?header=Location:http%3A//app/v2/" + first + "&header=Refresh:http%3A//app/v2/" + second);
  EXPECT_EQ(r.header("Location"), "/api/" + first) << r;
  EXPECT_EQ(r.header("Refresh"), "/api/" + second) << r;
}

TEST_F(Proxy, ARedirectFromTheUpstreamPointsAtTheProxy) {
  start_upstream();
  s.set_config(make_config("[upstream app]\nserver = " + up.address() +
                           "\n[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                           "[location /api/]\nproxy_pass = http://app/v2/\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/api/x?header=Location:http%3A//app/v2/login");
  EXPECT_EQ(r.header("Location"), "/api/login") << r;
}

}  // namespace

namespace {

const char kWsRequest[] =
    "GET /ws HTTP/1.1\r\n"
    "Host: x\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

// WebSocket with no extra configuration: the 101 passes through and the connection carries bytes
// both ways until either side ends it.
TEST_F(Proxy, WebSocketTunnelsWithoutExtraConfiguration) {
  start_upstream();
  start_baton();
  Client c(s.port());
  std::optional<Response> r;
  ASSERT_TRUE(c.send(kWsRequest));
  r = c.read_response();
  ASSERT_TRUE(r.has_value()) << c.error();
  ASSERT_EQ(r->status, 101) << *r;
  EXPECT_EQ(to_lower(r->header("Upgrade")), "websocket");
  EXPECT_TRUE(contains(to_lower(r->header("Connection")), "upgrade")) << *r;
  // RFC 6455's example key and its answer: the upstream's own, passed through unchanged.
  EXPECT_EQ(r->header("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  std::string sent;
  for (int i = 0; i < 50; i++) {
    std::string piece = "frame " + std::to_string(i) + " " + std::string(static_cast<size_t>(i * 97), 'x') + "\n";
    ASSERT_TRUE(c.send(piece));
    sent += piece;
  }
  std::string got;
  for (int i = 0; i < 200 && got.size() < sent.size(); i++) {
    std::string more = c.read_some(65536);
    if (more.empty()) break;
    got += more;
  }
  EXPECT_EQ(got, sent);
  // A large burst both ways at once keeps its order.
  std::string big = upstream_content(0, 2 * 1024 * 1024);
  std::thread writer([&] { EXPECT_TRUE(c.send(big)); });
  std::string echoed;
  while (echoed.size() < big.size()) {
    std::string more = c.read_some(1 << 20);
    if (more.empty()) break;
    echoed += more;
  }
  writer.join();
  EXPECT_EQ(echoed.size(), big.size());
  EXPECT_TRUE(echoed == big);
  // The client ends: the upstream hears it, ends in turn, and so does the connection.
  shutdown(c.fd(), SHUT_WR);
  EXPECT_TRUE(c.is_closed_by_peer(5000ms));
}

TEST_F(Proxy, AnUpgradeTheUpstreamDeclinesIsAnOrdinaryLastResponse) {
  start_upstream();
  start_baton();
  Client c(s.port());
  std::string request = kWsRequest;
  request.replace(4, 3, "/size/5");
  Response r = c.exchange(request);
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, upstream_content(0, 5));
  EXPECT_TRUE(c.is_closed_by_peer(5000ms));
}

// What a client sends after an Upgrade head, before the upstream has switched, is the tunnel's:
// it reaches the upstream once, after the 101, never as HTTP. Declined, it never reaches the
// upstream at all: it cannot smuggle a request past the proxy's own rules, and the upstream
// connection holds no answer to it for another client.
TEST_F(Proxy, BytesSentBeforeTheSwitchNeverReachTheUpstreamAsHttp) {
  start_upstream();
  s.set_config(make_config("[upstream app]\nserver = " + up.address() +
                           "\nkeepalive = 4\n[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                           "[location /]\nproxy_pass = http://app\n"
                           "[location /admin/]\ndeny = all\nproxy_pass = http://app\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/admin/x").status, 403);
  {
    Client c(s.port());
    std::string request = kWsRequest;
    request.replace(4, 3, "/size/5");
    ASSERT_TRUE(c.send(request + "GET /admin/x HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::optional<Response> r = c.read_response();
    ASSERT_TRUE(r.has_value()) << c.error();
    EXPECT_EQ(r->status, 200) << *r;
    EXPECT_TRUE(c.is_closed_by_peer(5000ms));
  }
  // The next client on the pooled upstream connection gets its own answer.
  Response next = get(s.port(), "/size/7");
  EXPECT_EQ(next.status, 200) << next;
  EXPECT_EQ(next.body, upstream_content(0, 7));
  EXPECT_EQ(up.received("GET", "/admin/x"), 0u) << up.log_text();
}

TEST_F(Proxy, BytesSentWithTheUpgradeHeadAreTunnelledOnce) {
  start_upstream();
  start_baton();
  Client c(s.port(), {.timeout = 1000ms});
  std::string early = upstream_content(0, 60 * 1024);
  ASSERT_TRUE(c.send(std::string(kWsRequest) + early));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r.has_value()) << c.error();
  ASSERT_EQ(r->status, 101) << *r;
  std::string echoed = r->body;
  while (echoed.size() < early.size()) {
    std::string more = c.read_some(65536);
    if (more.empty()) break;
    echoed += more;
  }
  EXPECT_EQ(echoed.size(), early.size());
  EXPECT_TRUE(echoed == early);
  // Nothing more comes: the bytes went up once.
  EXPECT_EQ(c.read_some(65536).size(), 0u);
}

// More than client_body_buffer_size before a late 101: the client is held back, then resumed once
// the tunnel is open; every byte goes through.
TEST_F(Proxy, ALateSwitchTakesEverythingTheClientSentMeanwhile) {
  start_upstream();
  start_baton("", "client_body_buffer_size = 16k\n");
  Client c(s.port());
  std::string request = kWsRequest;
  request.replace(4, 3, "/delay/500/ws");
  std::string early = upstream_content(0, 1024 * 1024);
  std::thread writer([&] { EXPECT_TRUE(c.send(request + early)); });
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r.has_value()) << c.error();
  ASSERT_EQ(r->status, 101) << *r;
  std::string echoed = r->body;
  while (echoed.size() < early.size()) {
    std::string more = c.read_some(1 << 20);
    if (more.empty()) break;
    echoed += more;
  }
  writer.join();
  EXPECT_EQ(echoed.size(), early.size());
  EXPECT_TRUE(echoed == early);
}

TEST_F(Proxy, TheTunnelClosesAfterReadTimeoutOfSilence) {
  start_upstream();
  start_baton("read_timeout = 1s\n");
  Client c(s.port());
  ASSERT_TRUE(c.send(kWsRequest));
  std::optional<Response> r = c.read_response();
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->status, 101);
  ASSERT_TRUE(c.send("ping"));
  EXPECT_EQ(c.read_some(100), "ping");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.is_closed_by_peer(6000ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 800ms);
}

}  // namespace

namespace {

TEST_F(Proxy, TheAccessLogNamesTheUpstreamsTried) {
  start_upstream();
  int dead = 0;
  {
    BatonServer other;
    dead = other.port();
  }
  std::string dead_addr = "127.0.0.1:" + std::to_string(dead);
  s.set_config(proxy_config({dead_addr, up.address()}, "", "access_log = logs/access.json json\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/size/10").status, 200);
  EXPECT_EQ(get(s.port(), "/size/10").status, 200);  // the dead one is out now: one attempt
  ASSERT_TRUE(wait_for([&] { return count_occurrences(read_file(s.path("logs/access.json")), "\n") >= 2; }, 5000ms));
  std::string log = read_file(s.path("logs/access.json"));
  EXPECT_TRUE(contains(log, "\"upstream_addr\":\"" + dead_addr + ", " + up.address() + "\",\"upstream_status\":\"502, 200\""))
      << log;
  EXPECT_TRUE(contains(log, "\"upstream_addr\":\"" + up.address() + "\",\"upstream_status\":\"200\"")) << log;
  EXPECT_TRUE(contains(log, "\"upstream_response_time\":\"0.")) << log;
}

}  // namespace

namespace {

// A reload sends new requests to the new configuration's upstream, and an old worker with pooled
// upstream connections exits as soon as its clients are served, not at quit_timeout.
TEST_F(Proxy, AReloadMovesToTheNewUpstreamAndOldWorkersLeaveAtOnce) {
  TestUpstream second;
  start_upstream({"--name", "old"});
  ASSERT_TRUE(second.start({"--name", "new"})) << second.error();
  s.set_config(replace_all(proxy_config({up.address()}), "[main]\n", "[main]\nquit_timeout = 60s\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  for (int i = 0; i < 3; i++) EXPECT_EQ(c.exchange(req("GET", "/size/10")).header("X-Upstream"), "old");
  std::vector<pid_t> old_workers = s.worker_pids();
  ASSERT_FALSE(old_workers.empty());
  s.set_config(replace_all(proxy_config({second.address()}), "[main]\n", "[main]\nquit_timeout = 60s\n"));
  // A request in flight across the reload: its upstream connection is free again only after the
  // old worker began to drain.
  ASSERT_TRUE(c.send(req("GET", "/delay/1500/size/10")));
  std::this_thread::sleep_for(200ms);
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::optional<Response> last = c.read_response();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->status, 200);
  EXPECT_EQ(last->header("X-Upstream"), "old");
  EXPECT_TRUE(wait_for([&] { return get(s.port(), "/size/10").header("X-Upstream") == "new"; }, 5000ms));
  EXPECT_TRUE(wait_for(
      [&] {
        for (pid_t p : old_workers)
          if (process_alive(p)) return false;
        return true;
      },
      10000ms));
}

}  // namespace

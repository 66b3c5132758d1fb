// Unit tests of src/http/http_handover.h: the description of a connection handed to a worker of the
// new generation, and the receiving side's refusal of every malformed one (its descriptors closed).
#include "http/http_handover.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <utility>

namespace baton::http {
namespace {

// A connected stream socket pair: [0] goes into the description, [1] stays to watch it.
std::pair<Fd, Fd> stream_pair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return {Fd(sv[0]), Fd(sv[1])};
}

// The other end of a socket sees it closed.
bool closed_from(const Fd& other) {
  char c;
  return ::recv(other.get(), &c, 1, MSG_DONTWAIT) == 0;
}

HandedConnection idle(Fd fd) {
  HandedConnection c;
  c.kind = HandedConnection::Kind::kIdle;
  c.listener = "127.0.0.1:8080 proxy_protocol";
  EXPECT_EQ(parse_sockaddr("192.0.2.7:51234", &c.peer), "");
  c.via_proxy_protocol = true;
  c.requests = 41;
  c.preread = std::string("GET /next HTTP/1.1\r\nHost: a\r\n\0\xff", 32);
  c.idle_left_ms = 4200;
  c.fds.push_back(std::move(fd));
  return c;
}

Message encoded(HandedConnection c) {
  Message m;
  std::string why;
  EXPECT_TRUE(encode_handover(std::move(c), &m, &why)) << why;
  return m;
}

TEST(Handover, IdleConnectionRoundTrips) {
  auto [mine, other] = stream_pair();
  int fd = mine.get();
  Message m = encoded(idle(std::move(mine)));
  HandedConnection c;
  std::string why;
  ASSERT_TRUE(decode_handover(std::move(m), &c, &why)) << why;
  EXPECT_EQ(c.kind, HandedConnection::Kind::kIdle);
  EXPECT_EQ(c.listener, "127.0.0.1:8080 proxy_protocol");
  EXPECT_EQ(c.peer.to_string(), "192.0.2.7:51234");
  EXPECT_TRUE(c.via_proxy_protocol);
  EXPECT_EQ(c.requests, 41u);
  EXPECT_EQ(c.preread, std::string("GET /next HTTP/1.1\r\nHost: a\r\n\0\xff", 32));
  EXPECT_EQ(c.idle_left_ms, 4200);
  ASSERT_EQ(c.fds.size(), 1u);
  EXPECT_EQ(c.fds[0].get(), fd);
  EXPECT_FALSE(closed_from(other));
}

TEST(Handover, TunnelRoundTripsWithBytesBothWays) {
  auto [client, client_end] = stream_pair();
  auto [upstream, upstream_end] = stream_pair();
  HandedConnection t;
  t.kind = HandedConnection::Kind::kTunnel;
  t.listener = "[::1]:443";
  EXPECT_EQ(parse_sockaddr("[2001:db8::1]:443", &t.peer), "");
  t.to_upstream = std::string(1000, '\x81');
  t.to_client = "frame";
  t.idle_left_ms = 60000;
  t.timeout_ms = 75000;
  t.fds.push_back(std::move(client));
  t.fds.push_back(std::move(upstream));
  HandedConnection c;
  std::string why;
  Message m = encoded(std::move(t));
  EXPECT_EQ(m.fds.size(), 2u);
  EXPECT_FALSE(m.has("spill"));
  ASSERT_TRUE(decode_handover(std::move(m), &c, &why)) << why;
  EXPECT_EQ(c.kind, HandedConnection::Kind::kTunnel);
  EXPECT_EQ(c.peer.to_string(), "[2001:db8::1]:443");
  EXPECT_EQ(c.to_upstream, std::string(1000, '\x81'));
  EXPECT_EQ(c.to_client, "frame");
  EXPECT_EQ(c.timeout_ms, 75000);
  EXPECT_EQ(c.fds.size(), 2u);
  EXPECT_FALSE(closed_from(client_end));
  EXPECT_FALSE(closed_from(upstream_end));
}

HandedConnection tunnel(Fd client, Fd upstream, size_t to_client, size_t to_upstream) {
  HandedConnection t;
  t.kind = HandedConnection::Kind::kTunnel;
  t.listener = "127.0.0.1:80";
  EXPECT_EQ(parse_sockaddr("192.0.2.9:40000", &t.peer), "");
  for (size_t i = 0; i < to_client; i++) t.to_client.push_back(static_cast<char>(i * 7 + 1));
  for (size_t i = 0; i < to_upstream; i++) t.to_upstream.push_back(static_cast<char>(i * 13 + 5));
  t.idle_left_ms = t.timeout_ms = 60000;
  t.fds.push_back(std::move(client));
  t.fds.push_back(std::move(upstream));
  return t;
}

// A tunnel with more in flight than the text carries: its bytes travel in a memory file, which the
// receiving side reads and closes.
TEST(Handover, ATunnelsBytesBeyondTheTextTravelInAMemoryFile) {
  auto [client, client_end] = stream_pair();
  auto [upstream, upstream_end] = stream_pair();
  HandedConnection t = tunnel(std::move(client), std::move(upstream), 100000, 70001);
  const std::string to_client = t.to_client;
  const std::string to_upstream = t.to_upstream;
  Message m = encoded(std::move(t));
  ASSERT_EQ(m.fds.size(), 3u);
  EXPECT_EQ(m.get("spill"), "100000,70001");
  EXPECT_EQ(m.get("to_client"), "");
  HandedConnection c;
  std::string why;
  ASSERT_TRUE(decode_handover(std::move(m), &c, &why)) << why;
  EXPECT_TRUE(c.to_client == to_client);
  EXPECT_TRUE(c.to_upstream == to_upstream);
  EXPECT_EQ(c.fds.size(), 2u);
}

TEST(Handover, MalformedTunnelDescriptionsAreRefusedAndTheirSocketsClosed) {
  struct Case {
    const char* what;
    size_t to_client;  // bytes in flight: more than kHandoverMaxPending makes a memory file
    void (*spoil)(Message&);
  };
  const Case cases[] = {
      {"no timeout", 10, [](Message& m) { m.fields.erase(m.fields.end() - 1); }},
      {"timeout zero", 10, [](Message& m) { m.set("timeout_ms", "0"); }},
      {"timeout beyond a day", 10, [](Message& m) { m.set("timeout_ms", "86400001"); }},
      {"a next request on a tunnel", 10, [](Message& m) { m.set("preread", base64_encode("GET")); }},
      {"three sockets and no file", 10, [](Message& m) { m.fds.push_back(Fd(::dup(m.fds[0].get()))); }},
      {"a file named but not sent", 40000, [](Message& m) { m.fds.pop_back(); }},
      {"file sizes that differ from the file", 40000, [](Message& m) { m.set("spill", "39999,0"); }},
      {"file sizes within the text's limit", 40000, [](Message& m) { m.set("spill", "1,0"); }},
      {"file sizes beyond the limit", 40000,
       [](Message& m) { m.set("spill", std::to_string(kHandoverMaxSpill) + ",1"); }},
      {"file sizes garbage", 40000, [](Message& m) { m.set("spill", "40000"); }},
      {"bytes in the text and a file", 40000, [](Message& m) { m.set("to_upstream", base64_encode("x")); }},
      {"a socket for the file", 40000, [](Message& m) { m.fds.back() = Fd(::dup(m.fds[0].get())); }},
  };
  for (const Case& k : cases) {
    auto [client, client_end] = stream_pair();
    auto [upstream, upstream_end] = stream_pair();
    Message m = encoded(tunnel(std::move(client), std::move(upstream), k.to_client, 0));
    k.spoil(m);
    HandedConnection c;
    std::string why;
    EXPECT_FALSE(decode_handover(std::move(m), &c, &why)) << k.what;
    EXPECT_EQ(why.rfind("bad connection description: ", 0), 0u) << k.what << ": " << why;
    EXPECT_TRUE(closed_from(client_end)) << k.what << ": the client's socket was not closed";
    EXPECT_TRUE(closed_from(upstream_end)) << k.what << ": the upstream's socket was not closed";
  }
  // And a timeout on an idle connection, or a memory file for one.
  for (const char* field : {"timeout_ms", "spill"}) {
    auto [mine, other] = stream_pair();
    Message m = encoded(idle(std::move(mine)));
    m.set(field, "1000");
    HandedConnection c;
    std::string why;
    EXPECT_FALSE(decode_handover(std::move(m), &c, &why)) << field;
    EXPECT_TRUE(closed_from(other)) << field;
  }
}

// A PROXY protocol header may name port 0: such a peer is carried too.
TEST(Handover, APeerOnPortZeroIsCarried) {
  auto [mine, other] = stream_pair();
  HandedConnection c = idle(std::move(mine));
  ASSERT_EQ(parse_sockaddr("192.0.2.7:1", &c.peer), "");
  reinterpret_cast<sockaddr_in*>(&c.peer.storage)->sin_port = 0;
  HandedConnection back;
  std::string why;
  ASSERT_TRUE(decode_handover(encoded(std::move(c)), &back, &why)) << why;
  EXPECT_EQ(back.peer.to_string(), "192.0.2.7:0");
}

TEST(Handover, TooMuchPendingIsNotDescribed) {
  auto [mine, other] = stream_pair();
  HandedConnection c = idle(std::move(mine));
  c.preread.assign(kHandoverMaxPending + 1, 'x');
  Message m;
  std::string why;
  EXPECT_FALSE(encode_handover(std::move(c), &m, &why));
  EXPECT_NE(why.find("pending"), std::string::npos) << why;
  auto [client, client_end] = stream_pair();
  auto [upstream, upstream_end] = stream_pair();
  EXPECT_FALSE(encode_handover(tunnel(std::move(client), std::move(upstream), kHandoverMaxSpill, 1), &m, &why));
  EXPECT_NE(why.find("pending"), std::string::npos) << why;
}

// Each malformed description is refused with a reason, and its descriptor is closed.
TEST(Handover, MalformedDescriptionsAreRefusedAndTheirSocketsClosed) {
  struct Case {
    const char* what;
    void (*spoil)(Message&);
  };
  const Case cases[] = {
      {"wrong message type", [](Message& m) { m.type = MsgType::kFd; }},
      {"other version", [](Message& m) { m.set("v", "2"); }},
      {"unknown kind", [](Message& m) { m.set("kind", "stream"); }},
      {"unknown field", [](Message& m) { m.fields.emplace_back("extra", "1"); }},
      {"field twice", [](Message& m) { m.fields.emplace_back("requests", "1"); }},
      {"field missing", [](Message& m) { m.fields.erase(m.fields.begin() + 3); }},
      {"listener not base64", [](Message& m) { m.set("listener", "%%%"); }},
      {"empty listener", [](Message& m) { m.set("listener", ""); }},
      {"peer a bare port", [](Message& m) { m.set("peer", "8080"); }},
      {"peer a wildcard", [](Message& m) { m.set("peer", "*:80"); }},
      {"peer garbage", [](Message& m) { m.set("peer", "hello:world"); }},
      {"proxy not a flag", [](Message& m) { m.set("proxy", "yes"); }},
      {"requests negative", [](Message& m) { m.set("requests", "-1"); }},
      {"requests huge", [](Message& m) { m.set("requests", "99999999999999999999999"); }},
      {"idle beyond a day", [](Message& m) { m.set("idle_ms", "86400001"); }},
      {"preread not base64", [](Message& m) { m.set("preread", "!!"); }},
      {"preread too long", [](Message& m) { m.set("preread", base64_encode(std::string(kHandoverMaxPending + 1, 'a'))); }},
      {"tunnel bytes on idle", [](Message& m) { m.set("to_client", base64_encode("x")); }},
      {"idle with two sockets", [](Message& m) { m.fds.push_back(Fd(::dup(m.fds[0].get()))); }},
      {"a tunnel with one socket", [](Message& m) { m.set("kind", "tunnel"); m.set("preread", ""); }},
  };
  for (const Case& k : cases) {
    auto [mine, other] = stream_pair();
    Message m = encoded(idle(std::move(mine)));
    k.spoil(m);
    HandedConnection c;
    std::string why;
    EXPECT_FALSE(decode_handover(std::move(m), &c, &why)) << k.what;
    EXPECT_EQ(why.rfind("bad connection description: ", 0), 0u) << k.what << ": " << why;
    EXPECT_TRUE(closed_from(other)) << k.what << ": the socket was not closed";
  }
}

TEST(Handover, DescriptorsThatAreNotConnectedStreamsAreRefused) {
  // A pipe, a datagram socket, a stream socket that is not connected.
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Fd pipe_write(p[1]);
  int d[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, d), 0);
  Fd dgram_other(d[1]);
  Fd unconnected(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const std::pair<int, const char*> fds[] = {{p[0], "not a socket"}, {d[0], "not a stream socket"},
                                             {unconnected.release(), "not connected"}};
  for (const auto& [fd, reason] : fds) {
    auto [placeholder, other] = stream_pair();
    Message m = encoded(idle(std::move(placeholder)));
    m.fds.clear();
    m.fds.emplace_back(fd);
    HandedConnection c;
    std::string why;
    EXPECT_FALSE(decode_handover(std::move(m), &c, &why)) << reason;
    EXPECT_NE(why.find(reason), std::string::npos) << why;
  }
}

}  // namespace
}  // namespace baton::http

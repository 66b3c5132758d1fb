// Unit tests of src/http/http_access.h: address ranges (parsing, host bits, IPv4, IPv6, IPv4-mapped
// clients, unix sockets), the first-match allow/deny decision, and the client address a trusted
// proxy names (X-Real-IP, X-Forwarded-For with and without recursion, another field).
#include "http/http_access.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>

#include "http/http_request.h"
#include "http/http_variables.h"

namespace baton::http {
namespace {

// A client at a numeric address (and port).
PeerAddr addr(const std::string& host, uint16_t port = 0) {
  PeerAddr a;
  if (inet_pton(AF_INET, host.c_str(), &a.u.in.sin_addr) == 1) {
    a.u.in.sin_family = AF_INET;
    a.u.in.sin_port = htons(port);
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, host.c_str(), &a.u.in6.sin6_addr), 1) << host;
    a.u.in6.sin6_family = AF_INET6;
    a.u.in6.sin6_port = htons(port);
  }
  return a;
}

PeerAddr unix_peer() {
  PeerAddr a;
  a.u.sa.sa_family = AF_UNIX;
  return a;
}

std::string text(const PeerAddr& a) { return a.to_string(); }

AddrRange range(const std::string& t, bool accept_all = true) {
  AddrRange r;
  bool host_bits = false;
  EXPECT_EQ(parse_addr_range(t, "allow", accept_all, &r, &host_bits), "") << t;
  return r;
}

TEST(AddrRange, Ipv4Prefixes) {
  EXPECT_TRUE(range("10.0.0.0/8").contains(addr("10.255.1.2")));
  EXPECT_FALSE(range("10.0.0.0/8").contains(addr("11.0.0.1")));
  EXPECT_TRUE(range("192.168.1.128/25").contains(addr("192.168.1.200")));
  EXPECT_FALSE(range("192.168.1.128/25").contains(addr("192.168.1.127")));
  // A prefix that ends inside a byte.
  EXPECT_TRUE(range("172.16.0.0/12").contains(addr("172.31.255.255")));
  EXPECT_FALSE(range("172.16.0.0/12").contains(addr("172.32.0.0")));
  // One address, written without a prefix or as /32.
  EXPECT_TRUE(range("127.0.0.1").contains(addr("127.0.0.1")));
  EXPECT_FALSE(range("127.0.0.1").contains(addr("127.0.0.2")));
  EXPECT_TRUE(range("127.0.0.1/32").contains(addr("127.0.0.1")));
  // /0: every IPv4 address, and no IPv6 one.
  EXPECT_TRUE(range("0.0.0.0/0").contains(addr("203.0.113.9")));
  EXPECT_FALSE(range("0.0.0.0/0").contains(addr("2001:db8::1")));
  // The port is no part of the match.
  EXPECT_TRUE(range("127.0.0.1").contains(addr("127.0.0.1", 5555)));
}

TEST(AddrRange, Ipv6Prefixes) {
  EXPECT_TRUE(range("2001:db8::/32").contains(addr("2001:db8:ffff::1")));
  EXPECT_FALSE(range("2001:db8::/32").contains(addr("2001:db9::1")));
  EXPECT_TRUE(range("::1").contains(addr("::1")));
  EXPECT_FALSE(range("::1").contains(addr("::2")));
  EXPECT_TRUE(range("fe80::/10").contains(addr("febf::1")));
  EXPECT_FALSE(range("fe80::/10").contains(addr("fec0::1")));
  EXPECT_FALSE(range("::/0").contains(addr("10.0.0.1")));
}

// A socket that takes both families sees IPv4 clients as ::ffff:a.b.c.d: they match IPv4 ranges,
// and IPv6 ranges do not match them (nginx's rule).
TEST(AddrRange, Ipv4MappedClientsAreIpv4) {
  PeerAddr mapped = addr("::ffff:10.1.2.3");
  ASSERT_EQ(mapped.family(), AF_INET6);
  EXPECT_TRUE(range("10.0.0.0/8").contains(mapped));
  EXPECT_TRUE(range("10.1.2.3").contains(mapped));
  EXPECT_FALSE(range("11.0.0.0/8").contains(mapped));
  EXPECT_FALSE(range("::/0").contains(mapped));
}

TEST(AddrRange, UnixClientsMatchOnlyUnixAndAll) {
  EXPECT_TRUE(range("unix:").contains(unix_peer()));
  EXPECT_TRUE(range("all").contains(unix_peer()));
  EXPECT_FALSE(range("0.0.0.0/0").contains(unix_peer()));
  EXPECT_FALSE(range("::/0").contains(unix_peer()));
  EXPECT_FALSE(range("unix:").contains(addr("127.0.0.1")));
  EXPECT_TRUE(range("all").contains(addr("2001:db8::1")));
}

TEST(AddrRange, HostBitsAreClearedAndReported) {
  AddrRange r;
  bool host_bits = false;
  EXPECT_EQ(parse_addr_range("10.0.0.1/8", "allow", true, &r, &host_bits), "");
  EXPECT_TRUE(host_bits);
  EXPECT_TRUE(r.contains(addr("10.200.0.1")));  // the network, not the one address
  EXPECT_EQ(parse_addr_range("2001:db8::1/32", "allow", true, &r, &host_bits), "");
  EXPECT_TRUE(host_bits);
  EXPECT_TRUE(r.contains(addr("2001:db8:1::")));
  EXPECT_EQ(parse_addr_range("10.0.0.0/8", "allow", true, &r, &host_bits), "");
  EXPECT_FALSE(host_bits);
  EXPECT_EQ(parse_addr_range("10.0.0.1", "allow", true, &r, &host_bits), "");
  EXPECT_FALSE(host_bits);
}

TEST(AddrRange, BadValuesNameTheKey) {
  AddrRange r;
  bool host_bits = false;
  EXPECT_EQ(parse_addr_range("10.0.0.256", "allow", true, &r, &host_bits),
            "invalid address \"10.0.0.256\" in \"allow\" (ADDR, ADDR/BITS, unix: or all)");
  EXPECT_EQ(parse_addr_range("10.0.0.0/33", "deny", true, &r, &host_bits),
            "invalid prefix length \"/33\" in \"deny\" (0 to 32 for an IPv4 address)");
  EXPECT_EQ(parse_addr_range("::/129", "deny", true, &r, &host_bits),
            "invalid prefix length \"/129\" in \"deny\" (0 to 128 for an IPv6 address)");
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8", "10.0.0.0/ 8", "example.com", "10.0.0",
                          "[::1]", "::1/x", "unix:/path", "10.0.0.1 10.0.0.2", "ALL"})
    EXPECT_NE(parse_addr_range(bad, "allow", true, &r, &host_bits), "") << bad;
  // `all` is for allow and deny only: set_real_ip_from says how to trust everyone instead.
  EXPECT_NE(parse_addr_range("all", "set_real_ip_from", false, &r, &host_bits).find("0.0.0.0/0"), std::string::npos);
}

TEST(AccessRules, FirstMatchWinsAndNoMatchLetsIn) {
  std::vector<AccessRule> rules = {
      {range("127.0.0.1"), false},
      {range("127.0.0.0/8"), true},
      {range("2001:db8::/32"), true},
      {range("all"), false},
  };
  EXPECT_FALSE(access_allows(rules, addr("127.0.0.1")));
  EXPECT_TRUE(access_allows(rules, addr("127.0.0.2")));
  EXPECT_TRUE(access_allows(rules, addr("::ffff:127.0.0.2")));
  EXPECT_TRUE(access_allows(rules, addr("2001:db8::5")));
  EXPECT_FALSE(access_allows(rules, addr("192.0.2.1")));
  EXPECT_FALSE(access_allows(rules, unix_peer()));
  EXPECT_TRUE(access_allows({}, addr("192.0.2.1")));
  EXPECT_TRUE(access_allows({{range("10.0.0.0/8"), false}}, addr("192.0.2.1")));
}

TEST(ForwardedAddr, FormsAProxyWrites) {
  PeerAddr a;
  EXPECT_TRUE(parse_forwarded_addr("192.0.2.1", &a));
  EXPECT_EQ(text(a), "192.0.2.1");
  EXPECT_TRUE(parse_forwarded_addr("192.0.2.1:5555", &a));
  EXPECT_EQ(text(a), "192.0.2.1:5555");
  EXPECT_TRUE(parse_forwarded_addr("2001:db8::1", &a));
  EXPECT_EQ(text(a), "2001:db8::1");
  EXPECT_TRUE(parse_forwarded_addr("[2001:db8::1]:443", &a));
  EXPECT_EQ(text(a), "[2001:db8::1]:443");
  for (const char* bad : {"", "unknown", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:", "[2001:db8::1]",
                          "[192.0.2.1]:80", "2001:db8::1]:80", "192.0.2.1 ", "\"192.0.2.1\"", "for=192.0.2.1"})
    EXPECT_FALSE(parse_forwarded_addr(bad, &a)) << bad;
}

class RealIpTest : public ::testing::Test {
 protected:
  void header(std::string_view name, std::string_view value) {
    req_.headers[req_.header_count++] = {name, value};
  }
  // The client address for a request from peer, or "-" when the peer's stays.
  std::string client(const std::string& peer = "127.0.0.1") {
    PeerAddr out;
    if (!real_ip_from_header(s_, req_, addr(peer), &out)) return "-";
    return text(out);
  }
  Request req_;
  RealIpSettings s_;
};

TEST_F(RealIpTest, XRealIpFromATrustedPeerOnly) {
  s_.from = {range("127.0.0.1")};
  header("X-Real-IP", "203.0.113.7");
  EXPECT_EQ(client(), "203.0.113.7");
  EXPECT_EQ(client("127.0.0.2"), "-");
  s_.from = {range("10.0.0.0/8")};
  EXPECT_EQ(client(), "-");
  s_.from.clear();
  EXPECT_EQ(client(), "-");
}

TEST_F(RealIpTest, MalformedOrMissingValuesAreIgnored) {
  s_.from = {range("127.0.0.0/8")};
  EXPECT_EQ(client(), "-");
  header("X-Real-IP", "not-an-address");
  EXPECT_EQ(client(), "-");
  req_.header_count = 0;
  header("X-Real-IP", "");
  EXPECT_EQ(client(), "-");
  req_.header_count = 0;
  header("X-Real-IP", "203.0.113.7:8080");
  EXPECT_EQ(client(), "203.0.113.7:8080");
  // The first line of the field is the one read.
  req_.header_count = 0;
  header("X-Real-IP", "203.0.113.1");
  header("x-real-ip", "203.0.113.2");
  EXPECT_EQ(client(), "203.0.113.1");
}

TEST_F(RealIpTest, XForwardedForTakesTheLastAddress) {
  s_.from = {range("127.0.0.1"), range("10.0.0.0/8")};
  s_.source = RealIpSource::kXForwardedFor;
  s_.header = "X-Forwarded-For";
  header("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.2");
  EXPECT_EQ(client(), "10.0.0.2");
  s_.recursive = true;
  // From the right, past every trusted address: the first untrusted one is the client.
  EXPECT_EQ(client(), "203.0.113.7");
  // A malformed address ends the walk at the address before it.
  req_.header_count = 0;
  header("X-Forwarded-For", "198.51.100.1, garbage, 10.0.0.3, 10.0.0.2");
  EXPECT_EQ(client(), "10.0.0.3");
  // Everything trusted: the leftmost address.
  req_.header_count = 0;
  header("X-Forwarded-For", "10.0.0.9,10.0.0.3 10.0.0.2");
  EXPECT_EQ(client(), "10.0.0.9");
  // Empty items between commas are skipped.
  req_.header_count = 0;
  header("X-Forwarded-For", "198.51.100.1, , 10.0.0.2,");
  EXPECT_EQ(client(), "198.51.100.1");
}

TEST_F(RealIpTest, XForwardedForLinesMakeOneList) {
  s_.from = {range("127.0.0.1"), range("10.0.0.0/8")};
  s_.source = RealIpSource::kXForwardedFor;
  s_.header = "X-Forwarded-For";
  header("X-Forwarded-For", "198.51.100.1, 203.0.113.7");
  header("Host", "a.test");
  header("x-forwarded-for", "10.0.0.5");
  EXPECT_EQ(client(), "10.0.0.5");
  s_.recursive = true;
  EXPECT_EQ(client(), "203.0.113.7");
}

TEST_F(RealIpTest, AnotherFieldAndUnixPeers) {
  s_.from = {range("unix:")};
  s_.source = RealIpSource::kHeader;
  s_.header = "CF-Connecting-IP";
  header("cf-connecting-ip", "2001:db8::7");
  PeerAddr out;
  EXPECT_TRUE(real_ip_from_header(s_, req_, unix_peer(), &out));
  EXPECT_EQ(text(out), "2001:db8::7");
  EXPECT_EQ(client("127.0.0.1"), "-");
  // The PROXY protocol is not a field: nothing to read here.
  s_.source = RealIpSource::kProxyProtocol;
  EXPECT_FALSE(real_ip_from_header(s_, req_, unix_peer(), &out));
}

// An address a proxy named without a port has none: $remote_port is empty, as in nginx.
TEST(RemotePort, EmptyForAnAddressWithoutPort) {
  Request req;
  PeerAddr peer = addr("203.0.113.7");
  VarContext ctx;
  ctx.req = &req;
  ctx.peer = &peer;
  Template t;
  ASSERT_EQ(t.compile("[$remote_addr][$remote_port]"), "");
  std::string out;
  t.evaluate(ctx, &out);
  EXPECT_EQ(out, "[203.0.113.7][]");
  peer = addr("203.0.113.7", 4242);
  out.clear();
  t.evaluate(ctx, &out);
  EXPECT_EQ(out, "[203.0.113.7][4242]");
}

}  // namespace
}  // namespace baton::http

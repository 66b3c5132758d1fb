// PROXY protocol on a `listen = ... proxy_protocol` listener: v1 (TCP4, TCP6, UNKNOWN) and v2 (PROXY
// over IPv4/IPv6, LOCAL, with TLVs) headers give the client address of the access log; a missing,
// malformed or over-long header closes the connection without a byte; the option survives an upgrade.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr const char* kFile = "behind a proxy\n";

// PORT: with proxy_protocol; PORT2: plain.
constexpr const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@ proxy_protocol\n"
    "listen = 127.0.0.1:@PORT2@\n"
    "root = html\n";

std::string config() { return make_runtime_config(kServer, "", 1); }

std::string request(std::string_view agent, bool close = true) {
  return req("GET", "/a.txt", "User-Agent: " + std::string(agent) + "\r\n" + (close ? "Connection: close\r\n" : ""));
}

// The access log line of the request with User-Agent `agent` ("" if none appears within 2 s).
std::string log_line(BatonServer& s, std::string_view agent) {
  std::string needle = "\"" + std::string(agent) + "\"";
  std::string found;
  wait_for(
      [&] {
        std::string log = s.access_log();
        size_t pos = log.find(needle);
        if (pos == std::string::npos) return false;
        size_t start = log.rfind('\n', pos);
        start = start == std::string::npos ? 0 : start + 1;
        found = log.substr(start, log.find('\n', pos) - start);
        return true;
      },
      2000ms);
  return found;
}

::testing::AssertionResult logged_from(BatonServer& s, std::string_view agent, std::string_view address) {
  std::string line = log_line(s, agent);
  if (line.empty()) return ::testing::AssertionFailure() << "no access log line for " << agent << ":\n" << s.access_log();
  std::string prefix = std::string(address) + " - - [";
  if (line.rfind(prefix, 0) != 0)
    return ::testing::AssertionFailure() << "the access log line does not start with \"" << prefix << "\": " << line;
  return ::testing::AssertionSuccess();
}

// One request after `header` on a new connection to the proxy_protocol listener.
Response through_proxy(int port, std::string_view header, std::string_view agent) {
  Client c(port);
  if (!c.connected()) return Response{};
  return c.exchange(std::string(header) + request(agent));
}

// The connection is closed without a single byte of response after `data` is sent.
::testing::AssertionResult rejected(int port, std::string_view data) {
  Client c(port, {.timeout = 3000ms});
  if (!c.connected()) return ::testing::AssertionFailure() << "cannot connect";
  c.send(data);  // the server may close before everything is sent
  if (!c.is_closed_by_peer(3000ms)) return ::testing::AssertionFailure() << "the connection stays open";
  if (c.buffered() != 0)
    return ::testing::AssertionFailure() << "the server sent " << c.buffered() << " bytes: " << c.buffer().substr(0, 200);
  return ::testing::AssertionSuccess();
}

constexpr char kV2Signature[] = "\r\n\r\n\0\r\nQUIT\n";  // 12 bytes

std::string be16(uint16_t v) { return std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }

std::string v2_header(uint8_t ver_cmd, uint8_t family, const std::string& body) {
  std::string h(kV2Signature, 12);
  h.push_back(static_cast<char>(ver_cmd));
  h.push_back(static_cast<char>(family));
  h += be16(static_cast<uint16_t>(body.size()));
  h += body;
  return h;
}

std::string ipv4_bytes(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return std::string(reinterpret_cast<const char*>(&a), 4);
}

std::string ipv6_bytes(const char* text) {
  in6_addr a{};
  inet_pton(AF_INET6, text, &a);
  return std::string(reinterpret_cast<const char*>(&a), 16);
}

// v2 PROXY command, TCP over IPv4.
std::string v2_tcp4(const char* src, const char* dst, uint16_t sport, uint16_t dport, const std::string& tlvs = "") {
  return v2_header(0x21, 0x11, ipv4_bytes(src) + ipv4_bytes(dst) + be16(sport) + be16(dport) + tlvs);
}

}  // namespace

TEST(ProxyProtocol, V1Tcp4GivesTheClientAddress) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  Response r = through_proxy(s.port(), "PROXY TCP4 192.0.2.10 127.0.0.1 56324 80\r\n", "pp-v1-tcp4");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kFile);
  EXPECT_TRUE(logged_from(s, "pp-v1-tcp4", "192.0.2.10"));
  // The plain listener of the same server is not affected.
  Client plain(s.port(1));
  Response p = plain.exchange(request("pp-plain"));
  EXPECT_EQ(p.status, 200);
  EXPECT_TRUE(logged_from(s, "pp-plain", "127.0.0.1"));
}

TEST(ProxyProtocol, V1Tcp6GivesTheClientAddress) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  Response r = through_proxy(s.port(), "PROXY TCP6 2001:db8::7 ::1 56324 443\r\n", "pp-v1-tcp6");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kFile);
  EXPECT_TRUE(logged_from(s, "pp-v1-tcp6", "2001:db8::7"));
}

TEST(ProxyProtocol, V1UnknownKeepsTheRealAddress) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  Response r = through_proxy(s.port(), "PROXY UNKNOWN\r\n", "pp-v1-unknown");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(logged_from(s, "pp-v1-unknown", "127.0.0.1"));
}

TEST(ProxyProtocol, V2ProxyIpv4AndIpv6) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  Response r = through_proxy(s.port(), v2_tcp4("198.51.100.7", "127.0.0.1", 40000, 80), "pp-v2-tcp4");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kFile);
  EXPECT_TRUE(logged_from(s, "pp-v2-tcp4", "198.51.100.7"));

  std::string v6 = v2_header(0x21, 0x21, ipv6_bytes("2001:db8::42") + ipv6_bytes("::1") + be16(40001) + be16(443));
  r = through_proxy(s.port(), v6, "pp-v2-tcp6");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(logged_from(s, "pp-v2-tcp6", "2001:db8::42"));
}

TEST(ProxyProtocol, V2WithTlvsIsAccepted) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  // PP2_TYPE_AUTHORITY ("example.com") and PP2_TYPE_NOOP (3 bytes) after the addresses.
  std::string tlvs = std::string("\x02", 1) + be16(11) + "example.com" + std::string("\x04", 1) + be16(3) +
                     std::string(3, '\0');
  Response r = through_proxy(s.port(), v2_tcp4("203.0.113.9", "127.0.0.1", 40002, 80, tlvs), "pp-v2-tlv");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kFile);
  EXPECT_TRUE(logged_from(s, "pp-v2-tlv", "203.0.113.9"));
}

TEST(ProxyProtocol, V2LocalKeepsTheRealAddress) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  Response r = through_proxy(s.port(), v2_header(0x20, 0x00, ""), "pp-v2-local");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(logged_from(s, "pp-v2-local", "127.0.0.1"));
}

TEST(ProxyProtocol, HeaderAppliesToEveryRequestOfTheConnection) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  Client c(s.port());
  ASSERT_TRUE(c.send("PROXY TCP4 192.0.2.44 127.0.0.1 1234 80\r\n"));
  Response first = c.exchange(request("pp-ka-1", false));
  EXPECT_EQ(first.status, 200);
  Response second = c.exchange(request("pp-ka-2", false));
  EXPECT_EQ(second.status, 200);
  EXPECT_TRUE(logged_from(s, "pp-ka-1", "192.0.2.44"));
  EXPECT_TRUE(logged_from(s, "pp-ka-2", "192.0.2.44"));
}

TEST(ProxyProtocol, HeaderSplitAcrossWrites) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  {
    Client c(s.port());
    ASSERT_TRUE(c.send("PROXY TCP4 192.0.2."));
    std::this_thread::sleep_for(100ms);
    ASSERT_TRUE(c.send("77 127.0.0.1 5555 80\r"));
    std::this_thread::sleep_for(100ms);
    ASSERT_TRUE(c.send("\n"));
    std::this_thread::sleep_for(100ms);
    Response r = c.exchange(request("pp-split-v1"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, kFile);
    EXPECT_TRUE(logged_from(s, "pp-split-v1", "192.0.2.77"));
  }
  {
    // v2: part of the signature, then the rest with the request in the same write.
    std::string h = v2_tcp4("198.51.100.88", "127.0.0.1", 6000, 80);
    Client c(s.port());
    ASSERT_TRUE(c.send(h.substr(0, 7)));
    std::this_thread::sleep_for(100ms);
    ASSERT_TRUE(c.send(h.substr(7, 10)));
    std::this_thread::sleep_for(100ms);
    Response r = c.exchange(h.substr(17) + request("pp-split-v2"));
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(logged_from(s, "pp-split-v2", "198.51.100.88"));
  }
}

TEST(ProxyProtocol, MalformedHeadersCloseWithoutAResponse) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  const std::string get = request("pp-bad");
  const std::vector<std::string> bad = {
      "PROXY TCP4 192.0.2.10 127.0.0.1 56324\r\n",              // a port missing
      "PROXY TCP4 192.0.2.10 127.0.0.1 56324 80 9\r\n",         // a field too many
      "PROXY TCP4 300.0.2.10 127.0.0.1 56324 80\r\n",           // not an address
      "PROXY TCP4 2001:db8::1 ::1 56324 80\r\n",                // IPv6 under TCP4
      "PROXY TCP4 192.0.2.10 127.0.0.1 65536 80\r\n",           // port out of range
      "PROXY TCP9 192.0.2.10 127.0.0.1 56324 80\r\n",           // unknown protocol
      "PROXY\r\n",                                              // nothing
      "PROXY TCP4 192.0.2.10 127.0.0.1 56324 80 " + std::string(100, '1') + "\r\n",  // longer than 107
      v2_header(0x31, 0x11, std::string(12, '\1')),             // v2 signature, version 3
      v2_header(0x21, 0x11, std::string(4, '\1')),             // TCP over IPv4 with 4 bytes of addresses
      v2_header(0x2f, 0x11, std::string(12, '\1')),             // unknown command
  };
  for (size_t i = 0; i < bad.size(); i++) {
    SCOPED_TRACE("malformed header #" + std::to_string(i + 1));
    EXPECT_TRUE(rejected(s.port(), bad[i] + get));
  }
  // Over-long without any line end at all.
  EXPECT_TRUE(rejected(s.port(), "PROXY TCP4 " + std::string(300, '9')));
  // The server still works.
  EXPECT_EQ(through_proxy(s.port(), "PROXY TCP4 192.0.2.10 127.0.0.1 56324 80\r\n", "pp-after").status, 200);
  EXPECT_EQ(log_line(s, "pp-bad"), "") << "a rejected connection reached the access log";
}

TEST(ProxyProtocol, PlainRequestOnProxyListenerIsClosedWithoutAResponse) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  EXPECT_TRUE(rejected(s.port(), request("pp-plain-on-proxy")));
  EXPECT_TRUE(rejected(s.port(), "HEAD / HTTP/1.0\r\n\r\n"));
  EXPECT_EQ(get(s.port(1), "/a.txt").status, 200);
}

TEST(ProxyProtocol, CarriedAcrossAnUpgrade) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(config());
  ASSERT_TRUE(s.start());
  pid_t old = s.master_pid();
  EXPECT_EQ(through_proxy(s.port(), "PROXY TCP4 192.0.2.1 127.0.0.1 1 80\r\n", "pp-before").status, 200);

  RunResult r = s.ctl("upgrade");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(s.current_master(), old);
  ASSERT_TRUE(s.wait_old_generations_gone(5000ms)) << s.census().describe();
  // Only the new generation is left: the listener still wants the header.
  EXPECT_TRUE(rejected(s.port(), request("pp-plain-after-upgrade")));
  Response after = through_proxy(s.port(), "PROXY TCP4 192.0.2.2 127.0.0.1 2 80\r\n", "pp-after-upgrade");
  EXPECT_EQ(after.status, 200);
  EXPECT_TRUE(logged_from(s, "pp-after-upgrade", "192.0.2.2"));
  EXPECT_EQ(get(s.port(1), "/a.txt").status, 200);
}

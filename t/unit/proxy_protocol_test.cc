// Unit tests of src/event/proxy_protocol.h: PROXY protocol v1 lines and v2 binary headers, complete,
// in pieces, followed by HTTP bytes, and malformed.
#include "event/proxy_protocol.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace baton {
namespace {

constexpr std::string_view kHttp = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

ProxyResult parse(std::string_view s, ProxyHeader* h = nullptr) {
  ProxyHeader ignored;
  return parse_proxy_header(s.data(), s.size(), h ? h : &ignored);
}

uint16_t port_of(const SockAddr& a) {
  if (a.family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port);
}

// Parses header + HTTP bytes; expects kDone with `length` covering exactly the header.
ProxyHeader parsed(std::string_view header) {
  std::string input = std::string(header) + std::string(kHttp);
  ProxyHeader h;
  EXPECT_EQ(parse(input, &h), ProxyResult::kDone) << header;
  EXPECT_EQ(h.length, header.size());
  EXPECT_EQ(input.substr(h.length), kHttp);
  // Without anything after it too.
  ProxyHeader alone;
  EXPECT_EQ(parse(header, &alone), ProxyResult::kDone) << header;
  EXPECT_EQ(alone.length, header.size());
  return h;
}

// Every strict prefix of a valid header is kNeedMore, and leaves *out untouched.
void expect_prefixes_need_more(std::string_view header) {
  for (size_t i = 0; i < header.size(); i++) {
    ProxyHeader h;
    h.length = 12345;
    EXPECT_EQ(parse(header.substr(0, i), &h), ProxyResult::kNeedMore) << "prefix of " << i << " bytes";
    EXPECT_EQ(h.length, 12345u);
  }
}

// ---------------------------------------------------------------------------------------------
// Version 1

TEST(ProxyV1, Tcp4) {
  ProxyHeader h = parsed("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source.family(), AF_INET);
  EXPECT_EQ(h.source.len, sizeof(sockaddr_in));
  EXPECT_EQ(h.source.to_string(), "192.168.0.1:56324");
  EXPECT_EQ(h.destination.to_string(), "192.168.0.11:443");
  EXPECT_EQ(h.source.host(), "192.168.0.1");
}

TEST(ProxyV1, Tcp4Extremes) {
  ProxyHeader h = parsed("PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n");
  EXPECT_EQ(h.source.to_string(), "255.255.255.255:65535");
  EXPECT_EQ(h.destination.to_string(), "0.0.0.0:0");
}

TEST(ProxyV1, Tcp6) {
  ProxyHeader h = parsed("PROXY TCP6 2001:db8::1 ::1 1234 8080\r\n");
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source.family(), AF_INET6);
  EXPECT_EQ(h.source.len, sizeof(sockaddr_in6));
  EXPECT_EQ(h.source.to_string(), "[2001:db8::1]:1234");
  EXPECT_EQ(h.destination.to_string(), "[::1]:8080");
}

TEST(ProxyV1, Tcp6Forms) {
  EXPECT_EQ(parsed("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff :: 65535 65535\r\n").source.host(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
  EXPECT_EQ(parsed("PROXY TCP6 ::ffff:192.0.2.1 1:2:3:4:5:6:7:: 1 2\r\n").source.host(), "::ffff:192.0.2.1");
  EXPECT_EQ(parsed("PROXY TCP6 1:2:3:4:5:6:1.2.3.4 ::1.2.3.4 1 2\r\n").destination.host(), "::1.2.3.4");
  EXPECT_EQ(parsed("PROXY TCP6 FE80::A 1::2 1 2\r\n").source.host(), "fe80::a");
}

TEST(ProxyV1, Unknown) {
  ProxyHeader h = parsed("PROXY UNKNOWN\r\n");
  EXPECT_TRUE(h.local);
  h = parsed("PROXY UNKNOWN ffff:f...f:ffff whatever 65535 x\r\n");
  EXPECT_TRUE(h.local);
  // The longest line the specification describes: 107 bytes.
  std::string longest = "PROXY UNKNOWN " + std::string(91, 'f') + "\r\n";
  ASSERT_EQ(longest.size(), kProxyV1MaxLength);
  EXPECT_TRUE(parsed(longest).local);
}

TEST(ProxyV1, EveryPrefixNeedsMore) {
  for (std::string_view header : {
           "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
           "PROXY TCP4 0.0.0.0 10.0.0.0 0 65535\r\n",
           "PROXY TCP6 2001:db8::1 ::1 1234 8080\r\n",
           "PROXY TCP6 ::ffff:192.0.2.1 1:2:3:4:5:6:7:: 1 2\r\n",
           "PROXY TCP6 1:2:3:4:5:6:1.2.3.4 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 1 2\r\n",
           "PROXY UNKNOWN\r\n",
           "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
       }) {
    SCOPED_TRACE(header);
    expect_prefixes_need_more(header);
  }
}

TEST(ProxyV1, Malformed) {
  for (std::string_view bad : {
           "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",          // lowercase
           "Proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
           "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",         // double spaces
           "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
           "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",         // trailing space
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",            // bare LF
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",           // CR without LF
           "PROXY UNKNOWN\n",
           "PROXY UNKNOWN\rX",
           "PROXY UNKNOWN x\ny\r\n",
           "PROXY UNKNOWN x\ry\r\n",
           "PROXY UNKNOWNX\r\n",
           "PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
           "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
           "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
           "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
           "PROXY TCP4\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",            // missing port
           "PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
           "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",        // bad IPs
           "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
           "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
           "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
           "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n",
           "PROXY TCP4 localhost 5.6.7.8 1 2\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",      // bad ports
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n",
           "PROXY TCP4 ::1 ::1 1 2\r\n",                  // wrong family for the protocol
           "PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
           "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
           "PROXY TCP6 ::1 1.2.3.4 1 2\r\n",
           "PROXY TCP6 1::2::3 ::1 1 2\r\n",              // bad IPv6
           "PROXY TCP6 :1 ::1 1 2\r\n",
           "PROXY TCP6 12345::1 ::1 1 2\r\n",
           "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
           "PROXY TCP6 1:2:3:4::5:6:7:8 ::1 1 2\r\n",
           "PROXY TCP6 ::g ::1 1 2\r\n",
           "PROXY TCP6 ::1.2.3 ::1 1 2\r\n",
           "PROXY TCP6 ::1% ::1 1 2\r\n",
           "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
           "GET / HTTP/1.1\r\n",                          // garbage
           "\x16\x03\x01\x02\x00",
           "POST / HTTP/1.1\r\n",
           "PRXY",
           "X",
       }) {
    EXPECT_EQ(parse(bad), ProxyResult::kError) << bad;
  }
}

TEST(ProxyV1, ErrorAsSoonAsThePrefixIsImpossible) {
  EXPECT_EQ(parse("G"), ProxyResult::kError);
  EXPECT_EQ(parse("GET "), ProxyResult::kError);
  EXPECT_EQ(parse("PRO"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXY"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXX"), ProxyResult::kError);
  EXPECT_EQ(parse("PROXY TCP"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXY TCP7"), ProxyResult::kError);
  EXPECT_EQ(parse("PROXY UNK"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.45"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.456"), ProxyResult::kError);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4.5"), ProxyResult::kError);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3 "), ProxyResult::kError);  // complete field, not an address
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4 5.6.7.8 6553"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4 5.6.7.8 65536"), ProxyResult::kError);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4 5.6.7.8 0"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4 5.6.7.8 01"), ProxyResult::kError);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXY TCP6 ::1:"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXY TCP6 ::1::"), ProxyResult::kError);
  EXPECT_EQ(parse("PROXY TCP6 :::"), ProxyResult::kError);
  EXPECT_EQ(parse("PROXY TCP6 ::ffff:1.2."), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXY TCP6 ::ffff:1.2.3.4."), ProxyResult::kError);
  EXPECT_EQ(parse("PROXY TCP6 1:2:3:4:5:1.2"), ProxyResult::kError);  // too few groups before it
  EXPECT_EQ(parse("PROXY UNKNOWN "), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("PROXY UNKNOWN x\r"), ProxyResult::kNeedMore);
}

TEST(ProxyV1, LineLimit) {
  // No CRLF within the first 107 bytes: an error once that many have arrived, not before.
  std::string line = "PROXY UNKNOWN " + std::string(200, 'x');
  EXPECT_EQ(parse(std::string_view(line).substr(0, kProxyV1MaxLength - 1)), ProxyResult::kNeedMore);
  EXPECT_EQ(parse(std::string_view(line).substr(0, kProxyV1MaxLength)), ProxyResult::kError);
  EXPECT_EQ(parse(line), ProxyResult::kError);
  // A CRLF just past the limit is too late.
  std::string over = "PROXY UNKNOWN " + std::string(92, 'f') + "\r\n";
  ASSERT_EQ(over.size(), kProxyV1MaxLength + 1);
  EXPECT_EQ(parse(over), ProxyResult::kError);
  // A CR as the 107th byte with the LF beyond it: too long as well.
  std::string cr_last = "PROXY UNKNOWN " + std::string(92, 'f') + "\r";
  EXPECT_EQ(parse(cr_last), ProxyResult::kError);
  // A syntactically valid TCP6 line longer than 107 bytes (dotted-quad tails) is refused.
  std::string long6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
                      "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n";
  ASSERT_GT(long6.size(), kProxyV1MaxLength);
  EXPECT_EQ(parse(long6), ProxyResult::kError);
}

// ---------------------------------------------------------------------------------------------
// Version 2

const std::string kSignature("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);

std::string v2(uint8_t ver_cmd, uint8_t fam, const std::vector<uint8_t>& block, size_t declared_len) {
  std::string s = kSignature;
  s += static_cast<char>(ver_cmd);
  s += static_cast<char>(fam);
  s += static_cast<char>(declared_len >> 8);
  s += static_cast<char>(declared_len & 0xFF);
  s.append(block.begin(), block.end());
  return s;
}

std::string v2(uint8_t ver_cmd, uint8_t fam, const std::vector<uint8_t>& block) {
  return v2(ver_cmd, fam, block, block.size());
}

const std::vector<uint8_t> kIpv4Block = {192, 0, 2, 1,  // source
                                         198, 51, 100, 7,  // destination
                                         0xDC, 0x04,       // 56324
                                         0x01, 0xBB};      // 443

std::vector<uint8_t> ipv6_block() {
  std::vector<uint8_t> b(36, 0);
  const uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
  const uint8_t dst[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
  std::copy(src, src + 16, b.begin());
  std::copy(dst, dst + 16, b.begin() + 16);
  b[32] = 0x04;  // 1234
  b[33] = 0xD2;
  b[34] = 0x1F;  // 8080
  b[35] = 0x90;
  return b;
}

std::vector<uint8_t> with_tlvs(std::vector<uint8_t> block) {
  // PP2_TYPE_AUTHORITY "example.com", then a PP2_TYPE_NOOP of 3 bytes.
  const std::string authority = "example.com";
  block.push_back(0x02);
  block.push_back(0x00);
  block.push_back(static_cast<uint8_t>(authority.size()));
  block.insert(block.end(), authority.begin(), authority.end());
  block.insert(block.end(), {0x04, 0x00, 0x03, 0, 0, 0});
  return block;
}

TEST(ProxyV2, ProxyIpv4) {
  std::string header = v2(0x21, 0x11, kIpv4Block);
  ASSERT_EQ(header.size(), 28u);
  ProxyHeader h = parsed(header);
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source.family(), AF_INET);
  EXPECT_EQ(h.source.len, sizeof(sockaddr_in));
  EXPECT_EQ(h.source.to_string(), "192.0.2.1:56324");
  EXPECT_EQ(h.destination.to_string(), "198.51.100.7:443");
  EXPECT_EQ(port_of(h.source), 56324);
}

TEST(ProxyV2, ProxyIpv6) {
  std::string header = v2(0x21, 0x21, ipv6_block());
  ASSERT_EQ(header.size(), 52u);
  ProxyHeader h = parsed(header);
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source.family(), AF_INET6);
  EXPECT_EQ(h.source.len, sizeof(sockaddr_in6));
  EXPECT_EQ(h.source.to_string(), "[2001:db8::1]:1234");
  EXPECT_EQ(h.destination.to_string(), "[::1]:8080");
}

TEST(ProxyV2, TlvsAreSkipped) {
  std::string header4 = v2(0x21, 0x11, with_tlvs(kIpv4Block));
  ProxyHeader h = parsed(header4);
  EXPECT_EQ(h.length, 16 + 12 + 14 + 6u);
  EXPECT_EQ(h.source.to_string(), "192.0.2.1:56324");
  EXPECT_EQ(h.destination.to_string(), "198.51.100.7:443");

  std::string header6 = v2(0x21, 0x21, with_tlvs(ipv6_block()));
  h = parsed(header6);
  EXPECT_EQ(h.length, 16 + 36 + 14 + 6u);
  EXPECT_EQ(h.source.to_string(), "[2001:db8::1]:1234");

  // TLVs up to the guard are fine.
  std::vector<uint8_t> big = kIpv4Block;
  big.resize(kProxyV2MaxLength - 16, 0);
  h = parsed(v2(0x21, 0x11, big));
  EXPECT_EQ(h.length, kProxyV2MaxLength);
}

TEST(ProxyV2, Local) {
  ProxyHeader h = parsed(v2(0x20, 0x00, {}));
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.length, 16u);
  // LOCAL discards whatever address block comes with it.
  h = parsed(v2(0x20, 0x11, kIpv4Block));
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.length, 28u);
  h = parsed(v2(0x20, 0x11, {}));
  EXPECT_TRUE(h.local);
  h = parsed(v2(0x20, 0x31, std::vector<uint8_t>(216, 0)));
  EXPECT_TRUE(h.local);
}

TEST(ProxyV2, ProxyUnspecIsLocal) {
  ProxyHeader h = parsed(v2(0x21, 0x00, {}));
  EXPECT_TRUE(h.local);
  h = parsed(v2(0x21, 0x00, {1, 2, 3}));
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.length, 19u);
}

TEST(ProxyV2, EveryPrefixNeedsMore) {
  for (const std::string& header : {v2(0x21, 0x11, kIpv4Block), v2(0x21, 0x21, ipv6_block()),
                                    v2(0x21, 0x11, with_tlvs(kIpv4Block)), v2(0x20, 0x00, {})}) {
    SCOPED_TRACE(header.size());
    expect_prefixes_need_more(header);
  }
}

TEST(ProxyV2, BadVersion) {
  EXPECT_EQ(parse(v2(0x11, 0x11, kIpv4Block)), ProxyResult::kError);
  EXPECT_EQ(parse(v2(0x31, 0x11, kIpv4Block)), ProxyResult::kError);
  EXPECT_EQ(parse(v2(0x01, 0x11, kIpv4Block)), ProxyResult::kError);
  // Decided from the version byte alone.
  EXPECT_EQ(parse(kSignature + "\x31"), ProxyResult::kError);
}

TEST(ProxyV2, BadCommand) {
  EXPECT_EQ(parse(v2(0x22, 0x11, kIpv4Block)), ProxyResult::kError);
  EXPECT_EQ(parse(v2(0x2F, 0x11, kIpv4Block)), ProxyResult::kError);
  EXPECT_EQ(parse(kSignature + "\x22"), ProxyResult::kError);
}

TEST(ProxyV2, BadFamily) {
  EXPECT_EQ(parse(v2(0x21, 0x12, kIpv4Block)), ProxyResult::kError);                     // UDP
  EXPECT_EQ(parse(v2(0x21, 0x22, ipv6_block())), ProxyResult::kError);                   // UDP
  EXPECT_EQ(parse(v2(0x21, 0x31, std::vector<uint8_t>(216, 0))), ProxyResult::kError);  // AF_UNIX
  EXPECT_EQ(parse(v2(0x21, 0x10, kIpv4Block)), ProxyResult::kError);                     // no transport
  EXPECT_EQ(parse(v2(0x21, 0x01, {})), ProxyResult::kError);
  EXPECT_EQ(parse(v2(0x21, 0x41, kIpv4Block)), ProxyResult::kError);  // undefined family
  EXPECT_EQ(parse(v2(0x21, 0x13, kIpv4Block)), ProxyResult::kError);  // undefined transport
  EXPECT_EQ(parse(v2(0x20, 0x41, {})), ProxyResult::kError);          // even for LOCAL
  EXPECT_EQ(parse(kSignature + "\x21\x12"), ProxyResult::kError);     // decided before the length
}

TEST(ProxyV2, AddressBlockTooShort) {
  std::vector<uint8_t> short4(kIpv4Block.begin(), kIpv4Block.end() - 1);
  EXPECT_EQ(parse(v2(0x21, 0x11, short4)), ProxyResult::kError);
  EXPECT_EQ(parse(v2(0x21, 0x11, {})), ProxyResult::kError);
  EXPECT_EQ(parse(v2(0x21, 0x21, kIpv4Block)), ProxyResult::kError);
  // Known as soon as the length has arrived.
  EXPECT_EQ(parse(v2(0x21, 0x21, {}, 12)), ProxyResult::kError);
}

TEST(ProxyV2, LengthGuard) {
  std::vector<uint8_t> over = kIpv4Block;
  over.resize(kProxyV2MaxLength - 16 + 1, 0);
  EXPECT_EQ(parse(v2(0x21, 0x11, over)), ProxyResult::kError);
  // Refused from the 16 fixed bytes alone, without waiting for the rest.
  EXPECT_EQ(parse(v2(0x21, 0x11, {}, 0xFFFF)), ProxyResult::kError);
  EXPECT_EQ(parse(v2(0x20, 0x00, {}, kProxyV2MaxLength - 16 + 1)), ProxyResult::kError);
  // Just under it: waits for the bytes.
  EXPECT_EQ(parse(v2(0x21, 0x11, kIpv4Block, kProxyV2MaxLength - 16)), ProxyResult::kNeedMore);
}

TEST(ProxyV2, PartialInputs) {
  EXPECT_EQ(parse("\r"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse("\r\n\r\n"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse(std::string_view("\r\n\r\n\0", 5)), ProxyResult::kNeedMore);
  EXPECT_EQ(parse(kSignature.substr(0, 11)), ProxyResult::kNeedMore);
  EXPECT_EQ(parse(kSignature), ProxyResult::kNeedMore);
  EXPECT_EQ(parse(kSignature + "\x21"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse(kSignature + "\x21\x11"), ProxyResult::kNeedMore);
  EXPECT_EQ(parse(kSignature + "\x21\x11" + std::string(1, '\0')), ProxyResult::kNeedMore);
  // Declared 12 bytes of addresses, 11 arrived.
  std::string header = v2(0x21, 0x11, kIpv4Block);
  EXPECT_EQ(parse(std::string_view(header).substr(0, header.size() - 1)), ProxyResult::kNeedMore);
}

TEST(ProxyV2, BadSignature) {
  EXPECT_EQ(parse("\r\r"), ProxyResult::kError);
  EXPECT_EQ(parse("\r\n\r\nX"), ProxyResult::kError);
  std::string header = v2(0x21, 0x11, kIpv4Block);
  for (size_t i = 0; i < 12; i++) {
    std::string bad = header;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    EXPECT_EQ(parse(bad), ProxyResult::kError) << "byte " << i;
  }
  // An HTTP request that starts with a blank line is not a PROXY header.
  EXPECT_EQ(parse("\r\nGET / HTTP/1.1\r\n"), ProxyResult::kError);
}

TEST(ProxyParse, OutputUntouchedOnError) {
  ProxyHeader h;
  h.length = 7;
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", &h), ProxyResult::kError);
  EXPECT_EQ(parse(v2(0x21, 0x11, {}), &h), ProxyResult::kError);
  EXPECT_EQ(h.length, 7u);
  EXPECT_EQ(parse("", &h), ProxyResult::kNeedMore);
  EXPECT_EQ(h.length, 7u);
}

}  // namespace
}  // namespace baton

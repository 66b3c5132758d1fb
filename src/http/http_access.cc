#include "http/http_access.h"

#include <arpa/inet.h>
#include <string.h>

#include <algorithm>

#include "core/log.h"
#include "core/strings.h"
#include "http/http_config.h"
#include "http/http_request.h"

namespace baton::http {

namespace {

// The four bytes of an IPv4 client, or of an IPv4-mapped IPv6 one; null for any other.
const uint8_t* ipv4_bytes(const PeerAddr& a) {
  if (a.family() == AF_INET) return reinterpret_cast<const uint8_t*>(&a.u.in.sin_addr);
  if (a.family() == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a.u.in6.sin6_addr)) return a.u.in6.sin6_addr.s6_addr + 12;
  return nullptr;
}

// The first `bits` bits of a equal those of net (whose other bits are clear).
bool same_prefix(const uint8_t* a, const uint8_t* net, unsigned bits) {
  unsigned whole = bits / 8;
  if (memcmp(a, net, whole) != 0) return false;
  unsigned rest = bits % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == net[whole];
}

}  // namespace

bool AddrRange::contains(const PeerAddr& a) const {
  switch (kind) {
    case Kind::kAll:
      return true;
    case Kind::kUnix:
      return a.family() == AF_UNIX;
    case Kind::kIpv4: {
      const uint8_t* b = ipv4_bytes(a);
      return b && same_prefix(b, addr, bits);
    }
    case Kind::kIpv6:
      return a.family() == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&a.u.in6.sin6_addr) &&
             same_prefix(a.u.in6.sin6_addr.s6_addr, addr, bits);
  }
  return false;
}

std::string parse_addr_range(std::string_view text, std::string_view key, bool accept_all, AddrRange* out,
                             bool* host_bits) {
  *host_bits = false;
  AddrRange r;
  if (accept_all && text == "all") {
    r.kind = AddrRange::Kind::kAll;
    *out = r;
    return "";
  }
  if (text == "unix:") {
    r.kind = AddrRange::Kind::kUnix;
    *out = r;
    return "";
  }
  size_t slash = text.find('/');
  std::string_view host = text.substr(0, slash);
  char buf[INET6_ADDRSTRLEN];
  unsigned max_bits;
  bool numeric = !host.empty() && host.size() < sizeof(buf);
  if (numeric) {
    memcpy(buf, host.data(), host.size());
    buf[host.size()] = '\0';
  }
  if (numeric && inet_pton(AF_INET, buf, r.addr) == 1) {
    r.kind = AddrRange::Kind::kIpv4;
    max_bits = 32;
  } else if (numeric && inet_pton(AF_INET6, buf, r.addr) == 1) {
    r.kind = AddrRange::Kind::kIpv6;
    max_bits = 128;
  } else {
    return "invalid address \"" + std::string(text) + "\" in \"" + std::string(key) + "\" (ADDR, ADDR/BITS" +
           (accept_all ? ", unix: or all)" : " or unix:; 0.0.0.0/0 and ::/0 trust every address)");
  }
  uint64_t bits = max_bits;
  if (slash != std::string_view::npos && (!parse_uint(text.substr(slash + 1), &bits) || bits > max_bits))
    return "invalid prefix length \"/" + std::string(text.substr(slash + 1)) + "\" in \"" + std::string(key) +
           "\" (0 to " + std::to_string(max_bits) + " for an " + (max_bits == 32 ? "IPv4" : "IPv6") + " address)";
  r.bits = static_cast<uint8_t>(bits);
  for (unsigned i = 0; i < max_bits / 8; i++) {
    unsigned keep = bits > i * 8 ? std::min<unsigned>(8, static_cast<unsigned>(bits) - i * 8) : 0;
    auto mask = static_cast<uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
    if (r.addr[i] & ~mask) *host_bits = true;
    r.addr[i] &= mask;
  }
  *out = r;
  return "";
}

bool access_allows(const std::vector<AccessRule>& rules, const PeerAddr& client) {
  for (const AccessRule& rule : rules)
    if (rule.range.contains(client)) return rule.allow;
  return true;
}

void log_forbidden(const Request& req, const Server& srv) {
  // $server_name, or the section's name for a server without one.
  std::string_view server = srv.primary_name.empty() ? srv.name : srv.primary_name;
  char addr[INET6_ADDRSTRLEN + 8];
  size_t n = req.client.host_into(addr, sizeof(addr));
  std::string_view host = trim(req.host);
  log_error("access forbidden by rule, client: %.*s, server: %.*s, request: \"%.*s %.*s HTTP/%d.%d\"%s%.*s%s",
            static_cast<int>(n), addr, static_cast<int>(server.size()), server.data(),
            static_cast<int>(req.method.size()), req.method.data(), static_cast<int>(req.target.size()),
            req.target.data(), req.version_major, req.version_minor, host.empty() ? "" : ", host: \"",
            static_cast<int>(host.size()), host.data(), host.empty() ? "" : "\"");
}

}  // namespace baton::http

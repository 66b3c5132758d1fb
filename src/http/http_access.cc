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

// A numeric IPv4 or IPv6 address, nothing around it; the port is 0.
bool parse_ip(std::string_view text, PeerAddr* out) {
  char buf[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof(buf)) return false;
  memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  PeerAddr a;
  if (inet_pton(AF_INET, buf, &a.u.in.sin_addr) == 1) {
    a.u.in.sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, buf, &a.u.in6.sin6_addr) == 1) {
    a.u.in6.sin6_family = AF_INET6;
  } else {
    return false;
  }
  *out = a;
  return true;
}

bool is_separator(char c) { return c == ',' || c == ' ' || c == '\t'; }

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

AccessVerdict access_verdict(const std::vector<AccessRule>& rules, const PeerAddr& client) {
  for (const AccessRule& rule : rules)
    if (rule.range.contains(client)) return rule.allow ? AccessVerdict::kAllow : AccessVerdict::kDeny;
  return AccessVerdict::kNoMatch;
}

bool access_allows(const std::vector<AccessRule>& rules, const PeerAddr& client) {
  return access_verdict(rules, client) != AccessVerdict::kDeny;
}

bool RealIpSettings::trusts(const PeerAddr& a) const {
  for (const AddrRange& r : from)
    if (r.contains(a)) return true;
  return false;
}

bool parse_forwarded_addr(std::string_view text, PeerAddr* out) {
  if (parse_ip(text, out)) return true;
  PeerAddr a;
  std::string_view port;
  if (text.starts_with('[')) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return false;
    if (!parse_ip(text.substr(1, close - 1), &a) || a.family() != AF_INET6) return false;
    port = text.substr(close + 2);
  } else {
    size_t colon = text.find(':');
    if (colon == std::string_view::npos) return false;
    if (!parse_ip(text.substr(0, colon), &a) || a.family() != AF_INET) return false;
    port = text.substr(colon + 1);
  }
  uint64_t p;
  if (!parse_uint(port, &p) || p == 0 || p > 65535) return false;
  if (a.family() == AF_INET) a.u.in.sin_port = htons(static_cast<uint16_t>(p));
  else a.u.in6.sin6_port = htons(static_cast<uint16_t>(p));
  *out = a;
  return true;
}

bool real_ip_from_header(const RealIpSettings& s, const Request& req, const PeerAddr& peer, PeerAddr* out) {
  if (s.source == RealIpSource::kProxyProtocol || !s.trusts(peer)) return false;
  bool found = false;
  // Walks one line of the field from its right end; false once the walk is over.
  auto walk = [&](std::string_view v) {
    size_t end = v.size();
    bool any = false;
    for (;;) {
      while (end > 0 && is_separator(v[end - 1])) end--;
      // A line with no address in it ends the walk, as a malformed address does.
      if (end == 0) return any;
      size_t start = end;
      while (start > 0 && !is_separator(v[start - 1])) start--;
      PeerAddr a;
      if (!parse_forwarded_addr(v.substr(start, end - start), &a)) return false;
      *out = a;
      found = any = true;
      if (!s.recursive || !s.trusts(a)) return false;
      end = start;
    }
  };
  if (s.source == RealIpSource::kXForwardedFor) {
    // Each proxy appends to the list, on the last line or on a line of its own: the lines read
    // last to first are one list read from its right.
    for (size_t i = req.header_count; i-- > 0;)
      if (iequals(req.headers[i].name, s.header) && !walk(req.headers[i].value)) break;
  } else {
    // Of another field, only the first line counts (nginx's rule).
    for (size_t i = 0; i < req.header_count; i++) {
      if (!iequals(req.headers[i].name, s.header)) continue;
      walk(req.headers[i].value);
      break;
    }
  }
  return found;
}

void log_refused(LogLevel level, const Request& req, const Server& srv, std::string_view what) {
  // $server_name, or the section's name for a server without one.
  std::string_view server = srv.primary_name.empty() ? srv.name : srv.primary_name;
  char addr[INET6_ADDRSTRLEN + 8];
  size_t n = req.client.host_into(addr, sizeof(addr));
  std::string_view host = trim(req.host);
  BATON_LOG(level, "%.*s, client: %.*s, server: %.*s, request: \"%.*s %.*s HTTP/%d.%d\"%s%.*s%s",
            static_cast<int>(what.size()), what.data(), static_cast<int>(n), addr, static_cast<int>(server.size()),
            server.data(), static_cast<int>(req.method.size()), req.method.data(),
            static_cast<int>(req.target.size()), req.target.data(), req.version_major, req.version_minor,
            host.empty() ? "" : ", host: \"", static_cast<int>(host.size()), host.data(), host.empty() ? "" : "\"");
}

void log_forbidden(const Request& req, const Server& srv) {
  log_refused(LogLevel::kError, req, srv, "access forbidden by rule");
}

}  // namespace baton::http

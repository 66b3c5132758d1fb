// Who a request is from, and whether it may be answered: the address ranges of `allow`, `deny` and
// `set_real_ip_from`, compiled when the configuration is read; the allow/deny decision; and the
// client address a trusted proxy names in `real_ip_header`. Matching allocates nothing: it runs for
// every request of a level that has rules.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/log.h"
#include "os/unix/socket.h"

namespace baton::http {

struct Request;
struct Server;

// An address range: "10.0.0.0/8", "2001:db8::/32", one address, every unix-socket client
// ("unix:"), or everything ("all").
struct AddrRange {
  enum class Kind : uint8_t { kIpv4, kIpv6, kUnix, kAll };
  Kind kind = Kind::kAll;
  uint8_t bits = 0;       // the prefix length
  uint8_t addr[16] = {};  // the network, bits past the prefix cleared; IPv4 in the first four bytes

  // An IPv4-mapped IPv6 client (::ffff:192.0.2.1, from a socket that takes both families) is
  // matched as the IPv4 address it is, as nginx does; IPv4 ranges and IPv6 ranges never match
  // each other otherwise.
  bool contains(const PeerAddr& a) const;
};

// Parses ADDR, ADDR/BITS, "unix:" and (with accept_all) "all", the value of the configuration key
// `key`. Returns "" or what is wrong, naming the key. Bits set past the prefix (10.0.0.1/8) are
// cleared and *host_bits says so: nginx warns about them and uses the network, and so does baton.
std::string parse_addr_range(std::string_view text, std::string_view key, bool accept_all, AddrRange* out,
                             bool* host_bits);

// allow = RANGE / deny = RANGE, one line of a level.
struct AccessRule {
  AddrRange range;
  bool allow = false;
};

// What rules (one level's, in the order written) say of client: the first rule that matches
// decides. No match is told apart from an `allow`: with `satisfy = any` only an allow lets a client
// in without credentials (nginx's access module declines when no rule matches).
enum class AccessVerdict : uint8_t { kAllow, kDeny, kNoMatch };
AccessVerdict access_verdict(const std::vector<AccessRule>& rules, const PeerAddr& client);

// Whether rules let client in: a client no rule matches is let in.
bool access_allows(const std::vector<AccessRule>& rules, const PeerAddr& client);

// Where real_ip_header takes the client address from.
enum class RealIpSource : uint8_t { kXRealIp, kXForwardedFor, kProxyProtocol, kHeader };

struct RealIpSettings {
  std::vector<AddrRange> from;  // set_real_ip_from; none: the peer is the client
  RealIpSource source = RealIpSource::kXRealIp;
  std::string header = "X-Real-IP";  // the field read (kXRealIp, kXForwardedFor, kHeader)
  bool recursive = false;

  bool trusts(const PeerAddr& a) const;
};

// The client address real_ip_header gives for req, which came from peer (the address the
// connection itself came from). The field's last address is taken; with real_ip_recursive, the
// addresses are walked from the right (several X-Forwarded-For lines count as one list) past every
// trusted one, and the first that is not trusted is the client (the leftmost when all are).
// False, and *out untouched, when peer is not trusted, the field is absent or its last address is
// not one; a malformed address further left ends the walk at the address before it. An address may
// carry a port ("192.0.2.1:5555", "[2001:db8::1]:5555"); without one the port is 0. kProxyProtocol
// reads no field: false.
bool real_ip_from_header(const RealIpSettings& s, const Request& req, const PeerAddr& peer, PeerAddr* out);

// One address as a proxy writes it in a header: IPv4 or IPv6, optionally with a port (IPv6 then in
// brackets). False for anything else.
bool parse_forwarded_addr(std::string_view text, PeerAddr* out);

// An error-log line about a refused request, as nginx writes them: what, then the client, the
// server's name, the request line and Host.
void log_refused(LogLevel level, const Request& req, const Server& srv, std::string_view what);

// The error-log line of a request that allow/deny refused, as nginx writes it (its client, the
// server's name, the request line and Host): `access forbidden by rule, client: ...`.
void log_forbidden(const Request& req, const Server& srv);

}  // namespace baton::http

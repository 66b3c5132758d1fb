#include "event/proxy_protocol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/log.h"

namespace baton {
namespace {

// ---------------------------------------------------------------------------------------------
// Version 1: one line of text.
//
// The line is checked piece by piece as it arrives, so that a peer that is not speaking the
// protocol at all ("GET / ...") is turned away at its first byte, not after 107 of them.

// How one piece of the line compares with the bytes available.
enum class Step { kOk, kShort, kBad };

// Longest text inet_ntop can produce for an IPv6 address ("ffff:...:255.255.255.255").
constexpr size_t kMaxIpv6Text = INET6_ADDRSTRLEN - 1;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Dotted-quad text fed one character at a time: four decimal numbers 0-255 without leading zeros
// (the specification forbids them, and inet_pton refuses them too).
class DottedQuad {
 public:
  bool feed(char c) {
    if (c == '.') {
      if (digits_ == 0 || octets_ == 4) return false;
      digits_ = 0;
      value_ = 0;
      return true;
    }
    if (!is_digit(c)) return false;
    if (digits_ == 0) {
      ++octets_;
    } else if (value_ == 0) {
      return false;  // a leading zero
    }
    value_ = value_ * 10 + static_cast<unsigned>(c - '0');
    return ++digits_ <= 3 && value_ <= 255;
  }

 private:
  int octets_ = 0;
  int digits_ = 0;
  unsigned value_ = 0;
};

// Can `s` still become an IPv4 address?
bool ipv4_prefix_ok(std::string_view s) {
  DottedQuad q;
  for (char c : s) {
    if (!q.feed(c)) return false;
  }
  return true;
}

// Can `s` still become an IPv6 address? Groups of 1-4 hex digits separated by ':', at most one
// "::" standing for at least one zero group, eight groups in all, the last two of which may be
// written as a dotted quad ("::ffff:192.0.2.1"). Whether a complete field really is an address is
// left to inet_pton; this only has to refuse what no further byte could repair.
bool ipv6_prefix_ok(std::string_view s) {
  if (s.size() > kMaxIpv6Text) return false;
  enum { kStart, kLeadColon, kColon, kDoubleColon, kGroup } prev = kStart;
  int groups = 0;
  size_t group_start = 0;
  size_t group_len = 0;
  bool elided = false;
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    if (is_hex(c)) {
      if (prev == kGroup) {
        if (++group_len > 4) return false;
        continue;
      }
      if (prev == kLeadColon) return false;  // ":1" cannot start an address
      if (++groups > (elided ? 7 : 8)) return false;
      group_start = i;
      group_len = 1;
      prev = kGroup;
    } else if (c == ':') {
      switch (prev) {
        case kStart:
          prev = kLeadColon;
          break;
        case kLeadColon:
          elided = true;
          prev = kDoubleColon;
          break;
        case kGroup:
          // Another group must follow, or a "::" that stands for at least one.
          if (groups >= 8 || (elided && groups >= 7)) return false;
          prev = kColon;
          break;
        case kColon:
          if (elided) return false;
          elided = true;
          prev = kDoubleColon;
          break;
        case kDoubleColon:
          return false;
      }
    } else if (c == '.') {
      // The group just read was the first number of an embedded IPv4 address, which takes the
      // place of the last two groups; what remains must be that dotted quad.
      if (prev != kGroup) return false;
      int before = groups - 1;
      if (elided ? before > 5 : before != 6) return false;
      DottedQuad q;
      for (size_t j = group_start; j < s.size(); j++) {
        if (!q.feed(s[j])) return false;
      }
      return true;
    } else {
      return false;
    }
  }
  return true;
}

// Can `s` still become a port: 0-65535 in decimal, no sign, no leading zero?
bool port_prefix_ok(std::string_view s) {
  if (s.size() > 5) return false;
  unsigned v = 0;
  for (size_t i = 0; i < s.size(); i++) {
    if (!is_digit(s[i])) return false;
    if (i > 0 && v == 0) return false;  // a leading zero
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
  }
  return v <= 65535;
}

bool set_ip(int family, std::string_view text, SockAddr* a) {
  char buf[kMaxIpv6Text + 1];
  if (text.empty() || text.size() > kMaxIpv6Text) return false;
  memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  *a = SockAddr{};
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&a->storage);
    if (inet_pton(AF_INET, buf, &in->sin_addr) != 1) return false;
    in->sin_family = AF_INET;
    a->len = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a->storage);
    if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1) return false;
    in6->sin6_family = AF_INET6;
    a->len = sizeof(sockaddr_in6);
  }
  return true;
}

// `text` has passed port_prefix_ok.
bool set_port(std::string_view text, SockAddr* a) {
  if (text.empty()) return false;
  unsigned v = 0;
  for (char c : text) v = v * 10 + static_cast<unsigned>(c - '0');
  uint16_t port = htons(static_cast<uint16_t>(v));
  if (a->family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&a->storage)->sin_port = port;
  } else {
    reinterpret_cast<sockaddr_in6*>(&a->storage)->sin6_port = port;
  }
  return true;
}

class LineReader {
 public:
  LineReader(const char* data, size_t len) : begin_(data), pos_(data), end_(data + len) {}

  size_t consumed() const { return static_cast<size_t>(pos_ - begin_); }

  // Exactly `lit`; kShort when what has arrived matches its beginning.
  Step literal(std::string_view lit) {
    size_t n = std::min(available(), lit.size());
    if (memcmp(pos_, lit.data(), n) != 0) return Step::kBad;
    if (n < lit.size()) return Step::kShort;
    pos_ += n;
    return Step::kOk;
  }

  // A field ended by `term` (consumed, not part of *field), whose bytes so far must pass
  // prefix_ok. The field is not otherwise validated.
  Step field(char term, bool (*prefix_ok)(std::string_view), std::string_view* field) {
    const void* t = memchr(pos_, term, available());
    const char* stop = t ? static_cast<const char*>(t) : end_;
    std::string_view f(pos_, static_cast<size_t>(stop - pos_));
    if (!prefix_ok(f)) return Step::kBad;
    if (!t) return Step::kShort;
    *field = f;
    pos_ = stop + 1;
    return Step::kOk;
  }

  // After "UNKNOWN": CRLF, or a space and anything up to the first CRLF. A CR or LF on its own
  // in there is refused: it would end the line for a less careful reader, and the specification
  // never lets a single CR or LF stand for CRLF.
  Step unknown_tail() {
    if (pos_ == end_) return Step::kShort;
    if (*pos_ == '\r') return literal("\r\n");
    if (*pos_ != ' ') return Step::kBad;
    for (const char* p = pos_ + 1; p < end_; p++) {
      if (*p == '\n') return Step::kBad;
      if (*p != '\r') continue;
      if (p + 1 == end_) return Step::kShort;
      if (p[1] != '\n') return Step::kBad;
      pos_ = p + 2;
      return Step::kOk;
    }
    return Step::kShort;
  }

 private:
  size_t available() const { return static_cast<size_t>(end_ - pos_); }

  const char* begin_;
  const char* pos_;
  const char* end_;
};

Step read_v1_addresses(LineReader& r, int family, ProxyHeader* h) {
  bool (*addr_ok)(std::string_view) = family == AF_INET ? ipv4_prefix_ok : ipv6_prefix_ok;
  std::string_view text;
  Step s;
  // Each field is converted as soon as it is complete so that a bad one fails without waiting
  // for the rest of the line.
  if ((s = r.field(' ', addr_ok, &text)) != Step::kOk) return s;
  if (!set_ip(family, text, &h->source)) return Step::kBad;
  if ((s = r.field(' ', addr_ok, &text)) != Step::kOk) return s;
  if (!set_ip(family, text, &h->destination)) return Step::kBad;
  if ((s = r.field(' ', port_prefix_ok, &text)) != Step::kOk) return s;
  if (!set_port(text, &h->source)) return Step::kBad;
  if ((s = r.field('\r', port_prefix_ok, &text)) != Step::kOk) return s;
  if (!set_port(text, &h->destination)) return Step::kBad;
  return r.literal("\n");
}

Step read_v1(LineReader& r, ProxyHeader* h) {
  Step s = r.literal("PROXY ");
  if (s != Step::kOk) return s;
  Step tcp4 = r.literal("TCP4 ");
  if (tcp4 == Step::kOk) return read_v1_addresses(r, AF_INET, h);
  Step tcp6 = r.literal("TCP6 ");
  if (tcp6 == Step::kOk) return read_v1_addresses(r, AF_INET6, h);
  Step unknown = r.literal("UNKNOWN");
  if (unknown == Step::kOk) {
    h->local = true;
    return r.unknown_tail();
  }
  if (tcp4 == Step::kShort || tcp6 == Step::kShort || unknown == Step::kShort) return Step::kShort;
  return Step::kBad;
}

ProxyResult parse_v1(const char* data, size_t len, ProxyHeader* out) {
  // Nothing past the first 107 bytes can belong to the line.
  LineReader r(data, std::min(len, kProxyV1MaxLength));
  ProxyHeader h;
  switch (read_v1(r, &h)) {
    case Step::kOk:
      h.length = r.consumed();
      *out = h;
      return ProxyResult::kDone;
    case Step::kShort:
      return len >= kProxyV1MaxLength ? ProxyResult::kError : ProxyResult::kNeedMore;
    case Step::kBad:
      break;
  }
  return ProxyResult::kError;
}

// ---------------------------------------------------------------------------------------------
// Version 2: a binary header whose 16 fixed bytes announce the length of the rest.

constexpr unsigned char kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr size_t kV2FixedLength = 16;

constexpr unsigned kV2CommandLocal = 0x0;
constexpr unsigned kV2CommandProxy = 0x1;
// Address family (high nibble) and transport (low nibble) as one byte.
constexpr unsigned kV2Unspec = 0x00;
constexpr unsigned kV2TcpOverIpv4 = 0x11;
constexpr unsigned kV2TcpOverIpv6 = 0x21;
constexpr unsigned kV2Ipv4AddressLength = 2 * 4 + 2 * 2;
constexpr unsigned kV2Ipv6AddressLength = 2 * 16 + 2 * 2;

// addr and port point into the header, already in network byte order.
void set_v2_address(int family, const unsigned char* addr, const unsigned char* port, SockAddr* a) {
  *a = SockAddr{};
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&a->storage);
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, addr, 4);
    memcpy(&in->sin_port, port, 2);
    a->len = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a->storage);
    in6->sin6_family = AF_INET6;
    memcpy(&in6->sin6_addr, addr, 16);
    memcpy(&in6->sin6_port, port, 2);
    a->len = sizeof(sockaddr_in6);
  }
}

ProxyResult parse_v2(const unsigned char* d, size_t len, ProxyHeader* out) {
  if (memcmp(d, kV2Signature, std::min(len, sizeof(kV2Signature))) != 0) return ProxyResult::kError;
  if (len <= 12) return ProxyResult::kNeedMore;

  // The version must be 2; the command LOCAL or PROXY.
  unsigned version = d[12] >> 4;
  unsigned command = d[12] & 0x0F;
  if (version != 2 || (command != kV2CommandLocal && command != kV2CommandProxy)) {
    return ProxyResult::kError;
  }
  if (len <= 13) return ProxyResult::kNeedMore;

  // LOCAL (a health check from the proxy itself) ignores the address block whatever the family
  // says, but the family must still be one the specification defines. PROXY must carry TCP over
  // IPv4 or IPv6; AF_UNSPEC is taken as "no addresses", like LOCAL; UDP and AF_UNIX are refused,
  // as nothing else could be arriving on a TCP listener.
  unsigned family_transport = d[13];
  unsigned family = family_transport >> 4;
  unsigned transport = family_transport & 0x0F;
  if (family > 3 || transport > 2) return ProxyResult::kError;
  bool local = true;
  int af = AF_UNSPEC;
  size_t min_address_length = 0;
  if (command == kV2CommandProxy && family_transport != kV2Unspec) {
    if (family_transport == kV2TcpOverIpv4) {
      af = AF_INET;
      min_address_length = kV2Ipv4AddressLength;
    } else if (family_transport == kV2TcpOverIpv6) {
      af = AF_INET6;
      min_address_length = kV2Ipv6AddressLength;
    } else {
      return ProxyResult::kError;
    }
    local = false;
  }
  if (len < kV2FixedLength) return ProxyResult::kNeedMore;

  size_t address_length = static_cast<size_t>(d[14]) << 8 | d[15];
  if (address_length < min_address_length) return ProxyResult::kError;
  size_t total = kV2FixedLength + address_length;
  // A DoS guard, not a rule of the protocol: the format allows 16 + 65535 bytes, but only TLVs
  // (which baton skips) could make a header this large, and a peer must not be able to make every
  // connection hold 64 KiB before HTTP starts.
  if (total > kProxyV2MaxLength) return ProxyResult::kError;
  if (len < total) return ProxyResult::kNeedMore;

  ProxyHeader h;
  h.local = local;
  h.length = total;
  if (!local) {
    // Source address, destination address, source port, destination port; TLVs follow, unread.
    size_t alen = af == AF_INET ? 4 : 16;
    const unsigned char* block = d + kV2FixedLength;
    set_v2_address(af, block, block + 2 * alen, &h.source);
    set_v2_address(af, block + alen, block + 2 * alen + 2, &h.destination);
  }
  *out = h;
  return ProxyResult::kDone;
}

}  // namespace

ProxyResult parse_proxy_header(const char* data, size_t len, ProxyHeader* out) {
  if (len == 0) return ProxyResult::kNeedMore;
  // The two versions differ in their first byte: 'P' of "PROXY", CR of the binary signature.
  if (data[0] == 'P') return parse_v1(data, len, out);
  if (data[0] == '\r') return parse_v2(reinterpret_cast<const unsigned char*>(data), len, out);
  return ProxyResult::kError;
}

ProxyProtocolReader::ProxyProtocolReader(Connection* c, double timeout, Next next, void* arg, bool exact)
    : c_(c), timeout_(timeout), next_(next), arg_(arg), exact_(exact) {}

void ProxyProtocolReader::start() {
  c_->set_deadline(timeout_);
  // Silent so far: like an idle keep-alive connection, it may make room for others.
  c_->set_reusable(true);
  on_readable();
  if (!c_->closed() && c_->handler() == this) c_->want_read(true);
}

void ProxyProtocolReader::on_readable() {
  if (exact_) {
    read_exact();
    return;
  }
  char buf[kProxyV2MaxLength];
  ssize_t n = c_->read(buf, sizeof(buf) - in_.size());
  if (n == kIoWantRead || n == kIoWantWrite) return;
  if (n <= 0) {
    c_->close();
    return;
  }
  c_->set_reusable(false);
  in_.append(buf, static_cast<size_t>(n));
  ProxyHeader ph;
  switch (parse_proxy_header(in_.data(), in_.size(), &ph)) {
    case ProxyResult::kNeedMore:
      if (in_.size() < kProxyV2MaxLength) return;
      [[fallthrough]];
    case ProxyResult::kError:
      log_info("broken PROXY protocol header from %s, closing", c_->peer().to_string().c_str());
      c_->close();
      return;
    case ProxyResult::kDone:
      break;
  }
  if (!ph.local) c_->set_peer(PeerAddr(ph.source));
  // This handler is replaced (and deleted after the callbacks): what it read goes on with the
  // connection.
  std::string rest = in_.substr(ph.length);
  next_(arg_, c_, rest);
}

// Reads the header and not one byte more (TLS comes next, and its library reads the socket itself):
// what is there is looked at first, and only the header's bytes are taken.
void ProxyProtocolReader::read_exact() {
  char buf[kProxyV2MaxLength];
  size_t room = sizeof(buf) - in_.size();
  ssize_t n;
  do {
    n = ::recv(c_->fd(), buf, room, MSG_PEEK);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n <= 0) {
    c_->close();
    return;
  }
  c_->set_reusable(false);
  std::string seen = in_;
  seen.append(buf, static_cast<size_t>(n));
  ProxyHeader ph;
  ProxyResult res = parse_proxy_header(seen.data(), seen.size(), &ph);
  if (res == ProxyResult::kNeedMore && seen.size() >= kProxyV2MaxLength) res = ProxyResult::kError;
  if (res == ProxyResult::kError) {
    log_info("broken PROXY protocol header from %s, closing", c_->peer().to_string().c_str());
    c_->close();
    return;
  }
  // Everything seen is header so far (kNeedMore), or the header ends within it (kDone): take that.
  size_t take = res == ProxyResult::kDone ? ph.length - in_.size() : static_cast<size_t>(n);
  ssize_t got;
  do {
    got = ::recv(c_->fd(), buf, take, 0);
  } while (got < 0 && errno == EINTR);
  if (got != static_cast<ssize_t>(take)) {
    c_->close();
    return;
  }
  if (res == ProxyResult::kNeedMore) {
    in_.append(buf, take);
    return;
  }
  if (!ph.local) c_->set_peer(PeerAddr(ph.source));
  next_(arg_, c_, {});
}

void ProxyProtocolReader::on_timeout() { c_->close(); }

}  // namespace baton

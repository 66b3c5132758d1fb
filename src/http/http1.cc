#include "http/http1.h"

#include <string.h>

#include <bit>

#include "core/strings.h"

namespace baton::http {

const std::array<uint8_t, 256> kByteClass = [] {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; c++) {
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    bool punct = false;
    for (const char* p = "!#$%&'*+-.^_`|~"; *p; p++) punct = punct || c == *p;
    if (alnum || punct) t[static_cast<size_t>(c)] |= kTchar;
    // What a head may hold outside line ends: visible bytes, space, tab, obs-text.
    if ((c >= 0x20 && c != 0x7f) || c == '\t') t[static_cast<size_t>(c)] |= kPlain;
  }
  return t;
}();

bool head_is_clean(const char* p, const char* end) {
  // Eight bytes at a time while none of them is below 0x20 or is 0x7f (the common case: a line's
  // text), byte by byte around line ends, tabs and anything suspect.
  constexpr uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
  const char* s = p;
  while (s < end) {
    if (end - s >= 8) {
      uint64_t x;
      memcpy(&x, s, 8);
      uint64_t below_space = (x - 0x20 * kOnes) & ~x & kHigh;
      uint64_t y = x ^ (0x7f * kOnes);
      uint64_t del = (y - kOnes) & ~y & kHigh;
      uint64_t hits = below_space | del;
      if (!hits) {
        s += 8;
        continue;
      }
      // The lowest flagged byte is a real one (a borrow only flags bytes above a real hit): the
      // bytes before it are plain.
      s += std::countr_zero(hits) / 8;
    }
    unsigned char c = static_cast<unsigned char>(*s);
    if (kByteClass[c] & kPlain) {
      s++;
      continue;
    }
    if (c == '\r') {
      if (s + 1 >= end || s[1] != '\n') return false;
      s++;
      continue;
    }
    if (c == '\n') {
      if (s == p || s[-1] != '\r') return false;
      if (s + 1 < end && (s[1] == ' ' || s[1] == '\t')) return false;  // obs-fold
      s++;
      continue;
    }
    return false;
  }
  return true;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char ch : s)
    if (!is_tchar(static_cast<unsigned char>(ch))) return false;
  return true;
}

// RFC 9110 5.3 / 9112 6.1: every Transfer-Encoding line together make one list of codings. A
// request's body can be framed only when chunked is the last of them (RFC 9112 6.3: 400 otherwise).
// The parser frames the body by its own reading of the same lines: where its reading and this one
// could differ ("chunked\t", "chunked, chunked", "gzip" and "chunked" on two lines), the request is
// refused rather than read one way here and another way by whatever sits behind. One rule, one
// answer: the only list accepted is "chunked" alone (no other transfer coding is implemented), and
// anything else is 400 with the connection closed.
bool transfer_encoding_is_chunked(const Header* headers, size_t count, bool parser_chunked) {
  int lines = 0;
  bool chunked = false;
  for (size_t i = 0; i < count; i++) {
    if (!iequals(headers[i].name, "transfer-encoding")) continue;
    lines++;
    // Only spaces around the coding: a tab or anything else is where readers part ways.
    std::string_view v = headers[i].value;
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
    chunked = iequals(v, "chunked");
  }
  return lines == 1 && chunked && parser_chunked;
}

// Fields that describe one connection, not the message (RFC 9110 7.6.1), never forwarded in
// either direction; nor is any field the Connection header names.
bool hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2:
      return iequals(name, "te");
    case 7:
      return iequals(name, "upgrade") || iequals(name, "trailer");
    case 10:
      return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16:
      return iequals(name, "proxy-connection");
    case 17:
      return iequals(name, "transfer-encoding");
    default:
      return false;
  }
}

// Whether a Connection header value (a comma-separated list of field names) names `name`.
bool connection_names(std::string_view connection, std::string_view name) {
  while (!connection.empty()) {
    size_t comma = connection.find(',');
    std::string_view item = trim(connection.substr(0, comma));
    if (iequals(item, name)) return true;
    if (comma == std::string_view::npos) break;
    connection.remove_prefix(comma + 1);
  }
  return false;
}

// "timeout=5, max=100": the upstream's Keep-Alive parameters.
void parse_keep_alive(std::string_view v, double* timeout, int64_t* max) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = trim(v.substr(0, comma));
    size_t eq = item.find('=');
    if (eq != std::string_view::npos) {
      std::string_view key = trim(item.substr(0, eq));
      std::string_view val = trim(item.substr(eq + 1));
      uint64_t n = 0;
      bool ok = !val.empty() && val.size() < 10;
      for (char ch : val) {
        ok = ok && ch >= '0' && ch <= '9';
        n = n * 10 + static_cast<uint64_t>(ch - '0');
      }
      if (ok && iequals(key, "timeout")) *timeout = static_cast<double>(n);
      if (ok && iequals(key, "max")) *max = static_cast<int64_t>(n);
    }
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

}  // namespace baton::http

// Small string helpers shared by every layer: ASCII case folding, trimming, splitting, numbers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace baton {

inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

inline bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// Splits on runs of spaces and tabs.
std::vector<std::string_view> split_ws(std::string_view s);

// Parses an unsigned decimal number made only of digits; false on overflow or any other byte.
bool parse_uint(std::string_view s, uint64_t* out);

// Appends the decimal form of v; the hot path's replacement for std::to_string.
void append_uint(std::string* out, uint64_t v);
// Writes the decimal form of v at p (room for 20 bytes); returns the end.
char* write_uint(char* p, uint64_t v);

}  // namespace baton

#include "core/strings.h"

#include <charconv>

namespace baton {

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) i++;
    size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t') i++;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

bool parse_uint(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

char* write_uint(char* p, uint64_t v) {
  auto r = std::to_chars(p, p + 20, v);
  return r.ptr;
}

void append_uint(std::string* out, uint64_t v) {
  char buf[24];
  char* end = write_uint(buf, v);
  out->append(buf, static_cast<size_t>(end - buf));
}

}  // namespace baton

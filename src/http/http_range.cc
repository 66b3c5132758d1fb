#include "http/http_range.h"

#include "core/strings.h"

namespace baton::http {

RangeResult parse_range(std::string_view header, uint64_t size, std::vector<ByteRange>* out) {
  out->clear();
  header = trim(header);
  if (!istarts_with(header, "bytes=")) return RangeResult::kIgnore;
  std::string_view spec = header.substr(6);
  bool any_valid_syntax = false;
  uint64_t total = 0;
  while (!spec.empty()) {
    size_t comma = spec.find(',');
    std::string_view item = trim(spec.substr(0, comma));
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    if (item.empty()) continue;
    size_t dash = item.find('-');
    if (dash == std::string_view::npos) return RangeResult::kIgnore;
    std::string_view a = trim(item.substr(0, dash));
    std::string_view b = trim(item.substr(dash + 1));
    uint64_t first, last;
    if (a.empty()) {
      // Suffix: the last N bytes.
      uint64_t n;
      if (!parse_uint(b, &n)) return RangeResult::kIgnore;
      any_valid_syntax = true;
      if (n == 0 || size == 0) continue;
      first = n >= size ? 0 : size - n;
      last = size - 1;
    } else {
      if (!parse_uint(a, &first)) return RangeResult::kIgnore;
      if (b.empty()) {
        last = size ? size - 1 : 0;
      } else {
        if (!parse_uint(b, &last) || last < first) return RangeResult::kIgnore;
        if (last >= size) last = size ? size - 1 : 0;
      }
      any_valid_syntax = true;
      if (first >= size) continue;  // unsatisfiable on its own
    }
    out->push_back({first, last});
    total += last - first + 1;
    if (out->size() > kMaxRanges) {
      out->clear();
      return RangeResult::kIgnore;
    }
  }
  if (!any_valid_syntax) return RangeResult::kIgnore;
  if (out->empty()) return RangeResult::kUnsatisfiable;
  // Ranges that add up to more than the file are a sign of abuse: send the file once instead.
  if (out->size() > 1 && total > size) {
    out->clear();
    return RangeResult::kIgnore;
  }
  return RangeResult::kOk;
}

}  // namespace baton::http

// Byte ranges (RFC 9110 14.1): parsing a Range header against a representation of known size.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace baton::http {

struct ByteRange {
  uint64_t first;
  uint64_t last;  // inclusive
  uint64_t length() const { return last - first + 1; }
};

enum class RangeResult {
  kIgnore,          // no usable Range: send the whole representation (200)
  kOk,              // ranges filled in (206)
  kUnsatisfiable,   // 416
};

// More ranges than this, or ranges that overlap into a pile, are answered with the whole file:
// RFC 9110 lets a server ignore Range, and it is the answer to abusive range requests.
constexpr size_t kMaxRanges = 32;

RangeResult parse_range(std::string_view header, uint64_t size, std::vector<ByteRange>* out);

}  // namespace baton::http

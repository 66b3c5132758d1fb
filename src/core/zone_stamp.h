// The first bytes of a shared memory zone: what made it (a magic word per kind of zone), its layout
// number, kind and size. A zone is adopted (after a reload, or by another binary after an upgrade)
// only when all four are what the adopter expects; the magic is written last, so that a zone half
// made is never taken for one.
#pragma once

#include <cstdint>
#include <cstring>

namespace baton {

struct ZoneStamp {
  char magic[16];
  uint32_t layout;
  uint32_t kind;
  uint64_t size;

  void set(const char (&m)[16], uint32_t l, uint32_t k, uint64_t s) {
    layout = l;
    kind = k;
    size = s;
    memcpy(magic, m, sizeof(magic));
  }
  bool matches(const char (&m)[16], uint32_t l, uint32_t k, uint64_t s) const {
    return memcmp(magic, m, sizeof(magic)) == 0 && layout == l && kind == k && size == s;
  }
};

}  // namespace baton

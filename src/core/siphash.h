// SipHash-2-4 (Aumasson and Bernstein): a keyed 64-bit hash of a byte string. With a secret key,
// an attacker who chooses the strings cannot make them collide on purpose: a table keyed by what
// clients send (addresses, header values) keeps short chains.
#pragma once

#include <cstddef>
#include <cstdint>

namespace baton {

uint64_t siphash24(const void* data, size_t len, uint64_t k0, uint64_t k1);

}  // namespace baton

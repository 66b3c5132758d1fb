// balance = hash KEY: consistent hashing of the evaluated key (nginx's `hash KEY consistent`, the
// only kind here, since a plain modulo moves nearly every key when a server comes or goes). Each
// server owns points on a ring of 32-bit hashes, in proportion to its weight; a key belongs to the
// first point at or after its own hash. A server that is down, out or already tried passes its keys
// to the next points of the ring, which belong to the other servers in proportion to their weights:
// only that server's keys move, and they come back to it when it does.
#include <algorithm>
#include <string>

#include "http/http_upstream_balance.h"

namespace baton::http::balance {

namespace {

// Points per unit of weight: with 160 (nginx's number) a server's share of the keys is within a
// few per cent of its weight's share, for a ring of a few kilobytes per server.
constexpr uint64_t kPointsPerWeight = 160;
// A bound on the ring of one tier (8 bytes a point), reached only when the weights add up to more
// than 1600; beyond it the points are shared out by weight, each server keeping at least one.
constexpr uint64_t kMaxPoints = uint64_t{1} << 18;

uint32_t key_hash(const void* data, size_t len) {
  return static_cast<uint32_t>(mix64(fnv1a64(data, len)) >> 32);
}

}  // namespace

void build_ring(const UpstreamGroup& group, const PeerTable& t, Tier* tier) {
  tier->ring.clear();
  if (tier->members.empty()) return;
  const bool scaled = tier->total_weight * kPointsPerWeight > kMaxPoints;
  tier->ring.reserve(scaled ? kMaxPoints + tier->members.size()
                            : tier->total_weight * kPointsPerWeight);
  for (size_t k = 0; k < tier->members.size(); ++k) {
    uint32_t i = tier->members[k];
    const UpstreamServer& s = group.servers[i];
    // A server's points come from its address, not from its place in the list: adding, removing
    // or reordering other servers, or another worker or generation building the same group, leaves
    // them where they are. The same address listed twice gets a second, different set.
    std::string id = s.addr.len != 0 ? s.addr.to_string() : s.text;
    int same = 0;
    for (size_t j = 0; j < k; ++j) {
      const UpstreamServer& o = group.servers[tier->members[j]];
      if ((o.addr.len != 0 ? o.addr.to_string() : o.text) == id) ++same;
    }
    if (same > 0) id += "#" + std::to_string(same);
    uint64_t base = fnv1a64(id.data(), id.size());
    uint64_t weight = static_cast<uint64_t>(t.peers[i].weight);
    uint64_t points = scaled ? std::max<uint64_t>(1, weight * kMaxPoints / tier->total_weight)
                             : weight * kPointsPerWeight;
    for (uint64_t n = 0; n < points; ++n) {
      // The point number in little-endian bytes, so that the ring is the same on any machine.
      unsigned char b[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                            static_cast<unsigned char>(n >> 16),
                            static_cast<unsigned char>(n >> 24)};
      uint32_t h = static_cast<uint32_t>(mix64(fnv1a64(b, sizeof(b), base)) >> 32);
      tier->ring.push_back(RingPoint{h, i});
    }
  }
  std::sort(tier->ring.begin(), tier->ring.end(), [](const RingPoint& a, const RingPoint& b) {
    return a.hash != b.hash ? a.hash < b.hash : a.server < b.server;
  });
}

int pick_hash(PeerTable& t, const Tier& tier, const PickInput& in, double now) {
  // Walking the ring finds a server only if there is one: make sure first, so that a tier with
  // nothing to give costs one pass over its servers rather than one over all its points.
  bool any = false;
  for (uint32_t i : tier.members) {
    if (eligible(t, i, in, now)) {
      any = true;
      break;
    }
  }
  if (!any) return -1;
  uint32_t h = key_hash(in.key.data(), in.key.size());
  size_t n = tier.ring.size();
  size_t k = static_cast<size_t>(
      std::lower_bound(tier.ring.begin(), tier.ring.end(), h,
                       [](const RingPoint& p, uint32_t v) { return p.hash < v; }) -
      tier.ring.begin());
  for (size_t step = 0; step < n; ++step, ++k) {
    if (k == n) k = 0;
    uint32_t i = tier.ring[k].server;
    if (eligible(t, i, in, now)) return static_cast<int>(i);
  }
  return -1;  // not reached: some member was eligible, and every member has points
}

}  // namespace baton::http::balance

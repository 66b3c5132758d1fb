// balance = least_conn: the server with the fewest connections in use relative to its weight;
// among servers equally loaded, weighted round robin, so that an idle group is shared by weight
// rather than always starting with the first server.
#include "http/http_upstream_balance.h"

namespace baton::http::balance {

int pick_least_conn(PeerTable& t, const Tier& tier, const PickInput& in, double now) {
  // conns/weight compared by cross-multiplying: exact, no division, and a weight of 3 with 2
  // connections ties with a weight of 6 with 4.
  int best = -1;
  for (uint32_t i : tier.members) {
    if (!eligible(t, i, in, now)) continue;
    const Peer& p = t.peers[i];
    if (best < 0) {
      best = static_cast<int>(i);
      continue;
    }
    const Peer& b = t.peers[best];
    if (static_cast<uint64_t>(p.conns) * static_cast<uint64_t>(b.weight) <
        static_cast<uint64_t>(b.conns) * static_cast<uint64_t>(p.weight)) {
      best = static_cast<int>(i);
    }
  }
  if (best < 0) return -1;
  const uint64_t conns = t.peers[best].conns;
  const uint64_t weight = static_cast<uint64_t>(t.peers[best].weight);
  return smooth_pick(t, tier, [&](uint32_t i) {
    const Peer& p = t.peers[i];
    return eligible(t, i, in, now) &&
           static_cast<uint64_t>(p.conns) * weight == conns * static_cast<uint64_t>(p.weight);
  });
}

}  // namespace baton::http::balance

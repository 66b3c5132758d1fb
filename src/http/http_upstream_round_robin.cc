// balance = round_robin (the default): smooth weighted round robin over the servers that may be
// tried, so that weights 5,1,1 send a a b a c a a, never five requests in a row to one server.
#include "http/http_upstream_balance.h"

namespace baton::http::balance {

int pick_round_robin(PeerTable& t, const Tier& tier, const PickInput& in, double now) {
  return smooth_pick(t, tier, [&](uint32_t i) { return eligible(t, i, in, now); });
}

}  // namespace baton::http::balance

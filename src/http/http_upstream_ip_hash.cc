// balance = ip_hash: the client's address chooses the server, so that a client keeps landing on the
// same one. As in nginx, an IPv4 client is known by its first three octets (a /24: clients behind
// a pool of NAT addresses stay together), an IPv6 client by its whole address. An IPv4 address seen
// on a dual-stack socket (::ffff:a.b.c.d) counts as the IPv4 address, so a client gets the same
// server whichever listener it came through. Clients on a unix socket all share one server.
#include <netinet/in.h>

#include <algorithm>

#include "http/http_upstream_balance.h"

namespace baton::http::balance {

namespace {

// How many times a key is hashed again when its server may not be tried, before falling back to
// round robin (nginx's number): enough to find another server in any group whose servers are
// not nearly all out, and a bound on the work of one pick.
constexpr int kRehashes = 20;

uint64_t client_hash(const PeerAddr* client) {
  if (client != nullptr && client->family() == AF_INET) {
    return mix64(fnv1a64(&client->u.in.sin_addr, 3));
  }
  if (client != nullptr && client->family() == AF_INET6) {
    const in6_addr& a = client->u.in6.sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) return mix64(fnv1a64(&a.s6_addr[12], 3));
    return mix64(fnv1a64(&a, sizeof(a)));
  }
  return mix64(fnv1a64(nullptr, 0));
}

}  // namespace

int pick_ip_hash(PeerTable& t, const Tier& tier, const PickInput& in, double now) {
  uint64_t h = client_hash(in.client);
  for (int n = 0; n <= kRehashes; ++n) {
    // A point on the line of the summed weights: a server of weight 3 owns three times the
    // length of a server of weight 1.
    uint64_t w = h % tier.total_weight;
    auto it = std::upper_bound(tier.cumulative.begin(), tier.cumulative.end(), w);
    uint32_t i = tier.members[static_cast<size_t>(it - tier.cumulative.begin())];
    if (eligible(t, i, in, now)) return static_cast<int>(i);
    // The next candidate depends only on the previous hash: every worker tries the same servers
    // in the same order for a client.
    h = mix64(h + 0x9e3779b97f4a7c15ULL);
  }
  return pick_round_robin(t, tier, in, now);
}

}  // namespace baton::http::balance

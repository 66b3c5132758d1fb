// What the balancing methods of an upstream group share, private to them and to UpstreamPeers
// (http_upstream_peers.cc): the live state of each server, the tiers (primary, backup) a method
// picks within, passive health as a pick sees it, smooth weighted round robin (which least_conn and
// ip_hash fall back on) and the hash functions. One method per file:
// http_upstream_round_robin.cc, http_upstream_least_conn.cc, http_upstream_ip_hash.cc,
// http_upstream_hash.cc. Everything here is computation on memory: no clock, no socket, and no
// allocation once the group is built, since a pick happens for every proxied request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "http/http_upstream.h"
#include "http/http_upstream_peers.h"

namespace baton::http::balance {

// One server's live state. What a pick needs of the configuration is copied in, so that a pick
// reads one array and nothing else.
struct Peer {
  int64_t weight = 1;
  int max_fails = 1;         // 0: failures never take the server out
  double fail_timeout = 10;  // seconds
  bool down = false;
  // Out of service, and one request has been let through to see whether the server is back: its
  // success brings the server back, a success from a request that began earlier does not.
  bool probing = false;
  int64_t current = 0;  // the running score of smooth weighted round robin
  uint32_t conns = 0;   // connections in use (least_conn)
  // Passive health: `fails` failures since window_start; at max_fails the server is out of service
  // until out_until, then lets one request through per fail_timeout until one succeeds.
  int fails = 0;
  double window_start = 0;
  double out_until = 0;
};

struct RingPoint {
  uint32_t hash;
  uint32_t server;  // index into the peers
};

// The primary servers form one tier, the backup servers another; a method picks within one tier,
// and the backup tier is asked only when the primary one has nothing to give.
struct Tier {
  std::vector<uint32_t> members;     // indices into the peers, in configuration order
  std::vector<uint64_t> cumulative;  // ip_hash: the members' weights summed up to and including k
  uint64_t total_weight = 0;
  std::vector<RingPoint> ring;       // hash: points sorted by hash (then server)
};

struct PeerTable {
  std::vector<Peer> peers;
  Tier tiers[2];  // primary, backup
};

// Not down, and not out of service at `now` (an out server whose fail_timeout has passed may take a
// request again).
inline bool in_service(const Peer& p, double now) {
  if (p.down) return false;
  if (p.max_fails == 0 || p.fails < p.max_fails) return true;
  return now >= p.out_until;
}

inline bool tried(const PickInput& in, uint32_t i) {
  if (i < 64 && (in.tried_bits >> i) & 1) return true;
  return in.tried != nullptr && i < in.tried->size() && (*in.tried)[i];
}

inline bool eligible(const PeerTable& t, uint32_t i, const PickInput& in, double now) {
  return in_service(t.peers[i], now) && !tried(in, i);
}

// Smooth weighted round robin among the members for which ok(i) holds: each adds its weight to its
// score, the highest score wins and gives back the sum of the weights. Weights 5,1,1 give
// a a b a c a a: every server gets its share in every cycle, spread out rather than in bursts.
// Ties go to the first in configuration order, which makes the sequence reproducible.
template <typename Ok>
int smooth_pick(PeerTable& t, const Tier& tier, Ok ok) {
  int64_t total = 0;
  int best = -1;
  for (uint32_t i : tier.members) {
    if (!ok(i)) continue;
    Peer& p = t.peers[i];
    p.current += p.weight;
    total += p.weight;
    if (best < 0 || p.current > t.peers[best].current) best = static_cast<int>(i);
  }
  if (best >= 0) t.peers[best].current -= total;
  return best;
}

// The methods: each returns a member of the tier that may be tried, or -1 when the tier has none.
int pick_round_robin(PeerTable& t, const Tier& tier, const PickInput& in, double now);
int pick_least_conn(PeerTable& t, const Tier& tier, const PickInput& in, double now);
int pick_ip_hash(PeerTable& t, const Tier& tier, const PickInput& in, double now);
int pick_hash(PeerTable& t, const Tier& tier, const PickInput& in, double now);

// Builds the tier's ring of the consistent hash (balance = hash), once per group.
void build_ring(const UpstreamGroup& group, const PeerTable& t, Tier* tier);

// Hashes fixed by the code, never seeded per process: every worker, every generation and every
// restart must send a key, or a client address, to the same server.
inline uint64_t fnv1a64(const void* data, size_t len, uint64_t h = 0xcbf29ce484222325ULL) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t k = 0; k < len; ++k) {
    h ^= p[k];
    h *= 0x100000001b3ULL;
  }
  return h;
}

// FNV alone spreads short, similar inputs ("/item/1", "/item/2") poorly over the high bits; this
// finaliser (MurmurHash3's) makes every input bit reach every output bit.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

}  // namespace baton::http::balance

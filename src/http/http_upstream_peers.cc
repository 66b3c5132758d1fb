#include "http/http_upstream_peers.h"

#include <cassert>

#include "http/http_upstream_balance.h"

namespace baton::http {

struct UpstreamPeers::State {
  balance::PeerTable table;
};

UpstreamPeers::UpstreamPeers(const UpstreamGroup* group) : group_(group), state_(new State) {
  balance::PeerTable& t = state_->table;
  t.peers.resize(group->servers.size());
  for (size_t i = 0; i < group->servers.size(); ++i) {
    const UpstreamServer& s = group->servers[i];
    balance::Peer& p = t.peers[i];
    // The configuration refuses a weight below 1; a zero here would make a server that never wins
    // and, for ip_hash, a total weight of zero to divide by.
    p.weight = s.weight < 1 ? 1 : s.weight;
    p.max_fails = s.max_fails < 0 ? 0 : s.max_fails;
    p.fail_timeout = static_cast<double>(s.fail_timeout_ms) / 1000.0;
    p.down = s.down;
    balance::Tier& tier = t.tiers[s.backup ? 1 : 0];
    tier.members.push_back(static_cast<uint32_t>(i));
    tier.total_weight += static_cast<uint64_t>(p.weight);
    tier.cumulative.push_back(tier.total_weight);
  }
  if (group->balance == Balance::kHash) {
    for (balance::Tier& tier : t.tiers) balance::build_ring(*group, t, &tier);
  }
}

UpstreamPeers::~UpstreamPeers() { delete state_; }

size_t UpstreamPeers::size() const { return state_->table.peers.size(); }

int UpstreamPeers::pick(const PickInput& in, double now) {
  balance::PeerTable& t = state_->table;
  for (const balance::Tier& tier : t.tiers) {
    if (tier.members.empty()) continue;
    int i = -1;
    switch (group_->balance) {
      case Balance::kRoundRobin: i = balance::pick_round_robin(t, tier, in, now); break;
      case Balance::kLeastConn: i = balance::pick_least_conn(t, tier, in, now); break;
      case Balance::kIpHash: i = balance::pick_ip_hash(t, tier, in, now); break;
      case Balance::kHash: i = balance::pick_hash(t, tier, in, now); break;
    }
    if (i < 0) continue;
    balance::Peer& p = t.peers[i];
    if (p.max_fails > 0 && p.fails >= p.max_fails) {
      // Out of service and its fail_timeout is over: this request finds out whether the server is
      // back. Until it reports, or another fail_timeout passes (a request that never reports must
      // not keep the server out for good), no other request is sent there.
      p.out_until = now + p.fail_timeout;
      p.probing = true;
    }
    return i;
  }
  return -1;
}

void UpstreamPeers::acquired(int i) {
  assert(i >= 0 && static_cast<size_t>(i) < size());
  ++state_->table.peers[i].conns;
}

void UpstreamPeers::released(int i) {
  assert(i >= 0 && static_cast<size_t>(i) < size());
  balance::Peer& p = state_->table.peers[i];
  assert(p.conns > 0);
  if (p.conns > 0) --p.conns;
}

void UpstreamPeers::failed(int i, double now) {
  assert(i >= 0 && static_cast<size_t>(i) < size());
  balance::Peer& p = state_->table.peers[i];
  if (p.max_fails == 0) return;
  if (p.fails >= p.max_fails) {
    // Already out: the probe failed (or a request sent before the server went out did), one
    // failure is enough to keep it out for another fail_timeout.
    p.out_until = now + p.fail_timeout;
    p.probing = false;
    return;
  }
  // The window opens at the first failure and lasts fail_timeout; a failure after it opens a new
  // one.
  if (p.fails == 0 || now - p.window_start >= p.fail_timeout) {
    p.fails = 0;
    p.window_start = now;
  }
  if (++p.fails >= p.max_fails) {
    p.out_until = now + p.fail_timeout;
    p.probing = false;
  }
}

void UpstreamPeers::succeeded(int i, double now) {
  (void)now;
  assert(i >= 0 && static_cast<size_t>(i) < size());
  balance::Peer& p = state_->table.peers[i];
  // Only the probe's success brings an out server back. Inside a window a success forgives
  // nothing: max_fails counts the failures within fail_timeout, whatever succeeded between them
  // (a server failing every other request is not healthy); the window's end forgets them.
  if (p.max_fails > 0 && p.fails >= p.max_fails && p.probing) {
    p.fails = 0;
    p.probing = false;
  }
}

bool UpstreamPeers::available(int i, double now) const {
  if (i < 0 || static_cast<size_t>(i) >= size()) return false;
  return balance::in_service(state_->table.peers[i], now);
}

}  // namespace baton::http

// Unit tests of src/http/http_upstream_peers.h: which server each balancing method picks (exact
// sequences, shares by weight, stickiness of ip_hash and of the consistent hash), servers that are
// down, out of service or already tried, passive health on an explicit clock, and backup servers.
#include "http/http_upstream_peers.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace baton::http {
namespace {

struct Srv {
  const char* addr;
  int weight = 1;
  int max_fails = 1;
  int64_t fail_timeout_ms = 10000;
  bool backup = false;
  bool down = false;
};

UpstreamGroup make_group(Balance balance, std::initializer_list<Srv> servers) {
  UpstreamGroup g;
  g.name = "app";
  g.balance = balance;
  for (const Srv& s : servers) {
    UpstreamServer u;
    u.text = s.addr;
    EXPECT_EQ(parse_sockaddr(s.addr, &u.addr), "") << s.addr;
    u.weight = s.weight;
    u.max_fails = s.max_fails;
    u.fail_timeout_ms = s.fail_timeout_ms;
    u.backup = s.backup;
    u.down = s.down;
    g.servers.push_back(u);
  }
  return g;
}

PeerAddr client(const std::string& addr) {
  SockAddr a;
  EXPECT_EQ(parse_sockaddr(addr, &a), "") << addr;
  return PeerAddr(a);
}

// The n-th of many distinct IPv4 clients, each in a /24 of its own.
PeerAddr nth_client(int n) {
  return client("10." + std::to_string((n >> 8) & 255) + "." + std::to_string(n & 255) + ".7:40000");
}

std::vector<int> picks(UpstreamPeers& p, int n, const PickInput& in = {}, double now = 0) {
  std::vector<int> out;
  for (int k = 0; k < n; ++k) out.push_back(p.pick(in, now));
  return out;
}

std::vector<int> counts(UpstreamPeers& p, int n, const PickInput& in = {}, double now = 0) {
  std::vector<int> c(p.size(), 0);
  for (int k = 0; k < n; ++k) {
    int i = p.pick(in, now);
    EXPECT_GE(i, 0);
    if (i >= 0) ++c[i];
  }
  return c;
}

int pick_key(UpstreamPeers& p, const std::string& key, double now = 0,
             const std::vector<bool>* tried = nullptr) {
  PickInput in;
  in.key = key;
  in.tried = tried;
  return p.pick(in, now);
}

int pick_client(UpstreamPeers& p, const PeerAddr& c, double now = 0,
                const std::vector<bool>* tried = nullptr) {
  PickInput in;
  in.client = &c;
  in.tried = tried;
  return p.pick(in, now);
}

std::string key(int n) { return "/item/" + std::to_string(n); }

// ---- round robin ----

TEST(UpstreamPeersRoundRobin, SmoothSequenceSpreadsTheHeavyServer) {
  auto g = make_group(Balance::kRoundRobin,
                      {{.addr = "10.0.0.1:80", .weight = 5}, {.addr = "10.0.0.2:80"}, {.addr = "10.0.0.3:80"}});
  UpstreamPeers p(&g);
  EXPECT_EQ(p.size(), 3u);
  // a a b a c a a, twice: the cycle repeats exactly.
  EXPECT_EQ(picks(p, 14), (std::vector<int>{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}));
}

TEST(UpstreamPeersRoundRobin, EqualWeightsTakeTurns) {
  auto g = make_group(Balance::kRoundRobin, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  EXPECT_EQ(picks(p, 7), (std::vector<int>{0, 1, 2, 0, 1, 2, 0}));
}

TEST(UpstreamPeersRoundRobin, WeightTwoToOne) {
  auto g = make_group(Balance::kRoundRobin, {{.addr = "10.0.0.1:80", .weight = 2}, {.addr = "10.0.0.2:80"}});
  UpstreamPeers p(&g);
  EXPECT_EQ(picks(p, 6), (std::vector<int>{0, 1, 0, 0, 1, 0}));
}

TEST(UpstreamPeersRoundRobin, SharesAreExactByWeight) {
  auto g = make_group(Balance::kRoundRobin, {{.addr = "10.0.0.1:80", .weight = 3},
                                             {.addr = "10.0.0.2:80", .weight = 2},
                                             {.addr = "10.0.0.3:80", .weight = 1}});
  UpstreamPeers p(&g);
  EXPECT_EQ(counts(p, 600), (std::vector<int>{300, 200, 100}));
  // And in every cycle of 6, not only in the end.
  for (int cycle = 0; cycle < 10; ++cycle) EXPECT_EQ(counts(p, 6), (std::vector<int>{3, 2, 1}));
}

TEST(UpstreamPeersRoundRobin, TriedServersAreSkipped) {
  auto g = make_group(Balance::kRoundRobin, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  std::vector<bool> tried = {true, false, false};
  PickInput in;
  in.tried = &tried;
  EXPECT_EQ(counts(p, 30, in), (std::vector<int>{0, 15, 15}));
  tried = {true, false, true};
  EXPECT_EQ(picks(p, 3, in), (std::vector<int>{1, 1, 1}));
  tried = {true, true, true};
  EXPECT_EQ(p.pick(in, 0), -1);
  // A shorter vector: the servers past its end have not been tried.
  tried = {true};
  EXPECT_EQ(counts(p, 4, in), (std::vector<int>{0, 2, 2}));
}

TEST(UpstreamPeersRoundRobin, DownServerIsNeverPicked) {
  auto g = make_group(Balance::kRoundRobin,
                      {{"10.0.0.1:80"}, {.addr = "10.0.0.2:80", .weight = 9, .down = true}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  EXPECT_FALSE(p.available(1, 0));
  EXPECT_EQ(counts(p, 100), (std::vector<int>{50, 0, 50}));
}

// ---- least_conn ----

TEST(UpstreamPeersLeastConn, IdleGroupIsSharedLikeRoundRobin) {
  auto g = make_group(Balance::kLeastConn,
                      {{.addr = "10.0.0.1:80", .weight = 5}, {.addr = "10.0.0.2:80"}, {.addr = "10.0.0.3:80"}});
  UpstreamPeers p(&g);
  // Nobody holds a connection: all tie, and ties go by weighted round robin.
  EXPECT_EQ(picks(p, 7), (std::vector<int>{0, 0, 1, 0, 2, 0, 0}));
}

TEST(UpstreamPeersLeastConn, FollowsAcquiredAndReleased) {
  auto g = make_group(Balance::kLeastConn, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  std::set<int> first;
  for (int k = 0; k < 3; ++k) {
    int i = p.pick({}, 0);
    first.insert(i);
    p.acquired(i);
  }
  EXPECT_EQ(first, (std::set<int>{0, 1, 2}));  // one connection each
  p.released(1);
  // Server 1 has the fewest for as long as nobody takes a connection to it.
  EXPECT_EQ(picks(p, 5), (std::vector<int>{1, 1, 1, 1, 1}));
  p.acquired(1);
  p.acquired(1);  // 1, 2, 1 connections
  for (int k = 0; k < 10; ++k) EXPECT_NE(p.pick({}, 0), 1);
  p.acquired(0);  // 2, 2, 1
  EXPECT_EQ(picks(p, 3), (std::vector<int>{2, 2, 2}));
  p.released(0);
  p.released(0);
  p.released(1);
  p.released(1);
  p.released(2);  // 0, 0, 0: round robin again
  std::vector<int> c(3, 0);
  for (int i : picks(p, 30)) ++c[i];
  EXPECT_EQ(c, (std::vector<int>{10, 10, 10}));
}

TEST(UpstreamPeersLeastConn, ConnectionsCountRelativeToWeight) {
  auto g = make_group(Balance::kLeastConn, {{.addr = "10.0.0.1:80", .weight = 2}, {.addr = "10.0.0.2:80"}});
  UpstreamPeers p(&g);
  p.acquired(0);  // 1/2 against 0/1
  EXPECT_EQ(p.pick({}, 0), 1);
  p.acquired(1);  // 1/2 against 1/1
  EXPECT_EQ(p.pick({}, 0), 0);
  p.acquired(0);  // 2/2 against 1/1: a tie
  p.acquired(0);  // 3/2 against 1/1
  EXPECT_EQ(p.pick({}, 0), 1);
}

TEST(UpstreamPeersLeastConn, HeldConnectionsFollowTheWeights) {
  auto g = make_group(Balance::kLeastConn, {{.addr = "10.0.0.1:80", .weight = 3}, {.addr = "10.0.0.2:80"}});
  UpstreamPeers p(&g);
  std::vector<int> c(2, 0);
  for (int k = 0; k < 400; ++k) {
    int i = p.pick({}, 0);
    ++c[i];
    p.acquired(i);
  }
  EXPECT_EQ(c, (std::vector<int>{300, 100}));
}

TEST(UpstreamPeersLeastConn, SlowServerGetsFewerRequests) {
  // Server 0 holds each connection for 8 picks, server 1 for 2: the fast one serves more.
  auto g = make_group(Balance::kLeastConn, {{"10.0.0.1:80"}, {"10.0.0.2:80"}});
  UpstreamPeers p(&g);
  std::multimap<int, int> ends;  // pick number at which a connection is released -> server
  std::vector<int> c(2, 0);
  for (int k = 0; k < 1000; ++k) {
    while (!ends.empty() && ends.begin()->first <= k) {
      p.released(ends.begin()->second);
      ends.erase(ends.begin());
    }
    int i = p.pick({}, 0);
    ++c[i];
    p.acquired(i);
    ends.emplace(k + (i == 0 ? 8 : 2), i);
  }
  EXPECT_GT(c[1], 2 * c[0]);
}

TEST(UpstreamPeersLeastConn, TriedAndOutServersAreSkipped) {
  auto g = make_group(Balance::kLeastConn, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  p.acquired(1);
  p.acquired(2);
  p.acquired(2);
  std::vector<bool> tried = {true};
  PickInput in;
  in.tried = &tried;
  EXPECT_EQ(p.pick(in, 0), 1);  // 0 has the fewest but was tried
  p.failed(1, 0);               // max_fails = 1: out
  EXPECT_EQ(p.pick(in, 0), 2);
  EXPECT_EQ(p.pick({}, 0), 0);
}

// ---- ip_hash ----

TEST(UpstreamPeersIpHash, SameSlash24SameServer) {
  auto g = make_group(Balance::kIpHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  std::set<int> used;
  for (int n = 0; n < 300; ++n) {
    PeerAddr base = nth_client(n);
    int s = pick_client(p, base);
    ASSERT_GE(s, 0);
    used.insert(s);
    std::string prefix = "10." + std::to_string((n >> 8) & 255) + "." + std::to_string(n & 255) + ".";
    for (int last : {0, 1, 99, 255}) {
      EXPECT_EQ(pick_client(p, client(prefix + std::to_string(last) + ":1234")), s) << prefix << last;
    }
  }
  EXPECT_EQ(used, (std::set<int>{0, 1, 2}));
}

TEST(UpstreamPeersIpHash, SharesFollowTheWeights) {
  auto g = make_group(Balance::kIpHash, {{.addr = "10.0.0.1:80", .weight = 3}, {.addr = "10.0.0.2:80"}});
  UpstreamPeers p(&g);
  std::vector<int> c(2, 0);
  const int kClients = 20000;
  for (int n = 0; n < kClients; ++n) ++c[pick_client(p, nth_client(n))];
  double share = static_cast<double>(c[0]) / kClients;
  EXPECT_GT(share, 0.72) << c[0] << " " << c[1];
  EXPECT_LT(share, 0.78) << c[0] << " " << c[1];
}

TEST(UpstreamPeersIpHash, Ipv6UsesTheWholeAddress) {
  auto g = make_group(Balance::kIpHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  std::set<int> used;
  for (int n = 1; n <= 300; ++n) {
    PeerAddr c = client("[2001:db8::" + std::to_string(n) + "]:5000");
    int s = pick_client(p, c);
    used.insert(s);
    EXPECT_EQ(pick_client(p, client("[2001:db8::" + std::to_string(n) + "]:6000")), s);
  }
  // Addresses that differ only in their last bits still spread.
  EXPECT_EQ(used, (std::set<int>{0, 1, 2}));
}

TEST(UpstreamPeersIpHash, MappedIpv4CountsAsIpv4) {
  auto g = make_group(Balance::kIpHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  for (int n = 0; n < 100; ++n) {
    std::string host = "10.9." + std::to_string(n) + ".4";
    EXPECT_EQ(pick_client(p, client("[::ffff:" + host + "]:80")), pick_client(p, client(host + ":80")));
  }
}

TEST(UpstreamPeersIpHash, UnixClientsShareOneServer) {
  auto g = make_group(Balance::kIpHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  int s = pick_client(p, client("unix:/run/a.sock"));
  ASSERT_GE(s, 0);
  for (int k = 0; k < 20; ++k) {
    EXPECT_EQ(pick_client(p, client("unix:/run/other" + std::to_string(k) + ".sock")), s);
  }
  EXPECT_EQ(p.pick({}, 0), s);  // no client address at all: the same
}

TEST(UpstreamPeersIpHash, UnavailableServerRehashesOthersStay) {
  auto g = make_group(Balance::kIpHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  const int kClients = 500;
  std::vector<int> before;
  for (int n = 0; n < kClients; ++n) before.push_back(pick_client(p, nth_client(n)));
  p.failed(1, 0);  // out
  std::set<int> moved_to;
  for (int n = 0; n < kClients; ++n) {
    int s = pick_client(p, nth_client(n));
    if (before[n] == 1) {
      EXPECT_NE(s, 1);
      moved_to.insert(s);
      EXPECT_EQ(pick_client(p, nth_client(n)), s);  // and it stays there
    } else {
      EXPECT_EQ(s, before[n]);
    }
  }
  EXPECT_EQ(moved_to, (std::set<int>{0, 2}));
}

TEST(UpstreamPeersIpHash, TriedServerRehashes) {
  auto g = make_group(Balance::kIpHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  for (int n = 0; n < 200; ++n) {
    PeerAddr c = nth_client(n);
    int first = pick_client(p, c);
    std::vector<bool> tried(3, false);
    tried[first] = true;
    int second = pick_client(p, c, 0, &tried);
    EXPECT_NE(second, first);
    EXPECT_GE(second, 0);
    EXPECT_EQ(pick_client(p, c, 0, &tried), second);  // the retry order is the client's own
    tried[second] = true;
    int third = pick_client(p, c, 0, &tried);
    EXPECT_EQ(third, 3 - first - second);
    tried[third] = true;
    EXPECT_EQ(pick_client(p, c, 0, &tried), -1);
  }
}

TEST(UpstreamPeersIpHash, FallsBackToRoundRobinAfterBoundedRehashes) {
  // A server with 1 of 2001 parts of the weight is rarely reached by rehashing: when the heavy ones
  // are tried, round robin still finds it.
  auto g = make_group(Balance::kIpHash, {{.addr = "10.0.0.1:80", .weight = 1000},
                                         {.addr = "10.0.0.2:80", .weight = 1000},
                                         {.addr = "10.0.0.3:80", .weight = 1}});
  UpstreamPeers p(&g);
  std::vector<bool> tried = {true, true, false};
  for (int n = 0; n < 200; ++n) EXPECT_EQ(pick_client(p, nth_client(n), 0, &tried), 2);
}

// ---- hash KEY (consistent) ----

TEST(UpstreamPeersHash, SameKeySameServer) {
  auto g = make_group(Balance::kHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  UpstreamPeers p(&g);
  UpstreamPeers other(&g);  // another worker builds the same ring
  std::set<int> used;
  for (int n = 0; n < 300; ++n) {
    int s = pick_key(p, key(n));
    used.insert(s);
    EXPECT_EQ(pick_key(p, key(n)), s);
    EXPECT_EQ(pick_key(other, key(n)), s);
  }
  EXPECT_EQ(used, (std::set<int>{0, 1, 2}));
  EXPECT_GE(pick_key(p, ""), 0);  // an empty key is a key
}

TEST(UpstreamPeersHash, SharesFollowTheWeights) {
  auto g = make_group(Balance::kHash, {{.addr = "10.0.0.1:80", .weight = 1},
                                       {.addr = "10.0.0.2:80", .weight = 1},
                                       {.addr = "10.0.0.3:80", .weight = 2},
                                       {.addr = "10.0.0.4:80", .weight = 4}});
  UpstreamPeers p(&g);
  std::vector<int> c(4, 0);
  const int kKeys = 80000;
  for (int n = 0; n < kKeys; ++n) ++c[pick_key(p, key(n))];
  const double expected[] = {1.0 / 8, 1.0 / 8, 2.0 / 8, 4.0 / 8};
  for (int i = 0; i < 4; ++i) {
    double share = static_cast<double>(c[i]) / kKeys;
    EXPECT_NEAR(share, expected[i], expected[i] * 0.15) << "server " << i;
  }
}

TEST(UpstreamPeersHash, ServerOutMovesOnlyItsKeys) {
  auto g = make_group(Balance::kHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"},
                                       {"10.0.0.4:80"}, {"10.0.0.5:80"}});
  UpstreamPeers p(&g);
  const int kKeys = 20000;
  std::vector<int> before;
  for (int n = 0; n < kKeys; ++n) before.push_back(pick_key(p, key(n)));
  p.failed(2, 0);
  ASSERT_FALSE(p.available(2, 0));
  int moved = 0;
  std::vector<int> moved_to(5, 0);
  for (int n = 0; n < kKeys; ++n) {
    int s = pick_key(p, key(n), 1);
    if (before[n] == 2) {
      ++moved;
      ASSERT_NE(s, 2);
      ++moved_to[s];
    } else {
      EXPECT_EQ(s, before[n]) << key(n);
    }
  }
  // About 1/5 of the keys, spread over all the other servers rather than dumped on one.
  EXPECT_GT(moved, kKeys / 5 * 0.7);
  EXPECT_LT(moved, kKeys / 5 * 1.3);
  for (int i : {0, 1, 3, 4}) EXPECT_GT(moved_to[i], moved / 4 / 2) << "server " << i;
  // Back after fail_timeout and a successful probe (the first of its keys asked for then): every
  // key returns where it was.
  int n2 = 0;
  while (before[n2] != 2) ++n2;
  EXPECT_EQ(pick_key(p, key(n2), 10), 2);
  p.succeeded(2, 10.5);
  for (int n = 0; n < kKeys; ++n) EXPECT_EQ(pick_key(p, key(n), 11), before[n]);
}

TEST(UpstreamPeersHash, RemovingAServerFromTheGroupMovesOnlyItsKeys) {
  // A reload without one server: the other servers' points come from their addresses, not from
  // their places in the list, so their keys stay with them although every index after it shifts.
  auto five = make_group(Balance::kHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"},
                                          {"10.0.0.4:80"}, {"10.0.0.5:80"}});
  auto four = make_group(Balance::kHash, {{"10.0.0.5:80"}, {"10.0.0.1:80"}, {"10.0.0.2:80"},
                                          {"10.0.0.4:80"}});
  UpstreamPeers p5(&five), p4(&four);
  const int kKeys = 20000;
  int moved = 0;
  for (int n = 0; n < kKeys; ++n) {
    const std::string& a = five.servers[pick_key(p5, key(n))].text;
    const std::string& b = four.servers[pick_key(p4, key(n))].text;
    if (a == "10.0.0.3:80") {
      ++moved;
    } else {
      EXPECT_EQ(a, b) << key(n);
    }
  }
  EXPECT_GT(moved, kKeys / 5 * 0.7);
  EXPECT_LT(moved, kKeys / 5 * 1.3);
}

TEST(UpstreamPeersHash, AddingAServerTakesKeysOnlyForIt) {
  auto three = make_group(Balance::kHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"}});
  auto four = make_group(Balance::kHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"},
                                          {"10.0.0.4:80"}});
  UpstreamPeers p3(&three), p4(&four);
  const int kKeys = 20000;
  int moved = 0;
  for (int n = 0; n < kKeys; ++n) {
    int a = pick_key(p3, key(n));
    int b = pick_key(p4, key(n));
    if (a != b) {
      ++moved;
      EXPECT_EQ(b, 3) << key(n);
    }
  }
  EXPECT_GT(moved, kKeys / 4 * 0.7);
  EXPECT_LT(moved, kKeys / 4 * 1.3);
}

TEST(UpstreamPeersHash, TriedServerPassesToTheNextPoint) {
  auto g = make_group(Balance::kHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"},
                                       {"10.0.0.4:80"}});
  UpstreamPeers p(&g);
  auto g_out = make_group(Balance::kHash, {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.3:80"},
                                           {"10.0.0.4:80"}});
  for (int n = 0; n < 300; ++n) {
    int first = pick_key(p, key(n));
    std::vector<bool> tried(4, false);
    tried[first] = true;
    int second = pick_key(p, key(n), 0, &tried);
    EXPECT_NE(second, first);
    EXPECT_GE(second, 0);
    // The same server a request would reach if the first one were down.
    g_out.servers[first].down = true;
    UpstreamPeers q(&g_out);
    EXPECT_EQ(pick_key(q, key(n)), second);
    g_out.servers[first].down = false;
    tried.assign(4, true);
    EXPECT_EQ(pick_key(p, key(n), 0, &tried), -1);
  }
}

TEST(UpstreamPeersHash, SameAddressTwiceCountsTwice) {
  // A name that resolves to an address already listed, or one listed twice: both entries own points.
  auto g = make_group(Balance::kHash, {{"10.0.0.1:80"}, {"10.0.0.1:80"}});
  UpstreamPeers p(&g);
  std::vector<int> c(2, 0);
  for (int n = 0; n < 10000; ++n) ++c[pick_key(p, key(n))];
  EXPECT_GT(c[0], 4000);
  EXPECT_GT(c[1], 4000);
}

// ---- passive health (explicit clock, seconds) ----

UpstreamGroup health_group(Balance balance = Balance::kRoundRobin) {
  return make_group(balance, {{.addr = "10.0.0.1:80", .max_fails = 3, .fail_timeout_ms = 10000},
                              {.addr = "10.0.0.2:80", .max_fails = 3, .fail_timeout_ms = 10000}});
}

TEST(UpstreamPeersHealth, MaxFailsWithinFailTimeoutTakesOut) {
  auto g = health_group();
  UpstreamPeers p(&g);
  p.failed(0, 100);
  p.failed(0, 101);
  EXPECT_TRUE(p.available(0, 101.5));
  EXPECT_EQ(counts(p, 4, {}, 101.5), (std::vector<int>{2, 2}));
  p.failed(0, 102);
  EXPECT_FALSE(p.available(0, 102));
  EXPECT_FALSE(p.available(0, 111.999));
  EXPECT_EQ(counts(p, 10, {}, 105), (std::vector<int>{0, 10}));
  EXPECT_EQ(counts(p, 10, {}, 111.9), (std::vector<int>{0, 10}));
  EXPECT_TRUE(p.available(0, 112));  // out for fail_timeout, counted from the failure that did it
  EXPECT_TRUE(p.available(1, 105));
}

TEST(UpstreamPeersHealth, BackAfterFailTimeoutOneRequestAtATime) {
  auto g = health_group();
  UpstreamPeers p(&g);
  for (double t : {0.0, 1.0, 2.0}) p.failed(0, t);
  // At 12 one request goes to server 0 to see whether it is back; no other until it reports.
  std::vector<int> c = counts(p, 10, {}, 12);
  EXPECT_EQ(c, (std::vector<int>{1, 9}));
  EXPECT_FALSE(p.available(0, 12));
  EXPECT_EQ(counts(p, 10, {}, 15), (std::vector<int>{0, 10}));
  // It fails: out for fail_timeout again, after a single failure.
  p.failed(0, 13);
  EXPECT_EQ(counts(p, 10, {}, 22.9), (std::vector<int>{0, 10}));
  EXPECT_EQ(counts(p, 10, {}, 23), (std::vector<int>{1, 9}));
  // It succeeds: back in service, sharing as before.
  p.succeeded(0, 23.5);
  EXPECT_TRUE(p.available(0, 23.5));
  EXPECT_EQ(counts(p, 10, {}, 24), (std::vector<int>{5, 5}));
  // The count started over: two failures are not enough any more.
  p.failed(0, 25);
  p.failed(0, 26);
  EXPECT_TRUE(p.available(0, 26));
  p.failed(0, 27);
  EXPECT_FALSE(p.available(0, 27));
}

TEST(UpstreamPeersHealth, ProbeThatNeverReportsDoesNotKeepTheServerOut) {
  auto g = health_group();
  UpstreamPeers p(&g);
  for (double t : {0.0, 1.0, 2.0}) p.failed(0, t);
  EXPECT_EQ(counts(p, 4, {}, 12), (std::vector<int>{1, 3}));  // the probe, which never reports
  EXPECT_FALSE(p.available(0, 21.9));
  EXPECT_TRUE(p.available(0, 22));
  EXPECT_EQ(counts(p, 4, {}, 22), (std::vector<int>{1, 3}));
}

TEST(UpstreamPeersHealth, WindowStartsAtFirstFailureAndResets) {
  auto g = health_group();
  UpstreamPeers p(&g);
  p.failed(0, 0);
  p.failed(0, 5);
  // 10 s after the first failure the window is over: this failure is the first of a new one.
  p.failed(0, 10);
  EXPECT_TRUE(p.available(0, 10));
  p.failed(0, 11);
  EXPECT_TRUE(p.available(0, 11));
  p.failed(0, 12);  // the third within 10..20
  EXPECT_FALSE(p.available(0, 12));
  EXPECT_TRUE(p.available(0, 22));
}

TEST(UpstreamPeersHealth, FailuresSpreadOverTimeNeverTakeOut) {
  auto g = health_group();
  UpstreamPeers p(&g);
  for (int k = 0; k < 50; ++k) {
    p.failed(0, k * 6.0);  // at most two in any window of 10 s
    EXPECT_TRUE(p.available(0, k * 6.0)) << k;
  }
}

TEST(UpstreamPeersHealth, SuccessInsideTheWindowForgivesNothing) {
  auto g = health_group();
  UpstreamPeers p(&g);
  p.failed(0, 0);
  p.failed(0, 1);
  p.succeeded(0, 1.5);
  p.failed(0, 2);
  EXPECT_FALSE(p.available(0, 2));
}

TEST(UpstreamPeersHealth, LateSuccessOfAnEarlierRequestDoesNotBringBack) {
  auto g = health_group();
  UpstreamPeers p(&g);
  for (double t : {0.0, 1.0, 2.0}) p.failed(0, t);
  p.succeeded(0, 3);  // a request sent before the server went out
  EXPECT_FALSE(p.available(0, 3));
  EXPECT_EQ(counts(p, 4, {}, 3), (std::vector<int>{0, 4}));
}

TEST(UpstreamPeersHealth, FailTimeoutInMilliseconds) {
  auto g = make_group(Balance::kRoundRobin,
                      {{.addr = "10.0.0.1:80", .max_fails = 1, .fail_timeout_ms = 1500}, {"10.0.0.2:80"}});
  UpstreamPeers p(&g);
  p.failed(0, 50);
  EXPECT_FALSE(p.available(0, 51.499));
  EXPECT_TRUE(p.available(0, 51.5));
}

TEST(UpstreamPeersHealth, MaxFailsZeroNeverTakesOut) {
  auto g = make_group(Balance::kRoundRobin, {{.addr = "10.0.0.1:80", .max_fails = 0}, {"10.0.0.2:80"}});
  UpstreamPeers p(&g);
  for (int k = 0; k < 100; ++k) p.failed(0, k * 0.01);
  EXPECT_TRUE(p.available(0, 1));
  EXPECT_EQ(counts(p, 10, {}, 1), (std::vector<int>{5, 5}));
}

TEST(UpstreamPeersHealth, OneServer) {
  auto g = make_group(Balance::kRoundRobin, {{.addr = "10.0.0.1:80", .max_fails = 2, .fail_timeout_ms = 10000}});
  UpstreamPeers p(&g);
  EXPECT_EQ(picks(p, 5), (std::vector<int>{0, 0, 0, 0, 0}));
  p.failed(0, 0);
  EXPECT_EQ(picks(p, 3, {}, 1), (std::vector<int>{0, 0, 0}));
  p.failed(0, 2);
  EXPECT_EQ(p.pick({}, 2), -1);   // out, even alone
  EXPECT_EQ(p.pick({}, 11.9), -1);
  EXPECT_EQ(p.pick({}, 12), 0);   // the probe
  EXPECT_EQ(p.pick({}, 12), -1);  // one at a time
  p.succeeded(0, 12.1);
  EXPECT_EQ(picks(p, 3, {}, 12.2), (std::vector<int>{0, 0, 0}));
}

TEST(UpstreamPeersHealth, NothingLeftGivesMinusOne) {
  auto none = make_group(Balance::kRoundRobin, {});
  UpstreamPeers empty(&none);
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.pick({}, 0), -1);
  auto down = make_group(Balance::kRoundRobin,
                         {{.addr = "10.0.0.1:80", .down = true}, {.addr = "10.0.0.2:80", .backup = true, .down = true}});
  UpstreamPeers all_down(&down);
  EXPECT_EQ(all_down.pick({}, 0), -1);
  auto g = health_group();
  UpstreamPeers p(&g);
  for (int i : {0, 1}) {
    for (double t : {0.0, 1.0, 2.0}) p.failed(i, t);
  }
  EXPECT_EQ(p.pick({}, 5), -1);
}

// ---- backup servers ----

TEST(UpstreamPeersBackup, OnlyWhenNoPrimaryIsLeft) {
  auto g = make_group(Balance::kRoundRobin, {{"10.0.0.1:80"},
                                             {.addr = "10.0.0.8:80", .backup = true},
                                             {"10.0.0.2:80"},
                                             {.addr = "10.0.0.9:80", .backup = true}});
  UpstreamPeers p(&g);
  EXPECT_EQ(counts(p, 100), (std::vector<int>{50, 0, 50, 0}));
  p.failed(0, 0);
  EXPECT_EQ(counts(p, 10, {}, 1), (std::vector<int>{0, 0, 10, 0}));  // one primary is enough
  p.failed(2, 1);
  EXPECT_EQ(picks(p, 4, {}, 2), (std::vector<int>{1, 3, 1, 3}));
  // A primary back: the backups rest again.
  EXPECT_EQ(p.pick({}, 10), 0);
  p.succeeded(0, 10.1);
  EXPECT_EQ(counts(p, 10, {}, 10.2), (std::vector<int>{10, 0, 0, 0}));
}

TEST(UpstreamPeersBackup, AfterEveryPrimaryWasTried) {
  auto g = make_group(Balance::kRoundRobin,
                      {{"10.0.0.1:80"}, {"10.0.0.2:80"}, {.addr = "10.0.0.9:80", .backup = true}});
  UpstreamPeers p(&g);
  std::vector<bool> tried = {true, false, false};
  PickInput in;
  in.tried = &tried;
  EXPECT_EQ(p.pick(in, 0), 1);
  tried[1] = true;
  EXPECT_EQ(p.pick(in, 0), 2);
  tried[2] = true;
  EXPECT_EQ(p.pick(in, 0), -1);
}

TEST(UpstreamPeersBackup, DownPrimariesCountAsGone) {
  auto g = make_group(Balance::kRoundRobin,
                      {{.addr = "10.0.0.1:80", .down = true}, {.addr = "10.0.0.9:80", .backup = true}});
  UpstreamPeers p(&g);
  EXPECT_EQ(picks(p, 3), (std::vector<int>{1, 1, 1}));
}

// ---- every method ----

class UpstreamPeersAnyMethod : public ::testing::TestWithParam<Balance> {
 protected:
  // Request n: a client of its own and a key of its own, so that the hash methods spread too.
  int pick_nth(UpstreamPeers& p, int n, double now = 0, const std::vector<bool>* tried = nullptr) {
    client_ = nth_client(n);
    key_ = key(n);
    PickInput in;
    in.client = &client_;
    in.key = key_;
    in.tried = tried;
    return p.pick(in, now);
  }
  PeerAddr client_;
  std::string key_;
};

TEST_P(UpstreamPeersAnyMethod, SharesFollowTheWeights) {
  auto g = make_group(GetParam(), {{.addr = "10.0.0.1:80", .weight = 3}, {.addr = "10.0.0.2:80", .weight = 1}});
  UpstreamPeers p(&g);
  std::vector<int> c(2, 0);
  const int kRequests = 20000;
  for (int n = 0; n < kRequests; ++n) ++c[pick_nth(p, n)];
  EXPECT_NEAR(static_cast<double>(c[0]) / kRequests, 0.75, 0.04) << c[0] << " " << c[1];
}

TEST_P(UpstreamPeersAnyMethod, SkipsDownOutAndTried) {
  auto g = make_group(GetParam(), {{"10.0.0.1:80"},
                                   {.addr = "10.0.0.2:80", .down = true},
                                   {"10.0.0.3:80"},
                                   {"10.0.0.4:80"},
                                   {.addr = "10.0.0.9:80", .backup = true}});
  UpstreamPeers p(&g);
  p.failed(2, 0);
  std::vector<bool> tried = {false, false, false, true};
  std::vector<int> c(5, 0);
  for (int n = 0; n < 1000; ++n) ++c[pick_nth(p, n, 1, &tried)];
  EXPECT_EQ(c, (std::vector<int>{1000, 0, 0, 0, 0}));
  tried[0] = true;  // every primary down, out or tried: the backup
  for (int n = 0; n < 100; ++n) EXPECT_EQ(pick_nth(p, n, 1, &tried), 4);
  tried.push_back(true);
  for (int n = 0; n < 100; ++n) EXPECT_EQ(pick_nth(p, n, 1, &tried), -1);
}

TEST_P(UpstreamPeersAnyMethod, BackupsShareByTheSameMethod) {
  auto g = make_group(GetParam(), {{"10.0.0.1:80"},
                                   {.addr = "10.0.0.8:80", .weight = 3, .backup = true},
                                   {.addr = "10.0.0.9:80", .backup = true}});
  UpstreamPeers p(&g);
  p.failed(0, 0);
  std::vector<int> c(3, 0);
  const int kRequests = 20000;
  for (int n = 0; n < kRequests; ++n) ++c[pick_nth(p, n, 1)];
  EXPECT_EQ(c[0], 0);
  EXPECT_NEAR(static_cast<double>(c[1]) / kRequests, 0.75, 0.04) << c[1] << " " << c[2];
}

TEST_P(UpstreamPeersAnyMethod, OneServerWhileAvailable) {
  auto g = make_group(GetParam(), {{"10.0.0.1:80"}});
  UpstreamPeers p(&g);
  for (int n = 0; n < 100; ++n) EXPECT_EQ(pick_nth(p, n), 0);
  p.failed(0, 0);
  for (int n = 0; n < 100; ++n) EXPECT_EQ(pick_nth(p, n, 1), -1);
}

std::string method_name(const ::testing::TestParamInfo<Balance>& info) {
  switch (info.param) {
    case Balance::kRoundRobin: return "RoundRobin";
    case Balance::kLeastConn: return "LeastConn";
    case Balance::kIpHash: return "IpHash";
    case Balance::kHash: return "Hash";
  }
  return "Unknown";
}

INSTANTIATE_TEST_SUITE_P(UpstreamPeers, UpstreamPeersAnyMethod,
                         ::testing::Values(Balance::kRoundRobin, Balance::kLeastConn, Balance::kIpHash,
                                           Balance::kHash),
                         method_name);

}  // namespace
}  // namespace baton::http

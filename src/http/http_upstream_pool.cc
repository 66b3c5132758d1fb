#include "http/http_upstream_pool.h"

#include <errno.h>

#include "core/log.h"

namespace baton::http {

namespace {
// A request that must not be sent twice only reuses a connection idle for less than this. An
// upstream that closes idle connections sooner than this is rare; one that closes them after a
// second or more (the usual application servers) never races such a request.
constexpr double kSafeIdle = 0.3;
// How long before an upstream's idle timeout a pooled connection is retired: a request must reach
// the upstream before it decides to close, whatever the network's delay.
double retire_margin(double timeout) { return timeout > 2 ? 1.0 : timeout / 2; }
}  // namespace

void UpstreamLink::on_readable() {
  if (user) user->upstream_readable();
  else runtime->idle_event(this, false);
}

void UpstreamLink::on_writable() {
  if (user) user->upstream_writable();
  else conn->want_write(false);
}

void UpstreamLink::on_timeout() {
  if (user) user->upstream_timeout();
  else runtime->idle_event(this, true);
}

void UpstreamLink::on_drain() {
  // A draining worker keeps no idle upstream connections; busy ones finish their exchange.
  if (!user) conn->close();
}

void UpstreamLink::on_close() {
  if (idle) runtime->unlink(this);
  if (user) {
    User* u = user;
    user = nullptr;
    u->upstream_closed();
  }
}

UpstreamRuntime::UpstreamRuntime(EventLoop* loop, ConnectionList* conns, const UpstreamGroup* group)
    : loop_(loop), conns_(conns), group_(group), peers_(group), pools_(group->servers.size()) {}

UpstreamRuntime::~UpstreamRuntime() {
  for (ServerPool& p : pools_)
    while (p.head) p.head->conn->close();  // unlinks it
}

UpstreamRuntime* UpstreamRuntimes::get(const UpstreamGroup* g) {
  auto& slot = map_[g];
  if (!slot) {
    slot = std::make_unique<UpstreamRuntime>(loop_, conns_, g);
    if (draining_) slot->set_draining();
  }
  return slot.get();
}

void UpstreamRuntimes::drain() {
  draining_ = true;
  for (auto& [group, rt] : map_) rt->set_draining();
}

UpstreamLink* UpstreamRuntime::connect(int server) {
  Connection* c = Connection::connect(loop_, conns_, group_->servers[static_cast<size_t>(server)].addr);
  if (!c) return nullptr;
  auto link = std::make_unique<UpstreamLink>(c, this, server);
  UpstreamLink* l = link.get();
  c->set_handler(std::move(link));
  return l;
}

double UpstreamRuntime::idle_limit(int server) const {
  double limit = static_cast<double>(group_->keepalive_timeout_ms) / 1000.0;
  double seen = pools_[static_cast<size_t>(server)].observed_close;
  if (seen > 0) {
    double t = seen - retire_margin(seen);
    if (t < limit) limit = t;
  }
  return limit;
}

TlsSessionSlot* UpstreamRuntime::tls_session(const void* key, int server) {
  auto& slot = tls_sessions_[{key, server}];
  if (!slot) slot = std::make_unique<TlsSessionSlot>();
  return slot.get();
}

UpstreamLink* UpstreamRuntime::take(int server, bool safe_only, const void* tls_key) {
  ServerPool& p = pools_[static_cast<size_t>(server)];
  double now = loop_->now();
  // The most recently used first: it is the least likely to be closed by the upstream.
  for (UpstreamLink* l = p.head; l; l = l->pool_next) {
    if (safe_only && now - l->idle_since >= kSafeIdle) break;  // the rest are older still
    if (l->retire_at > 0 && now >= l->retire_at) continue;
    if (l->tls_key != tls_key) continue;
    unlink(l);
    l->conn->want_read(false);
    l->conn->clear_deadline();
    return l;
  }
  return nullptr;
}

void UpstreamRuntime::give_back(UpstreamLink* l, double keepalive_timeout_s, int64_t keepalive_max) {
  l->user = nullptr;
  Connection* c = l->conn;
  c->set_log(nullptr);  // idle in the pool, it belongs to no request
  double now = loop_->now();
  uint64_t max_requests = group_->keepalive_requests;
  if (keepalive_max >= 0) {
    uint64_t left = l->requests + static_cast<uint64_t>(keepalive_max);
    if (left < max_requests) max_requests = left;
  }
  if (keepalive_timeout_s >= 0) l->retire_at = now + keepalive_timeout_s - retire_margin(keepalive_timeout_s);
  if (draining_ || group_->keepalive == 0 || l->requests >= max_requests || (l->retire_at > 0 && now >= l->retire_at) ||
      !c->out().empty()) {
    c->close();
    return;
  }
  if (idle_count_ >= group_->keepalive) {
    // Full: the connection idle the longest makes room.
    UpstreamLink* oldest = nullptr;
    for (ServerPool& p : pools_)
      for (UpstreamLink* x = p.head; x; x = x->pool_next)
        if (!oldest || x->idle_since < oldest->idle_since) oldest = x;
    if (oldest) oldest->conn->close();
  }
  ServerPool& p = pools_[static_cast<size_t>(l->server)];
  l->idle = true;
  l->idle_since = now;
  l->pool_prev = nullptr;
  l->pool_next = p.head;
  if (p.head) p.head->pool_prev = l;
  p.head = l;
  idle_count_++;
  c->want_write(false);
  c->want_read(true);  // the upstream closing it, or sending anything unasked, removes it
  double limit = idle_limit(l->server);
  if (l->retire_at > 0 && l->retire_at - now < limit) limit = l->retire_at - now;
  c->clear_deadline();
  c->set_deadline(limit > 0 ? limit : 0.001);
}

void UpstreamRuntime::idle_event(UpstreamLink* l, bool timed_out) {
  if (!timed_out) {
    // An idle connection has nothing to say: this is the upstream closing it (or talking out of
    // turn, which makes it unusable too). Closing it after a while idle teaches the pool how long
    // this server keeps connections.
    char b[1];
    ssize_t n = l->conn->read(b, sizeof(b));
    if (n == kIoWantRead) return;
    if (n == 0) {
      double now = loop_->now();
      double idle = now - l->idle_since;
      ServerPool& p = pools_[static_cast<size_t>(l->server)];
      // A server that restarts closes every idle connection at once, whatever their idle times;
      // one that times them out closes each after the same idle time.
      bool like = p.candidate > 0 && idle > p.candidate * 0.8 && idle < p.candidate * 1.25;
      if (like && now - p.candidate_at > 0.1) {
        double t = idle < p.candidate ? idle : p.candidate;
        if (p.observed_close == 0 || t < p.observed_close) p.observed_close = t;
      } else if (idle > 0.05) {
        p.candidate = idle;
        p.candidate_at = now;
      }
    }
  }
  l->conn->close();
}

void UpstreamRuntime::unlink(UpstreamLink* l) {
  if (!l->idle) return;
  ServerPool& p = pools_[static_cast<size_t>(l->server)];
  if (l->pool_prev) l->pool_prev->pool_next = l->pool_next;
  else p.head = l->pool_next;
  if (l->pool_next) l->pool_next->pool_prev = l->pool_prev;
  l->pool_prev = l->pool_next = nullptr;
  l->idle = false;
  idle_count_--;
}

}  // namespace baton::http

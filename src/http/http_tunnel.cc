#include "http/http_tunnel.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>

#include "core/log.h"
#include "event/listener.h"
#include "http/http_worker.h"

namespace baton::http {

namespace {

constexpr int kClient = 0;
constexpr int kUpstream = 1;

class Tunnel;

// The handler of each of the two connections: its events go to the tunnel, with the side.
class TunnelSide final : public ConnectionHandler {
 public:
  TunnelSide(Tunnel* t, int side) : t_(t), side_(side) {}
  void on_readable() override;
  void on_writable() override;
  void on_timeout() override;
  void on_drain() override;
  void on_close() override;

 private:
  Tunnel* t_;
  int side_;
};

class Tunnel final : public Deletable {
 public:
  Tunnel(HttpWorker* w, double timeout_s, std::string listener, bool via_proxy_protocol)
      : w_(w), timeout_s_(timeout_s), listener_(std::move(listener)), via_proxy_protocol_(via_proxy_protocol) {}

  void start(Connection* client, Connection* upstream, std::string_view to_client, std::string_view to_upstream,
             double idle_left_s);
  void readable(int side);
  void writable(int side);
  void timeout() { end(); }
  void drain();
  // A hand-over the channel could not take at the drain is tried again as bytes move.
  void retry() {
    if (draining_ && !ended_) try_hand_over();
  }
  void side_closed(int side);

 private:
  void end();
  void touch() {
    if (conn_[kClient]) conn_[kClient]->set_deadline(timeout_s_);
  }
  // A direction ended (its reader saw the end of the stream): passed on once its queue is out.
  void pass_eof(int to);
  void check_end();
  bool try_hand_over();

  HttpWorker* w_;
  double timeout_s_;
  std::string listener_;  // the client's, as the description named it (it may be gone here)
  bool via_proxy_protocol_;
  Connection* conn_[2] = {nullptr, nullptr};
  bool eof_[2] = {false, false};    // side i ended its stream
  bool shut_[2] = {false, false};   // our sending side to i is shut
  bool paused_[2] = {false, false}; // side i is not read: its peer's queue is full
  bool draining_ = false;
  bool ended_ = false;
};

void TunnelSide::on_readable() {
  t_->readable(side_);
  t_->retry();
}
void TunnelSide::on_writable() {
  t_->writable(side_);
  t_->retry();
}
void TunnelSide::on_timeout() { t_->timeout(); }
void TunnelSide::on_drain() { t_->drain(); }
void TunnelSide::on_close() { t_->side_closed(side_); }

void Tunnel::start(Connection* client, Connection* upstream, std::string_view to_client, std::string_view to_upstream,
                   double idle_left_s) {
  conn_[kClient] = client;
  conn_[kUpstream] = upstream;
  client->set_handler(std::make_unique<TunnelSide>(this, kClient));
  upstream->set_handler(std::make_unique<TunnelSide>(this, kUpstream));
  client->set_deadline(idle_left_s);
  // What the old worker had read and not yet written goes out first.
  client->out().append(to_client);
  upstream->out().append(to_upstream);
  for (int i : {kClient, kUpstream}) {
    conn_[i]->want_read(true);
    if (!conn_[i]->out().empty()) writable(i);
    if (ended_) return;
  }
}

void Tunnel::readable(int side) {
  int to = 1 - side;
  Connection* from = conn_[side];
  Connection* dst = conn_[to];
  char* buf = w_->in.data();
  for (int round = 0; round < 8; round++) {
    if (paused_[side]) {
      from->want_read(false);
      return;
    }
    ssize_t n = from->read(buf, w_->in.size());
    if (n == kIoWantRead || n == kIoWantWrite) return;
    if (n < 0) {
      end();
      return;
    }
    if (n == 0) {
      eof_[side] = true;
      from->want_read(false);
      pass_eof(to);
      return;
    }
    touch();
    iovec iov{buf, static_cast<size_t>(n)};
    if (!dst->send(&iov, 1)) {
      end();
      return;
    }
    if (!dst->out().empty()) {
      dst->want_write(true);
      if (dst->out().above_high()) {
        paused_[side] = true;
        from->want_read(false);
        return;
      }
    }
  }
}

void Tunnel::writable(int side) {
  Connection* c = conn_[side];
  if (!c->flush_queue(false)) {
    if (c->failed()) end();
    return;
  }
  c->want_write(false);
  touch();
  if (eof_[1 - side]) pass_eof(side);
  if (ended_) return;
  if (c->out().below_low() && paused_[1 - side]) {
    paused_[1 - side] = false;
    if (!eof_[1 - side]) conn_[1 - side]->want_read(true);
  }
}

void Tunnel::pass_eof(int to) {
  Connection* c = conn_[to];
  if (shut_[to] || !c->out().empty()) return;
  shut_[to] = true;
  c->shutdown_write();
  check_end();
}

void Tunnel::check_end() {
  // Both directions have ended and been passed on: nothing more can move.
  if (shut_[kClient] && shut_[kUpstream]) end();
}

void Tunnel::end() {
  if (ended_) return;
  ended_ = true;
  for (Connection* c : conn_)
    if (c) c->close();
}

void Tunnel::side_closed(int side) {
  conn_[side] = nullptr;
  // One side gone, the tunnel is over: the other side closes too.
  end();
  if (!conn_[kClient] && !conn_[kUpstream]) w_->loop->defer_delete(this);
}

void Tunnel::drain() {
  // Each of the two connections is asked; the first asks for both.
  if (draining_ || ended_) return;
  draining_ = true;
  try_hand_over();
}

bool Tunnel::try_hand_over() {
  if (!w_->can_hand_over_tunnels() || ended_) return false;
  // A side that ended its stream has a state a description does not carry: it finishes here.
  if (eof_[kClient] || eof_[kUpstream] || shut_[kClient] || shut_[kUpstream]) return false;
  Connection* client = conn_[kClient];
  Connection* upstream = conn_[kUpstream];
  if (client->out().memory() + upstream->out().memory() > kHandoverMaxSpill) return false;
  HandedConnection hc;
  hc.kind = HandedConnection::Kind::kTunnel;
  hc.listener = listener_;
  hc.via_proxy_protocol = via_proxy_protocol_;
  hc.peer = peer_sockaddr(client->peer());
  hc.timeout_ms = static_cast<int64_t>(timeout_s_ * 1000);
  hc.idle_left_ms = hc.timeout_ms;
  bool ok = client->out().copy_memory(&hc.to_client) && upstream->out().copy_memory(&hc.to_upstream);
  Fd a = client->duplicate();
  Fd b = upstream->duplicate();
  if (ok && a && b) {
    hc.fds.push_back(std::move(a));
    hc.fds.push_back(std::move(b));
    ok = w_->hand_over(std::move(hc));
  } else {
    ok = false;
  }
  if (!ok) return false;  // it stays here for now
  ended_ = true;
  client->close();
  if (conn_[kUpstream]) conn_[kUpstream]->close();
  return true;
}

}  // namespace

void adopt_tunnel(HttpWorker* w, HandedConnection&& c, Listening* ls) {
  sockaddr_storage up{};
  socklen_t len = sizeof(up);
  getpeername(c.fds[1].get(), reinterpret_cast<sockaddr*>(&up), &len);
  SockAddr upstream_addr;
  memcpy(&upstream_addr.storage, &up, std::min<size_t>(len, sizeof(up)));
  upstream_addr.len = len;
  auto* client = new Connection(w->loop, w->conns, std::move(c.fds[0]), c.peer, ls);
  auto* upstream = new Connection(w->loop, w->conns, std::move(c.fds[1]), upstream_addr, nullptr);
  auto* t = new Tunnel(w, static_cast<double>(c.timeout_ms) / 1000.0, c.listener, c.via_proxy_protocol);
  t->start(client, upstream, c.to_client, c.to_upstream, static_cast<double>(c.idle_left_ms) / 1000.0);
  // Taken while this worker drains too: handed on, or drained, with the rest.
  if (w->draining() && !client->closed()) client->drain();
}

}  // namespace baton::http

#include "event/listener.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>

#include "core/log.h"

namespace baton {

Acceptor::Acceptor(EventLoop* loop, ConnectionList* conns, size_t max_conns, Handler handler, void* arg)
    : loop_(loop), conns_(conns), max_conns_(max_conns), handler_(handler), arg_(arg) {
  ev_init(&resume_, resume_cb);
  resume_.data = this;
  epfd_.reset(epoll_create1(EPOLL_CLOEXEC));
  ev_io_init(&ep_io_, exclusive_cb, epfd_.get(), EV_READ);
  ep_io_.data = this;
}

void Acceptor::resume_cb(struct ev_loop*, ev_timer* w, int) {
  static_cast<Acceptor*>(w->data)->pause(false);
}

Acceptor::~Acceptor() {
  ev_timer_stop(loop_->raw(), &resume_);
  arm(false);
  for (Watcher* w : watchers_) delete w;
}

// Registers (on) or withdraws (off) every socket.
void Acceptor::arm(bool on) {
  if (epfd_) {
    for (Watcher* w : watchers_) {
      if (!w->ls->fd.valid()) continue;
      if (on) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        ev.data.ptr = w;
        if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, w->ls->fd.get(), &ev) < 0 && errno != EEXIST) {
          if (errno == EINVAL) {
            // A kernel without EPOLLEXCLUSIVE: every worker watches every socket directly.
            epfd_.reset();
            arm(on);
            return;
          }
          log_alert("epoll_ctl() on %s failed (%s)", w->ls->addr.to_string().c_str(), strerror(errno));
        }
      } else {
        epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, w->ls->fd.get(), nullptr);
      }
    }
    if (on) ev_io_start(loop_->raw(), &ep_io_);
    else ev_io_stop(loop_->raw(), &ep_io_);
    return;
  }
  ev_io_stop(loop_->raw(), &ep_io_);
  for (Watcher* w : watchers_) {
    if (on && w->ls->fd.valid()) {
      ev_io_set(&w->io, w->ls->fd.get(), EV_READ);
      ev_io_start(loop_->raw(), &w->io);
    } else {
      ev_io_stop(loop_->raw(), &w->io);
    }
  }
}

void Acceptor::add(Listening* ls) {
  arm(false);
  auto* w = new Watcher{};
  ev_io_init(&w->io, accept_cb, ls->fd.get(), EV_READ);
  w->io.data = w;
  w->ls = ls;
  w->owner = this;
  watchers_.push_back(w);
  if (!stopped_ && !paused_) arm(true);
}

void Acceptor::stop() {
  if (!stopped_) arm(false);
  stopped_ = true;
  ev_timer_stop(loop_->raw(), &resume_);
}

void Acceptor::pause(bool paused) {
  if (paused_ == paused || stopped_) return;
  paused_ = paused;
  arm(!paused);
}

void Acceptor::on_connections_changed() {
  if (paused_ && (conns_->size() < max_conns_ || conns_->reusable() > 0)) pause(false);
}

void Acceptor::make_room() {
  // As nginx does: connections that have not begun a request (silent new ones, idle keep-alive
  // ones) are closed, oldest first, rather than shutting new clients out until their timeouts. An
  // eighth of them at a time (1 to 32), so that a flood of new connections does not pay one call
  // each while a worker with a few idle connections loses only what it needs.
  size_t n = conns_->reclaim(std::clamp<size_t>(conns_->reusable() / 8, 1, 32));
  reclaimed_ += n;
  double now = ev_now(loop_->raw());
  if (now - reclaim_logged_ >= 1.0) {
    log_warn("%zu worker_connections are not enough, closed %zu idle connection(s) to make room",
             max_conns_, reclaimed_);
    reclaim_logged_ = now;
    reclaimed_ = 0;
  }
}

void Acceptor::exclusive_cb(struct ev_loop*, ev_io* io, int) {
  auto* self = static_cast<Acceptor*>(io->data);
  epoll_event events[16];
  int n = epoll_wait(self->epfd_.get(), events, 16, 0);
  for (int i = 0; i < n && !self->stopped_ && !self->paused_; i++)
    self->accept_on(static_cast<Watcher*>(events[i].data.ptr));
}

void Acceptor::accept_cb(struct ev_loop*, ev_io* io, int) {
  auto* w = static_cast<Watcher*>(io->data);
  w->owner->accept_on(w);
}

void Acceptor::accept_on(Watcher* w) {
  Acceptor* self = this;
  // Several workers share the socket: take a bounded batch so that one worker does not starve
  // the others, and stop at worker_connections.
  for (int i = 0; i < 64 && !self->stopped_; i++) {
    bool full = self->conns_->size() >= self->max_conns_;
    if (full && self->conns_->reusable() == 0) {
      if (!self->paused_) {
        // Once a second at most: a full worker pauses and resumes with every request that ends.
        self->pauses_++;
        double now = ev_now(self->loop_->raw());
        if (now - self->pause_logged_ >= 1.0) {
          log_warn("%zu worker_connections are not enough (accepting paused %zu time(s))", self->max_conns_,
                   self->pauses_);
          self->pause_logged_ = now;
          self->pauses_ = 0;
        }
      }
      self->pause(true);
      return;
    }
    SockAddr peer;
    peer.len = sizeof(peer.storage);
    int fd = ::accept4(w->ls->fd.get(), peer.sa(), &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      switch (errno) {
        case EAGAIN:
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
          if (errno == EAGAIN) return;
          continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
          // The socket stays readable: without a pause the loop would spin on it.
          log_crit("accept4() on %s failed (%s), accepting again in 0.5s", w->ls->addr.to_string().c_str(),
                   strerror(errno));
          self->pause(true);
          ev_timer_set(&self->resume_, 0.5, 0.);
          ev_timer_start(self->loop_->raw(), &self->resume_);
          return;
        default:
          log_error("accept4() on %s failed (%s)", w->ls->addr.to_string().c_str(), strerror(errno));
          return;
      }
    }
    // Room is made only for a connection that is really there: an idle one is never closed for
    // an accept that finds nothing.
    if (full) self->make_room();
    if (peer.family() == AF_UNIX || peer.len == 0) {
      // A unix-socket client has no address of its own; log it as the listener's family.
      peer.storage.ss_family = AF_UNIX;
    }
    self->handler_(self->arg_, Fd(fd), peer, w->ls);
  }
}

}  // namespace baton

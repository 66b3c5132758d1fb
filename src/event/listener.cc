#include "event/listener.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"

namespace baton {

Acceptor::Acceptor(EventLoop* loop, ConnectionList* conns, size_t max_conns, Handler handler, void* arg)
    : loop_(loop), conns_(conns), max_conns_(max_conns), handler_(handler), arg_(arg) {
  ev_init(&resume_, resume_cb);
  resume_.data = this;
}

void Acceptor::resume_cb(struct ev_loop*, ev_timer* w, int) {
  static_cast<Acceptor*>(w->data)->pause(false);
}

Acceptor::~Acceptor() {
  ev_timer_stop(loop_->raw(), &resume_);
  for (Watcher* w : watchers_) {
    ev_io_stop(loop_->raw(), &w->io);
    delete w;
  }
}

void Acceptor::add(Listening* ls) {
  auto* w = new Watcher{};
  ev_io_init(&w->io, accept_cb, ls->fd.get(), EV_READ);
  w->io.data = w;
  w->ls = ls;
  w->owner = this;
  watchers_.push_back(w);
  if (!stopped_ && !paused_) ev_io_start(loop_->raw(), &w->io);
}

void Acceptor::stop() {
  stopped_ = true;
  ev_timer_stop(loop_->raw(), &resume_);
  for (Watcher* w : watchers_) ev_io_stop(loop_->raw(), &w->io);
}

void Acceptor::pause(bool paused) {
  if (paused_ == paused || stopped_) return;
  paused_ = paused;
  for (Watcher* w : watchers_) {
    if (paused) ev_io_stop(loop_->raw(), &w->io);
    else ev_io_start(loop_->raw(), &w->io);
  }
}

void Acceptor::on_connections_changed() {
  if (paused_ && conns_->size() < max_conns_) pause(false);
}

void Acceptor::accept_cb(struct ev_loop*, ev_io* io, int) {
  auto* w = static_cast<Watcher*>(io->data);
  Acceptor* self = w->owner;
  // Several workers share the socket: take a bounded batch so that one worker does not starve
  // the others, and stop at worker_connections.
  for (int i = 0; i < 64 && !self->stopped_; i++) {
    if (self->conns_->size() >= self->max_conns_) {
      if (!self->paused_) log_warn("%zu worker_connections are not enough", self->max_conns_);
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
    if (peer.family() == AF_UNIX || peer.len == 0) {
      // A unix-socket client has no address of its own; log it as the listener's family.
      peer.storage.ss_family = AF_UNIX;
    }
    self->handler_(self->arg_, Fd(fd), peer, w->ls);
  }
}

}  // namespace baton

#include "event/connection.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include <algorithm>
#include <cassert>
#include <vector>

namespace baton {

ssize_t Transport::sendfile(int, int, off_t*, size_t) {
  errno = EOPNOTSUPP;
  return kIoError;
}

PlainTransport* PlainTransport::instance() {
  static PlainTransport t;
  return &t;
}

ssize_t PlainTransport::read(int fd, char* buf, size_t len) {
  ssize_t n;
  do {
    n = ::recv(fd, buf, len, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN ? kIoWantRead : kIoError;
  return n;
}

ssize_t PlainTransport::writev(int fd, const iovec* iov, int iovcnt, bool more) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(iovcnt);
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN ? kIoWantWrite : kIoError;
  return n;
}

ssize_t PlainTransport::sendfile(int fd, int file, off_t* offset, size_t len) {
  ssize_t n;
  do {
    n = ::sendfile(fd, file, offset, len);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN ? kIoWantWrite : kIoError;
  return n;
}

void PlainTransport::shutdown_write(int fd) { ::shutdown(fd, SHUT_WR); }

// limit_rate's state: what may have left by a moment is `after` plus one piece plus `rate` bytes a
// second since `start`; `sent` is what has.
struct Connection::RateLimit {
  uint64_t rate = 0;
  uint64_t after = 0;
  uint64_t piece = 0;  // the least worth a write (a tenth of a second's worth, within bounds)
  uint64_t sent = 0;
  double start = 0;
  ev_timer timer;
  // The bytes that may leave at `now` beyond those already sent.
  uint64_t allowance(double now) const {
    double allowed = static_cast<double>(after) + static_cast<double>(piece) + static_cast<double>(rate) * (now - start);
    double left = allowed - static_cast<double>(sent);
    return left >= 1 ? static_cast<uint64_t>(left) : 0;
  }
};

Connection::Connection(EventLoop* loop, ConnectionList* list, Fd fd, const SockAddr& peer, Listening* ls)
    : loop_(loop), fd_(std::move(fd)), peer_(PeerAddr(peer)), listening_(ls), transport_(PlainTransport::instance()), list_(list) {
  ev_io_init(&io_, io_cb, fd_.get(), 0);
  io_.data = this;
  ev_init(&timer_, timer_cb);
  timer_.data = this;
  list_->add(this);
}

Connection::~Connection() {
  assert(!fd_.valid());
  assert(!rate_ || !ev_is_active(&rate_->timer));
  if (!transport_->shared()) delete transport_;
}

Connection* Connection::connect(EventLoop* loop, ConnectionList* list, const SockAddr& addr) {
  Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return nullptr;
  int r;
  do {
    r = ::connect(fd.get(), addr.sa(), addr.len);
  } while (r < 0 && errno == EINTR);
  if (r < 0 && errno != EINPROGRESS) return nullptr;
  return new Connection(loop, list, std::move(fd), addr, nullptr);
}

int Connection::finish_connect() {
  int err = 0;
  socklen_t len = sizeof(err);
  if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
  return err;
}

void Connection::set_handler(std::unique_ptr<ConnectionHandler> h) {
  // The old handler may be the caller: it goes after the callbacks.
  if (handler_) loop_->defer_delete(handler_.release());
  handler_ = std::move(h);
}

void Connection::set_nodelay() {
  if (peer_.family() == AF_UNIX) return;
  int one = 1;
  ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int Connection::unsent_bytes() const {
  int n = 0;
  if (peer_.family() == AF_UNIX || ::ioctl(fd_.get(), SIOCOUTQ, &n) < 0) return 0;
  return n;
}

bool Connection::flush_queue(bool more) {
  if (out_.empty()) return true;
  if (rate_) return flush_limited(more);
  uint64_t before = out_.bytes();
  ssize_t r = out_.write(transport_, fd_.get(), more);
  bytes_out_ += before - out_.bytes();  // (a write that ends waiting returns no count)
  if (r == kIoError) {
    failed_ = true;
    return false;
  }
  if (r == kIoWantWrite) {
    want_write(true);
    return false;
  }
  if (r == kIoWantRead) {
    want_read(true);
    return false;
  }
  return out_.empty();
}

bool Connection::send(const iovec* iov, int iovcnt) {
  if (failed_) return false;
  size_t done = 0;
  if (out_.empty() && !rate_) {
    ssize_t r = transport_->writev(fd_.get(), iov, iovcnt, false);
    if (r == kIoError) {
      failed_ = true;
      return false;
    }
    if (r > 0) {
      done = static_cast<size_t>(r);
      bytes_out_ += done;
    }
  }
  for (int i = 0; i < iovcnt; i++) {
    size_t len = iov[i].iov_len;
    if (done >= len) {
      done -= len;
      continue;
    }
    out_.append(std::string_view(static_cast<const char*>(iov[i].iov_base) + done, len - done));
    done = 0;
  }
  return true;
}

void Connection::limit_rate(uint64_t rate, uint64_t after) {
  bool waiting = rate_ && ev_is_active(&rate_->timer);
  if (waiting) ev_timer_stop(loop_->raw(), &rate_->timer);
  if (rate == 0) {
    rate_.reset();
  } else {
    if (!rate_) {
      rate_ = std::make_unique<RateLimit>();
      ev_init(&rate_->timer, rate_cb);
      rate_->timer.data = this;
    }
    rate_->rate = rate;
    rate_->after = after;
    rate_->piece = std::clamp<uint64_t>(rate / 10, 1, 64 * 1024);
    rate_->sent = 0;
    rate_->start = ev_now(loop_->raw());
  }
  // Output that waited for the old limit's timer waits for the socket now.
  if (waiting && !out_.empty()) want_write(true);
}

bool Connection::rate_delayed() const { return rate_ && ev_is_active(&rate_->timer); }

bool Connection::flush_limited(bool more) {
  RateLimit& r = *rate_;
  double now = ev_now(loop_->raw());
  uint64_t allowed = r.allowance(now);
  if (allowed >= std::min<uint64_t>(out_.bytes(), r.piece)) {
    uint64_t before = out_.bytes();
    ssize_t n = out_.write(transport_, fd_.get(), more, allowed);
    r.sent += before - out_.bytes();
    bytes_out_ += before - out_.bytes();
    if (n == kIoError) {
      failed_ = true;
      return false;
    }
    if (n == kIoWantWrite) {
      want_write(true);
      return false;
    }
    if (n == kIoWantRead) {
      want_read(true);
      return false;
    }
    if (out_.empty()) return true;
    allowed = r.allowance(now);
  }
  // The allowance is spent: the socket is not asked for until the next piece is due (no write
  // that sends a few bytes, no wake-up in between).
  want_write(false);
  uint64_t piece = std::min<uint64_t>(out_.bytes(), r.piece);
  uint64_t need = piece > allowed ? piece - allowed : 1;
  double delay = static_cast<double>(need) / static_cast<double>(r.rate);
  ev_timer_stop(loop_->raw(), &r.timer);
  ev_timer_set(&r.timer, delay > 0.001 ? delay : 0.001, 0.);
  ev_timer_start(loop_->raw(), &r.timer);
  return false;
}

void Connection::rate_cb(struct ev_loop*, ev_timer* w, int) {
  auto* c = static_cast<Connection*>(w->data);
  if (c->closed()) return;
  LogContext log(&c->log_);
  c->handler_->on_writable();
}

void Connection::drain() {
  LogContext log(&log_);
  if (handler_) handler_->on_drain();
}

Fd Connection::duplicate() const { return Fd(fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0)); }

void Connection::close() {
  if (!fd_.valid()) return;
  ev_io_stop(loop_->raw(), &io_);
  ev_timer_stop(loop_->raw(), &timer_);
  if (rate_) ev_timer_stop(loop_->raw(), &rate_->timer);
  if (handler_) handler_->on_close();
  out_.clear();
  fd_.reset();
  set_reusable(false);
  list_->remove(this);
  loop_->defer_delete(this);
}

void Connection::set_events(uint8_t events) {
  if (events == events_) return;
  events_ = events;
  ev_io_stop(loop_->raw(), &io_);
  if (!events) return;
  // The descriptor never changes: ev_io_modify changes the events only, where ev_io_set would mark
  // the descriptor as new and make libev register it with the kernel again (an epoll_ctl ADD that
  // fails with EEXIST, then a MOD) each time interest changes.
  ev_io_modify(&io_, events);
  ev_io_start(loop_->raw(), &io_);
}

void Connection::want_read(bool on) { set_events(static_cast<uint8_t>(on ? (events_ | EV_READ) : (events_ & ~EV_READ))); }

void Connection::want_write(bool on) {
  set_events(static_cast<uint8_t>(on ? (events_ | EV_WRITE) : (events_ & ~EV_WRITE)));
}

void Connection::set_reusable(bool on) {
  // Already queued: it keeps its place, which is the time it became reusable.
  if (on == reusable_) return;
  reusable_ = on;
  if (!on) {
    list_->unlink_reusable(this);
    return;
  }
  reusable_prev_ = list_->reusable_tail_;
  reusable_next_ = nullptr;
  if (list_->reusable_tail_) list_->reusable_tail_->reusable_next_ = this;
  else list_->reusable_head_ = this;
  list_->reusable_tail_ = this;
  // A worker that stopped accepting for want of room may take connections again.
  if (list_->reusable_count_++ == 0 && list_->on_change) list_->on_change(list_->on_change_arg);
}

void Connection::set_deadline(double seconds) {
  double now = ev_now(loop_->raw());
  deadline_ = now + seconds;
  if (!ev_is_active(&timer_)) {
    ev_timer_set(&timer_, seconds, 0.);
    ev_timer_start(loop_->raw(), &timer_);
  } else if (ev_timer_remaining(loop_->raw(), &timer_) > seconds) {
    // A shorter deadline than the armed one must fire on time.
    ev_timer_stop(loop_->raw(), &timer_);
    ev_timer_set(&timer_, seconds, 0.);
    ev_timer_start(loop_->raw(), &timer_);
  }
}

void Connection::io_cb(struct ev_loop*, ev_io* w, int revents) {
  auto* c = static_cast<Connection*>(w->data);
  LogContext log(&c->log_);
  // The handler may be replaced by its own callback: each call looks it up again.
  if ((revents & EV_WRITE) && !c->closed()) c->handler_->on_writable();
  if ((revents & EV_READ) && !c->closed() && (c->events_ & EV_READ)) c->handler_->on_readable();
}

void Connection::timer_cb(struct ev_loop* loop, ev_timer* w, int) {
  auto* c = static_cast<Connection*>(w->data);
  if (c->closed() || c->deadline_ == 0) return;
  double left = c->deadline_ - ev_now(loop);
  if (left > 0.001) {
    ev_timer_set(w, left, 0.);
    ev_timer_start(loop, w);
    return;
  }
  c->deadline_ = 0;
  LogContext log(&c->log_);
  c->handler_->on_timeout();
}

void ConnectionList::add(Connection* c) {
  c->next_ = head_;
  c->prev_ = nullptr;
  if (head_) head_->prev_ = c;
  head_ = c;
  size_++;
  if (stats && c->listening_) stats->client(1);
}

void ConnectionList::remove(Connection* c) {
  if (c->prev_) c->prev_->next_ = c->next_;
  else head_ = c->next_;
  if (c->next_) c->next_->prev_ = c->prev_;
  c->prev_ = c->next_ = nullptr;
  size_--;
  if (stats && c->listening_) stats->client(-1);
  if (on_change) on_change(on_change_arg);
}

void ConnectionList::unlink_reusable(Connection* c) {
  if (c->reusable_prev_) c->reusable_prev_->reusable_next_ = c->reusable_next_;
  else reusable_head_ = c->reusable_next_;
  if (c->reusable_next_) c->reusable_next_->reusable_prev_ = c->reusable_prev_;
  else reusable_tail_ = c->reusable_prev_;
  c->reusable_prev_ = c->reusable_next_ = nullptr;
  reusable_count_--;
}

size_t ConnectionList::reclaim(size_t max) {
  size_t n = 0;
  while (n < max && reusable_head_) {
    reusable_head_->close();  // unlinks it
    n++;
  }
  return n;
}

void ConnectionList::drain_all() {
  std::vector<Connection*> all;
  for (Connection* c = head_; c; c = c->next_) all.push_back(c);
  for (Connection* c : all)
    if (!c->closed()) c->drain();
}

void ConnectionList::close_all() {
  while (head_) head_->close();
}

}  // namespace baton

#include "event/connection.h"

#include <errno.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include <cassert>
#include <vector>

namespace baton {

PlainTransport* PlainTransport::instance() {
  static PlainTransport t;
  return &t;
}

ssize_t PlainTransport::recv(int fd, char* buf, size_t len) {
  ssize_t n;
  do {
    n = ::recv(fd, buf, len, 0);
  } while (n < 0 && errno == EINTR);
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
  return n;
}

ssize_t PlainTransport::sendfile(int fd, int file, off_t* offset, size_t len) {
  ssize_t n;
  do {
    n = ::sendfile(fd, file, offset, len);
  } while (n < 0 && errno == EINTR);
  return n;
}

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
}

void Connection::close() {
  if (!fd_.valid()) return;
  ev_io_stop(loop_->raw(), &io_);
  ev_timer_stop(loop_->raw(), &timer_);
  on_close();
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
  ev_io_set(&io_, fd_.get(), events);
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
  if ((revents & EV_WRITE) && !c->closed()) c->on_writable();
  if ((revents & EV_READ) && !c->closed() && (c->events_ & EV_READ)) c->on_readable();
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
  c->on_timeout();
}

void ConnectionList::add(Connection* c) {
  c->next_ = head_;
  c->prev_ = nullptr;
  if (head_) head_->prev_ = c;
  head_ = c;
  size_++;
}

void ConnectionList::remove(Connection* c) {
  if (c->prev_) c->prev_->next_ = c->next_;
  else head_ = c->next_;
  if (c->next_) c->next_->prev_ = c->prev_;
  c->prev_ = c->next_ = nullptr;
  size_--;
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

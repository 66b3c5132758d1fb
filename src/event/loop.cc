#include "event/loop.h"

#include <cstdlib>

#include "core/clock.h"

namespace baton {

EventLoop::EventLoop() {
  loop_ = ev_loop_new(static_cast<unsigned>(EVBACKEND_EPOLL) | static_cast<unsigned>(EVFLAG_NOSIGMASK));
  if (!loop_) loop_ = ev_loop_new(static_cast<unsigned>(EVFLAG_AUTO) | static_cast<unsigned>(EVFLAG_NOSIGMASK));
  if (!loop_) abort();
  ev_prepare_init(&prepare_, on_prepare);
  prepare_.data = this;
  ev_prepare_start(loop_, &prepare_);
  ev_unref(loop_);  // the prepare watcher alone must not keep the loop alive
  // Right after the loop wakes, before any callback: the cached time (Date headers, logs).
  ev_check_init(&check_, on_check);
  ev_check_start(loop_, &check_);
  ev_unref(loop_);
  // An idle watcher makes the loop come back to prepare (and so to collect) without blocking.
  ev_idle_init(&idle_, [](struct ev_loop* l, ev_idle* w, int) { ev_idle_stop(l, w); });
}

EventLoop::~EventLoop() {
  collect();
  ev_ref(loop_);
  ev_prepare_stop(loop_, &prepare_);
  ev_ref(loop_);
  ev_check_stop(loop_, &check_);
  ev_idle_stop(loop_, &idle_);
  ev_loop_destroy(loop_);
}

void EventLoop::defer_delete(Deletable* obj) {
  garbage_.push_back(obj);
  ev_idle_start(loop_, &idle_);
}

void EventLoop::collect() {
  while (!garbage_.empty()) {
    std::vector<Deletable*> batch;
    batch.swap(garbage_);
    for (Deletable* d : batch) delete d;
  }
}

void EventLoop::on_check(struct ev_loop*, ev_check*, int) { Clock::update(); }

void EventLoop::on_prepare(struct ev_loop*, ev_prepare* w, int) {
  auto* self = static_cast<EventLoop*>(w->data);
  self->collect();
  for (const HookEntry& h : self->before_block_) h.fn(h.arg);
}

}  // namespace baton

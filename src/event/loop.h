// The event loop: libev behind a few helpers that bind watchers to member functions, plus the
// per-loop deferred-delete list (an object is never destroyed from inside its own callback).
#pragma once

#include <ev.h>

#include <vector>

namespace baton {

// io/timer/prepare callbacks bound to a member function of the object stored in w->data.
template <class T, void (T::*Method)(int)>
void ev_member_cb(struct ev_loop*, ev_io* w, int revents) {
  (static_cast<T*>(w->data)->*Method)(revents);
}
template <class T, void (T::*Method)(int)>
void ev_member_timer_cb(struct ev_loop*, ev_timer* w, int revents) {
  (static_cast<T*>(w->data)->*Method)(revents);
}

class Deletable {
 public:
  virtual ~Deletable() = default;
};

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  struct ev_loop* raw() const { return loop_; }
  double now() const { return ev_now(loop_); }
  void run() { ev_run(loop_, 0); }
  void stop() { ev_break(loop_, EVBREAK_ALL); }

  // Destroys obj after the current callbacks have returned.
  void defer_delete(Deletable* obj);
  // Called before the loop blocks; for buffered output such as access logs.
  using Hook = void (*)(void*);
  void add_before_block(Hook fn, void* arg) { before_block_.push_back({fn, arg}); }

 private:
  static void on_prepare(struct ev_loop*, ev_prepare* w, int);
  static void on_check(struct ev_loop*, ev_check* w, int);
  void collect();

  struct ev_loop* loop_;
  ev_prepare prepare_;
  ev_check check_;
  ev_idle idle_;
  std::vector<Deletable*> garbage_;
  struct HookEntry {
    Hook fn;
    void* arg;
  };
  std::vector<HookEntry> before_block_;
};

}  // namespace baton

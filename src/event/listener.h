// Listening sockets as a worker sees them: the socket the master opened, what it is for, and the
// accept watcher. Accepting stops when the worker is at worker_connections and resumes below it.
//
// Every worker watches the same sockets. So that a new connection wakes one worker rather than all
// of them, the sockets are registered with EPOLLEXCLUSIVE in a small epoll instance of the
// acceptor's own, which the loop watches as one descriptor (libev cannot set that flag itself). A
// worker that stops or pauses accepting takes its registrations out, so the kernel never picks it.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "event/connection.h"

namespace baton {

struct Listening {
  SockAddr addr;
  ListenOptions opts;
  Fd fd;
  // The key under which the socket is known across reloads and upgrades: address and the options
  // that change how it is accepted.
  std::string key;
  void* ctx = nullptr;  // the protocol's data for this address (http: the servers on it)
};

class Acceptor {
 public:
  using Handler = void (*)(void* arg, Fd fd, const SockAddr& peer, Listening* ls);

  Acceptor(EventLoop* loop, ConnectionList* conns, size_t max_conns, Handler handler, void* arg);
  ~Acceptor();
  void add(Listening* ls);
  // Stops accepting on every socket for good (graceful shutdown); the sockets stay open.
  void stop();
  // Resumes after a pause for worker_connections when the count has dropped.
  void on_connections_changed();

 private:
  struct Watcher {
    ev_io io;  // used only where EPOLLEXCLUSIVE is not available
    Listening* ls;
    Acceptor* owner;
  };
  static void accept_cb(struct ev_loop*, ev_io* w, int);
  static void exclusive_cb(struct ev_loop*, ev_io* w, int);
  void accept_on(Watcher* w);
  void arm(bool on);
  static void resume_cb(struct ev_loop*, ev_timer* w, int);
  void pause(bool paused);
  // At worker_connections, for a connection just accepted: closes the oldest idle connections.
  void make_room();

  EventLoop* loop_;
  ConnectionList* conns_;
  size_t max_conns_;
  Handler handler_;
  void* arg_;
  std::vector<Watcher*> watchers_;
  Fd epfd_;      // the acceptor's own epoll instance (exclusive wake-ups); invalid: plain watchers
  ev_io ep_io_;
  ev_timer resume_;  // after running out of descriptors, accepting waits a moment
  bool paused_ = false;
  bool stopped_ = false;
  size_t reclaimed_ = 0;        // idle connections closed since the last warning
  double reclaim_logged_ = -1e9;  // when that warning was written (once a second at most)
  size_t pauses_ = 0;             // pauses for worker_connections since the last warning
  double pause_logged_ = -1e9;
};

}  // namespace baton

// A worker's side of its upstream groups: for each group, the live peer state (balancing, passive
// health) and the keep-alive pool of idle connections to its servers.
//
// The pool's job is to never hand out a connection the upstream is about to close. An idle pooled
// connection is watched: the upstream closing it (or sending anything at all) removes it at once.
// It is retired before the upstream's own idle timeout: the one the upstream announces with
// `Keep-Alive: timeout=N`, or, for an upstream that announces none, the shortest idle time after
// which it was seen closing a pooled connection. And a request that must not be sent twice (POST)
// only takes a connection that has been idle for a moment at most; an older one could be closed by
// the upstream while the request is on its way, and such a request cannot be retried.
#pragma once

#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "event/connection.h"
#include "event/tls.h"
#include "http/http_upstream.h"
#include "http/http_upstream_peers.h"

namespace baton::http {

class UpstreamRuntime;

// The handler of an upstream connection. It belongs to the connection; while a proxied request uses
// the connection, events go to that request (user), and while it is idle, to the pool.
class UpstreamLink final : public ConnectionHandler {
 public:
  class User {
   public:
    virtual void upstream_readable() = 0;
    virtual void upstream_writable() = 0;
    virtual void upstream_timeout() = 0;
    virtual void upstream_closed() = 0;  // closed under the user (worker shutdown)

   protected:
    ~User() = default;
  };

  UpstreamLink(Connection* c, UpstreamRuntime* rt, int server) : conn(c), runtime(rt), server(server) {}
  void on_readable() override;
  void on_writable() override;
  void on_timeout() override;
  void on_drain() override;
  void on_close() override;

  Connection* conn;
  UpstreamRuntime* runtime;
  int server;
  User* user = nullptr;
  bool idle = false;            // in the pool
  double idle_since = 0;
  double retire_at = 0;         // 0: no limit announced
  uint64_t requests = 0;        // requests sent on this connection
  uint64_t max_requests = 0;    // 0: the group's keepalive_requests
  const void* tls_key = nullptr;  // the TLS client context it speaks through (null: plain TCP)
  UpstreamLink* pool_prev = nullptr;
  UpstreamLink* pool_next = nullptr;
};

class UpstreamRuntime {
 public:
  UpstreamRuntime(EventLoop* loop, ConnectionList* conns, const UpstreamGroup* group);
  ~UpstreamRuntime();

  const UpstreamGroup* group() const { return group_; }
  UpstreamPeers& peers() { return peers_; }

  // An idle connection to server i, or null. safe_only: only one idle for a moment at most (for a
  // request that must not be sent twice).
  // tls_key: only a connection made with that TLS context (null: a plain one).
  UpstreamLink* take(int server, bool safe_only, const void* tls_key = nullptr);
  // A connection whose exchange ended cleanly goes back to the pool (or is closed if the pool is
  // full, it is too old, or the group keeps none). keepalive_timeout_s: the upstream's
  // `Keep-Alive: timeout=`, or -1.
  void give_back(UpstreamLink* l, double keepalive_timeout_s, int64_t keepalive_max);
  // A new connection to server i: null (errno set) when the connect failed at once.
  UpstreamLink* connect(int server);

  // Pool events.
  void idle_event(UpstreamLink* l, bool timed_out);
  void unlink(UpstreamLink* l);
  size_t idle_count() const { return idle_count_; }
  // Where the TLS session with server i through context key is kept for the next connection.
  TlsSessionSlot* tls_session(const void* key, int server);
  // A draining worker keeps no idle connection: each closes when its exchange ends, so that the
  // worker can exit as soon as its clients are served.
  void set_draining() { draining_ = true; }

 private:
  double idle_limit(int server) const;

  EventLoop* loop_;
  ConnectionList* conns_;
  const UpstreamGroup* group_;
  UpstreamPeers peers_;
  // Per server: idle connections, the most recently used first.
  struct ServerPool {
    UpstreamLink* head = nullptr;
    // The shortest idle time after which this server was seen closing pooled connections (0: not
    // known): the pool retires connections before it. It is learnt only from two closes at about
    // the same idle time, at different moments: one close alone may be a restart, not a timeout.
    double observed_close = 0;
    double candidate = 0;     // a close seen once, waiting for a second like it
    double candidate_at = 0;
  };
  std::vector<ServerPool> pools_;
  std::map<std::pair<const void*, int>, std::unique_ptr<TlsSessionSlot>> tls_sessions_;
  size_t idle_count_ = 0;
  bool draining_ = false;
};

// The runtimes of one worker, made on first use.
class UpstreamRuntimes {
 public:
  UpstreamRuntimes(EventLoop* loop, ConnectionList* conns) : loop_(loop), conns_(conns) {}
  UpstreamRuntime* get(const UpstreamGroup* g);
  void drain();

 private:
  bool draining_ = false;
  EventLoop* loop_;
  ConnectionList* conns_;
  std::unordered_map<const UpstreamGroup*, std::unique_ptr<UpstreamRuntime>> map_;
};

}  // namespace baton::http

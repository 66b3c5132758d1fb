// A client connection: it owns the descriptor, its read/write watchers, one timer and the transport
// (plain now, TLS later) so that protocol code never touches the socket directly. Connections of a
// worker are kept on one intrusive list so that a drain or a shutdown can reach every one of them.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include "event/loop.h"
#include "os/unix/fd.h"
#include "os/unix/socket.h"

namespace baton {

struct Listening;

class Transport {
 public:
  virtual ~Transport() = default;
  // These return what the system calls return: a byte count, or -1 with errno (EAGAIN included).
  virtual ssize_t recv(int fd, char* buf, size_t len) = 0;
  // more: further data follows at once (a file after its head): let the segments fill up.
  virtual ssize_t writev(int fd, const iovec* iov, int iovcnt, bool more = false) = 0;
  virtual ssize_t sendfile(int fd, int file, off_t* offset, size_t len) = 0;
};

class PlainTransport final : public Transport {
 public:
  static PlainTransport* instance();
  ssize_t recv(int fd, char* buf, size_t len) override;
  ssize_t writev(int fd, const iovec* iov, int iovcnt, bool more = false) override;
  ssize_t sendfile(int fd, int file, off_t* offset, size_t len) override;
};

class ConnectionList;

class Connection : public Deletable {
 public:
  Connection(EventLoop* loop, ConnectionList* list, Fd fd, const SockAddr& peer, Listening* ls);
  ~Connection() override;

  int fd() const { return fd_.get(); }
  const PeerAddr& peer() const { return peer_; }
  Listening* listening() const { return listening_; }
  bool closed() const { return !fd_.valid(); }

  // Asked to finish gracefully (quit, drain): idle connections close now, busy ones after the
  // response in flight.
  virtual void drain() = 0;
  // Closes now: stops the watchers, closes the socket and deletes the object after the callbacks.
  void close();

 protected:
  virtual void on_readable() = 0;
  virtual void on_writable() = 0;
  virtual void on_timeout() = 0;
  // Called by close() while the connection's owner is still there: hand back what was borrowed.
  virtual void on_close() {}

  void want_read(bool on);
  void want_write(bool on);
  // A reusable connection waits for a request and holds nothing (no request begun, no output
  // queued): when the worker is at worker_connections it may be closed, oldest first, to make room.
  void set_reusable(bool on);
  // The timer fires once at ev_now + seconds (lazily re-armed: moving a deadline costs nothing).
  void set_deadline(double seconds);
  void clear_deadline() { deadline_ = 0; }

  EventLoop* loop_;
  Fd fd_;
  PeerAddr peer_;
  Listening* listening_;
  Transport* transport_;

 private:
  friend class ConnectionList;
  static void io_cb(struct ev_loop*, ev_io* w, int revents);
  void set_events(uint8_t events);
  static void timer_cb(struct ev_loop*, ev_timer* w, int revents);

  ConnectionList* list_;
  Connection* prev_ = nullptr;
  Connection* next_ = nullptr;
  Connection* reusable_prev_ = nullptr;  // on the list's reusable queue when reusable_
  Connection* reusable_next_ = nullptr;
  bool reusable_ = false;
  ev_io io_;        // one watcher; its events follow want_read / want_write
  ev_timer timer_;
  uint8_t events_ = 0;
  double deadline_ = 0;
};

// The connections of one worker.
class ConnectionList {
 public:
  size_t size() const { return size_; }
  void add(Connection* c);
  void remove(Connection* c);
  // Calls drain() on each; a connection may close itself meanwhile.
  void drain_all();
  void close_all();
  // Closes up to `max` reusable connections, those that became reusable first; how many it closed.
  size_t reclaim(size_t max);
  size_t reusable() const { return reusable_count_; }
  // Called when the count drops, so that accepting can resume or a drain can finish.
  void (*on_change)(void* arg) = nullptr;
  void* on_change_arg = nullptr;

 private:
  friend class Connection;
  void unlink_reusable(Connection* c);

  Connection* head_ = nullptr;
  size_t size_ = 0;
  // Reusable connections in the order they became reusable: the oldest at the head.
  Connection* reusable_head_ = nullptr;
  Connection* reusable_tail_ = nullptr;
  size_t reusable_count_ = 0;
};

}  // namespace baton

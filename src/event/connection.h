// A connection: the descriptor, its read/write watcher, one timer, the transport (plain now, TLS
// later) and the output queue. What is spoken on it belongs to its handler: a connection *has* a
// protocol handler (HTTP/1 for a client today; a PROXY protocol reader first where the listener asks
// for one; an upstream's side for outgoing connections) and may change it as the conversation moves
// on. Protocol code never calls a system call on the socket itself: it reads, writes and shuts down
// through the connection, so that TLS slots in underneath without it knowing.
//
// Connections of a worker — accepted and outgoing — are kept on one intrusive list so that a drain
// or a shutdown can reach every one of them.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>

#include "core/log.h"
#include "event/loop.h"
#include "core/status_zone.h"
#include "event/output_queue.h"
#include "os/unix/fd.h"
#include "os/unix/socket.h"

namespace baton {

struct Listening;
class Connection;

// Results of the transport calls below that are not byte counts.
constexpr ssize_t kIoWantRead = -1;   // nothing now: call again when the socket is readable
constexpr ssize_t kIoWantWrite = -2;  // nothing now: call again when the socket is writable
constexpr ssize_t kIoError = -3;      // failed; errno says why

// How bytes move on a socket. A plain socket needs no state, so one instance serves every plain
// connection; a TLS transport will keep its session per connection. Reads return a byte count, 0 at
// the end of the stream, or one of the kIo values; a TLS read may want the socket writable and a
// write may want it readable, which is why the result says which.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual ssize_t read(int fd, char* buf, size_t len) = 0;
  // more: further data follows at once (a file after its head): let the segments fill up.
  virtual ssize_t writev(int fd, const iovec* iov, int iovcnt, bool more) = 0;
  // Only where can_sendfile(): otherwise the output queue reads files itself and writes the bytes.
  virtual bool can_sendfile() const { return false; }
  virtual ssize_t sendfile(int fd, int file, off_t* offset, size_t len);
  // Ends our sending side (a TLS transport sends close_notify first).
  virtual void shutdown_write(int fd) = 0;
  // Whether this transport owns per-connection state that the connection must delete.
  virtual bool shared() const { return true; }
  // True when the bytes are protected on the wire (TLS): $scheme is https.
  virtual bool secure() const { return false; }
};

class PlainTransport final : public Transport {
 public:
  static PlainTransport* instance();
  ssize_t read(int fd, char* buf, size_t len) override;
  ssize_t writev(int fd, const iovec* iov, int iovcnt, bool more) override;
  bool can_sendfile() const override { return true; }
  ssize_t sendfile(int fd, int file, off_t* offset, size_t len) override;
  void shutdown_write(int fd) override;
};

// The protocol spoken on a connection. Its callbacks run from the connection's watcher and timer;
// the connection deletes its handler when it is itself deleted, or after the callbacks when the
// handler is replaced.
class ConnectionHandler : public Deletable {
 public:
  virtual void on_readable() = 0;
  virtual void on_writable() = 0;
  virtual void on_timeout() = 0;
  // Asked to finish gracefully (quit, reload, upgrade): idle connections close now, busy ones
  // after the exchange in flight.
  virtual void on_drain() {}
  // The connection is closing (called once, before the descriptor is closed): hand back what was
  // borrowed, tell whoever waits on this connection.
  virtual void on_close() {}
};

class ConnectionList;

class Connection final : public Deletable {
 public:
  // ls: the listener it was accepted on; null for an outgoing connection.
  Connection(EventLoop* loop, ConnectionList* list, Fd fd, const SockAddr& peer, Listening* ls);
  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Opens a non-blocking connection to addr. The connect completes (or fails) when the socket
  // becomes writable: the handler then calls finish_connect(). Returns null and sets errno when
  // the connect failed at once.
  static Connection* connect(EventLoop* loop, ConnectionList* list, const SockAddr& addr);
  // 0 when the connect succeeded, else the error (errno value).
  int finish_connect();

  void set_handler(std::unique_ptr<ConnectionHandler> h);
  ConnectionHandler* handler() const { return handler_.get(); }

  int fd() const { return fd_.get(); }
  EventLoop* loop() const { return loop_; }
  const PeerAddr& peer() const { return peer_; }
  void set_peer(const PeerAddr& p) { peer_ = p; }  // the client a PROXY protocol header names
  Listening* listening() const { return listening_; }
  bool closed() const { return !fd_.valid(); }
  Transport* transport() const { return transport_; }
  // Replaces the transport (TLS after its handshake has begun); one that is not shared is owned.
  void set_transport(Transport* t) {
    if (!transport_->shared()) delete transport_;
    transport_ = t;
  }

  // ---- transport ------------------------------------------------------------------------------
  ssize_t read(char* buf, size_t len) {
    ssize_t n = transport_->read(fd_.get(), buf, len);
    if (n > 0) bytes_in_ += static_cast<uint64_t>(n);
    return n;
  }
  ssize_t writev(const iovec* iov, int iovcnt, bool more) {
    ssize_t n = transport_->writev(fd_.get(), iov, iovcnt, more);
    if (n > 0) bytes_out_ += static_cast<uint64_t>(n);
    return n;
  }
  // Bytes read and written so far (what the transport carried: TLS's payload, not its records).
  uint64_t bytes_in() const { return bytes_in_; }
  uint64_t bytes_out() const { return bytes_out_; }
  void shutdown_write() { transport_->shutdown_write(fd_.get()); }
  // Small writes leave at once, without waiting for the peer's delayed ACK (kept-alive connections).
  void set_nodelay();
  // Bytes the kernel still holds for the peer (0 where it cannot say).
  int unsent_bytes() const;

  // ---- output ---------------------------------------------------------------------------------
  // What could not be written at once, in order: memory and file ranges.
  OutputQueue& out() { return out_; }
  // Writes what the queue holds. true: all of it is out; false: the rest waits for the socket
  // (want_write is set) or the connection failed (closed() says which; it is not closed here).
  bool flush_queue(bool more);
  // Sends the parts in order: written at once while nothing is queued, and what the socket does
  // not take (or all of it, behind queued output) is copied into the queue. false: the connection
  // failed (failed() is set; it is not closed here).
  bool send(const iovec* iov, int iovcnt);

  // ---- rate limit (limit_rate) ----------------------------------------------------------------
  // From now on, what is written goes out at no more than `rate` bytes a second once the first
  // `after` bytes are out (counted from this call); 0: no limit. The queue is then written in
  // pieces: when the allowance is spent, flush_queue() stops asking for the socket and a timer
  // calls the handler's on_writable() when the next piece is due. Without a limit the output path
  // costs one test more than it would without this.
  void limit_rate(uint64_t rate, uint64_t after);
  bool rate_limited() const { return rate_ != nullptr; }
  // Output waits for the rate's timer, not for the socket: the peer is not the one that is slow.
  bool rate_delayed() const;

  // ---- error log -----------------------------------------------------------------------------
  // The error log of what the connection is doing (a server's own error_log); null: the process's.
  // Lines written while its events are handled go there.
  void set_log(ErrorLogFile* log) { log_ = log; }
  ErrorLogFile* log() const { return log_; }
  // For a LogContext around work on the connection outside its own events (its start): the lines
  // follow the log it has at each moment.
  ErrorLogFile* const* log_slot() const { return &log_; }

  // ---- events ---------------------------------------------------------------------------------
  void want_read(bool on);
  void want_write(bool on);
  bool wants_read() const { return events_ & EV_READ; }
  // A reusable connection waits for a request and holds nothing (no request begun, no output
  // queued): when the worker is at worker_connections it may be closed, oldest first, to make room.
  void set_reusable(bool on);
  // The timer fires once at ev_now + seconds (lazily re-armed: moving a deadline costs nothing).
  void set_deadline(double seconds);
  void clear_deadline() { deadline_ = 0; }

  void drain();
  // For a connection handed to another process: a duplicate of the descriptor to send it with
  // (invalid, errno set, on failure). The connection is then simply closed: close() never shuts the
  // socket down, so the peer notices nothing. (The kernel's event set keeps a socket by socket, not
  // by descriptor: while the other process holds it, this loop may still hear of it once; libev
  // then finds the descriptor gone and builds its set again without it.)
  Fd duplicate() const;
  // Closes now: stops the watchers, tells the handler, closes the socket and deletes the object
  // (and its handler) after the callbacks.
  void close();
  // Failed writes close the connection from inside a call chain that still uses it: the failure is
  // kept and the connection closed by whoever is at the top of that chain.
  bool failed() const { return failed_; }

 private:
  friend class ConnectionList;
  static void io_cb(struct ev_loop*, ev_io* w, int revents);
  void set_events(uint8_t events);
  static void timer_cb(struct ev_loop*, ev_timer* w, int revents);
  struct RateLimit;
  static void rate_cb(struct ev_loop*, ev_timer* w, int revents);
  bool flush_limited(bool more);

  EventLoop* loop_;
  Fd fd_;
  PeerAddr peer_;
  Listening* listening_;
  Transport* transport_;
  ErrorLogFile* log_ = nullptr;
  std::unique_ptr<ConnectionHandler> handler_;
  OutputQueue out_;
  ConnectionList* list_;
  Connection* prev_ = nullptr;
  Connection* next_ = nullptr;
  Connection* reusable_prev_ = nullptr;  // on the list's reusable queue when reusable_
  Connection* reusable_next_ = nullptr;
  bool reusable_ = false;
  bool failed_ = false;
  uint8_t events_ = 0;
  ev_io io_;  // one watcher; its events follow want_read / want_write
  ev_timer timer_;
  double deadline_ = 0;
  std::unique_ptr<RateLimit> rate_;  // null: no limit (the usual case)
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
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
  // Where client connections (those of a listener) are counted as they open and close.
  StatusWriter* stats = nullptr;

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

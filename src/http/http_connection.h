// HTTP/1.x on a connection: reads requests with llhttp, answers them in order (pipelining), keeps
// the connection alive between requests, and enforces the header, body, send and keep-alive
// timeouts. It is the connection's handler (event/connection.h); a request is answered either at
// once (static files, return, errors) or later by a RequestHandler through the ResponseStream this
// class implements (the proxy).
//
// Buffers: requests are parsed straight out of the worker's shared read buffer, and responses are
// built in the worker's shared output buffer. A connection copies bytes into buffers of its own only
// when it must wait: a request head that arrived in pieces, or output the socket did not take (the
// connection's output queue). An idle keep-alive connection owns no buffer at all.
#pragma once

#include <llhttp.h>

#include <memory>
#include <string>

#include "event/connection.h"
#include "http/http_config.h"
#include "http/http_request.h"
#include "http/http_response.h"
#include "http/http_rewrite.h"
#include "http/http_stream.h"

namespace baton::http {

class HttpWorker;

// What a handler produces: the head and any in-memory body appended to *out, and optionally a file
// part that follows it.
struct Reply {
  std::string* out = nullptr;
  bool head_only = false;
  bool keep_alive = true;
  bool http10 = false;
  int status = 0;
  uint64_t body_bytes = 0;
  Fd file;
  off_t file_offset = 0;
  uint64_t file_bytes = 0;
  const HeadPolicy* policy = nullptr;  // what the answering location adds to the head
  // Set by the connection: a try_files fallback is an internal redirect it routes again (rewrites
  // and location, as nginx's); the URI is then left in internal_redirect and nothing is answered.
  bool redirects = false;
  std::string_view internal_redirect;
};

class HttpConnection final : public ConnectionHandler, public ResponseStream {
 public:
  HttpConnection(HttpWorker* worker, Connection* c);
  ~HttpConnection() override;
  // preread: bytes of the connection already read (after a PROXY protocol header).
  void start(std::string_view preread = {});
  // A kept-alive connection handed over by a worker of the old generation: `requests` served there,
  // preread the start of the next one.
  void resume(uint32_t requests, std::string_view preread);
  void on_drain() override;

  // ResponseStream, for the RequestHandler of the request in progress.
  void start(const ResponseStart& r) override;
  bool write(const char* data, size_t len) override;
  void finish() override;
  void fail(int status) override;
  void abort() override;
  void resume_body() override;
  uint64_t body_bytes_sent() const override;
  size_t queued() const override { return c_->out().memory(); }
  void push() override;
  // One attempt of the proxied request in progress, for the access log (status 0: no answer).
  void note_upstream(std::string_view addr, int status, double seconds);

  // Registers the asynchronous handler of the request in progress (from inside answering it).
  // The connection came to a TLS address in plain HTTP: its request is answered 400 and it closes.
  void refuse_plain_http() { refuse_plain_ = true; }
  void start_handler(RequestHandler* h);
  const Request& request() const { return *req_; }
  // limit_req's delay is over: the request is answered now. held: body (or tunnel) bytes the
  // delay took in; body_ended: the body was complete.
  void answer_delayed(std::string held, bool body_ended, bool tunnel);
  const Server* server() const { return server_; }
  const Location* location() const { return location_; }
  Connection* connection() const { return c_; }
  // Who the request in progress is from (Request::client); the connection's peer between requests.
  const PeerAddr& client() const { return req_ ? req_->client : c_->peer(); }
  HttpWorker* worker() const { return worker_; }

 private:
  // Where the connection is in reading requests. Whether output is waiting is separate (blocked()).
  enum class Phase : uint8_t {
    kIdle,    // between requests
    kHead,    // inside a request head
    kBody,    // the head is answered (the answer never waits for a body it does not use); reading
              // and discarding the body, within client_max_body_size and client_body_timeout
    kDone,    // no more requests will be read: close once the output is out
    kLinger,  // our side is shut; reading what the client still sends, then close
    kTunnel,  // switched protocols: raw bytes both ways between the client and the handler
  };

  void on_readable() override;
  void on_writable() override;
  void on_timeout() override;
  void on_close() override;

  // Parses and answers what data holds; returns how many bytes were used. What is left must be kept
  // by the caller (the start of a head, or requests held back while output drains).
  size_t feed(const char* data, size_t len);
  // After a 101: reads what the client sends and hands it to the handler, raw.
  void read_tunnel();
  void handle_head();
  // The checks llhttp leaves to the application, and where the request goes: the status of an
  // error, or 0.
  int check_head(Request& req);
  const char* head_end() const;  // the end of the last header value (or of the target)
  void answer(Request& req);
  void handle_message_complete();
  void fail_request(int status);  // answers an error that ends the connection
  // A request whose answer is already out broke its body framing or limit: nothing more is
  // answered, the connection ends once the output is out.
  void abandon(const char* why);
  // Writes the worker's output buffer, then the file part, after what is queued; false when the
  // socket is full (or the connection failed and was closed).
  bool flush();
  void output_failed();
  bool blocked() const { return !c_->out().empty() || file_pending_; }
  // An asynchronous handler is answering the request in progress.
  bool handler_busy() const { return handler_ != nullptr; }
  // The handler is done (abort: the exchange ended early and it is told so); deleted after the
  // callbacks.
  void end_handler(bool abort);
  // Waiting for a request and holding nothing: the worker may close it to make room.
  void update_reusable() { set_reusable(phase_ == Phase::kIdle && in_.empty() && !blocked()); }
  // While draining for a new generation: an idle plain connection goes to it (and is closed here).
  bool handable() const;
  bool try_hand_over();
  bool try_hand_over_tunnel();
  // The last request was read to its end and nothing else was sent: no reason to linger.
  bool closes_at_once() const { return clean_end_ && in_.empty() && !unread_input_; }
  void after_output();
  void wait_for_output();
  void finish_or_close();
  void process_held_input();
  // real_ip_header: the request's client, when rip trusts the peer the connection came from.
  void find_client(Request& req, const RealIpSettings& rip) const;
  // The connection's peer as the socket has it: on a proxy_protocol address, the proxy.
  PeerAddr socket_peer() const;
  void save_log(int status, uint64_t body_bytes);
  void log_request(int status, uint64_t body_bytes);
  // The status zone's view of this connection: its state (stub_status's Reading / Writing; neither
  // is Waiting), the request that ends, and the bytes moved since they were last counted.
  void set_stat(StatusWriter::State s);
  void count_request(int status);
  void count_bytes();
  void release_request();
  const Settings& settings_now() const { return location_ ? location_->s : group_->default_server->s; }
  // The limit_rate of the response that begins now (answered under s): one test when neither it nor
  // the one before had a limit.
  void limit_rate(const Settings& s) {
    if (s.limit_rate || c_->rate_limited()) c_->limit_rate(s.limit_rate, s.limit_rate_after);
  }
  // The request is answered by loc now (null: not routed yet, the server's settings): lines logged
  // about it go to that level's error_log.
  void set_location(const Location* loc) {
    location_ = loc;
    c_->set_log(loc ? loc->s.error_log : server_->s.error_log);
  }
  // The head policy of the request at hand under settings s, and the request's variables in
  // req_->vars (both the request's, valid until the next call).
  const HeadPolicy* head_policy(const Settings& s);

  static int on_message_begin(llhttp_t* p);
  static int on_url(llhttp_t* p, const char* at, size_t len);
  static int on_url_complete(llhttp_t* p);
  static int on_chunk_header(llhttp_t* p);
  static int on_body_bytes(llhttp_t* p, const char* at, size_t len);
  static int on_body_data(llhttp_t* p, const char* at, size_t len);
  static int on_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_headers_complete(llhttp_t* p);
  static int on_message_complete(llhttp_t* p);
  static const llhttp_settings_t* settings();

  // Forwarded to the connection, so that the HTTP code reads as it always did.
  int fd() const { return c_->fd(); }
  bool closed() const { return c_->closed(); }
  void close() { c_->close(); }
  void want_read(bool on) { c_->want_read(on); }
  void want_write(bool on) { c_->want_write(on); }
  void set_deadline(double s) { c_->set_deadline(s); }
  void clear_deadline() { c_->clear_deadline(); }
  void set_reusable(bool on) { c_->set_reusable(on); }

  HttpWorker* worker_;
  Connection* c_;
  ListenGroup* group_;
  const Server* server_ = nullptr;
  const Location* location_ = nullptr;
  std::unique_ptr<Request> req_;  // the request being read or answered; taken from the worker
  Phase phase_ = Phase::kIdle;
  StatusWriter::State stat_ = StatusWriter::State::kNone;
  bool in_feed_ = false;  // parsing: what follows a response waits for the parser to return
  // The rest one bit each: an idle connection is kept small.
  bool reparse_ : 1 = false;           // in_ holds the start of a head: parse it again from its start
  bool head_resumed_ : 1 = false;      // ... and the parse now begun is that: not a new request
  bool keep_alive_ : 1 = true;         // the response in progress keeps the connection
  bool draining_ : 1 = false;
  bool hand_over_failed_ : 1 = false;  // draining, it could not be handed over: it ends as before
  bool clean_end_ : 1 = false;         // the last request was read to its end without error
  bool file_pending_ : 1 = false;      // req_->file goes out after the worker's output buffer
  bool body_paused_ : 1 = false;       // the handler holds the request body back
  bool streaming_ : 1 = false;         // the handler's response has started and is not finished
  bool chunked_out_ : 1 = false;       // ... and is sent chunked
  bool head_request_ : 1 = false;      // the request in progress is HEAD: no body is sent
  bool body_allowed_ : 1 = false;      // the handler's response has a body to send
  bool log_pending_ : 1 = false;       // the request is logged when the response is done
  bool refuse_plain_ : 1 = false;      // plain HTTP on a TLS address
  bool limit_delayed_ : 1 = false;     // limit_req holds the request back (its handler is the delay)
  bool nodelay_ : 1 = false;           // TCP_NODELAY is set (once the connection is kept alive)
  bool unread_input_ : 1 = false;      // the client sent bytes that were dropped, or may still be queued
  uint32_t requests_ = 0;
  int send_queue_ = 0;  // bytes in the socket's send queue when the output last stalled
  uint64_t counted_in_ = 0;    // the connection's bytes already counted for a server
  uint64_t counted_out_ = 0;

  // Bytes read and not yet parsed: an unfinished head, or what a client sent ahead (pipelining).
  // Rare, so held out of line: a connection without any costs one pointer.
  class HeldInput {
   public:
    bool empty() const { return !s_; }
    size_t size() const { return s_ ? s_->size() : 0; }
    const char* data() const { return s_ ? s_->data() : nullptr; }
    void assign(std::string_view v) {
      if (v.empty()) return clear();
      if (!s_) s_ = std::make_unique<std::string>();
      s_->assign(v);
    }
    void append(const char* p, size_t n) {
      if (!s_) s_ = std::make_unique<std::string>();
      s_->append(p, n);
    }
    void consume(size_t n) {
      if (!s_) return;
      if (n >= s_->size()) return clear();
      s_->erase(0, n);
    }
    void clear() { s_.reset(); }

   private:
    std::unique_ptr<std::string> s_;  // never empty when set
  };
  HeldInput in_;
  // The variables of the request's access log line.
  VarContext log_vars() const;
  // The asynchronous handler of the request in progress (null when none). Deleted through the loop:
  // it may be the caller when it ends.
  RequestHandler* handler_ = nullptr;

  // The part of a file response not yet sent (the request keeps the log entry's figures).
  uint64_t file_left() const { return c_->out().bytes(); }
};

}  // namespace baton::http

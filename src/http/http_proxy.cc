#include "http/http_proxy.h"

#include <errno.h>
#include <llhttp.h>
#include <string.h>

#include <algorithm>
#include <memory>
#include <string>
#include <deque>
#include <vector>

#include "core/log.h"
#include "core/strings.h"
#include "event/listener.h"
#include "event/tls.h"
#include "http/http1.h"
#include "http/http_config.h"
#include "http/http_connection.h"
#include "http/http_gzip.h"
#include "http/http_gzip_filter.h"
#include "http/http_handover.h"
#include "http/http_request.h"
#include "http/http_stream.h"
#include "http/http_upstream.h"
#include "http/http_upstream_pool.h"
#include "http/http_worker.h"

namespace baton::http {

namespace {

double ms_to_s(int64_t ms) { return static_cast<double>(ms) / 1000.0; }

// RFC 9110 9.2.2: a request with one of these methods may be sent again without changing its
// effect. Anything else (POST, PATCH, LOCK...) that may have reached an upstream is never resent.
bool idempotent(int method) {
  switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_PUT:
    case HTTP_DELETE:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
      return true;
    default:
      return false;
  }
}

// The upstream's request target for a decoded, normalised path: what is not a path character
// is percent-encoded again.
void append_escaped_path(std::string* out, std::string_view path) {
  static const char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : path) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 strchr("-._~!$&'()*+,;=:@/", c) != nullptr;
    if (plain && c != 0) {
      out->push_back(static_cast<char>(c));
    } else {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    }
  }
}

// Response fields the proxy does not pass on by default (nginx's list): the server writes its own
// Date and Server, and X-Accel-* are instructions to a proxy, not to a client.
bool hidden_by_default(std::string_view name) {
  return iequals(name, "date") || iequals(name, "server") || iequals(name, "x-pad") || istarts_with(name, "x-accel-");
}

class ProxyHandler final : public RequestHandler, public UpstreamLink::User {
 public:
  ProxyHandler(HttpConnection* hc, const ProxyPass& pass);
  void begin();

  // RequestHandler
  bool on_request_body(const char* data, size_t len) override;
  void on_request_body_end() override;
  void on_output_ready() override;
  void on_abort() override;
  bool on_tunnel_data(const char* data, size_t len) override;
  void on_tunnel_eof() override;
  ssize_t tunnel_pending() const override;
  bool describe_tunnel(HandedConnection* hc) override;
  void tunnel_handed_over() override;

  // UpstreamLink::User
  void upstream_readable() override;
  void upstream_writable() override;
  void upstream_timeout() override;
  void upstream_closed() override;

 private:
  enum class State : uint8_t { kWaitBody, kConnecting, kHandshake, kSending, kHead, kBody, kTunnel, kDone };
  enum class Failure : uint8_t { kError, kTimeout, kStatus };

  void next_attempt();
  void start_handshake();
  void handshake_step();
  void connected();
  // The pool keeps TLS connections apart by the context they were made with.
  const void* tls_key() const { return pass_.tls.get(); }
  void build_head(std::string* out, bool chunked_body, uint64_t length);
  void send_body(const char* data, size_t len);
  bool flush_upstream();
  void read_response();
  bool parse_heads(const char* data, size_t len);
  bool feed_body(const char* data, size_t len);
  bool head_complete();
  void response_complete(bool clean = true);
  void attempt_failed(Failure why, int status, const char* what);
  bool can_try_another(bool sent) const;
  bool retry_stale();
  // Sends what was written to the client; false when the upstream must wait (a slow client) or
  // the exchange has ended.
  bool push_and_check();
  void release_link(bool reusable);
  void finish_with(int status);
  double timeout_s(int64_t setting, int64_t group_value) const {
    return ms_to_s(setting >= 0 ? setting : group_value);
  }

  static int on_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, size_t len);
  static int on_message_complete(llhttp_t* p);
  static const llhttp_settings_t* parser_settings();

  HttpConnection* hc_;
  // Where the response goes: the client's stream, or the gzip filter in front of it (gzip on).
  ResponseStream* out_;
  std::unique_ptr<GzipFilter> gzip_;
  HttpWorker* w_;
  const Request& req_;
  const Location* loc_;
  const ProxyPass& pass_;
  const ProxySettings& ps_;
  UpstreamRuntime* rt_;
  UpstreamLink* link_ = nullptr;
  State state_ = State::kWaitBody;
  int server_ = -1;
  uint64_t tried_bits_ = 0;         // the servers tried so far: the first 64 here,
  std::vector<bool> tried_more_;    // any others here
  bool was_tried(size_t i) const {
    return i < 64 ? (tried_bits_ >> i) & 1 : i < tried_more_.size() && tried_more_[i];
  }
  void set_tried(size_t i, bool on) {
    if (i < 64) {
      if (on) tried_bits_ |= uint64_t{1} << i;
      else tried_bits_ &= ~(uint64_t{1} << i);
      return;
    }
    if (tried_more_.size() <= i) tried_more_.resize(pass_.group->servers.size(), false);
    tried_more_[i] = on;
  }
  uint32_t tries_ = 0;
  double started_at_;
  bool aborted_ = false;
  bool reused_ = false;        // the current connection came from the pool
  bool sent_any_ = false;      // bytes of this request went to the current connection
  bool response_started_ = false;
  bool upstream_paused_ = false;  // the client is slow: the upstream is not read
  bool body_paused_ = false;      // the client's body is held back until the upstream takes more

  // The request as sent upstream: its head is built again for each attempt, with the body's framing
  // decided at the first.
  bool framing_set_ = false;
  bool frame_chunked_ = false;
  uint64_t frame_length_ = 0;
  bool has_body_;
  bool body_chunked_ = false;   // sent with chunked framing (its length is not known)
  bool body_complete_ = false;  // the client's body has all arrived
  bool replayable_ = true;      // the whole body is still in body_ (none is a whole body too)
  std::string body_;            // body bytes received and not yet sent (or kept for a retry)

  // The response.
  llhttp_t parser_;
  // A response head that did not arrive in one read, kept until it is whole (a head that did is
  // parsed where it was read). Its fields are read while it is parsed, into the worker's
  // upstream_headers, and used before the parse returns.
  std::string rhead_;
  size_t rhead_scanned_ = 0;    // rhead_ has no end of head before this
  int status_ = 0;
  // Header values proxy_redirect rewrote for the response head being passed (each stays where it
  // is while the next is made: the head holds views of them).
  std::deque<std::string> rewritten_;
  int retry_status_ = 0;            // the head just parsed asks for the next server (proxy_next_upstream)
  std::string tunnel_early_;        // tunnel bytes the client sent before the upstream switched
  bool tunnel_early_held_ = false;  // ... more than client_body_buffer_size: the client waits
  double ka_timeout_ = -1;
  int64_t ka_max_ = -1;
  bool response_done_ = false;
  bool got_bytes_ = false;      // the current connection has sent something of an answer
  bool parse_error_ = false;
  size_t read_ahead_;        // response bytes that may wait for a slow client before the upstream waits
  bool client_eof_ = false;  // tunnel: the client's side ended; the upstream's follows once sent
  int fail_status_ = 502;  // the answer when no server is left to try
  double attempt_started_ = 0;
  bool noted_ = false;     // this attempt is in the access log's upstream fields
  bool fresh_only_ = false;  // a pooled connection failed: the next one is new
  void note(int status) {
    if (noted_ || server_ < 0 || aborted_) return;
    noted_ = true;
    double t = hc_->connection()->loop()->now() - attempt_started_;
    // A response of the upstream's own (status is the access log's, 502 for an attempt without one).
    if (status_ > 0) w_->stats.upstream_response(pass_.group->status_index, status_, t);
    hc_->note_upstream(pass_.group->servers[static_cast<size_t>(server_)].text, status, t);
  }
};

ProxyHandler::ProxyHandler(HttpConnection* hc, const ProxyPass& pass)
    : hc_(hc),
      out_(hc),
      w_(hc->worker()),
      req_(hc->request()),
      loc_(hc->location()),
      pass_(pass),
      ps_(hc->location()->s.proxy),
      rt_(hc->worker()->upstreams.get(pass.group)),
      started_at_(hc->connection()->loop()->now()),
      has_body_(hc->request().has_body),
      // proxy_buffering: the response is read ahead of a slow client, up to proxy_buffers; without
      // it, no more than proxy_buffer_size waits.
      read_ahead_(ps_.buffering ? std::max<uint64_t>(ps_.buffers_size, 16384) : ps_.buffer_size) {
  // gzip: the filter decides from the response's head whether to compress (the rules are nginx's);
  // it is there whenever gzip is on, as it adds Vary to what it could have compressed.
  const Settings& s = hc->location()->s;
  if (s.gzip) {
    gzip_ = std::make_unique<GzipFilter>(hc, s, gzip_client_ok(req_, s.gzip_proxied));
    out_ = gzip_.get();
  }
}

void ProxyHandler::begin() {
  w_->stats.upstream_request(pass_.group->status_index);
  // With request buffering, a body is read before an upstream is bothered (a slow client does not
  // hold an upstream connection); without, or with no body, the upstream is asked at once.
  if (has_body_ && ps_.request_buffering) return;
  next_attempt();
}

// ---- the request body ---------------------------------------------------------------------

bool ProxyHandler::on_request_body(const char* data, size_t len) {
  if (aborted_ || state_ == State::kDone) return true;
  if (state_ == State::kSending || state_ == State::kHead || state_ == State::kBody) {
    // Connected and streaming: the bytes go on as they come, while the upstream keeps up.
    send_body(data, len);
    if (link_ && link_->conn->out().above_high()) {
      body_paused_ = true;
      return false;
    }
    return true;
  }
  body_.append(data, len);
  if (state_ == State::kWaitBody && body_.size() > ps_.client_body_buffer_size) {
    // Larger than the buffer: it streams from now on, and can no longer be sent twice.
    replayable_ = false;
    next_attempt();
  }
  if (body_.size() > ps_.client_body_buffer_size) {
    // Still connecting: the client waits until the buffer has gone to the upstream.
    body_paused_ = true;
    return false;
  }
  return true;
}

void ProxyHandler::on_request_body_end() {
  if (aborted_) return;
  body_complete_ = true;
  if (state_ == State::kWaitBody) {
    next_attempt();
    return;
  }
  if (body_chunked_ && (state_ == State::kSending || state_ == State::kHead || state_ == State::kBody)) {
    link_->conn->out().append(std::string_view("0\r\n\r\n"));
    flush_upstream();
  }
}

void ProxyHandler::send_body(const char* data, size_t len) {
  if (!link_ || len == 0) return;
  char size[24];
  iovec iov[3];
  int n = 0;
  if (body_chunked_) {
    int sn = snprintf(size, sizeof(size), "%zx\r\n", len);
    iov[n++] = {size, static_cast<size_t>(sn)};
  }
  iov[n++] = {const_cast<char*>(data), len};
  if (body_chunked_) iov[n++] = {const_cast<char*>("\r\n"), 2};
  link_->conn->send(iov, n);
  flush_upstream();
}

// ---- choosing and connecting --------------------------------------------------------------

void ProxyHandler::next_attempt() {
  const UpstreamGroup& g = *pass_.group;
  double now = hc_->connection()->loop()->now();
  if (ps_.next_upstream_timeout_ms > 0 && tries_ > 0 && now - started_at_ >= ms_to_s(ps_.next_upstream_timeout_ms)) {
    finish_with(502);
    return;
  }
  PickInput in;
  in.tried_bits = tried_bits_;
  in.tried = tried_more_.empty() ? nullptr : &tried_more_;
  in.client = &hc_->client();
  std::string key;
  if (g.balance == Balance::kHash) {
    VarContext vars;
    vars.req = &req_;
    vars.server = hc_->server();
    vars.peer = &hc_->client();
    vars.local = &hc_->connection()->listening()->addr;
    g.hash_key.evaluate(vars, &key);
    in.key = key;
  }
  int picked = rt_->peers().pick(in, now);
  if (picked < 0) {
    if (tries_ > 0) {
      finish_with(fail_status_);
      return;
    }
    log_error("no live upstreams while connecting to upstream \"%s\", client: %s, request: \"%.*s %.*s\"",
              g.name.c_str(), hc_->client().to_string().c_str(), static_cast<int>(req_.method.size()),
              req_.method.data(), static_cast<int>(req_.target.size()), req_.target.data());
    finish_with(502);
    return;
  }
  server_ = picked;
  attempt_started_ = now;
  noted_ = false;
  status_ = 0;
  set_tried(static_cast<size_t>(server_), true);
  tries_++;
  w_->stats.upstream_attempt(g.status_index);
  // A request that must not be sent twice takes only a connection that cannot be closing.
  bool safe_only = !idempotent(req_.method_id);
  link_ = fresh_only_ ? nullptr : rt_->take(server_, safe_only, tls_key());
  fresh_only_ = false;
  reused_ = link_ != nullptr;
  sent_any_ = false;
  if (!link_) {
    link_ = rt_->connect(server_);
    if (!link_) {
      attempt_failed(Failure::kError, 502, strerror(errno));
      return;
    }
    link_->tls_key = tls_key();
  }
  link_->user = this;
  // What happens on the upstream side is about this request: its error log hears of it.
  link_->conn->set_log(hc_->connection()->log());
  rt_->peers().acquired(server_);
  if (reused_) {
    connected();
    return;
  }
  state_ = State::kConnecting;
  link_->conn->want_write(true);
  link_->conn->set_deadline(timeout_s(ps_.connect_timeout_ms, g.connect_timeout_ms));
}

// ---- TLS to the upstream ------------------------------------------------------------------

void ProxyHandler::start_handshake() {
  Connection* c = link_->conn;
  TlsSessionSlot* slot = pass_.tls_session_reuse ? rt_->tls_session(tls_key(), server_) : nullptr;
  TlsTransport* t = TlsTransport::client(pass_.tls->get(), c->fd(), pass_.tls_sni ? pass_.tls_name : std::string(),
                                         pass_.tls_name, slot);
  if (!t) {
    attempt_failed(Failure::kError, 502, "SSL_new() failed");
    return;
  }
  c->set_transport(t);
  state_ = State::kHandshake;
  handshake_step();
}

void ProxyHandler::handshake_step() {
  Connection* c = link_->conn;
  auto* t = static_cast<TlsTransport*>(c->transport());
  ssize_t r = t->handshake();
  if (r == kIoWantRead) {
    c->want_write(false);
    c->want_read(true);
    return;
  }
  if (r == kIoWantWrite) {
    c->want_write(true);
    return;
  }
  if (r != 1) {
    std::string why = "SSL handshake with the upstream failed: " + t->failure();
    attempt_failed(Failure::kError, 502, why.c_str());
    return;
  }
  c->want_write(false);
  connected();
}

void ProxyHandler::connected() {
  state_ = State::kSending;
  link_->requests++;
  Connection* c = link_->conn;
  c->clear_deadline();
  if (!reused_) c->set_nodelay();
  // The framing of the body is decided once, for every attempt: a whole body in hand goes with its
  // length; one still coming goes as the client sent it.
  // A body not all here yet streams: from now on it cannot be sent again.
  if (has_body_ && !body_complete_) replayable_ = false;
  if (!framing_set_) {
    framing_set_ = true;
    if (!has_body_) frame_length_ = req_.content_length;
    else if (replayable_ && body_complete_) frame_length_ = body_.size();
    else frame_chunked_ = req_.chunked, frame_length_ = req_.content_length;
  }
  std::string& head = w_->upstream_head;
  head.clear();
  build_head(&head, frame_chunked_, frame_length_);
  // The head and what there is of the body leave in one write (what the socket does not take is
  // queued).
  char size[24];
  iovec iov[5];
  int n = 0;
  iov[n++] = {head.data(), head.size()};
  if (!body_.empty()) {
    if (body_chunked_) {
      int sn = snprintf(size, sizeof(size), "%zx\r\n", body_.size());
      iov[n++] = {size, static_cast<size_t>(sn)};
    }
    iov[n++] = {body_.data(), body_.size()};
    if (body_chunked_) iov[n++] = {const_cast<char*>("\r\n"), 2};
  }
  if (body_chunked_ && body_complete_) iov[n++] = {const_cast<char*>("0\r\n\r\n"), 5};
  c->send(iov, n);
  // A body kept for another attempt stays; one that streams is gone once sent.
  if (!replayable_) std::string().swap(body_);
  rhead_.clear();
  rhead_scanned_ = 0;
  got_bytes_ = false;
  parse_error_ = false;
  llhttp_init(&parser_, HTTP_RESPONSE, parser_settings());
  parser_.data = this;
  ka_timeout_ = -1;  // this connection's Keep-Alive, not an earlier attempt's
  ka_max_ = -1;
  c->want_read(true);
  if (!flush_upstream()) return;
  if (body_paused_ && !c->out().above_high()) {
    body_paused_ = false;
    hc_->resume_body();
  }
}

void ProxyHandler::build_head(std::string* out, bool chunked_body, uint64_t length) {
  const UpstreamGroup& g = *pass_.group;
  std::string& h = *out;
  h.reserve(512 + req_.header_count * 32);
  h.append(req_.method);
  h.push_back(' ');
  if (req_.rewritten && (!pass_.has_uri || req_.rewrite_break)) {
    // The URI a rewrite made, whole (after a `break`, the location's prefix is no longer what it
    // starts with).
    append_escaped_path(&h, req_.path);
    if (!req_.query.empty()) {
      h.push_back('?');
      h.append(req_.query);
    }
  } else if (pass_.has_uri) {
    h.append(pass_.uri);
    std::string_view rest = req_.path;
    if (loc_->kind != MatchKind::kExact && rest.size() >= loc_->match.size()) rest.remove_prefix(loc_->match.size());
    else rest = {};
    append_escaped_path(&h, rest);
    if (!req_.query.empty()) {
      h.push_back('?');
      h.append(req_.query);
    }
  } else {
    h.append(req_.uri.empty() ? std::string_view("/") : req_.uri);
    if (req_.uri.empty() && !req_.query.empty()) {
      h.push_back('?');
      h.append(req_.query);
    }
  }
  h.append(" HTTP/1.1\r\n");

  VarContext vars;
  vars.req = &req_;
  vars.server = hc_->server();
  vars.peer = &hc_->client();
  vars.local = &hc_->connection()->listening()->addr;
  vars.proxy_host = pass_.proxy_host;

  auto overridden = [&](std::string_view name) {
    for (const ProxySetHeader& ph : ps_.set_headers)
      if (iequals(ph.name, name)) return true;
    return false;
  };
  // The defaults, each unless proxy_set_header sets the field itself.
  if (!overridden("host")) {
    h.append("Host: ");
    h.append(pass_.proxy_host);
    h.append("\r\n");
  }
  char addr[INET6_ADDRSTRLEN + 8];
  size_t addr_len = hc_->client().host_into(addr, sizeof(addr));
  std::string_view client(addr, addr_len);
  if (!overridden("x-forwarded-for")) {
    h.append("X-Forwarded-For: ");
    bool any = false;
    for (size_t i = 0; i < req_.header_count; i++) {
      if (!iequals(req_.headers[i].name, "x-forwarded-for")) continue;
      std::string_view v = trim(req_.headers[i].value);
      if (v.empty()) continue;
      if (any) h.append(", ");
      h.append(v);
      any = true;
    }
    if (any) h.append(", ");
    h.append(client);
    h.append("\r\n");
  }
  if (!overridden("x-real-ip")) {
    h.append("X-Real-IP: ");
    h.append(client);
    h.append("\r\n");
  }
  if (!overridden("x-forwarded-proto")) h.append(req_.https ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
  for (const ProxySetHeader& ph : ps_.set_headers) {
    size_t mark = h.size();
    h.append(ph.name);
    h.append(": ");
    size_t value_at = h.size();
    ph.value.evaluate(vars, &h);
    // An empty value removes the field; a value with a line break in it (from a variable) would
    // forge fields: it is cut there.
    size_t bad = h.find_first_of("\r\n", value_at);
    if (bad != std::string::npos) h.resize(bad);
    if (h.size() == value_at) h.resize(mark);
    else h.append("\r\n");
  }

  // The client's fields, less what belongs to its connection, what is rewritten above, and the
  // body's framing, which is the proxy's own.
  for (size_t i = 0; i < req_.header_count; i++) {
    std::string_view name = req_.headers[i].name;
    if (hop_by_hop(name) || iequals(name, "host") || iequals(name, "content-length") || iequals(name, "expect") ||
        iequals(name, "x-forwarded-for") || iequals(name, "x-real-ip") || iequals(name, "x-forwarded-proto"))
      continue;
    if (!req_.connection.empty() && connection_names(req_.connection, name)) continue;
    if (overridden(name)) continue;
    h.append(name);
    h.append(": ");
    h.append(req_.headers[i].value);
    h.append("\r\n");
  }
  if (chunked_body) {
    body_chunked_ = true;
    h.append("Transfer-Encoding: chunked\r\n");
  } else if (has_body_ || req_.content_length > 0 || req_.method_id == HTTP_POST || req_.method_id == HTTP_PUT) {
    h.append("Content-Length: ");
    h.append(std::to_string(length));
    h.append("\r\n");
  }
  if (req_.tunnel) {
    // The switch the client asked for goes on to the upstream (these fields are hop-by-hop: they
    // are written here, for this hop).
    h.append("Connection: upgrade\r\nUpgrade: ");
    h.append(req_.upgrade);
    h.append("\r\n");
  } else if (g.keepalive == 0) {
    h.append("Connection: close\r\n");
  }
  h.append("\r\n");
}

bool ProxyHandler::flush_upstream() {
  Connection* c = link_->conn;
  sent_any_ = true;
  if (!c->failed() && !c->out().empty()) {
    if (!c->flush_queue(false) && !c->failed()) {
      // The upstream is not taking the request as fast as it comes: send_timeout between writes.
      c->set_deadline(timeout_s(ps_.send_timeout_ms, pass_.group->send_timeout_ms));
      return true;
    }
  }
  if (c->failed()) {
    attempt_failed(Failure::kError, 502, strerror(errno));
    return false;
  }
  c->want_write(false);
  if (state_ == State::kSending) {
    state_ = State::kHead;
    c->clear_deadline();
    c->set_deadline(timeout_s(ps_.read_timeout_ms, pass_.group->read_timeout_ms));
  }
  return true;
}

// ---- upstream events ----------------------------------------------------------------------

void ProxyHandler::upstream_writable() {
  if (state_ == State::kConnecting) {
    int err = link_->conn->finish_connect();
    if (err) {
      attempt_failed(Failure::kError, 502, strerror(err));
      return;
    }
    link_->conn->want_write(false);
    if (pass_.https) start_handshake();
    else connected();
    return;
  }
  if (state_ == State::kHandshake) {
    handshake_step();
    return;
  }
  if (!flush_upstream()) return;
  if (link_ && link_->conn->out().empty()) {
    link_->conn->want_write(false);
    if (state_ == State::kTunnel && client_eof_) link_->conn->shutdown_write();
    if (body_paused_) {
      body_paused_ = false;
      hc_->resume_body();
    }
  }
}

void ProxyHandler::upstream_timeout() {
  switch (state_) {
    case State::kConnecting:
      attempt_failed(Failure::kTimeout, 504, "upstream timed out (connect)");
      return;
    case State::kHandshake:
      attempt_failed(Failure::kTimeout, 504, "upstream timed out (SSL handshake)");
      return;
    case State::kSending:
    case State::kHead:
      attempt_failed(Failure::kTimeout, 504, "upstream timed out");
      return;
    case State::kTunnel:
      if (upstream_paused_) {
        // Not silent: the client is not taking what came (its send_timeout judges it).
        link_->conn->set_deadline(timeout_s(ps_.read_timeout_ms, pass_.group->read_timeout_ms));
        return;
      }
      // Silent both ways for read_timeout: the tunnel is closed.
      release_link(false);
      state_ = State::kDone;
      out_->finish();
      return;
    case State::kBody:
      if (upstream_paused_) {
        // The proxy stopped reading: the client is the slow one (its send_timeout judges it).
        link_->conn->set_deadline(timeout_s(ps_.read_timeout_ms, pass_.group->read_timeout_ms));
        return;
      }
      log_error("upstream timed out while reading the response from \"%s\"",
                pass_.group->servers[static_cast<size_t>(server_)].text.c_str());
      release_link(false);
      out_->abort();
      return;
    default:
      return;
  }
}

void ProxyHandler::upstream_closed() {
  // The worker closes every connection (shutdown): this exchange ends with it.
  link_ = nullptr;
  if (aborted_ || state_ == State::kDone) return;
  state_ = State::kDone;
  if (response_started_) out_->abort();
  else out_->fail(502);
}

void ProxyHandler::upstream_readable() {
  if (state_ == State::kConnecting || state_ == State::kHandshake) {
    upstream_writable();
    return;
  }
  read_response();
}

void ProxyHandler::read_response() {
  Connection* c = link_->conn;
  char* buf = w_->in.data();
  size_t cap = w_->in.size();
  for (int round = 0; round < 8; round++) {
    if (upstream_paused_ || !link_) return;
    ssize_t n = c->read(buf, cap);
    if (n == kIoWantRead || n == kIoWantWrite) {
      // The upstream has nothing more for now: what the gzip filter holds of what came goes out,
      // rather than wait for more (a few bytes per pause, where a body that trickles in would
      // otherwise wait in zlib for as long as the upstream takes).
      if (gzip_ && state_ == State::kBody && gzip_->compressing()) {
        if (gzip_->flush() && !aborted_) out_->push();
      }
      return;
    }
    if ((n == kIoError || n == 0) && state_ == State::kTunnel) {
      // The upstream ended the tunnel: so does the client's side, once what is queued is out.
      release_link(false);
      state_ = State::kDone;
      out_->finish();
      return;
    }
    if (n == kIoError || n == 0) {
      bool eof = n == 0;
      if (state_ == State::kBody) {
        if (eof && llhttp_message_needs_eof(&parser_)) {
          // A body delimited by the end of the connection: this is its end.
          llhttp_finish(&parser_);
          if (!response_done_) response_complete();
          return;
        }
        log_error("upstream \"%s\" closed the connection before the end of the response",
                  pass_.group->servers[static_cast<size_t>(server_)].text.c_str());
        release_link(false);
        state_ = State::kDone;
        out_->abort();
        return;
      }
      attempt_failed(Failure::kError, 502,
                     eof ? "upstream prematurely closed connection while reading response header" : strerror(errno));
      return;
    }
    c->set_deadline(timeout_s(ps_.read_timeout_ms, pass_.group->read_timeout_ms));
    got_bytes_ = true;
    if (state_ == State::kHead || state_ == State::kSending) {
      // A head is parsed where it lies: in this read, or in rhead_ when it came in pieces.
      if (rhead_.empty()) {
        if (!parse_heads(buf, static_cast<size_t>(n))) return;
      } else {
        rhead_.append(buf, static_cast<size_t>(n));
        if (!parse_heads(rhead_.data(), rhead_.size())) return;
      }
      continue;
    }
    if (state_ == State::kTunnel) {
      if (!out_->write(buf, static_cast<size_t>(n)) || aborted_) return;
      if (!push_and_check()) return;
      continue;
    }
    if (state_ != State::kBody) return;
    if (!feed_body(buf, static_cast<size_t>(n))) return;
  }
}

// The response's heads in data (interim ones, then the final one) and what follows them. Each head
// is parsed once it is whole, by itself: its fields are views into data until the parse returns.
// What is left of an unfinished head is kept in rhead_. False when the exchange moved on (failed,
// completed or aborted) and the caller must stop.
bool ProxyHandler::parse_heads(const char* data, size_t len) {
  const bool kept = !rhead_.empty() && data == rhead_.data();
  size_t start = 0;
  size_t scanned = kept ? rhead_scanned_ : 0;
  for (;;) {
    std::string_view view(data, len);
    size_t from = std::max(start, scanned > 3 ? scanned - 3 : 0);
    size_t end = view.find("\r\n\r\n", from);
    size_t head_end = end == std::string_view::npos ? len : end + 4;
    if (view.substr(start, head_end - start).find("\n\n") != std::string_view::npos) {
      attempt_failed(Failure::kError, 502, "upstream sent a response head with bare LF line ends");
      return false;
    }
    if (head_end - start > ps_.buffer_size) {
      attempt_failed(Failure::kError, 502, "upstream sent too big header");
      return false;
    }
    if (end == std::string_view::npos) {
      // Not whole yet: kept (from its start) until the rest arrives.
      if (kept) rhead_.erase(0, start);
      else rhead_.assign(data + start, len - start);
      rhead_scanned_ = rhead_.size();
      return true;
    }
    // The same rules as for a client's request: CRLF line ends only, no obs-fold, no control bytes.
    if (!head_is_clean(data + start, data + end)) {
      attempt_failed(Failure::kError, 502, "upstream sent an invalid response head");
      return false;
    }
    state_ = State::kHead;
    w_->upstream_headers.clear();
    llhttp_errno_t err = llhttp_execute(&parser_, data + start, head_end - start);
    if (aborted_ || state_ == State::kDone) return false;
    if (retry_status_) {
      char what[64];
      snprintf(what, sizeof(what), "upstream answered %d", retry_status_);
      int status = retry_status_;
      retry_status_ = 0;
      attempt_failed(Failure::kStatus, status, what);
      return false;
    }
    if (parse_error_ || (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE)) {
      attempt_failed(Failure::kError, 502, "upstream sent an invalid response head");
      return false;
    }
    if (state_ == State::kHead) {
      // An interim (1xx) response: what follows it is the next head.
      start = scanned = head_end;
      continue;
    }
    // The final head has gone to the client; the bytes after it are the body's (or the tunnel's).
    // They are copied on before rhead_, which may hold them, is let go.
    const char* rest = data + head_end;
    size_t rest_len = len - head_end;
    bool go_on;
    if (err == HPE_PAUSED_UPGRADE && state_ == State::kTunnel) {
      // Switched: what came after the head is the tunnel's first bytes; then what the client sent
      // before the answer.
      if (rest_len > 0) out_->write(rest, rest_len);
      go_on = !aborted_ && link_ && push_and_check();
      if (!aborted_ && link_ && !tunnel_early_.empty()) {
        // (Even when the client is slow: these bytes go the other way.)
        link_->conn->out().append(std::string_view(tunnel_early_));
        std::string().swap(tunnel_early_);
        flush_upstream();
        go_on = go_on && link_ != nullptr && !aborted_;
      }
      if (!aborted_ && link_ && tunnel_early_held_) {
        // The client was held back: it goes on once the upstream has taken what came before.
        tunnel_early_held_ = false;
        if (link_->conn->out().empty()) hc_->resume_body();
        else body_paused_ = true;
      }
    } else if (err == HPE_PAUSED) {
      // A response without a body: complete. Anything after it is the upstream talking out of turn.
      if (!response_done_) response_complete(rest_len == 0);
      go_on = false;
    } else if (state_ != State::kBody) {
      go_on = false;
    } else if (rest_len > 0) {
      // The head and the body bytes that came with it leave in one write.
      go_on = feed_body(rest, rest_len);
    } else {
      go_on = push_and_check();
    }
    std::string().swap(rhead_);
    rhead_scanned_ = 0;
    return go_on;
  }
}

// Body bytes of the response: on to the client as they come.
bool ProxyHandler::feed_body(const char* data, size_t len) {
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  if (aborted_) return false;
  if (err == HPE_PAUSED) {
    // The response is complete; anything after it is the upstream talking out of turn.
    const char* stop = llhttp_get_error_pos(&parser_);
    if (!response_done_) response_complete(stop == data + len);
    return false;
  }
  if (err != HPE_OK) {
    log_error("upstream \"%s\" sent an invalid response body (%s)",
              pass_.group->servers[static_cast<size_t>(server_)].text.c_str(), llhttp_get_error_reason(&parser_));
    release_link(false);
    state_ = State::kDone;
    out_->abort();
    return false;
  }
  return push_and_check();
}

bool ProxyHandler::push_and_check() {
  out_->push();
  if (aborted_ || !link_) return false;
  size_t limit = state_ == State::kTunnel ? OutputQueue::kHighWater : read_ahead_;
  if (out_->queued() >= limit) {
    // The client is not keeping up: the upstream waits until on_output_ready().
    upstream_paused_ = true;
    link_->conn->want_read(false);
    return false;
  }
  return true;
}

const llhttp_settings_t* ProxyHandler::parser_settings() {
  static llhttp_settings_t s = [] {
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_header_field = on_header_field;
    st.on_header_value = on_header_value;
    st.on_headers_complete = on_headers_complete;
    st.on_body = on_body;
    st.on_message_complete = on_message_complete;
    return st;
  }();
  return &s;
}


int ProxyHandler::on_header_field(llhttp_t* p, const char* at, size_t len) {
  auto* self = static_cast<ProxyHandler*>(p->data);
  if (self->state_ != State::kHead) return 0;  // trailers are not passed on
  std::vector<Header>& hs = self->w_->upstream_headers;
  if (hs.size() >= kMaxHeaders) {
    self->parse_error_ = true;
    return -1;
  }
  hs.push_back(Header{std::string_view(at, len), {}});
  return 0;
}

int ProxyHandler::on_header_value(llhttp_t* p, const char* at, size_t len) {
  auto* self = static_cast<ProxyHandler*>(p->data);
  std::vector<Header>& hs = self->w_->upstream_headers;
  if (self->state_ != State::kHead || hs.empty()) return 0;
  hs.back().value = std::string_view(at, len);
  return 0;
}

int ProxyHandler::on_headers_complete(llhttp_t* p) {
  auto* self = static_cast<ProxyHandler*>(p->data);
  int status = p->status_code;
  if (status >= 100 && status < 200) {
    // Interim responses (100 Continue, 103 Early Hints) are the upstream's business with us.
    // 101 would switch protocols, which was not asked for.
    if (status == 101) {
      if (!self->req_.tunnel) {
        self->parse_error_ = true;
        return -1;
      }
      return self->head_complete() ? 0 : -1;
    }
    self->w_->upstream_headers.clear();
    return 0;
  }
  if (!self->head_complete()) return -1;
  // A response to HEAD has no body whatever its fields say.
  return self->req_.method_id == HTTP_HEAD ? 1 : 0;
}

int ProxyHandler::on_body(llhttp_t* p, const char* at, size_t len) {
  auto* self = static_cast<ProxyHandler*>(p->data);
  if (self->aborted_) return -1;
  if (!self->out_->write(at, len) || self->aborted_) return -1;
  return 0;
}

int ProxyHandler::on_message_complete(llhttp_t* p) {
  int status = p->status_code;
  if (status >= 100 && status < 200) {
    // After an interim response, the head that follows is parsed as a head again.
    return 0;
  }
  return HPE_PAUSED;
}

bool ProxyHandler::head_complete() {
  status_ = parser_.status_code;
  const UpstreamServer& us = pass_.group->servers[static_cast<size_t>(server_)];
  // One framing only, and one the client side can carry faithfully.
  if ((parser_.flags & F_CONTENT_LENGTH) && (parser_.flags & F_TRANSFER_ENCODING)) {
    log_error("upstream \"%s\" sent both Content-Length and Transfer-Encoding", us.text.c_str());
    parse_error_ = true;
    return false;
  }
  std::string_view connection;
  int te_lines = 0;
  bool te_chunked = false;
  const std::vector<Header>& rheaders = w_->upstream_headers;
  for (const Header& hd : rheaders) {
    if (!is_token(hd.name)) {
      log_error("upstream \"%s\" sent an invalid field name", us.text.c_str());
      parse_error_ = true;
      return false;
    }
    if (iequals(hd.name, "connection")) connection = hd.value;
    if (iequals(hd.name, "transfer-encoding")) {
      te_lines++;
      te_chunked = iequals(trim(hd.value), "chunked");
    }
    if (iequals(hd.name, "keep-alive")) parse_keep_alive(hd.value, &ka_timeout_, &ka_max_);
  }
  if (te_lines > 0 && (te_lines != 1 || !te_chunked || !(parser_.flags & F_CHUNKED))) {
    log_error("upstream \"%s\" sent a Transfer-Encoding other than chunked", us.text.c_str());
    parse_error_ = true;
    return false;
  }
  // Passive health and proxy_next_upstream for the statuses it names.
  uint32_t cond = 0;
  switch (status_) {
    case 500: cond = kNextHttp500; break;
    case 502: cond = kNextHttp502; break;
    case 503: cond = kNextHttp503; break;
    case 504: cond = kNextHttp504; break;
    case 403: cond = kNextHttp403; break;
    case 404: cond = kNextHttp404; break;
    case 429: cond = kNextHttp429; break;
    default: break;
  }
  if (cond && (ps_.next_upstream & cond) && can_try_another(true)) {
    // The next server is asked; this response is dropped with its connection. With no server
    // left to ask, it goes to the client as it is. Asked once the parser has returned: the next
    // attempt may start at once (a pooled connection) with a fresh parser, which this callback's
    // error return must not reach.
    retry_status_ = status_;
    return false;
  }
  rt_->peers().succeeded(server_, hc_->connection()->loop()->now());

  // The fields that go to the client.
  std::vector<Header>& out = w_->response_headers;
  out.clear();
  std::string_view redirect_from;
  if (ps_.redirect_default) redirect_from = pass_.redirect_from;
  for (const Header& hd : rheaders) {
    std::string_view name = hd.name;
    if (status_ == 101 && iequals(name, "upgrade")) {
      out.push_back(hd);
      continue;
    }
    if (hop_by_hop(name) || iequals(name, "content-length")) continue;
    if (!connection.empty() && connection_names(connection, name)) continue;
    bool hidden = hidden_by_default(name);
    for (const std::string& x : ps_.hide_headers) hidden = hidden || iequals(x, name);
    if (hidden) {
      bool passed = false;
      for (const std::string& x : ps_.pass_headers) passed = passed || iequals(x, name);
      if (!passed) continue;
    }
    if (!redirect_from.empty() && (iequals(name, "location") || iequals(name, "refresh")) &&
        hd.value.starts_with(redirect_from)) {
      rewritten_.push_back((pass_.has_uri ? loc_->match : std::string("/")) +
                           std::string(hd.value.substr(redirect_from.size())));
      out.push_back(Header{name, rewritten_.back()});
      continue;
    }
    out.push_back(hd);
  }
  ResponseStart rs;
  rs.status = status_;
  rs.headers = out.data();
  rs.header_count = out.size();
  rs.content_length = (parser_.flags & F_CONTENT_LENGTH) ? static_cast<int64_t>(parser_.content_length) : -1;
  rs.no_body = req_.method_id == HTTP_HEAD || status_ == 204 || status_ == 304;
  if (rs.no_body && !(parser_.flags & F_CONTENT_LENGTH)) rs.content_length = -1;
  if (status_ == 101) {
    rs.content_length = -1;
    rs.no_body = false;
  }
  response_started_ = true;
  state_ = status_ == 101 ? State::kTunnel : State::kBody;
  out_->start(rs);
  if (aborted_) return false;
  return true;
}

void ProxyHandler::response_complete(bool clean) {
  response_done_ = true;
  bool reusable = clean && llhttp_should_keep_alive(&parser_) && body_complete_ && link_ && link_->conn->out().empty() &&
                  !llhttp_message_needs_eof(&parser_);
  // Bytes after the response (none are expected) make the connection unusable.
  release_link(reusable);
  state_ = State::kDone;
  out_->finish();
}

void ProxyHandler::release_link(bool reusable) {
  if (!link_) return;
  note(response_started_ || status_ ? status_ : 502);
  UpstreamLink* l = link_;
  link_ = nullptr;
  rt_->peers().released(server_);
  if (reusable && !upstream_paused_) {
    rt_->give_back(l, ka_timeout_, ka_max_);
  } else {
    l->user = nullptr;
    l->conn->close();
  }
}

bool ProxyHandler::can_try_another(bool sent) const {
  if (response_started_ || !replayable_) return false;
  if (ps_.next_upstream_tries != 0 && tries_ >= ps_.next_upstream_tries) return false;
  if (sent && !idempotent(req_.method_id) && !(ps_.next_upstream & kNextNonIdempotent)) return false;
  double now = hc_->connection()->loop()->now();
  if (ps_.next_upstream_timeout_ms > 0 && now - started_at_ >= ms_to_s(ps_.next_upstream_timeout_ms)) return false;
  for (size_t i = 0; i < pass_.group->servers.size(); i++)
    if (!was_tried(i) && rt_->peers().available(static_cast<int>(i), now)) return true;
  return false;
}

bool ProxyHandler::retry_stale() {
  if (!reused_ || got_bytes_ || response_started_ || !idempotent(req_.method_id) || !replayable_) return false;
  // A pooled connection the upstream had closed before our request could reach it (it failed
  // before any byte of an answer): the request goes again, on a new connection, as if nothing
  // happened. Not a failure of the server, not one of the tries.
  release_link(false);
  set_tried(static_cast<size_t>(server_), false);
  tries_--;
  fresh_only_ = true;
  next_attempt();
  return true;
}

void ProxyHandler::attempt_failed(Failure why, int status, const char* what) {
  if (why == Failure::kError && retry_stale()) return;
  const UpstreamGroup& g = *pass_.group;
  UpstreamFailure kind = why == Failure::kTimeout ? UpstreamFailure::kTimeout
                         : why == Failure::kStatus ? UpstreamFailure::kStatus
                         : state_ == State::kWaitBody || state_ == State::kConnecting || state_ == State::kHandshake
                             ? UpstreamFailure::kConnect
                             : UpstreamFailure::kError;
  w_->stats.upstream_failure(g.status_index, kind);
  const UpstreamServer& us = g.servers[static_cast<size_t>(server_)];
  rt_->peers().failed(server_, hc_->connection()->loop()->now());
  note(status);
  bool sent = sent_any_;
  release_link(false);
  log_error("%s while proxying to upstream \"%s\" (%s), client: %s, request: \"%.*s %.*s\"", what, us.text.c_str(),
            g.name.c_str(), hc_->client().to_string().c_str(), static_cast<int>(req_.method.size()),
            req_.method.data(), static_cast<int>(req_.target.size()), req_.target.data());
  fail_status_ = why == Failure::kStatus ? 502 : status;
  uint32_t cond = why == Failure::kTimeout ? uint32_t{kNextTimeout} : why == Failure::kError ? uint32_t{kNextError} : 0u;
  bool allowed = why == Failure::kStatus || (ps_.next_upstream & cond);
  if (allowed && can_try_another(sent)) {
    state_ = State::kWaitBody;
    next_attempt();
    return;
  }
  finish_with(fail_status_);
}

void ProxyHandler::finish_with(int status) {
  state_ = State::kDone;
  release_link(false);
  if (response_started_) out_->abort();
  else out_->fail(status);
}

void ProxyHandler::on_output_ready() {
  if (!upstream_paused_ || aborted_) return;
  upstream_paused_ = false;
  if (!link_) return;
  link_->conn->want_read(true);
  // The upstream's read_timeout counts from when the proxy reads it again.
  link_->conn->set_deadline(timeout_s(ps_.read_timeout_ms, pass_.group->read_timeout_ms));
  read_response();
}

bool ProxyHandler::on_tunnel_data(const char* data, size_t len) {
  if (aborted_ || state_ == State::kDone) return true;
  if (state_ != State::kTunnel || !link_) {
    // Sent before the upstream agreed to switch: kept apart from any request body, and sent once
    // it has switched (never as part of the request: declined, it goes nowhere). Beyond
    // client_body_buffer_size the client is held back until then.
    tunnel_early_.append(data, len);
    if (tunnel_early_.size() <= ps_.client_body_buffer_size) return true;
    tunnel_early_held_ = true;
    return false;
  }
  Connection* c = link_->conn;
  c->out().append(std::string_view(data, len));
  c->set_deadline(timeout_s(ps_.read_timeout_ms, pass_.group->read_timeout_ms));
  if (!flush_upstream()) return true;
  if (!link_) return true;
  if (c->out().above_high()) {
    body_paused_ = true;
    return false;
  }
  return true;
}

void ProxyHandler::on_tunnel_eof() {
  client_eof_ = true;
  if (state_ == State::kTunnel && link_ && link_->conn->out().empty()) link_->conn->shutdown_write();
}

ssize_t ProxyHandler::tunnel_pending() const {
  // A side that ended its stream, or TLS to the upstream, keeps the tunnel here.
  if (state_ != State::kTunnel || !link_ || aborted_ || client_eof_ || pass_.https || !body_.empty() || !tunnel_early_.empty()) return -1;
  const OutputQueue& q = link_->conn->out();
  if (q.has_file()) return -1;
  return static_cast<ssize_t>(q.memory());
}

bool ProxyHandler::describe_tunnel(HandedConnection* hc) {
  if (tunnel_pending() < 0) return false;
  Fd fd = link_->conn->duplicate();
  if (!fd || !link_->conn->out().copy_memory(&hc->to_upstream)) return false;
  hc->fds.push_back(std::move(fd));
  hc->timeout_ms = ps_.read_timeout_ms >= 0 ? ps_.read_timeout_ms : pass_.group->read_timeout_ms;
  return true;
}

void ProxyHandler::tunnel_handed_over() {
  if (link_) note(status_);  // (for the access log line written now; not once aborted)
  state_ = State::kDone;
  aborted_ = true;
  if (!link_) return;
  UpstreamLink* l = link_;
  link_ = nullptr;
  rt_->peers().released(server_);
  l->user = nullptr;
  l->conn->close();
}

void ProxyHandler::on_abort() {
  aborted_ = true;
  state_ = State::kDone;
  release_link(false);
}

}  // namespace

void start_proxy(HttpConnection* hc, const ProxyPass& pass) {
  auto* h = new ProxyHandler(hc, pass);
  hc->start_handler(h);
  h->begin();
}

}  // namespace baton::http

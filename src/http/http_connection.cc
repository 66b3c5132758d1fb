#include "http/http_connection.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <array>
#include <bit>
#include <cstdint>

#include "core/clock.h"
#include "core/log.h"
#include "core/strings.h"
#include "event/listener.h"
#include "event/tls.h"
#include "http/http1.h"
#include "http/http_access.h"
#include "http/http_auth.h"
#include "http/http_log.h"
#include "http/http_proxy.h"
#include "http/http_rewrite.h"
#include "http/http_response.h"
#include "http/http_static.h"
#include "http/http_status.h"
#include "http/http_worker.h"

namespace baton::http {

namespace {

// Set while a request is answered from inside the parser (or as if it were): output waits for the
// parser to return, and no request that follows is read meanwhile.
struct InFeed {
  bool* flag;
  explicit InFeed(bool* f) : flag(f) { *flag = true; }
  ~InFeed() { *flag = false; }
};

// How long a connection that is being closed keeps reading (and discarding) what the client still
// sends, so that the response is not destroyed by a reset.
constexpr double kLingerSeconds = 2.0;
// During a drain, how long an idle keep-alive connection may stay silent before it is closed. A
// client that is using the connection sends its next request well within this; closing at once
// would race with a request already on its way.
constexpr double kDrainIdleSeconds = 1.0;

inline double seconds(int64_t ms) { return static_cast<double>(ms) / 1000.0; }

// The status for a head llhttp refused.
int status_for_parse_error(llhttp_errno_t err, const char* head, const char* end) {
  if (err == HPE_INVALID_METHOD) {
    // A well-formed token that is not a method we know: 501. Garbage: 400.
    const char* s = head;
    while (s < end && (*s == '\r' || *s == '\n')) s++;
    const char* t = s;
    while (t < end && is_tchar(static_cast<unsigned char>(*t))) t++;
    if (t > s && t < end && *t == ' ') return 501;
    return 400;
  }
  if (err == HPE_INVALID_VERSION) {
    // "HTTP/d.d" that is well formed but not 1.x: 505.
    const char* line_end = static_cast<const char*>(memchr(head, '\r', static_cast<size_t>(end - head)));
    if (!line_end) line_end = end;
    std::string_view line(head, static_cast<size_t>(line_end - head));
    size_t sp = line.rfind(' ');
    if (sp != std::string_view::npos) {
      std::string_view v = line.substr(sp + 1);
      if (v.size() == 8 && v.starts_with("HTTP/") && v[5] >= '0' && v[5] <= '9' && v[6] == '.' && v[7] >= '0' &&
          v[7] <= '9')
        return 505;
    }
    return 400;
  }
  return 400;
}

// The authority of an absolute-form target or a Host value, as the virtual-server key: without
// port, lower-cased, without a trailing dot. False for what cannot be a host.
bool host_key(std::string_view host, std::string* out) {
  out->clear();
  if (host.empty()) return true;
  size_t end = host.size();
  if (host[0] == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    end = close + 1;
  } else {
    size_t colon = host.rfind(':');
    if (colon != std::string_view::npos) end = colon;
  }
  out->resize(end);
  char* o = out->data();
  for (size_t i = 0; i < end; i++) {
    char ch = host[i];
    if (ch == '/' || ch == '\\' || ch == ' ' || ch == '@' || ch == '?' || ch == '#') return false;
    o[i] = ascii_lower(ch);
  }
  if (!out->empty() && out->back() == '.') out->pop_back();
  return true;
}

}  // namespace

const llhttp_settings_t* HttpConnection::settings() {
  static llhttp_settings_t s = [] {
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_message_begin = on_message_begin;
    st.on_url = on_url;
    st.on_url_complete = on_url_complete;
    st.on_header_field = on_header_field;
    st.on_header_value = on_header_value;
    st.on_headers_complete = on_headers_complete;
    st.on_chunk_header = on_chunk_header;
    st.on_chunk_extension_name = on_body_bytes;
    st.on_chunk_extension_value = on_body_bytes;
    st.on_body = on_body_data;
    st.on_message_complete = on_message_complete;
    return st;
  }();
  return &s;
}

HttpConnection::HttpConnection(HttpWorker* worker, Connection* c)
    : worker_(worker), c_(c), group_(static_cast<ListenGroup*>(c->listening()->ctx)) {}

// Connections are deleted after the loop's callbacks, possibly after the worker itself is gone:
// the request goes back to the worker in on_close(), and is only freed here.
HttpConnection::~HttpConnection() = default;

void HttpConnection::on_close() {
  if (handler_) {
    // The exchange ends with the connection: the handler lets go of its upstream side.
    RequestHandler* h = handler_;
    handler_ = nullptr;
    streaming_ = false;
    h->on_abort();
    c_->loop()->defer_delete(h);
  }
  log_pending_ = false;  // every path that closes has written the entry it could
  count_bytes();
  set_stat(StatusWriter::State::kNone);
  release_request();
}

void HttpConnection::start(std::string_view preread) {
  const Settings& s = group_->default_server->s;
  set_deadline(seconds(s.client_header_timeout_ms));
  if (!preread.empty()) {
    // What came after a PROXY protocol header: the start of the first request.
    set_reusable(false);
    in_.assign(preread);
    size_t used = feed(in_.data(), in_.size());
    if (closed()) return;
    in_.consume(used);
    if (flush()) after_output();
    if (closed()) return;
  }
  // The request has often arrived with the connection: read it now, and a short-lived connection
  // may be answered and closed without ever being registered with the loop.
  on_readable();
  if (closed()) return;
  if (!blocked()) want_read(true);
  update_reusable();
}

void HttpConnection::resume(uint32_t requests, std::string_view preread) {
  requests_ = requests;
  c_->set_nodelay();
  nodelay_ = true;
  start(preread);
  if (closed()) return;
  if (requests > 0 && phase_ == Phase::kIdle && in_.empty() && !blocked() && !handler_) {
    // Waiting for its next request, under this worker's keep-alive timeout.
    clear_deadline();
    set_deadline(seconds(settings_now().keepalive_timeout_ms));
  }
}

bool HttpConnection::handable() const {
  // TLS state lives in this process; a connection that has begun a request, owes a response or
  // waits on a handler finishes here.
  Transport* t = c_->transport();
  return worker_->can_hand_over() && t->shared() && !t->secure() && !refuse_plain_ && phase_ == Phase::kIdle &&
         !blocked() && !handler_ && !log_pending_ && !streaming_ && in_.size() <= kHandoverMaxPending;
}

bool HttpConnection::try_hand_over() {
  if (phase_ == Phase::kTunnel) return try_hand_over_tunnel();
  if (!handable()) {
    if (worker_->can_hand_over() && phase_ == Phase::kIdle) hand_over_failed_ = true;
    return false;
  }
  HandedConnection hc;
  hc.kind = HandedConnection::Kind::kIdle;
  describe_client(*c_, &hc);
  hc.requests = requests_;
  hc.preread.assign(in_.data(), in_.size());
  hc.idle_left_ms = settings_now().keepalive_timeout_ms;
  Fd copy(fcntl(c_->fd(), F_DUPFD_CLOEXEC, 0));
  if (copy) hc.fds.push_back(std::move(copy));
  if (!copy && hc.fds.empty()) {
    hand_over_failed_ = true;
    return false;
  }
  if (!worker_->hand_over(std::move(hc))) {
    hand_over_failed_ = true;
    return false;
  }
  close();
  return true;
}

bool HttpConnection::try_hand_over_tunnel() {
  // Switched through the handler and flowing (the 101 is out); TLS state lives in this process.
  Transport* t = c_->transport();
  if (!worker_->can_hand_over_tunnels() || !handler_ || !streaming_ || in_feed_ || !worker_->out.empty() || !t->shared() ||
      t->secure() || c_->out().has_file())
    return false;
  ssize_t upstream_pending = handler_->tunnel_pending();
  if (upstream_pending < 0 || static_cast<size_t>(upstream_pending) + c_->out().memory() > kHandoverMaxSpill)
    return false;
  HandedConnection hc;
  hc.kind = HandedConnection::Kind::kTunnel;
  describe_client(*c_, &hc);
  Fd fd = c_->duplicate();
  if (!fd || !c_->out().copy_memory(&hc.to_client)) return false;
  hc.fds.push_back(std::move(fd));
  if (!handler_->describe_tunnel(&hc)) return false;
  hc.idle_left_ms = hc.timeout_ms;
  // (Not taken now, a full channel say: tried again whenever bytes move.)
  if (!worker_->hand_over(std::move(hc))) return false;
  // The exchange ends here, for this worker: logged with what went to the client so far.
  RequestHandler* h = handler_;
  handler_ = nullptr;
  streaming_ = false;
  h->tunnel_handed_over();
  c_->loop()->defer_delete(h);
  req_->answer.log_bytes = req_->stream_bytes;
  if (log_pending_) log_request(req_->answer.log_status, req_->answer.log_bytes);
  c_->close();
  return true;
}

void HttpConnection::on_drain() {
  draining_ = true;
  if (try_hand_over()) return;
  if (phase_ == Phase::kIdle && in_.empty() && !blocked() && !handler_) {
    clear_deadline();
    set_deadline(kDrainIdleSeconds);
  }
}

const HeadPolicy* HttpConnection::head_policy(const Settings& s) {
  req_->vars = VarContext();
  req_->vars.req = req_.get();
  req_->vars.server = server_;
  req_->vars.peer = &req_->client;
  req_->vars.local = &c_->listening()->addr;
  req_->policy.add = &s.add_headers;
  req_->policy.vars = &req_->vars;
  req_->policy.server_tokens = s.server_tokens;
  req_->policy.charset = s.charset;
  return &req_->policy;
}

void HttpConnection::release_request() {
  if (!req_ || log_pending_) return;
  req_->limit_conns.release();
  req_->answer.file.reset();
  worker_->give_back(std::move(req_));
}

// ---- reading --------------------------------------------------------------------------------

void HttpConnection::on_readable() {
  char* buf = worker_->in.data();
  if (phase_ == Phase::kTunnel) {
    read_tunnel();
    return;
  }
  if (phase_ == Phase::kLinger || phase_ == Phase::kDone) {
    // Nothing more will be answered: read and drop, until the client closes.
    for (int i = 0; i < 16; i++) {
      ssize_t n = c_->read(buf, worker_->in.size());
      if (n > 0) {
        unread_input_ = true;
        continue;
      }
      if (n == kIoWantRead || n == kIoWantWrite) return;
      if (n == 0 && (blocked() || streaming_)) {
        // The client only shut its sending side (as `nc -N` does): what it is owed still goes out.
        want_read(false);
        return;
      }
      if (log_pending_) log_request(req_->answer.log_status, req_->answer.log_bytes - file_left());
      close();
      return;
    }
    return;
  }
  ssize_t n = c_->read(buf, worker_->in.size());
  if (n <= 0) {
    if (n == kIoWantRead || n == kIoWantWrite) return;
    // A client that leaves while its answer is being prepared (a slow upstream, a long poll)
    // cancels it, as in nginx (logged as 499); once the answer is flowing, a client that only
    // shut its sending side still gets all of it.
    if (n == 0 && handler_ && !streaming_ && phase_ != Phase::kBody && phase_ != Phase::kHead) {
      log_info("client %s closed the connection while its request was being answered", client().to_string().c_str());
      if (log_pending_) req_->answer.log_status = 499;
    }
    bool answer_coming = blocked() || (handler_ && streaming_ && phase_ != Phase::kBody && phase_ != Phase::kHead);
    if (n == 0 && answer_coming) {
      // End of the client's requests, not of its interest in the answer: finish sending, then close.
      phase_ = Phase::kDone;
      keep_alive_ = false;
      clean_end_ = false;
      want_read(false);
      return;
    }
    // The client closed or reset: nothing can be answered any more.
    if (log_pending_) log_request(req_->answer.log_status, req_->answer.log_bytes - file_left());
    close();
    return;
  }
  // A read that filled the buffer may have left more in the socket, unseen: closing on it would
  // answer with a reset that destroys what was sent.
  unread_input_ = static_cast<size_t>(n) == worker_->in.size();
  set_reusable(false);
  if (phase_ == Phase::kIdle && in_.empty()) set_deadline(seconds(settings_now().client_header_timeout_ms));
  if (in_.empty()) {
    size_t used = feed(buf, static_cast<size_t>(n));
    if (!closed() && used < static_cast<size_t>(n)) {
      // Bytes after the last request that will be answered are dropped, but they were sent: the
      // connection lingers rather than close on them.
      if (phase_ != Phase::kDone) in_.assign(std::string_view(buf + used, static_cast<size_t>(n) - used));
      else unread_input_ = true;
    }
  } else {
    in_.append(buf, static_cast<size_t>(n));
    size_t used = feed(in_.data(), in_.size());
    if (!closed()) {
      in_.consume(used);
    }
  }
  if (closed()) return;
  if (phase_ == Phase::kBody) set_deadline(seconds(settings_now().client_body_timeout_ms));
  if (body_paused_) want_read(false);  // the handler's side is full: the client waits
  if (handler_ && phase_ == Phase::kIdle && in_.size() >= group_->default_server->s.client_header_buffer_size)
    want_read(false);  // enough of the next request is waiting for the handler to finish
  if (flush()) after_output();
}

void HttpConnection::read_tunnel() {
  char* buf = worker_->in.data();
  for (int i = 0; i < 8 && !closed() && !body_paused_; i++) {
    ssize_t n = c_->read(buf, worker_->in.size());
    if (n == kIoWantRead || n == kIoWantWrite) break;
    if (n <= 0) {
      want_read(false);
      if (!handler_) {
        // Nobody carries the tunnel any more: once the output is out, the connection ends.
        if (!blocked()) close();
        return;
      }
      if (n == 0) {
        handler_->on_tunnel_eof();
      } else {
        close();
      }
      return;
    }
    if (!handler_) continue;  // the tunnel has ended: what still comes is dropped
    if (!handler_->on_tunnel_data(buf, static_cast<size_t>(n))) body_paused_ = true;
  }
  if (closed()) return;
  if (draining_ && handler_ && try_hand_over()) return;
  if (body_paused_) want_read(false);
}

namespace {

// The last bytes of a chunked body read so far, for chunked_end_is_crlf().
void keep_chunked_tail(Request* r, const char* p, const char* end) {
  for (const char* q = end - std::min<ptrdiff_t>(end - p, 4); q < end; q++) {
    if (r->chunk_tail_len == 4) {
      memmove(r->chunk_tail, r->chunk_tail + 1, 3);
      r->chunk_tail_len = 3;
    }
    r->chunk_tail[r->chunk_tail_len++] = *q;
  }
}

// A chunked message that ended at stop (what this read holds of it begins at p) ends with the CRLF
// that closes its trailer section, after a CRLF-ended line.
bool chunked_end_is_crlf(const Request& r, const char* p, const char* stop) {
  char last[4];
  size_t n = 0;
  size_t here = static_cast<size_t>(std::min<ptrdiff_t>(stop - p, 4));
  for (size_t i = here < 4 ? 4 - here : 0; i > 0 && n < 4; i--)
    if (r.chunk_tail_len >= i) last[n++] = r.chunk_tail[r.chunk_tail_len - i];
  for (const char* q = stop - here; q < stop; q++) last[n++] = *q;
  return n == 4 && memcmp(last, "\r\n\r\n", 4) == 0;
}

}  // namespace

size_t HttpConnection::feed(const char* data, size_t len) {
  InFeed in_feed(&in_feed_);
  size_t pos = 0;
  while (pos < len && !closed()) {
    if (phase_ == Phase::kDone || phase_ == Phase::kLinger) break;
    // Answer in order: wait for the output, and for the handler answering the request before.
    if (phase_ == Phase::kIdle && (blocked() || handler_busy())) break;
    if (!req_ || reparse_) {
      // A new head: the parser starts afresh (it lives in the request, taken now when the
      // connection was idle).
      if (!req_) req_ = worker_->take_request();
      llhttp_init(&req_->parser, HTTP_REQUEST, settings());
      req_->parser.data = this;
      head_resumed_ = reparse_;
      reparse_ = false;
      phase_ = Phase::kIdle;
    }
    const char* start = data + pos;
    if (phase_ == Phase::kIdle) req_->msg_start = start;
    llhttp_errno_t err = llhttp_execute(&req_->parser, start, len - pos);
    if (err == HPE_PAUSED) {
      // A message is complete and answered; go on with what follows it (pipelining).
      const char* stop = llhttp_get_error_pos(&req_->parser);
      llhttp_resume(&req_->parser);
      pos = static_cast<size_t>(stop - data);
      if (req_ && req_->chunked && !chunked_end_is_crlf(*req_, start, stop)) {
        // llhttp ends a chunked body at a bare LF too, where a front end may read on: nothing
        // behind it is taken as a request.
        abandon("a chunked body that does not end with CRLF");
        return len;
      }
      continue;
    }
    if (err == HPE_PAUSED_UPGRADE) {
      // The request asked to switch protocols and its handler carries the switch: what follows it
      // is no longer HTTP. Whatever the handler answers, no other request is read here.
      const char* stop = llhttp_get_error_pos(&req_->parser);
      phase_ = Phase::kTunnel;
      keep_alive_ = false;
      clear_deadline();
      size_t rest = static_cast<size_t>(data + len - stop);
      if (rest > 0) {
        if (handler_ && !handler_->on_tunnel_data(stop, rest)) body_paused_ = true;
        else if (!handler_) unread_input_ = true;
      }
      return len;
    }
    if (err == HPE_OK) {
      if (phase_ == Phase::kBody && req_->chunked) keep_chunked_tail(req_.get(), start, data + len);
      if (phase_ == Phase::kHead) {
        // The head is not complete: keep it whole, and parse it again when the rest arrives.
        size_t have = static_cast<size_t>(data + len - req_->msg_start);
        if (have > group_->default_server->s.client_header_buffer_size) {
          fail_request(req_->url_end ? 431 : 414);
          return len;
        }
        reparse_ = true;
        return static_cast<size_t>(req_->msg_start - data);
      }
      return len;
    }
    if (phase_ == Phase::kBody && handler_ && !streaming_) {
      // A handler is waiting for the body and has answered nothing yet: it stops, and the client
      // hears why.
      end_handler(true);
      fail_request(req_->error_status ? req_->error_status : 400);
      return len;
    }
    if (phase_ == Phase::kBody) {
      // The answer is out already: a body that breaks its framing or its limit ends the
      // connection, and nothing is answered twice.
      abandon(req_->error_status == 413 ? "client_max_body_size exceeded" : llhttp_get_error_reason(&req_->parser));
      return len;
    }
    int status = req_->error_status;
    if (!status) status = status_for_parse_error(err, req_->msg_start, data + len);
    fail_request(status);
    return len;
  }
  return pos;
}

int HttpConnection::on_message_begin(llhttp_t* p) {
  auto* c = static_cast<HttpConnection*>(p->data);
  c->phase_ = Phase::kHead;
  // A head parsed again from its start, now that more of it came, is the same request: counted,
  // and timed, from its first bytes.
  bool resumed = c->head_resumed_;
  c->head_resumed_ = false;
  if (!resumed) c->worker_->stats.request_begun();
  c->set_stat(StatusWriter::State::kReading);
  // Until this request is routed, what is answered (an error in its head) is the default server's.
  c->server_ = c->group_->default_server;
  c->set_location(nullptr);
  c->req_->url_end = nullptr;
  c->req_->error_status = 0;
  c->clean_end_ = false;
  c->req_->body_received = 0;
  if (!resumed) c->req_->start_time = c->c_->loop()->now();
  if (!c->req_) c->req_ = c->worker_->take_request();
  c->req_->reset();
  c->req_->client = c->c_->peer();
  if (c->c_->transport()->secure()) {
    c->req_->https = true;
    c->req_->tls = static_cast<const TlsTransport*>(c->c_->transport());
  }
  return 0;
}

int HttpConnection::on_url(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<HttpConnection*>(p->data);
  Request& r = *c->req_;
  r.target = std::string_view(at, len);
  c->req_->url_end = at + len;
  uint64_t limit = c->group_->default_server->s.client_header_buffer_size;
  if (static_cast<uint64_t>(c->req_->url_end - c->req_->msg_start) > limit) {
    c->req_->error_status = 414;
    return -1;
  }
  return 0;
}

int HttpConnection::on_url_complete(llhttp_t* p) {
  // llhttp reads "GET /" followed by the end of the line as HTTP/0.9 and waits for headers that
  // will never come. A request line must carry a version: 400 at once.
  auto* c = static_cast<HttpConnection*>(p->data);
  if (c->req_->url_end && *c->req_->url_end != ' ') {
    c->req_->error_status = 400;
    return -1;
  }
  return 0;
}

int HttpConnection::on_body_bytes(llhttp_t* p, const char*, size_t len) {
  // Body data, and also chunk extensions and trailer fields: those are not kept, but they are bytes
  // of the body a client sends and count against the same bound, or a discard could go on for ever.
  auto* c = static_cast<HttpConnection*>(p->data);
  c->req_->body_received += len;
  if (c->req_->body_received > c->req_->body_limit) {
    c->req_->error_status = 413;
    return -1;
  }
  return 0;
}

int HttpConnection::on_body_data(llhttp_t* p, const char* at, size_t len) {
  if (int r = on_body_bytes(p, at, len)) return r;
  auto* c = static_cast<HttpConnection*>(p->data);
  // Body bytes go to the handler that answers the request, if it is still there; otherwise they
  // are dropped (the answer did not need them).
  if (c->handler_ && !c->handler_->on_request_body(at, len)) c->body_paused_ = true;
  return 0;
}

int HttpConnection::on_header_field(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<HttpConnection*>(p->data);
  if (c->phase_ != Phase::kHead) return on_body_bytes(p, at, len);  // a trailer field
  Request& r = *c->req_;
  if (r.header_count == kMaxHeaders) {
    c->req_->error_status = 431;
    return -1;
  }
  r.headers[r.header_count++] = Header{std::string_view(at, len), {}};
  return 0;
}

int HttpConnection::on_header_value(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<HttpConnection*>(p->data);
  if (c->phase_ != Phase::kHead) return on_body_bytes(p, at, len);
  Request& r = *c->req_;
  if (r.header_count == 0) return 0;
  Header& h = r.headers[r.header_count - 1];
  h.value = std::string_view(at, len);
  uint64_t limit = c->group_->default_server->s.client_header_buffer_size;
  if (c->req_->msg_start && static_cast<uint64_t>(at + len - c->req_->msg_start) > limit) {
    c->req_->error_status = 431;
    return -1;
  }
  std::string_view n = h.name;
  switch (n.size()) {
    case 4:
      if (iequals(n, "host")) {
        r.host = h.value;
        r.host_count++;
      }
      break;
    case 5:
      if (iequals(n, "range")) r.range = h.value;
      break;
    case 6:
      if (iequals(n, "expect")) r.expect = h.value;
      break;
    case 7:
      if (iequals(n, "referer")) r.referer = h.value;
      else if (iequals(n, "upgrade")) r.upgrade = h.value;
      break;
    case 8:
      if (iequals(n, "if-range")) r.if_range = h.value;
      break;
    case 10:
      if (iequals(n, "connection")) r.connection = h.value;
      else if (iequals(n, "user-agent")) r.user_agent = h.value;
      break;
    case 13:
      if (iequals(n, "if-none-match")) r.if_none_match = h.value;
      break;
    case 17:
      if (iequals(n, "if-modified-since")) r.if_modified_since = h.value;
      else if (iequals(n, "transfer-encoding")) r.transfer_encoding = h.value;
      break;
  }
  return 0;
}

int HttpConnection::on_headers_complete(llhttp_t* p) {
  auto* c = static_cast<HttpConnection*>(p->data);
  // An upgrade (websocket...) is carried where a handler can tunnel it (the proxy): the parser then
  // stops after this message, and what follows is the tunnel's. Elsewhere upgrades (h2c too) are
  // declined: the answer is HTTP/1.1 and the connection goes on as HTTP/1.1, so llhttp must not
  // stop at the end of this message. CONNECT is refused in handle_head and ends the connection.
  c->req_->tunnel = p->upgrade && p->method != HTTP_CONNECT && !c->req_->upgrade.empty();
  c->set_stat(StatusWriter::State::kWriting);
  c->handle_head();
  if (p->method != HTTP_CONNECT && !(c->req_->tunnel && c->handler_)) {
    p->upgrade = 0;
    c->req_->tunnel = false;
  }
  if (c->req_->error_status) return -1;
  c->phase_ = Phase::kBody;
  return 0;
}

int HttpConnection::on_chunk_header(llhttp_t* p) {
  // The size is known before the bytes: a chunk that cannot fit is refused now, not after it
  // arrived.
  auto* c = static_cast<HttpConnection*>(p->data);
  if (p->content_length > c->req_->body_limit - c->req_->body_received) {
    c->req_->error_status = 413;
    return -1;
  }
  return 0;
}

int HttpConnection::on_message_complete(llhttp_t* p) {
  auto* c = static_cast<HttpConnection*>(p->data);
  c->handle_message_complete();
  // A request that switches protocols stops the parser by itself (HPE_PAUSED_UPGRADE).
  return p->upgrade ? 0 : HPE_PAUSED;
}

// ---- answering ------------------------------------------------------------------------------

const char* HttpConnection::head_end() const {
  const Request& req = *req_;
  if (req.header_count == 0) return req_->url_end;
  const Header& last = req.headers[req.header_count - 1];
  return last.value.data() ? last.value.data() + last.value.size() : last.name.data() + last.name.size();
}

int HttpConnection::check_head(Request& req) {
  if (req.version_major != 1) return 505;
  // Bytes up to the end of the last header value; the terminating CRLF pair was checked by llhttp.
  const char* end = head_end();
  if (end && !head_is_clean(req_->msg_start, end)) return 400;
  if (end) {
    // The rest of the last line (a value's trailing blanks, or " HTTP/1.x" after the target), then
    // CRLF CRLF: llhttp also ends a head at a bare LF, where a front end may not. (The whole head
    // was consumed, up to its last LF: nothing is read beyond it.)
    const char* p = end;
    while (*p != '\r' && *p != '\n') p++;
    if (!head_is_clean(end, p)) return 400;
    if (p[0] != '\r' || p[1] != '\n' || p[2] != '\r' || p[3] != '\n') return 400;
  }
  // A field name is a token: llhttp lets "Name : value" and "Na me: value" through.
  bool has_te = (req_->parser.flags & F_TRANSFER_ENCODING) != 0 || !req.transfer_encoding.empty();
  for (size_t i = 0; i < req.header_count; i++) {
    std::string_view name = req.headers[i].name;
    bool ok = !name.empty();
    for (char ch : name) ok = ok && is_tchar(static_cast<unsigned char>(ch));
    if (!ok) return 400;
    // (An empty value sets no flag of llhttp's: the field is a Transfer-Encoding all the same.)
    if (name.size() == 17 && iequals(name, "transfer-encoding")) has_te = true;
  }
  if ((req_->parser.flags & F_CONTENT_LENGTH) && has_te) return 400;
  if (has_te) {
    // RFC 9112 6.1: chunked framing from an HTTP/1.0 client cannot be trusted.
    if (req.version_minor == 0) return 400;
    if (!transfer_encoding_is_chunked(req.headers, req.header_count, (req_->parser.flags & F_CHUNKED) != 0)) return 400;
  }
  if (req.host_count > 1 || (req.host_count == 0 && req.version_minor >= 1)) return 400;
  if (!host_key(trim(req.host), &req.host_lower)) return 400;

  std::string_view t = req.target;
  if (req.method_id == HTTP_CONNECT) {
    // Authority form: a tunnel, which this server does not open.
    return 405;
  }
  if (!t.empty() && t[0] == '/') {
    req.uri = t;
  } else if (istarts_with(t, "http://") || istarts_with(t, "https://")) {
    // Absolute form (RFC 9112 3.2.2): the target's authority names the server, not Host.
    size_t scheme = t.find("://") + 3;
    size_t end = t.find_first_of("/?#", scheme);
    std::string_view authority = t.substr(scheme, end == std::string_view::npos ? std::string_view::npos : end - scheme);
    if (authority.empty() || !host_key(authority, &req.host_lower) || req.host_lower.empty()) return 400;
    if (end == std::string_view::npos || t[end] == '#') req.uri = "/";
    else if (t[end] == '?') req.uri = {};  // "/" followed by the query: normalised below
    else req.uri = t.substr(end);
    if (req.uri.empty()) {
      req.path = "/";
      req.query = t.substr(end + 1);
      size_t hash = req.query.find('#');
      if (hash != std::string_view::npos) req.query = req.query.substr(0, hash);
      return 0;
    }
  } else if (req.method_id == HTTP_OPTIONS && t == "*") {
    req.uri = t;
    req.path = "*";
    return 0;
  } else {
    return 400;
  }
  if (!normalize_path(req.uri, &req.path, &req.query)) return 400;
  return 0;
}

void HttpConnection::handle_head() {
  HttpWorker* w = worker_;
  Request& req = *req_;
  if (!req_->msg_start) req_->msg_start = req.target.data();
  req.method_id = req_->parser.method;
  req.method = llhttp_method_name(static_cast<llhttp_method_t>(req_->parser.method));
  req.version_major = req_->parser.http_major;
  req.version_minor = req_->parser.http_minor;
  requests_++;

  req_->error_status = check_head(req);
  if (req_->error_status) return;
  if (refuse_plain_) {
    // nginx's 497 answered as 400: the client spoke plain HTTP to an HTTPS port.
    log_info("client %s sent a plain HTTP request to the TLS address %s", c_->peer().to_string().c_str(),
             c_->listening()->addr.to_string().c_str());
    req_->error_status = 400;
    return;
  }

  server_ = group_->find_server(req.host_lower);
  set_location(nullptr);
  if (req.tls && server_->s.tls.verify_client != kVerifyOff) {
    // The server that answers decides whether a client certificate is required, whatever the
    // handshake's server asked for.
    if (const char* why = req.tls->client_certificate_problem(server_->s.tls.verify_client)) {
      log_info("client %s %s (%s)", c_->peer().to_string().c_str(), why, req.tls->client_verify().c_str());
      req_->error_status = 400;
      return;
    }
  }
  // The rewrites and the location: the request's variables are those of the server it reached.
  req.vars = VarContext();
  req.vars.req = &req;
  req.vars.server = server_;
  find_client(req, server_->s.real_ip);
  req.vars.peer = &req.client;
  req.vars.local = &c_->listening()->addr;
  req.route = Route();
  route(*server_, &req, req.vars, &req.route);
  set_location(req.route.location);
  const Settings& s = location_->s;

  req.chunked = (req_->parser.flags & F_CHUNKED) != 0;
  req.content_length = (req_->parser.flags & F_CONTENT_LENGTH) ? req_->parser.content_length : 0;
  req.has_body = req.chunked || req.content_length > 0;
  req_->body_limit = s.client_max_body_size ? s.client_max_body_size : UINT64_MAX;
  if (req.content_length > req_->body_limit) {
    req_->error_status = 413;
    return;
  }

  // While draining for a new generation, a plain connection stays alive: it goes to the new
  // generation once this response is out.
  bool stays = (!draining_ && !w->draining()) ||
               (w->can_hand_over() && !hand_over_failed_ && c_->transport()->shared() && !c_->transport()->secure());
  keep_alive_ = llhttp_should_keep_alive(&req_->parser) && stays && requests_ < s.keepalive_requests &&
                s.keepalive_timeout_ms > 0;  // 0: keep-alive off, as nginx

  if (!req.expect.empty()) {
    if (!iequals(trim(req.expect), "100-continue")) {
      req_->error_status = 417;
      return;
    }
    // The body is read (and discarded) after the answer: a client waiting for leave to send it
    // gets it, as it would from a handler that reads it.
    if (req.has_body && req.version_minor >= 1) w->out.append("HTTP/1.1 100 Continue\r\n\r\n");
  }
  answer(req);
}

namespace {

// A request that limit_req delays: it waits here, as the handler of the request, until its turn.
// What the client sends meanwhile (the start of a body) is kept for the handler that answers it.
class LimitDelay final : public RequestHandler {
 public:
  LimitDelay(HttpConnection* hc, double seconds) : hc_(hc) {
    ev_timer_init(&timer_, on_timer_cb, seconds, 0);
    timer_.data = this;
    ev_timer_start(hc_->connection()->loop()->raw(), &timer_);
  }
  bool on_request_body(const char* data, size_t len) override {
    held_.append(data, len);
    return false;
  }
  void on_request_body_end() override { body_ended_ = true; }
  bool on_tunnel_data(const char* data, size_t len) override {
    held_.append(data, len);
    tunnel_ = true;
    return false;
  }
  void on_output_ready() override {}
  void on_abort() override { ev_timer_stop(hc_->connection()->loop()->raw(), &timer_); }

 private:
  static void on_timer_cb(struct ev_loop*, ev_timer* w, int) {
    auto* self = static_cast<LimitDelay*>(w->data);
    LogContext log(self->hc_->connection()->log_slot());  // the lines go where the request's do
    self->hc_->answer_delayed(std::move(self->held_), self->body_ended_, self->tunnel_);
  }
  HttpConnection* hc_;
  ev_timer timer_;
  std::string held_;
  bool body_ended_ = false;
  bool tunnel_ = false;
};

}  // namespace

// No handler uses a request body yet, so the answer never waits for one: it goes out now, and the
// body that follows is read and discarded (bounded by client_max_body_size and
// client_body_timeout) before the next request on the connection.
void HttpConnection::answer(Request& req) {
  HttpWorker* w = worker_;
  const size_t start = w->out.size();  // where this response begins: an error page replaces it
  Reply r;
  const Location* by = nullptr;
  int refused = 0;  // 403 or 401: the access phase's answer
  int limited = 0;  // limit_req_status or limit_conn_status
  for (int redirects = 0;; redirects++) {
    const Settings& s = location_->s;
    // A [server] `return` answers for the server, with the server's settings.
    by = req.route.server_return ? server_->server_return.get() : location_;
    // Who the request is from, by the settings of what answers (the rewrites had the server's),
    // then whether it may be answered at all (allow/deny, basic authentication): before any
    // handler runs.
    req.client = c_->peer();
    find_client(req, by->s.real_ip);
    // The limits, once per request (not again after an internal redirect): limit_req, which may
    // make the request wait its turn, then limit_conn; a request they refuse is not looked at by
    // allow/deny or authentication.
    if (req.limits_checked == 0 && !by->s.limits.reqs.empty()) {
      req.limits_checked = 1;
      double delay = 0;
      limited = check_limit_req(by->s.limits, req.vars, &req, &delay);
      if (limited < 0) {
        start_handler(new LimitDelay(this, delay));
        limit_delayed_ = true;
        return;
      }
    }
    if (req.limits_checked < 2 && !limited) {
      req.limits_checked = 2;
      limited = check_limit_conn(by->s.limits, req.vars, &req);
    }
    refused = limited ? 0 : check_access(by->s, req, *server_);
    r.out = &w->out;
    r.head_only = req.method_id == HTTP_HEAD;
    r.keep_alive = keep_alive_;
    r.http10 = req.version_minor == 0;
    r.redirects = true;
    r.policy = head_policy(by->s);
    // The request's variables: the same for the head's added fields and for the answer
    // ($request_id is made once).
    const VarContext& vars = req.vars;
    if (limited) {
      reply_error(&r, limited, by->s);
    } else if (refused) {
      size_t mark = w->out.size();
      reply_error(&r, refused, by->s);
      if (refused == 401) add_www_authenticate(r.out, mark, by->s, vars);
    } else if (req.route.status >= 400) {
      reply_error(&r, req.route.status, by->s);  // a rewrite cycle, a rewrite above the root, a failed regex
    } else if (req.route.status) {
      reply_redirect(&r, req.route.status, req.route.redirect, by->s);  // a rewrite's redirect
    } else if (req.route.server_return) {
      reply_return(&r, server_->server_return.get(), vars);
    } else if (location_->return_code && req.route.location_return) {
      reply_return(&r, location_, vars);
    } else if ((location_->stub_status || location_->metrics) &&
               (req.method_id == HTTP_GET || req.method_id == HTTP_HEAD)) {
      reply_status_page(w, location_->metrics, &r);
    } else if (location_->proxy_pass) {
      start_proxy(this, *location_->proxy_pass);
      return;
    } else if (req.method_id == HTTP_GET || req.method_id == HTTP_HEAD) {
      serve_static(w, server_, location_, req, &r, vars);
    } else if (req.method_id == HTTP_OPTIONS) {
      ResponseHead h;
      h.policy = r.policy;
      h.status = 204;
      h.keep_alive = r.keep_alive;
      h.http10 = r.http10;
      begin_head(r.out, h);
      r.out->append("Allow: GET, HEAD, OPTIONS\r\n");
      end_head(r.out, h);
      r.status = 204;
    } else {
      size_t mark = w->out.size();
      reply_error(&r, 405, s);
      // The Allow header belongs in the head: put it right after the status line and fixed headers.
      size_t head_end_pos = r.out->find("\r\n\r\n", mark);
      if (head_end_pos != std::string::npos) r.out->insert(head_end_pos + 2, "Allow: GET, HEAD\r\n");
    }
    if (r.internal_redirect.empty()) break;
    // A try_files fallback: the request is for that URI now, and goes through the server's
    // rewrites and the locations again, as a request of its own would (proxied, if its location
    // proxies).
    std::string_view uri = r.internal_redirect;
    r.internal_redirect = {};
    w->out.resize(start);
    req.route = Route();
    if (redirects == kMaxInternalRedirects) {
      std::string shown;
      append_escaped(&shown, uri);
      log_error("rewrite or internal redirection cycle while processing \"%s\"", shown.c_str());
      req.route.location = location_;
      req.route.status = 500;
      continue;
    }
    size_t q = uri.find('?');
    req.path.assign(uri.substr(0, q));
    if (q != std::string_view::npos) {
      req.args.assign(uri.substr(q + 1));
      req.query = req.args;
    }
    req.rewritten = true;
    if (!resolve_segments(&req.path)) req.path = "/";  // a fallback is checked when it is read
    route(*server_, &req, req.vars, &req.route);
    set_location(req.route.location);
  }
  // error_page, for the errors answered here; not for a `return` with a text, which is the answer
  // it asks for (unless the request was refused before it).
  bool returned = !refused && !limited && req.route.status == 0 &&
                  (req.route.server_return || (location_->return_code && req.route.location_return));
  if (r.status >= 300 && !by->s.error_pages.empty() && (!returned || by->return_text.empty()))
    reply_error_page(w, server_, req, &r, start, by->s, req.vars);
  keep_alive_ = r.keep_alive;
  limit_rate(by->s);
  file_pending_ = r.file.valid() && r.file_bytes > 0;
  if (file_pending_) {
    Request::Answer& sl = req_->answer;
    sl.file = std::move(r.file);
    sl.file_offset = r.file_offset;
    sl.file_bytes = r.file_bytes;
  }
  if (req.has_body || file_pending_) save_log(r.status, r.body_bytes);
  else log_request(r.status, r.body_bytes);
}

void HttpConnection::answer_delayed(std::string held, bool body_ended, bool tunnel) {
  // The delay ends as a handler that finished: it answered nothing, the request is answered now.
  RequestHandler* h = handler_;
  handler_ = nullptr;
  body_paused_ = false;
  limit_delayed_ = false;
  c_->loop()->defer_delete(h);
  {
    // As when a request is answered while it is parsed: nothing is sent, and so no request that
    // follows is read and answered, until this request's handler has what the client sent for it.
    InFeed in_feed(&in_feed_);
    answer(*req_);
    if (closed()) return;
    if (handler_) {
      // The handler that answers (the proxy) takes what the client sent meanwhile.
      bool more = true;
      if (!held.empty()) more = tunnel ? handler_->on_tunnel_data(held.data(), held.size())
                                       : handler_->on_request_body(held.data(), held.size());
      if (!more) body_paused_ = true;
      if (handler_ && body_ended && !tunnel) handler_->on_request_body_end();
    } else if (phase_ == Phase::kTunnel) {
      // It asked to switch protocols and was answered otherwise: what the client sends next is not
      // HTTP, so the connection ends after the answer (as end_handler() does for a handler).
      phase_ = Phase::kDone;
      clean_end_ = false;
    }
  }
  if (closed()) return;
  if (flush()) after_output();
}

void HttpConnection::find_client(Request& req, const RealIpSettings& rip) const {
  if (rip.from.empty()) return;
  // On a proxy_protocol address the peer is the client the PROXY header named; set_real_ip_from is
  // about the proxy that sent the header, which only the socket still knows.
  const bool proxied = c_->listening()->opts.proxy_protocol;
  const PeerAddr via = proxied ? socket_peer() : c_->peer();
  if (rip.source == RealIpSource::kProxyProtocol) {
    // The header is believed only from a trusted proxy: another peer is its own client.
    if (proxied && !rip.trusts(via)) req.client = via;
    return;
  }
  real_ip_from_header(rip, req, via, &req.client);
}

PeerAddr HttpConnection::socket_peer() const {
  SockAddr a;
  a.len = sizeof(a.storage);
  if (getpeername(fd(), a.sa(), &a.len) < 0) return c_->peer();
  return PeerAddr(a);
}

void HttpConnection::save_log(int status, uint64_t body_bytes) {
  // The entry is written when the response is done, after the read buffer has moved on.
  req_->own(req_->msg_start, head_end());
  Request::Answer& sl = req_->answer;
  log_pending_ = true;
  sl.log_status = status;
  sl.log_bytes = body_bytes;
}

void HttpConnection::set_stat(StatusWriter::State s) {
  if (s == stat_) return;
  worker_->stats.state(stat_, s);
  stat_ = s;
}

void HttpConnection::count_bytes() {
  uint64_t in = c_->bytes_in(), out = c_->bytes_out();
  if (in == counted_in_ && out == counted_out_) return;
  const Server* srv = server_ ? server_ : group_->default_server;
  worker_->stats.bytes(srv->status_index, in - counted_in_, out - counted_out_);
  counted_in_ = in;
  counted_out_ = out;
}

void HttpConnection::count_request(int status) {
  const Server* srv = server_ ? server_ : group_->default_server;
  double t = req_ ? c_->loop()->now() - req_->start_time : 0;
  worker_->stats.request_done(srv->status_index, status, t);
  count_bytes();
}

void HttpConnection::log_request(int status, uint64_t body_bytes) {
  const Settings& s = settings_now();
  log_pending_ = false;
  count_request(status);
  // The request is over: it no longer counts for limit_conn.
  req_->limit_conns.release();
  if (s.access_logs.empty()) return;
  const Request& req = *req_;
  LogEntry e;
  e.peer = &req.client;
  e.status = status;
  e.body_bytes = body_bytes;
  e.version_major = 1;
  e.request_time = c_->loop()->now() - req_->start_time;
  e.method = req.method;
  e.target = req.target;
  e.version_minor = req.version_minor;
  e.referer = req.referer;
  e.user_agent = req.user_agent;
  std::string user;
  if (remote_user(req, &user)) e.remote_user = user;
  std::string addrs, statuses, times;
  if (!req.answer.upstream_tries.empty()) {
    // Each server asked, in order, as nginx's $upstream_addr / _status / _response_time.
    for (const UpstreamTry& t : req.answer.upstream_tries) {
      if (!addrs.empty()) {
        addrs.append(", ");
        statuses.append(", ");
        times.append(", ");
      }
      addrs.append(t.addr);
      if (t.status > 0) statuses.append(std::to_string(t.status));
      else statuses.push_back('-');
      char buf[32];
      int n = snprintf(buf, sizeof(buf), "%.3f", t.seconds < 0 ? 0.0 : t.seconds);
      times.append(buf, static_cast<size_t>(n));
    }
    e.upstream_addr = addrs;
    e.upstream_status = statuses;
    e.upstream_response_time = times;
  }
  access_log(s, e, log_vars());
}

VarContext HttpConnection::log_vars() const {
  VarContext vars;
  vars.req = req_.get();
  vars.server = server_;
  vars.peer = &client();
  vars.local = &c_->listening()->addr;
  return vars;
}

void HttpConnection::handle_message_complete() {
  phase_ = keep_alive_ ? Phase::kIdle : Phase::kDone;
  clean_end_ = true;
  req_->url_end = nullptr;
  if (handler_) {
    handler_->on_request_body_end();
    return;
  }
  if (log_pending_ && !file_pending_ && !blocked()) log_request(req_->answer.log_status, req_->answer.log_bytes);
}

void HttpConnection::abandon(const char* why) {
  log_info("client %s: request body %s, closing the connection after the response", client().to_string().c_str(), why);
  if (handler_) {
    // The handler cannot have the whole body: it stops, and the client gets no more of an answer.
    end_handler(true);
    streaming_ = false;
  }
  if (log_pending_ && !file_pending_ && !blocked()) log_request(req_->answer.log_status, req_->answer.log_bytes);
  keep_alive_ = false;
  clean_end_ = false;
  phase_ = Phase::kDone;
  reparse_ = false;
}

void HttpConnection::fail_request(int status) {
  HttpWorker* w = worker_;
  const Settings& s = settings_now();
  file_pending_ = false;
  if (req_) req_->answer.file.reset();
  log_pending_ = false;
  limit_rate(s);
  Reply r;
  r.out = &w->out;
  r.keep_alive = false;
  // A HEAD whose request line was read gets the head alone.
  r.head_only = req_ && req_->url_end && req_->parser.method == HTTP_HEAD;
  if (req_) r.policy = head_policy(s);
  size_t mark = w->out.size();
  reply_error(&r, status, s);
  if (status == 405) {
    size_t head_end_pos = r.out->find("\r\n\r\n", mark);
    if (head_end_pos != std::string::npos) r.out->insert(head_end_pos + 2, "Allow: GET, HEAD\r\n");
  }
  set_stat(StatusWriter::State::kWriting);
  count_request(status);
  if (!s.access_logs.empty()) {
    LogEntry e{};
    e.peer = &client();
    e.status = status;
    e.body_bytes = r.body_bytes;
    e.version_major = 1;
    e.version_minor = 1;
    // The request line, when this connection's parser read one whole (its own bytes, still in
    // the buffer being parsed).
    if (req_ && req_->url_end && status != 414) {
      e.method = llhttp_method_name(static_cast<llhttp_method_t>(req_->parser.method));
      e.target = req_->target;
      if (req_->parser.http_major == 1) e.version_minor = req_->parser.http_minor;
    }
    e.request_time = c_->loop()->now() - req_->start_time;
    access_log(s, e, log_vars());
  }
  keep_alive_ = false;
  clean_end_ = false;
  phase_ = Phase::kDone;
  reparse_ = false;
}

// ---- writing --------------------------------------------------------------------------------

bool HttpConnection::flush() {
  HttpWorker* w = worker_;
  OutputQueue& q = c_->out();
  // MSG_MORE holds a short last segment back: for a file that follows, and for the last answer of a
  // connection that is closed right after it, so that the data leaves in one segment with the FIN
  // that close() sends (one segment and one ACK fewer per short connection).
  bool last = phase_ == Phase::kDone && closes_at_once() && !streaming_;
  if (!w->out.empty()) {
    if (q.empty() && !c_->rate_limited()) {
      // The common case: what this event produced leaves in one write, straight from the shared
      // buffer; only what the socket does not take is copied into the queue.
      iovec iov{w->out.data(), w->out.size()};
      ssize_t sent = c_->writev(&iov, 1, file_pending_ || last);
      if (sent == kIoError) {
        w->out.clear();
        output_failed();
        return false;
      }
      size_t done = sent > 0 ? static_cast<size_t>(sent) : 0;
      if (done < w->out.size()) q.append(std::string_view(w->out).substr(done));
    } else {
      q.append(std::string_view(w->out));
    }
    w->out.clear();
  }
  if (file_pending_) {
    Request::Answer& r = req_->answer;
    q.append_file(std::move(r.file), r.file_offset, r.file_bytes);
    file_pending_ = false;
  }
  if (!q.empty()) {
    if (!c_->flush_queue(last)) {
      if (c_->failed()) {
        if (errno == ENODATA) log_error("file shrank while being sent to %s", client().to_string().c_str());
        output_failed();
        return false;
      }
      wait_for_output();
      return false;
    }
  }
  if (log_pending_ && !streaming_ && !handler_busy() && phase_ != Phase::kBody && phase_ != Phase::kHead)
    log_request(req_->answer.log_status, req_->answer.log_bytes);
  return true;
}

void HttpConnection::output_failed() {
  // The client is gone: whatever is left of the response cannot be sent.
  if (log_pending_) log_request(req_->answer.log_status, req_->answer.log_bytes - file_left());
  close();
}

// ---- asynchronous handlers ------------------------------------------------------------------

void HttpConnection::start_handler(RequestHandler* h) {
  // The request now outlives the read buffer it was parsed from.
  save_log(0, 0);
  req_->answer.upstream_tries.clear();
  handler_ = h;
  req_->stream_bytes = 0;
  streaming_ = false;
  chunked_out_ = false;
  body_paused_ = false;
  head_request_ = req_->method_id == HTTP_HEAD;
}

void HttpConnection::end_handler(bool abort) {
  RequestHandler* h = handler_;
  if (!h) return;
  handler_ = nullptr;
  body_paused_ = false;
  if (phase_ == Phase::kTunnel) {
    // A tunnel (or the answer that refused it) ends the connection: what the client still sends
    // is not HTTP.
    phase_ = Phase::kDone;
    clean_end_ = false;
  }
  if (abort) h->on_abort();
  c_->loop()->defer_delete(h);
  if (!closed() && !c_->wants_read() && phase_ != Phase::kLinger && !blocked()) want_read(true);
}

void HttpConnection::start(const ResponseStart& r) {
  HttpWorker* w = worker_;
  const Request& req = *req_;
  ResponseHead h;
  h.status = r.status;
  h.http10 = req.version_minor == 0;
  body_allowed_ = !r.no_body && !head_request_ && status_has_body(r.status);
  h.content_length = r.content_length;
  if (r.status < 200 || r.status == 204) h.content_length = -1;
  if (r.content_length < 0 && body_allowed_) {
    // The length is not known: chunked for HTTP/1.1, the end of the connection for HTTP/1.0 (it
    // knows no chunks).
    if (h.http10) {
      keep_alive_ = false;
      if (phase_ == Phase::kIdle) phase_ = Phase::kDone;  // the close ends the body: nothing follows
    } else {
      chunked_out_ = true;
    }
  }
  bool switching = r.status == 101 && phase_ == Phase::kTunnel;
  if (switching) {
    // The tunnel: raw bytes from now on, no framing, and the connection is the tunnel's.
    body_allowed_ = true;
    chunked_out_ = false;
    h.content_length = -1;
  }
  h.keep_alive = keep_alive_ || switching;
  h.policy = head_policy(settings_now());
  // A tunnel is not a response: its bytes are not limited.
  if (!switching) limit_rate(settings_now());
  else if (c_->rate_limited()) c_->limit_rate(0, 0);
  begin_head(&w->out, h);
  for (size_t i = 0; i < r.header_count; i++) {
    w->out.append(r.headers[i].name);
    w->out.append(": ");
    w->out.append(r.headers[i].value);
    w->out.append("\r\n");
  }
  if (chunked_out_) w->out.append("Transfer-Encoding: chunked\r\n");
  if (switching) w->out.append("Connection: upgrade\r\n");
  end_head(&w->out, h);
  streaming_ = true;
  req_->answer.log_status = r.status;
  // A tunnel's client waits for the 101 before it sends anything: it leaves now. Otherwise the head
  // waits for push() or the first body bytes, to leave with them.
  if (switching && !in_feed_) flush();
  // Switched while the worker drains: the tunnel moves at the next turn of the loop (on_writable),
  // whether or not a byte moves first.
  if (switching && draining_ && !closed()) want_write(true);
}

void HttpConnection::push() {
  if (in_feed_ || closed() || worker_->out.empty()) return;
  flush();
}

bool HttpConnection::write(const char* data, size_t len) {
  if (!streaming_ || closed()) return false;
  if (!body_allowed_ || len == 0) return true;
  HttpWorker* w = worker_;
  req_->stream_bytes += len;
  if (chunked_out_) {
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    w->out.append(size, static_cast<size_t>(n));
    w->out.append(data, len);
    w->out.append("\r\n");
  } else {
    w->out.append(data, len);
  }
  // Gathered up to a bound, then sent; push() sends the rest.
  if (!in_feed_ && w->out.size() >= OutputQueue::kHighWater) flush();
  return !closed();
}

void HttpConnection::finish() {
  if (!handler_) return;
  if (streaming_ && chunked_out_ && body_allowed_) worker_->out.append("0\r\n\r\n");
  streaming_ = false;
  req_->answer.log_bytes = req_->stream_bytes;
  // A response that does not keep the connection is its last, whatever was read behind it.
  if (!keep_alive_ && phase_ == Phase::kIdle) phase_ = Phase::kDone;
  end_handler(false);
  if (in_feed_ || closed()) return;
  if (flush()) after_output();
}

void HttpConnection::fail(int status) {
  if (!handler_) return;
  if (streaming_) {
    abort();
    return;
  }
  HttpWorker* w = worker_;
  const size_t start = w->out.size();
  Reply r;
  r.out = &w->out;
  r.head_only = head_request_;
  r.keep_alive = keep_alive_;
  r.http10 = req_->version_minor == 0;
  const Settings& s = settings_now();
  r.policy = head_policy(s);
  limit_rate(s);
  reply_error(&r, status, s);
  if (!s.error_pages.empty()) reply_error_page(w, server_, *req_, &r, start, s, req_->vars);
  keep_alive_ = r.keep_alive;
  if (!keep_alive_ && phase_ == Phase::kIdle) phase_ = Phase::kDone;
  Request::Answer& sl = req_->answer;
  sl.log_status = r.status;
  sl.log_bytes = r.body_bytes;
  // A page large enough to go by sendfile follows the head.
  file_pending_ = r.file.valid() && r.file_bytes > 0;
  if (file_pending_) {
    sl.file = std::move(r.file);
    sl.file_offset = r.file_offset;
    sl.file_bytes = r.file_bytes;
  }
  end_handler(false);
  if (in_feed_ || closed()) return;
  if (flush()) after_output();
}

void HttpConnection::abort() {
  if (!handler_) return;
  // What was sent is all the client gets: the connection ends after it, without a clean end (no
  // last chunk, fewer bytes than the length said), so that it cannot be taken for the whole.
  streaming_ = false;
  keep_alive_ = false;
  clean_end_ = false;
  req_->answer.log_bytes = req_->stream_bytes;
  if (phase_ != Phase::kLinger) phase_ = Phase::kDone;
  end_handler(false);
  if (in_feed_ || closed()) return;
  if (flush()) after_output();
}

void HttpConnection::resume_body() {
  if (!body_paused_) return;
  body_paused_ = false;
  if (!closed() && (phase_ == Phase::kBody || phase_ == Phase::kTunnel)) want_read(true);
  // The client's time for the rest of the body starts now, not when the handler held it back.
  if (!closed() && phase_ == Phase::kBody) set_deadline(seconds(settings_now().client_body_timeout_ms));
}

uint64_t HttpConnection::body_bytes_sent() const { return req_->stream_bytes; }

void HttpConnection::note_upstream(std::string_view addr, int status, double seconds) {
  req_->answer.upstream_tries.push_back(UpstreamTry{addr, status, seconds});
}

void HttpConnection::wait_for_output() {
  // (A response held back by its limit_rate waits for the rate's timer, not for the socket.)
  if (!c_->rate_delayed()) want_write(true);
  send_queue_ = c_->unsent_bytes();
  // Back-pressure: no new request is read while its predecessor's answer cannot leave. A body that
  // is being discarded is still read.
  if (phase_ == Phase::kIdle) want_read(false);
  set_deadline(seconds(settings_now().send_timeout_ms));
}

void HttpConnection::on_writable() {
  if (!flush()) return;
  want_write(false);
  if (draining_ && phase_ == Phase::kTunnel && handler_ && try_hand_over()) return;
  after_output();
}

void HttpConnection::after_output() {
  if (closed() || blocked()) return;
  if (handler_) {
    // The handler's answer is still coming: the output has drained, so it may go on. Reading waits
    // for the handler unless the body is still coming and not held back.
    if ((phase_ == Phase::kBody || phase_ == Phase::kTunnel) && !body_paused_) want_read(true);
    if (phase_ == Phase::kTunnel) clear_deadline();
    else if (phase_ != Phase::kBody) {
      // The request is read: the client is still watched, so that its leaving cancels the
      // upstream side; what it sends meanwhile (a next request) waits, within a bound.
      want_read(in_.size() < group_->default_server->s.client_header_buffer_size);
      clear_deadline();  // the upstream side keeps its own timers
    }
    if (streaming_) handler_->on_output_ready();
    return;
  }
  switch (phase_) {
    case Phase::kDone:
      finish_or_close();
      return;
    case Phase::kLinger:
    case Phase::kTunnel:
      return;
    case Phase::kIdle:
      // Draining for a new generation: requests already read go with the connection, in order.
      if ((draining_ || worker_->draining()) && try_hand_over()) return;
      // The answer is out: the connection waits for its next request.
      count_bytes();
      set_stat(StatusWriter::State::kNone);
      if (!in_.empty()) {
        process_held_input();
        return;
      }
      release_request();
      want_read(true);
      update_reusable();
      if (!nodelay_) {
        // Kept alive: from now on small responses must not wait for the client's delayed ACK.
        c_->set_nodelay();
        nodelay_ = true;
      }
      if (draining_ || worker_->draining()) {
        clear_deadline();
        set_deadline(kDrainIdleSeconds);
        return;
      }
      if (requests_ > 0) {
        clear_deadline();
        set_deadline(seconds(settings_now().keepalive_timeout_ms));
      }
      return;
    case Phase::kHead:
    case Phase::kBody:
      want_read(true);
      return;
  }
}

void HttpConnection::process_held_input() {
  // Requests that arrived while an answer was still leaving.
  want_read(true);
  set_deadline(seconds(settings_now().client_header_timeout_ms));
  size_t used = feed(in_.data(), in_.size());
  if (closed()) return;
  in_.consume(used);
  if (flush()) after_output();
}

void HttpConnection::finish_or_close() {
  // The request was read to its end and nothing else came: close at once. Otherwise the client may
  // still be sending; shut our side and read what comes for a moment, so that the kernel does not
  // answer those bytes with a reset that destroys the response before the client has read it.
  if (closes_at_once()) {
    close();
    return;
  }
  phase_ = Phase::kLinger;
  set_stat(StatusWriter::State::kNone);
  in_.clear();
  c_->shutdown_write();
  want_write(false);
  want_read(true);
  clear_deadline();
  set_deadline(kLingerSeconds);
}

void HttpConnection::on_timeout() {
  if ((limit_delayed_ || (body_paused_ && phase_ == Phase::kBody)) && handler_) {
    // limit_req holds the request back, or the handler's side (an upstream) does not take the body
    // yet: the client is not the slow one (the handler has timeouts of its own).
    set_deadline(seconds(settings_now().client_body_timeout_ms));
    return;
  }
  if (blocked() && c_->rate_delayed()) {
    // The output waits for limit_rate, not for the client: the client is not the slow one.
    set_deadline(seconds(settings_now().send_timeout_ms));
    return;
  }
  if (blocked()) {
    // send_timeout is meant for a client that stopped taking data. The loop hears of free space
    // only once a third of the send buffer is free, which for a slow but steady reader of a large
    // buffer can take longer than the timeout: so what counts is whether the queue shrank.
    int queued = c_->unsent_bytes();
    if (queued > 0 && queued < send_queue_) {
      send_queue_ = queued;
      set_deadline(seconds(settings_now().send_timeout_ms));
      return;
    }
  }
  if (draining_ && phase_ == Phase::kIdle && in_.empty() && !blocked() && !handler_) {
    // A hand-over that could not be made at first (the channel was full) is tried once more.
    hand_over_failed_ = false;
    if (try_hand_over()) return;
    // One last look: a request that arrived just now is answered (with Connection: close).
    on_readable();
    if (closed() || phase_ != Phase::kIdle || blocked()) return;
    close();
    return;
  }
  // Header, body, send, keep-alive and linger timeouts all end the connection without a response:
  // a client that stalls gets nothing more from us.
  if (log_pending_) log_request(req_->answer.log_status, req_->answer.log_bytes - file_left());
  close();
}

}  // namespace baton::http

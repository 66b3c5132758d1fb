#include "http/http_worker.h"

#include <unistd.h>

#include <algorithm>
#include <cassert>

#include "core/log.h"
#include "core/strings.h"
#include "event/proxy_protocol.h"
#include "event/tls.h"
#include "http/http_connection.h"
#include "http/http_tunnel.h"

namespace baton::http {

namespace {
// One read takes this much at most; a larger head is refused before it is ever buffered whole.
constexpr size_t kReadSize = 64 * 1024;
}  // namespace

HttpWorker::HttpWorker(EventLoop* l, ConnectionList* c, HttpConf* cf) : loop(l), conns(c), conf(cf), file_cache(l), upstreams(l, c) {
  in.resize(std::max<size_t>(kReadSize, conf->max_header_buffer + 1));
  out.reserve(64 * 1024);
  loop->add_before_block(flush_logs, this);
  StatusZone zone = conf->status_zone();
  if (zone.valid()) {
    bool shared = false;
    StatSlot* slot = zone.claim(getpid(), &shared);
    stats.attach(slot, shared);
    if (shared)
      log_warn("the status zone has no free slot (%u worker processes at once): this worker counts in the slot "
               "they share",
               status::kSlots);
  }
  conns->stats = &stats;
}

HttpWorker::~HttpWorker() {
  conns->stats = nullptr;
  conf->flush_logs();
}

void HttpWorker::flush_logs(void* arg) {
  auto* self = static_cast<HttpWorker*>(arg);
  // The shared output buffer belongs to whoever writes into it only until its event handler
  // returns: bytes left here would go out on the next connection that writes. That is a bug to
  // stop at, never a response to send to someone else.
  assert(self->out.empty());
  self->conf->flush_logs();
}

namespace {

// SNI: the context of the server that answers to the name on this address, if it is another one.
SSL_CTX* select_tls(void* arg, std::string_view name) {
  auto* group = static_cast<const ListenGroup*>(arg);
  std::string host;
  host.reserve(name.size());
  for (char ch : name) host.push_back(ascii_lower(ch));
  const Server* srv = group->find_server(host);
  return srv && srv->tls ? srv->tls->get() : nullptr;
}

}  // namespace

void HttpWorker::start_tls(HttpWorker* self, Connection* c) {
  auto* group = static_cast<ListenGroup*>(c->listening()->ctx);
  TlsHandshake::Params p;
  p.ctx = group->default_server->tls->get();
  p.select = select_tls;
  p.select_arg = group;
  p.timeout = static_cast<double>(group->default_server->s.client_header_timeout_ms) / 1000.0;
  p.next = start_http;
  p.plain = start_http_plain;
  p.arg = self;
  auto h = std::make_unique<TlsHandshake>(c, p);
  TlsHandshake* hs = h.get();
  c->set_handler(std::move(h));
  hs->start();
}

void HttpWorker::on_accept(void* arg, Fd fd, const SockAddr& peer, Listening* ls) {
  auto* self = static_cast<HttpWorker*>(arg);
  self->stats.accepted();
  auto* c = new Connection(self->loop, self->conns, std::move(fd), peer, ls);
  // Until a request names its server, the address's default server hears of the connection (a
  // failed handshake, a broken PROXY header, a bad request head).
  const Settings& s = static_cast<ListenGroup*>(ls->ctx)->default_server->s;
  c->set_log(s.error_log);
  LogContext log(c->log_slot());
  if (ls->opts.proxy_protocol) {
    // The PROXY protocol header comes first, then TLS (on an ssl address), then HTTP.
    bool tls = ls->opts.ssl;
    auto reader = std::make_unique<ProxyProtocolReader>(c, static_cast<double>(s.client_header_timeout_ms) / 1000.0,
                                                        tls ? start_tls_next : start_http, self, tls);
    ProxyProtocolReader* r = reader.get();
    c->set_handler(std::move(reader));
    r->start();
    return;
  }
  if (ls->opts.ssl) {
    start_tls(self, c);
    return;
  }
  start_http(self, c, {});
}

void HttpWorker::start_tls_next(void* arg, Connection* c, std::string_view) {
  start_tls(static_cast<HttpWorker*>(arg), c);
}

void HttpWorker::start_http(void* arg, Connection* c, std::string_view preread) {
  auto* self = static_cast<HttpWorker*>(arg);
  auto h = std::make_unique<HttpConnection>(self, c);
  HttpConnection* http = h.get();
  c->set_handler(std::move(h));
  http->start(preread);
}

void HttpWorker::start_http_plain(void* arg, Connection* c, std::string_view preread) {
  auto* self = static_cast<HttpWorker*>(arg);
  auto h = std::make_unique<HttpConnection>(self, c);
  HttpConnection* http = h.get();
  http->refuse_plain_http();
  c->set_handler(std::move(h));
  http->start(preread);
}

std::unique_ptr<Request> HttpWorker::take_request() {
  if (spare_requests_.empty()) return std::make_unique<Request>();
  std::unique_ptr<Request> r = std::move(spare_requests_.back());
  spare_requests_.pop_back();
  return r;
}

void HttpWorker::give_back(std::unique_ptr<Request> r) {
  // As many spares as requests were ever in progress at once, up to a bound: a burst of slow
  // requests does not pin its memory for the life of the worker.
  constexpr size_t kMaxSpare = 256;
  if (spare_requests_.size() < kMaxSpare) spare_requests_.push_back(std::move(r));
}

void HttpWorker::drain(HandOver hand_over, void* arg, bool tunnels) {
  if (!draining_) drain_started = loop->now();
  draining_ = true;
  hand_over_ = hand_over;
  hand_over_arg_ = arg;
  hand_over_tunnels_ = hand_over && tunnels;
  upstreams.drain();
  conns->drain_all();
}

bool HttpWorker::hand_over(HandedConnection&& c) {
  if (!hand_over_ || !hand_over_(hand_over_arg_, std::move(c))) return false;
  handed_out++;
  last_handed = loop->now();
  return true;
}

std::string HttpWorker::adopt(HandedConnection&& hc, const std::vector<std::unique_ptr<Listening>>& listening) {
  Listening* ls = nullptr;
  for (const auto& l : listening)
    if (l->key == hc.listener) ls = l.get();
  if (hc.kind == HandedConnection::Kind::kTunnel) {
    // A tunnel speaks no HTTP any more: it goes on whatever this generation listens on.
    handed_in++;
    adopt_tunnel(this, std::move(hc), ls);
    return "";
  }
  if (!ls) return "its address \"" + hc.listener + "\" is not configured here";
  if (ls->opts.ssl) return "its address is a TLS one here";
  auto* c = new Connection(loop, conns, std::move(hc.fds[0]), hc.peer, ls);
  c->set_log(static_cast<ListenGroup*>(ls->ctx)->default_server->s.error_log);
  LogContext log(c->log_slot());
  auto h = std::make_unique<HttpConnection>(this, c);
  HttpConnection* http = h.get();
  c->set_handler(std::move(h));
  handed_in++;
  http->resume(static_cast<uint32_t>(std::min<uint64_t>(hc.requests, UINT32_MAX)), hc.preread);
  // Taken while this worker drains too: it drains with the rest.
  if (draining_ && !c->closed()) c->drain();
  return "";
}

}  // namespace baton::http

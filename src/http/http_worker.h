// A worker's HTTP state: the configuration it serves, the shared read and output buffers every
// connection borrows, and the accept hook that turns a new socket into an HttpConnection.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "event/listener.h"
#include "http/http_config.h"
#include "http/http_file_cache.h"
#include "http/http_gzip.h"
#include "http/http_handover.h"
#include "http/http_range.h"
#include "http/http_request.h"
#include "http/http_upstream_pool.h"

namespace baton::http {

class HttpWorker {
 public:
  HttpWorker(EventLoop* loop, ConnectionList* conns, HttpConf* conf);
  ~HttpWorker();

  static void on_accept(void* arg, Fd fd, const SockAddr& peer, Listening* ls);
  // Makes HTTP/1 the connection's protocol; preread: bytes already read from it.
  static void start_http(void* arg, Connection* c, std::string_view preread);
  // A plain HTTP request on a TLS address: answered 400, then the connection closes.
  static void start_http_plain(void* arg, Connection* c, std::string_view preread);
  static void start_tls(HttpWorker* self, Connection* c);
  static void start_tls_next(void* arg, Connection* c, std::string_view preread);
  // Graceful stop: idle connections close, busy ones finish their response with Connection: close.
  // With hand_over (a newer generation serves): plain connections that are idle, or become idle,
  // go to it instead, keep-alive and all; hand_over returns false when it cannot take one now.
  // tunnels: tunnels go too (the receiving generation knows them).
  using HandOver = bool (*)(void* arg, HandedConnection&& c);
  void drain(HandOver hand_over = nullptr, void* arg = nullptr, bool tunnels = false);
  bool draining() const { return draining_; }
  bool can_hand_over() const { return hand_over_ != nullptr; }
  bool can_hand_over_tunnels() const { return hand_over_ != nullptr && hand_over_tunnels_; }
  bool hand_over(HandedConnection&& c);
  // A connection a worker of the old generation handed over: served from here on, under this
  // worker's configuration. Returns an error text or "".
  std::string adopt(HandedConnection&& c, const std::vector<std::unique_ptr<Listening>>& listening);
  uint64_t handed_out = 0;   // connections handed to the new generation
  uint64_t handed_in = 0;    // connections taken from an old one
  double drain_started = 0;  // loop time of the drain, and of the last hand-over
  double last_handed = 0;

  EventLoop* loop;
  ConnectionList* conns;
  HttpConf* conf;
  std::string out;           // responses being built, written before the event handler returns
  std::vector<char> in;      // what the last read brought
  // Requests belong to their connections; these are the spare ones, so that a request costs no
  // allocation on the common path.
  std::unique_ptr<Request> take_request();
  void give_back(std::unique_ptr<Request> r);
  std::vector<ByteRange> ranges;
  std::string scratch;       // paths and other short-lived strings
  std::string cache_key;     // the file cache's key for the request at hand
  // The proxy's short-lived parts, which every exchange would otherwise allocate: the request head
  // for an upstream (built, then sent or queued), the fields of a response head being parsed, and
  // those that go on to the client.
  std::string upstream_head;
  std::vector<Header> upstream_headers;
  std::vector<Header> response_headers;
  FileCache file_cache;
  GzipCache gzip_cache;  // gzip's compressed files
  UpstreamRuntimes upstreams;  // balancing, passive health and keep-alive pools, per group
  // This worker's slot of the status zone, where it counts connections, requests and upstream
  // attempts (claimed when the worker starts; the master releases it when the worker is gone).
  StatusWriter stats;

 private:
  static void flush_logs(void* arg);
  bool draining_ = false;
  HandOver hand_over_ = nullptr;
  bool hand_over_tunnels_ = false;
  void* hand_over_arg_ = nullptr;
  std::vector<std::unique_ptr<Request>> spare_requests_;
};

}  // namespace baton::http

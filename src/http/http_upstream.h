// Upstreams as the configuration describes them: [upstream NAME] groups of servers, and the proxy_*
// settings of a location. Read once per configuration generation and never changed afterwards; the
// state that changes while a worker runs (passive health, balancing, keep-alive pools) lives in the
// worker, next to these objects, never in them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "http/http_variables.h"
#include "os/unix/socket.h"

namespace baton {
class TlsContext;
}

namespace baton::http {

enum class Balance : uint8_t { kRoundRobin, kLeastConn, kIpHash, kHash };

struct UpstreamServer {
  std::string text;  // as configured ("10.0.0.2:9000", "app.internal:9000"), for logs and $upstream_addr
  SockAddr addr;     // resolved at start and on reload; a name with several addresses gives several servers
  int line = 0;
  int weight = 1;
  int max_fails = 1;               // failures within fail_timeout that take the server out; 0: never out
  int64_t fail_timeout_ms = 10000;
  bool backup = false;  // serves only when every primary server is out
  bool down = false;    // never chosen
};

struct UpstreamGroup {
  std::string name;  // the section's name; for a proxy_pass to host:port without a section, "host:port"
  int line = 0;
  bool implicit = false;  // made for a proxy_pass = http://host:port
  std::vector<UpstreamServer> servers;
  Balance balance = Balance::kRoundRobin;
  Template hash_key;      // balance = hash KEY (consistent hashing)
  uint32_t keepalive = 32;                // idle connections kept per worker; 0: no pool
  int64_t keepalive_timeout_ms = 60000;   // an idle pooled connection is closed after this
  uint64_t keepalive_requests = 1000;     // requests on one upstream connection
  int64_t connect_timeout_ms = 5000;
  int64_t read_timeout_ms = 60000;        // between two reads of a response
  int64_t send_timeout_ms = 60000;        // between two writes of a request
  uint32_t status_index = 0;              // where it is counted in the status zone (by its name)
};

// proxy_pass of one location (not inherited, as in nginx).
struct ProxyPass {
  UpstreamGroup* group = nullptr;
  int line = 0;
  // The Host header sent by default ($proxy_host): the group's name, or "host:port" as written
  // after http:// (the port dropped when it is 80).
  std::string proxy_host;
  // proxy_pass = http://app/new/ in [location /old/]: /old/x is sent as /new/x. Without a URI part
  // (has_uri false) the request's URI goes as the client sent it.
  bool has_uri = false;
  std::string uri;
  // proxy_redirect default: a Location or Refresh that starts with this is rewritten.
  std::string redirect_from;
  // https://: the location's TLS client context (proxy_ssl_*), made once the location is read.
  bool https = false;
  std::string host;  // the host of the URL, without port or brackets: the default proxy_ssl_name
  std::shared_ptr<TlsContext> tls;
  std::string tls_name;  // SNI (when tls_sni) and the name the certificate must carry (when verifying)
  bool tls_sni = false;
  bool tls_session_reuse = true;
};

// Conditions of proxy_next_upstream.
enum NextUpstream : uint32_t {
  kNextError = 1u << 0,
  kNextTimeout = 1u << 1,
  kNextHttp500 = 1u << 2,
  kNextHttp502 = 1u << 3,
  kNextHttp503 = 1u << 4,
  kNextHttp504 = 1u << 5,
  kNextHttp403 = 1u << 6,
  kNextHttp404 = 1u << 7,
  kNextHttp429 = 1u << 8,
  kNextNonIdempotent = 1u << 9,  // retry POST, LOCK, PATCH too (nginx's non_idempotent)
};

struct ProxySetHeader {
  std::string name;  // as written
  std::string lower; // lower-cased, for matching
  Template value;    // an empty value removes the header (nginx's habit)
};

// The inherited proxy_* keys ([http] -> [server] -> [location]).
struct ProxySettings {
  // proxy_set_header: a level that sets any replaces the whole inherited list (nginx's rule).
  std::vector<ProxySetHeader> set_headers;
  std::vector<std::string> hide_headers;  // lower-cased; added to the default hidden ones
  std::vector<std::string> pass_headers;  // lower-cased; taken out of the default hidden ones
  uint32_t next_upstream = kNextError | kNextTimeout;  // 0: off
  uint32_t next_upstream_tries = 0;                    // 0: no limit
  int64_t next_upstream_timeout_ms = 0;                // 0: no limit
  bool buffering = true;          // proxy_buffering: read the response ahead of a slow client
  bool request_buffering = true;  // proxy_request_buffering: read the body before connecting...
  uint64_t client_body_buffer_size = 65536;  // ...up to this much; a longer body streams as it comes
  uint64_t buffer_size = 8192;    // proxy_buffer_size: the largest response head
  uint64_t buffers_size = 65536;  // proxy_buffers = N SIZE: the memory a response may be read ahead in
  bool redirect_default = true;   // proxy_redirect = default | off
  // proxy_connect_timeout / proxy_read_timeout / proxy_send_timeout in a location: override the
  // group's connect_timeout / read_timeout / send_timeout (nginx users set them there). -1: the group's.
  int64_t connect_timeout_ms = -1;
  int64_t read_timeout_ms = -1;
  int64_t send_timeout_ms = -1;
  // proxy_ssl_*: TLS to an upstream of proxy_pass = https://...
  bool ssl_verify = false;
  std::string ssl_trusted_certificate;  // absolute path
  int ssl_trusted_certificate_line = 0;
  int ssl_verify_line = 0;
  int ssl_verify_depth = 1;
  bool ssl_server_name = false;  // send SNI
  std::string ssl_name;          // the name for SNI and verification; empty: the proxy_pass host
  std::string ssl_certificate, ssl_certificate_key;  // absolute paths
  int ssl_certificate_line = 0, ssl_certificate_key_line = 0;
  int ssl_min_version = 0x0303, ssl_max_version = 0x0304;
  std::string ssl_ciphers;
  int ssl_ciphers_line = 0;
  bool ssl_session_reuse = true;
};

}  // namespace baton::http

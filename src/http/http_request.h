// A request as the server sees it once its head is parsed. It belongs to its connection, never to
// the worker: its views point into the bytes the head arrived in, and before the request outlives
// them (a body still arriving, a file still being sent, a log line written at the end) own() copies
// those bytes into the request and moves every view onto the copy. Nothing about one request can
// then be read from memory another request has since been parsed into.
#pragma once

#include <llhttp.h>

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/http_limit.h"
#include "http/http_regex.h"
#include "http/http_response.h"
#include "http/http_variables.h"
#include "os/unix/fd.h"
#include "os/unix/socket.h"

namespace baton {
class TlsTransport;
}

namespace baton::http {

struct Location;

// Where a request goes after its rewrites (http_rewrite.h's route()).
struct Route {
  const Location* location = nullptr;
  bool server_return = false;   // the [server]'s `return` answers (no rewrite before it stopped)
  bool location_return = true;  // the location's `return` applies (false when a `break` came before it)
  int status = 0;               // set: the answer is this redirect (301, 302) or error (400, 500)
  std::string redirect;         // a redirect's Location
};

struct Header {
  std::string_view name;
  std::string_view value;
};

constexpr size_t kMaxHeaders = 100;

// One upstream server asked for the request: what the access log's upstream fields show.
struct UpstreamTry {
  std::string_view addr;  // the server's text in the configuration, which outlives the worker's requests
  int status = 0;         // 0: no status (the exchange failed before one)
  double seconds = 0;
};

struct Request {
  // The connection's parser, while this request is read; parked with the request between requests,
  // so that an idle keep-alive connection carries none.
  llhttp_t parser;

  std::string_view method;
  std::string_view target;  // as sent (logs, $request_uri)
  std::string_view uri;     // origin-form part of target: the path and query of an absolute-form
  std::string_view query;   // after '?', without it
  int method_id = 0;        // llhttp_method_t
  int version_major = 1;
  int version_minor = 1;
  Header headers[kMaxHeaders];
  size_t header_count = 0;

  // Well-known headers, found while parsing.
  std::string_view host;  // lower-cased copy in host_lower
  std::string_view connection;
  std::string_view user_agent;
  std::string_view referer;
  std::string_view if_none_match;
  std::string_view if_modified_since;
  std::string_view range;
  std::string_view if_range;
  std::string_view expect;
  std::string_view transfer_encoding;
  std::string_view upgrade;
  int host_count = 0;

  std::string path;        // percent-decoded, normalised: always starts with '/'
  std::string host_lower;  // the authority of an absolute-form target, else Host; no port, lower-cased
  bool keep_alive = false;
  bool has_body = false;   // a Content-Length > 0 or chunked
  bool chunked = false;
  bool tunnel = false;     // asks to switch protocols (Upgrade), and the handler may carry it
  bool https = false;      // arrived over TLS: $scheme https
  const TlsTransport* tls = nullptr;  // ... on this connection's TLS ($ssl_*)
  // Who the request is from: the connection's peer when the request begins, replaced once the
  // location is chosen by the address a trusted proxy names in real_ip_header (set_real_ip_from).
  // $remote_addr, the logs, allow/deny, ip_hash and the proxy's X-Real-IP / X-Forwarded-For all
  // read this, never the connection.
  PeerAddr client;
  uint64_t content_length = 0;

  // The connection's reading of the request and its answer (set by the connection; reset() leaves
  // them alone).
  const char* msg_start = nullptr;  // first byte of the head being parsed
  const char* url_end = nullptr;
  int error_status = 0;             // set by a parser callback that refuses the request
  uint64_t body_received = 0;
  uint64_t body_limit = 0;
  uint64_t stream_bytes = 0;        // body bytes a handler sent
  double start_time = 0;

  // The answer, as far as it outlives the event that produced it: a file that follows the head, and
  // what the access log says once the last byte is out. A copy of the request (an internal
  // redirect's) starts with no answer of its own.
  struct Answer {
    Fd file;
    off_t file_offset = 0;
    uint64_t file_bytes = 0;
    int log_status = 0;
    uint64_t log_bytes = 0;
    std::vector<UpstreamTry> upstream_tries;

    Answer() = default;
    Answer(const Answer&) {}
    Answer& operator=(const Answer&) { return *this; }
  } answer;

  // What a rewrite made of the request: path holds the new URI, query the new arguments (kept in
  // args; $request_uri stays as sent). The captures of the last regex the request matched ($1..$9).
  // The limits (http_limit.h): run once per request; what they said, for $limit_req_status and
  // $limit_conn_status; the limit_conn zones it counts in while it is in progress.
  uint8_t limits_checked = 0;  // 1: limit_req has run, 2: limit_conn too
  LimitStatus limit_req_status = LimitStatus::kNone;
  LimitStatus limit_conn_status = LimitStatus::kNone;
  LimitConnHolds limit_conns;

  // The last bytes of a chunked body that spans reads (its end is checked for CRLF CRLF).
  char chunk_tail[4] = {};
  uint8_t chunk_tail_len = 0;

  bool rewritten = false;
  bool rewrite_break = false;  // ... by a `break`: a proxy_pass URI part no longer applies (nginx's rule)
  std::string args;
  Captures captures;

  // Set by the connection when the request is routed and when a head is written for it: where it
  // goes, its variables (as the limits, the rewrites and the added headers read them), and what
  // every head written for it adds. Per request, so that an idle connection carries none of it.
  Route route;
  VarContext vars;
  HeadPolicy policy;

  // $request_id: random, made on first use, the same for every use within the request (its added
  // headers, its answer, the request sent upstream, its log line).
  mutable char request_id[32] = {};
  mutable bool has_request_id = false;

  void reset() {
    has_request_id = false;
    method = target = uri = query = {};
    header_count = 0;
    host = connection = user_agent = referer = if_none_match = if_modified_since = range = if_range =
        expect = transfer_encoding = upgrade = {};
    host_count = 0;
    path.clear();
    host_lower.clear();
    rewritten = rewrite_break = false;
    chunk_tail_len = 0;
    limits_checked = 0;
    limit_req_status = limit_conn_status = LimitStatus::kNone;
    limit_conns.release();
    args.clear();
    captures.clear();
    keep_alive = false;
    has_body = chunked = tunnel = https = false;
    tls = nullptr;
    content_length = 0;
    answer.file.reset();
    answer.file_offset = answer.file_bytes = answer.log_bytes = 0;
    answer.log_status = 0;
    answer.upstream_tries.clear();
    route = Route();
    vars = VarContext();
    policy = HeadPolicy();
    owned.clear();
  }
  std::string_view header(std::string_view name) const;

  // Copies [begin, end) (the head, as received) into the request and points every view that
  // lies inside it at the copy. Views outside it (the method name: a constant) stay as they are.
  void own(const char* begin, const char* end);

 private:
  std::string owned;
};

// Percent-decodes and normalises the path part of target into out ("/a/./b//c" -> "/a/b/c",
// "/a/../b" -> "/b"). Returns false (400) for a path that climbs above "/", a NUL byte, a bad escape
// or a target that is not origin-form.
bool normalize_path(std::string_view target, std::string* out, std::string_view* query);

// Resolves "//", "/./" and "/../" in a decoded path that starts with '/' (a rewrite's result).
// Returns false for a path that does not start with '/' or climbs above it.
bool resolve_segments(std::string* path);

}  // namespace baton::http

// A request as the server sees it once its head is parsed. It belongs to its connection, never to
// the worker: its views point into the bytes the head arrived in, and before the request outlives
// them (a body still arriving, a file still being sent, a log line written at the end) own() copies
// those bytes into the request and moves every view onto the copy. Nothing about one request can
// then be read from memory another request has since been parsed into.
#pragma once

#include <llhttp.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace baton::http {

struct Header {
  std::string_view name;
  std::string_view value;
};

constexpr size_t kMaxHeaders = 100;

struct Request {
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
  uint64_t content_length = 0;

  void reset() {
    method = target = uri = query = {};
    header_count = 0;
    host = connection = user_agent = referer = if_none_match = if_modified_since = range = if_range =
        expect = transfer_encoding = upgrade = {};
    host_count = 0;
    path.clear();
    host_lower.clear();
    keep_alive = false;
    has_body = chunked = tunnel = false;
    content_length = 0;
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

}  // namespace baton::http

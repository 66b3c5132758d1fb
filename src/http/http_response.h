// Writing responses: status lines, the headers every response carries, and the small HTML pages
// baton answers errors with. Everything is appended to one output string so that a response head
// and a small body leave in a single write.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/http_variables.h"

namespace baton::http {

// add_header = NAME VALUE [always]: VALUE may hold variables; an empty value adds nothing.
struct AddedHeader {
  std::string name;
  Template value;
  bool always = false;  // also on error responses, not only 2xx and redirects
};

// What the location that answers adds to every response head (add_header, server_tokens).
struct HeadPolicy {
  const std::vector<AddedHeader>* add = nullptr;
  const VarContext* vars = nullptr;
  bool server_tokens = true;  // "Server: baton/VERSION"; off: "Server: baton"
  std::string_view charset;   // added to a text type's Content-Type ("" for none)
};

// Whether `charset` applies to a Content-Type (nginx's charset_types: text/html, text/xml,
// text/plain, text/vnd.wap.wml, application/javascript, application/rss+xml), one without a
// charset of its own.
bool takes_charset(std::string_view content_type);

const char* status_reason(int code);  // "Not Found"; "" for unknown codes
bool status_has_body(int code);       // false for 1xx, 204, 304

struct ResponseHead {
  int status = 200;
  std::string_view content_type;
  int64_t content_length = -1;  // -1: none written
  bool keep_alive = true;
  bool http10 = false;      // the client speaks HTTP/1.0: say "Connection: keep-alive" when keeping
  const HeadPolicy* policy = nullptr;  // none: no added headers, the version in Server
};

// Appends "HTTP/1.1 CODE Reason\r\nServer: ..\r\nDate: ..\r\n" and, when given, Content-Type and
// Content-Length. The caller appends its own headers, then end_head(), which adds the policy's
// headers (add_header: on 2xx and redirects, or on every status with `always`).
void begin_head(std::string* out, const ResponseHead& h);
void end_head(std::string* out, const ResponseHead& h);

// The HTML page for an error status, as a body; server_tokens off leaves the version out.
std::string_view error_page(int code, bool server_tokens = true);
// Whether add_header without `always` applies to a response with this status (nginx's list).
bool adds_headers(int status);
// Appends the policy's add_header fields for a response with this status (end_head does).
void append_added_headers(std::string* out, const HeadPolicy& policy, int status);

extern const char kServerToken[];  // "baton/<version>"

}  // namespace baton::http

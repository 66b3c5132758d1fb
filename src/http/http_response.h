// Writing responses: status lines, the headers every response carries, and the small HTML pages
// baton answers errors with. Everything is appended to one output string so that a response head
// and a small body leave in a single write.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace baton::http {

const char* status_reason(int code);  // "Not Found"; "" for unknown codes
bool status_has_body(int code);       // false for 1xx, 204, 304

struct ResponseHead {
  int status = 200;
  std::string_view content_type;
  int64_t content_length = -1;  // -1: none written
  bool keep_alive = true;
  bool http10 = false;      // the client speaks HTTP/1.0: say "Connection: keep-alive" when keeping
};

// Appends "HTTP/1.1 CODE Reason\r\nServer: ..\r\nDate: ..\r\n" and, when given, Content-Type and
// Content-Length. The caller appends its own headers, then end_head().
void begin_head(std::string* out, const ResponseHead& h);
void end_head(std::string* out, const ResponseHead& h);

// The HTML page for an error status, as a body.
std::string_view error_page(int code);

extern const char kServerToken[];  // "baton/<version>"

}  // namespace baton::http

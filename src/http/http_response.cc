#include "http/http_response.h"

#include <array>
#include <mutex>

#include "config.h"
#include "core/clock.h"
#include "core/strings.h"

namespace baton::http {

const char kServerToken[] = "baton/" BATON_VERSION;

const char* status_reason(int code) {
  switch (code) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
  }
  return "";
}

bool status_has_body(int code) { return code >= 200 && code != 204 && code != 304; }

void begin_head(std::string* out, const ResponseHead& h) {
  out->append("HTTP/1.1 ");
  append_uint(out, static_cast<uint64_t>(h.status));
  out->push_back(' ');
  out->append(status_reason(h.status));
  out->append("\r\nServer: ");
  out->append(h.policy && !h.policy->server_tokens ? std::string_view("baton") : std::string_view(kServerToken));
  out->append("\r\nDate: ");
  out->append(Clock::http_date());
  out->append("\r\n");
  if (!h.content_type.empty()) {
    out->append("Content-Type: ");
    out->append(h.content_type);
    if (h.policy && !h.policy->charset.empty() && takes_charset(h.content_type)) {
      out->append("; charset=");
      out->append(h.policy->charset);
    }
    out->append("\r\n");
  }
  if (h.content_length >= 0) {
    out->append("Content-Length: ");
    append_uint(out, static_cast<uint64_t>(h.content_length));
    out->append("\r\n");
  }
}

bool takes_charset(std::string_view type) {
  if (type.find(';') != std::string_view::npos) return false;  // it has parameters (a charset) already
  static const char* const kTypes[] = {"text/html", "text/xml", "text/plain", "text/vnd.wap.wml",
                                       "application/javascript", "application/rss+xml"};
  for (const char* t : kTypes)
    if (iequals(type, t)) return true;
  return false;
}

bool adds_headers(int status) {
  switch (status) {
    case 200: case 201: case 204: case 206:
    case 301: case 302: case 303: case 304: case 307: case 308:
      return true;
    default:
      return false;
  }
}

void end_head(std::string* out, const ResponseHead& h) {
  if (h.policy) append_added_headers(out, *h.policy, h.status);
  if (!h.keep_alive) out->append("Connection: close\r\n\r\n");
  else if (h.http10) out->append("Connection: keep-alive\r\n\r\n");
  else out->append("\r\n");
}

void append_added_headers(std::string* out, const HeadPolicy& policy, int status) {
  if (policy.add && !policy.add->empty() && policy.vars) {
    bool usual = adds_headers(status);
    VarContext vars = *policy.vars;
    vars.status = status;  // $status
    for (const AddedHeader& a : *policy.add) {
      if (!a.always && !usual) continue;
      size_t mark = out->size();
      out->append(a.name);
      out->append(": ");
      size_t value_at = out->size();
      a.value.evaluate(vars, out);
      // A value with a line break in it (from a variable) would forge fields: it is cut there; an
      // empty value adds nothing.
      size_t bad = out->find_first_of("\r\n", value_at);
      if (bad != std::string::npos) out->resize(bad);
      if (out->size() == value_at) out->resize(mark);
      else out->append("\r\n");
    }
  }
}

std::string_view error_page(int code, bool server_tokens) {
  static std::array<std::string, 600> pages;
  static std::array<std::string, 600> bare;  // server_tokens off
  static std::once_flag once;
  std::call_once(once, [] {
    for (int c = 300; c < 600; c++) {
      const char* reason = status_reason(c);
      if (!*reason) continue;
      std::string title = std::to_string(c) + " " + reason;
      std::string top = "<!DOCTYPE html>\n<html>\n<head><title>" + title + "</title></head>\n<body>\n<h1>" + title;
      pages[static_cast<size_t>(c)] = top + "</h1>\n<hr><p>" + kServerToken + "</p>\n</body>\n</html>\n";
      bare[static_cast<size_t>(c)] = top + "</h1>\n<hr><p>baton</p>\n</body>\n</html>\n";
    }
  });
  if (code < 300 || code >= 600) return {};
  return server_tokens ? pages[static_cast<size_t>(code)] : bare[static_cast<size_t>(code)];
}

}  // namespace baton::http

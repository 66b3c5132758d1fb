// Variables in configuration values (`return = 301 https://$host$request_uri`): a value is compiled
// once, when the configuration is read, into literal and variable parts — an unknown variable is a
// configuration error there, never a surprise in a response — and evaluated per request from a
// VarContext into the caller's string, with no allocation beyond that string.
//
// Syntax, as nginx's: `$name` (letters, digits, `_`), or `${name}` where a name character follows
// (`${host}x`). nginx has no way to write a literal dollar sign; baton reads `$$` as one, so that a
// value never has to work around it. A `$` followed by anything else is an error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "os/unix/socket.h"

namespace baton::http {

struct Request;
struct Server;
struct LogEntry;

// What a request's variables are read from. Built on the stack for the request being answered.
struct VarContext {
  const Request* req = nullptr;
  const Server* server = nullptr;    // the virtual server the request was routed to
  const PeerAddr* peer = nullptr;    // $remote_addr
  const SockAddr* local = nullptr;   // the listening address: $server_port
  std::string_view uri;              // $uri when it is not the request's own path (an internal redirect)
  std::string_view proxy_host;       // $proxy_host: filled in by the proxy (its ProxyPass::proxy_host)
  int status = 0;                    // $status of the response whose head is being written
  const LogEntry* log = nullptr;     // the access log's line: $status, $body_bytes_sent, $upstream_*...

};

enum class Var : uint8_t {
  kLiteral,        // not a variable: text of the template
  kScheme,
  kHost,
  kServerName,
  kServerPort,
  kRequestUri,
  kUri,
  kArgs,
  kIsArgs,
  kRequestMethod,
  kRemoteAddr,
  kRemotePort,
  kRequestId,
  kProxyHost,
  kProxyAddXForwardedFor,  // the request's X-Forwarded-For values and $remote_addr, joined with ", "
  kHttpHeader,     // $http_NAME: the request header NAME (`_` for `-`, any case)
  kSslProtocol,    // "TLSv1.3"; "" on a plain connection
  kSslCipher,
  kSslServerName,  // the client's SNI name
  kSslSessionReused,  // "r" for a resumed session, "." otherwise
  kSslClientVerify,   // SUCCESS, FAILED:reason, NONE
  kSslClientSDn,
  kSslClientIDn,
  kSslClientSerial,
  kArg,            // $arg_NAME: the argument NAME of the query string, as sent (any case)
  kCookie,         // $cookie_NAME: the cookie NAME of the Cookie header
  kStatus,
  kBodyBytesSent,
  kRequestTime,    // seconds since the request's first byte, with milliseconds
  kTimeLocal,      // 03/Dec/2026:11:39:50 +0000
  kTimeIso8601,    // 2026-12-03T11:39:50+00:00
  kMsec,           // seconds since the epoch, with milliseconds
  kRequest,        // the request line: "GET /a?b HTTP/1.1"
  kServerProtocol, // "HTTP/1.1"
  kRemoteUser,     // the user of the request's Basic credentials, checked or not (nginx's meaning)
  kContentLength,
  kContentType,
  kUpstreamAddr,
  kUpstreamStatus,
  kUpstreamResponseTime,
  kHostname,
  kPid,
  kCapture,        // $0..$9: a group of the request's last regex match (off: its number)
  kNamedCapture,   // a named group of it (the name in names_)
  kBinaryRemoteAddr,  // the client's address as 4 or 16 bytes: the usual key of a limit zone
  kLimitReqStatus,    // PASSED, DELAYED or REJECTED by limit_req; empty when none applied
  kLimitConnStatus,   // PASSED or REJECTED by limit_conn
};

// How variable values are written. kUrl: for a Location header, a value's control characters,
// spaces and non-ASCII bytes are percent-encoded, so that no request can put a line break (or
// anything else that is not a URL) into a response head — $uri is decoded and may hold %0D%0A.
// kArgs: for a value that becomes part of a query string (a rewrite's arguments). A value from the
// decoded path ($uri, a regex group) has its '%', '#' and '?' escaped in either (and '&' and '+' in
// arguments), so that it stays data: one argument's value, never a second argument or a fragment.
// The access log's: kLog escapes '"', '\\' and bytes outside 0x20..0x7e as \xHH and writes "-"
// for a variable that has no value (a header not sent, no upstream: nginx's "not found"), kLogRaw
// writes values as they are (escape=none), kJson escapes for a JSON string (escape=json).
enum class Escape : uint8_t { kNone, kUrl, kArgs, kLog, kLogRaw, kJson };

class Template {
 public:
  // Compiles text; returns "" or an error message (the caller adds file:line).
  std::string compile(std::string_view text);

  bool has_variables() const { return has_variables_; }
  // The text with `$$` turned into `$`: the whole value when there are no variables.
  const std::string& literal() const { return text_; }
  // Appends the value for ctx to *out.
  void evaluate(const VarContext& ctx, std::string* out, Escape escape = Escape::kNone) const;

 private:
  struct Part {
    Var var;
    uint32_t off;  // kLiteral: the bytes in text_; kHttpHeader, kArg...: the name in names_
    uint32_t len;
  };
  void append_part(const Part& p, const VarContext& ctx, const Request& req, std::string* out, Escape escape) const;
  std::string text_;
  std::string names_;
  std::vector<Part> parts_;
  bool has_variables_ = false;
};

// The names of the regex groups the configuration being read defines ((?<name>...) in a location
// or a rewrite): `$name` is a variable in every value read after this is set, as in nginx, where a
// named capture anywhere is a variable everywhere. Set before the values are compiled.
void set_capture_names(std::vector<std::string> names);

// Whether `$name` is one of baton's own variables (or of a family: http_, arg_, cookie_).
bool is_variable_name(std::string_view name);

// The names a template may use (for messages and documentation): "$scheme $host ...".
const char* known_variables();

}  // namespace baton::http

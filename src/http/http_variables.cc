#include "http/http_variables.h"

#include <openssl/rand.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdio>

#include "core/clock.h"
#include "core/strings.h"
#include "event/tls.h"
#include "http/http_auth.h"
#include "http/http_config.h"
#include "http/http_log.h"
#include "http/http_request.h"

namespace baton::http {

namespace {

struct Known {
  std::string_view name;
  Var var;
};

constexpr Known kKnown[] = {
    {"scheme", Var::kScheme},           {"host", Var::kHost},
    {"server_name", Var::kServerName},  {"server_port", Var::kServerPort},
    {"request_uri", Var::kRequestUri},  {"uri", Var::kUri},
    {"args", Var::kArgs},               {"query_string", Var::kArgs},
    {"is_args", Var::kIsArgs},          {"request_method", Var::kRequestMethod},
    {"remote_addr", Var::kRemoteAddr},  {"request_id", Var::kRequestId},
    {"remote_port", Var::kRemotePort},  {"proxy_host", Var::kProxyHost},
    {"proxy_add_x_forwarded_for", Var::kProxyAddXForwardedFor},
    {"ssl_protocol", Var::kSslProtocol},  {"ssl_cipher", Var::kSslCipher},
    {"ssl_server_name", Var::kSslServerName}, {"ssl_session_reused", Var::kSslSessionReused},
    {"ssl_client_verify", Var::kSslClientVerify}, {"ssl_client_s_dn", Var::kSslClientSDn},
    {"ssl_client_i_dn", Var::kSslClientIDn}, {"ssl_client_serial", Var::kSslClientSerial},
    {"status", Var::kStatus}, {"body_bytes_sent", Var::kBodyBytesSent},
    {"request_time", Var::kRequestTime}, {"time_local", Var::kTimeLocal},
    {"time_iso8601", Var::kTimeIso8601}, {"msec", Var::kMsec},
    {"request", Var::kRequest}, {"server_protocol", Var::kServerProtocol},
    {"remote_user", Var::kRemoteUser}, {"content_length", Var::kContentLength},
    {"content_type", Var::kContentType}, {"upstream_addr", Var::kUpstreamAddr},
    {"upstream_status", Var::kUpstreamStatus}, {"upstream_response_time", Var::kUpstreamResponseTime},
    {"hostname", Var::kHostname}, {"pid", Var::kPid},
    {"binary_remote_addr", Var::kBinaryRemoteAddr}, {"limit_req_status", Var::kLimitReqStatus},
    {"limit_conn_status", Var::kLimitConnStatus},
};

// Variables of a name prefix and a name of the request's own: $http_user_agent, $arg_page.
struct Family {
  std::string_view prefix;
  Var var;
  bool header_name;  // '_' stands for '-' and the name is lower-cased (a header name)
};
constexpr Family kFamilies[] = {
    {"http_", Var::kHttpHeader, true},
    {"arg_", Var::kArg, false},
    {"cookie_", Var::kCookie, false},
};

std::vector<std::string>& capture_names() {
  static std::vector<std::string> names;
  return names;
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

const char kHex[] = "0123456789abcdef";
const char kHexUpper[] = "0123456789ABCDEF";

// decoded: the value is part of the decoded path ($uri, a regex group), where '%', '#' and '?' are
// data; in a URL (kUrl, kArgs) they are escaped too, and in arguments '&' and '+' as well. A value
// as the client sent it ($args, $request_uri, a header) is already escaped: in a URL only what can
// never stand in one is (control characters, spaces, bytes past ASCII).
void append_value(std::string* out, std::string_view v, Escape escape, bool decoded = false) {
  switch (escape) {
    case Escape::kNone:
    case Escape::kLogRaw:
      out->append(v);
      return;
    case Escape::kLog:
      append_escaped(out, v);
      return;
    case Escape::kJson:
      append_json_escaped(out, v);
      return;
    case Escape::kUrl:
    case Escape::kArgs:
      break;
  }
  for (unsigned char c : v) {
    bool special = decoded && (c == '#' || c == '%' || c == '?' ||
                               (escape == Escape::kArgs && (c == '&' || c == '+')));
    if (c <= 0x20 || c >= 0x7f || special) {
      out->push_back('%');
      out->push_back(kHexUpper[c >> 4]);
      out->push_back(kHexUpper[c & 15]);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
}

// 128 random bits as 32 hex digits. OpenSSL's generator reseeds itself after a fork, so workers
// forked from one master never repeat each other; getrandom() stands in should it ever fail.
void make_request_id(char* out) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    ssize_t n = getrandom(bytes, sizeof(bytes), 0);
    (void)n;
  }
  for (size_t i = 0; i < sizeof(bytes); i++) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 15];
  }
}

// The value of argument name in a query string ("a=1&b=2"), as sent; the first one of that name,
// compared without regard to case as nginx does. "b" alone has an empty value.
std::string_view query_arg(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    if (iequals(pair.substr(0, eq), name)) return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
  }
  return {};
}

// The value of cookie name in the request's Cookie headers ("a=1; b=2").
std::string_view cookie(const Request& req, std::string_view name) {
  for (size_t i = 0; i < req.header_count; i++) {
    if (!iequals(req.headers[i].name, "cookie")) continue;
    std::string_view v = req.headers[i].value;
    while (!v.empty()) {
      size_t semi = v.find(';');
      std::string_view pair = trim(v.substr(0, semi));
      v = semi == std::string_view::npos ? std::string_view() : v.substr(semi + 1);
      size_t eq = pair.find('=');
      if (eq != std::string_view::npos && iequals(trim(pair.substr(0, eq)), name)) return trim(pair.substr(eq + 1));
    }
  }
  return {};
}

void append_fixed3(std::string* out, double v) {
  char buf[48];
  int n = snprintf(buf, sizeof(buf), "%.3f", v);
  if (n > 0) out->append(buf, static_cast<size_t>(n));
}

std::string_view hostname() {
  static char name[256];
  static size_t len = [] {
    if (gethostname(name, sizeof(name) - 1) != 0) return size_t{0};
    name[sizeof(name) - 1] = '\0';
    return strlen(name);
  }();
  return {name, len};
}

bool has_header(const Request& req, std::string_view name) {
  for (size_t i = 0; i < req.header_count; i++)
    if (iequals(req.headers[i].name, name)) return true;
  return false;
}

// The variables that are "not found" when they are empty, in nginx's terms (the access log writes
// "-" for them).
bool absent_when_empty(Var v) {
  switch (v) {
    case Var::kHttpHeader: case Var::kArg: case Var::kCookie: case Var::kRemoteUser:
    case Var::kUpstreamAddr: case Var::kUpstreamStatus: case Var::kUpstreamResponseTime:
    case Var::kContentLength: case Var::kContentType: case Var::kCapture: case Var::kNamedCapture:
    case Var::kSslProtocol: case Var::kSslCipher: case Var::kSslServerName: case Var::kSslSessionReused:
    case Var::kSslClientVerify: case Var::kSslClientSDn: case Var::kSslClientIDn: case Var::kSslClientSerial:
    case Var::kRemoteAddr: case Var::kRemotePort: case Var::kServerPort: case Var::kRequest:
    case Var::kServerProtocol: case Var::kLimitReqStatus: case Var::kLimitConnStatus:
      return true;
    default:
      return false;
  }
}

void append_remote_addr(const VarContext& ctx, std::string* out, Escape escape) {
  if (!ctx.peer) return;
  char host[64];
  size_t n = ctx.peer->host_into(host, sizeof(host));
  append_value(out, std::string_view(host, n), escape);
}

}  // namespace

void set_capture_names(std::vector<std::string> names) { capture_names() = std::move(names); }

bool is_variable_name(std::string_view name) {
  for (const Known& k : kKnown)
    if (k.name == name) return true;
  for (const Family& f : kFamilies)
    if (name.starts_with(f.prefix)) return true;
  return false;
}

const char* known_variables() {
  return "$scheme $host $server_name $server_port $request_uri $uri $args $query_string $is_args "
         "$request_method $remote_addr $remote_port $request_id $proxy_host $proxy_add_x_forwarded_for $ssl_protocol "
         "$ssl_cipher $ssl_server_name $ssl_session_reused $ssl_client_verify $ssl_client_s_dn $ssl_client_i_dn "
         "$ssl_client_serial $status $body_bytes_sent $request_time $time_local $time_iso8601 $msec $request "
         "$server_protocol $remote_user $content_length $content_type $upstream_addr $upstream_status "
         "$upstream_response_time $hostname $pid $binary_remote_addr $limit_req_status $limit_conn_status $http_NAME $arg_NAME $cookie_NAME, and a regular expression's "
         "groups: $1..$9 and named ones";
}

std::string Template::compile(std::string_view in) {
  text_.clear();
  names_.clear();
  parts_.clear();
  has_variables_ = false;
  auto add_literal = [&](std::string_view s) {
    if (s.empty()) return;
    if (!parts_.empty() && parts_.back().var == Var::kLiteral &&
        parts_.back().off + parts_.back().len == text_.size()) {
      parts_.back().len += static_cast<uint32_t>(s.size());
    } else {
      parts_.push_back({Var::kLiteral, static_cast<uint32_t>(text_.size()), static_cast<uint32_t>(s.size())});
    }
    text_.append(s);
  };
  size_t i = 0;
  while (i < in.size()) {
    size_t dollar = in.find('$', i);
    if (dollar == std::string_view::npos) {
      add_literal(in.substr(i));
      break;
    }
    add_literal(in.substr(i, dollar - i));
    i = dollar + 1;
    if (i < in.size() && in[i] == '$') {
      add_literal("$");
      i++;
      continue;
    }
    if (i < in.size() && in[i] >= '0' && in[i] <= '9') {
      // A group of the last regex match: one digit, as in nginx ("$12" is $1 and "2").
      parts_.push_back({Var::kCapture, static_cast<uint32_t>(in[i] - '0'), 0});
      has_variables_ = true;
      i++;
      continue;
    }
    std::string_view name;
    if (i < in.size() && in[i] == '{') {
      size_t end = i + 1;
      while (end < in.size() && is_name_char(in[end])) end++;
      if (end == in.size())
        return "the closing bracket in \"" + std::string(in.substr(i + 1)) + "\" variable is missing";
      if (in[end] != '}') return "invalid variable name \"" + std::string(in.substr(dollar, end + 1 - dollar)) + "\"";
      name = in.substr(i + 1, end - i - 1);
      i = end + 1;
    } else {
      size_t end = i;
      while (end < in.size() && is_name_char(in[end])) end++;
      name = in.substr(i, end - i);
      i = end;
    }
    if (name.empty()) return "invalid variable name after \"$\" (a dollar sign itself is written \"$$\")";
    Var var = Var::kLiteral;
    for (const Known& k : kKnown)
      if (k.name == name) var = k.var;
    bool family = false;
    for (const Family& f : kFamilies) {
      if (var != Var::kLiteral || !name.starts_with(f.prefix) || name.size() == f.prefix.size()) continue;
      // Header names compare without regard to case; `_` stands for `-`.
      uint32_t off = static_cast<uint32_t>(names_.size());
      for (char c : name.substr(f.prefix.size())) names_.push_back(!f.header_name ? c : c == '_' ? '-' : ascii_lower(c));
      parts_.push_back({f.var, off, static_cast<uint32_t>(name.size() - f.prefix.size())});
      has_variables_ = true;
      family = true;
      break;
    }
    if (family) continue;
    if (var == Var::kLiteral) {
      bool named_group = false;
      for (const std::string& n : capture_names()) named_group = named_group || n == name;
      if (named_group) {
        uint32_t off = static_cast<uint32_t>(names_.size());
        names_.append(name);
        parts_.push_back({Var::kNamedCapture, off, static_cast<uint32_t>(name.size())});
        has_variables_ = true;
        continue;
      }
    }
    if (var == Var::kLiteral) return "unknown \"" + std::string(name) + "\" variable (known: " + known_variables() + ")";
    parts_.push_back({var, 0, 0});
    has_variables_ = true;
  }
  return "";
}

void Template::evaluate(const VarContext& ctx, std::string* out, Escape escape) const {
  // A line for a request refused before its head was read has no request: its values are empty.
  static const Request kNoRequest{};
  const Request& req = ctx.req ? *ctx.req : kNoRequest;
  for (const Part& p : parts_) {
    size_t before = out->size();
    if (p.var == Var::kLiteral) {
      out->append(text_, p.off, p.len);
      continue;
    }
    append_part(p, ctx, req, out, escape);
    // nginx's access log (escape=default) writes "-" for a variable that has no value at all: a
    // header, argument or cookie that is not there, no upstream, no user; an empty value that is
    // one ($args of a request without a query) stays empty.
    if (escape == Escape::kLog && out->size() == before && absent_when_empty(p.var) &&
        !(p.var == Var::kHttpHeader && has_header(req, std::string_view(names_).substr(p.off, p.len))))
      out->push_back('-');
  }
}

void Template::append_part(const Part& p, const VarContext& ctx, const Request& req, std::string* out,
                           Escape escape) const {
  const LogEntry* log = ctx.log;
  switch (p.var) {
      case Var::kLiteral:
        out->append(text_, p.off, p.len);
        break;
      case Var::kScheme:
        out->append(req.https ? "https" : "http");
        break;
      case Var::kHost:
        // The Host header without its port, lower-cased; without one (HTTP/1.0), the server's name.
        if (!req.host_lower.empty()) append_value(out, req.host_lower, escape);
        else if (ctx.server) append_value(out, ctx.server->primary_name, escape);
        break;
      case Var::kServerName:
        if (ctx.server) append_value(out, ctx.server->primary_name, escape);
        break;
      case Var::kServerPort:
        if (ctx.local && (ctx.local->family() == AF_INET || ctx.local->family() == AF_INET6)) {
          const auto* in = reinterpret_cast<const sockaddr_in*>(&ctx.local->storage);
          const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ctx.local->storage);
          append_uint(out, ntohs(ctx.local->family() == AF_INET ? in->sin_port : in6->sin6_port));
        }
        break;
      case Var::kRequestUri:
        append_value(out, req.target, escape);
        break;
      case Var::kUri:
        append_value(out, ctx.uri.empty() ? std::string_view(req.path) : ctx.uri, escape, true);
        break;
      case Var::kArgs:
        append_value(out, req.query, escape);
        break;
      case Var::kIsArgs:
        if (!req.query.empty()) out->push_back('?');
        break;
      case Var::kRequestMethod:
        append_value(out, req.method, escape);
        break;
      case Var::kRemoteAddr:
        append_remote_addr(ctx, out, escape);
        break;
      case Var::kRemotePort: {
        // An address a proxy named without a port (real_ip_header) has none: empty, as in nginx.
        uint16_t port = 0;
        if (ctx.peer && ctx.peer->family() == AF_INET) port = ntohs(ctx.peer->u.in.sin_port);
        else if (ctx.peer && ctx.peer->family() == AF_INET6) port = ntohs(ctx.peer->u.in6.sin6_port);
        if (port != 0) append_uint(out, port);
        break;
      }
      case Var::kProxyHost:
        append_value(out, ctx.proxy_host, escape);
        break;
      case Var::kProxyAddXForwardedFor: {
        // Every X-Forwarded-For line the client sent, in order, then the client itself: each hop
        // appends the address it was reached from.
        size_t start = out->size();
        for (size_t i = 0; i < req.header_count; i++) {
          if (!iequals(req.headers[i].name, "x-forwarded-for") || req.headers[i].value.empty()) continue;
          if (out->size() > start) out->append(", ");
          append_value(out, req.headers[i].value, escape);
        }
        if (ctx.peer) {
          if (out->size() > start) out->append(", ");
          append_remote_addr(ctx, out, escape);
        }
        break;
      }
      case Var::kRequestId:
        if (!ctx.req) {
          // No request to keep it in: one of its own (never the shared stand-in's).
          char id[32];
          make_request_id(id);
          out->append(id, sizeof(id));
          break;
        }
        if (!req.has_request_id) {
          make_request_id(req.request_id);
          req.has_request_id = true;
        }
        out->append(req.request_id, sizeof(req.request_id));
        break;
      case Var::kSslProtocol:
        if (req.tls) out->append(req.tls->protocol());
        break;
      case Var::kSslCipher:
        if (req.tls) out->append(req.tls->cipher());
        break;
      case Var::kSslServerName:
        if (req.tls) append_value(out, req.tls->server_name(), escape);
        break;
      case Var::kSslSessionReused:
        if (req.tls) out->push_back(req.tls->session_reused() ? 'r' : '.');
        break;
      case Var::kSslClientVerify:
        if (req.tls) out->append(req.tls->client_verify());
        break;
      case Var::kSslClientSDn:
        if (req.tls) append_value(out, req.tls->client_subject(), escape);
        break;
      case Var::kSslClientIDn:
        if (req.tls) append_value(out, req.tls->client_issuer(), escape);
        break;
      case Var::kSslClientSerial:
        if (req.tls) out->append(req.tls->client_serial());
        break;
      case Var::kHttpHeader:
        append_value(out, req.header(std::string_view(names_).substr(p.off, p.len)), escape);
        break;
      case Var::kCapture:
        append_value(out, req.captures.group(p.off), escape, true);
        break;
      case Var::kNamedCapture:
        append_value(out, req.captures.named(std::string_view(names_).substr(p.off, p.len)), escape, true);
        break;
      case Var::kArg:
        append_value(out, query_arg(req.query, std::string_view(names_).substr(p.off, p.len)), escape);
        break;
      case Var::kCookie:
        append_value(out, cookie(req, std::string_view(names_).substr(p.off, p.len)), escape);
        break;
      case Var::kStatus: {
        int status = log ? log->status : ctx.status;
        if (status > 0) append_uint(out, static_cast<uint64_t>(status));
        else out->append("000");
        break;
      }
      case Var::kBodyBytesSent:
        append_uint(out, log ? log->body_bytes : 0);
        break;
      case Var::kRequestTime: {
        double t = log ? log->request_time : req.start_time > 0 ? Clock::now_precise() - req.start_time : 0;
        append_fixed3(out, t < 0 ? 0 : t);
        break;
      }
      case Var::kTimeLocal:
        out->append(Clock::log_date());
        break;
      case Var::kTimeIso8601:
        out->append(Clock::iso_date());
        break;
      case Var::kMsec:
        append_fixed3(out, Clock::now_precise());
        break;
      case Var::kRequest: {
        std::string_view method = log ? log->method : req.method;
        if (method.empty()) break;
        append_value(out, method, escape);
        out->push_back(' ');
        append_value(out, log ? log->target : req.target, escape);
        out->append(" HTTP/1.");
        out->push_back(static_cast<char>('0' + ((log ? log->version_minor : req.version_minor) & 1)));
        break;
      }
      case Var::kServerProtocol:
        if (log ? !log->method.empty() : !req.method.empty()) {
          out->append("HTTP/1.");
          out->push_back(static_cast<char>('0' + ((log ? log->version_minor : req.version_minor) & 1)));
        }
        break;
      case Var::kRemoteUser: {
        std::string user;
        if (remote_user(req, &user)) append_value(out, user, escape);
        break;
      }
      case Var::kContentLength:
        append_value(out, req.header("content-length"), escape);
        break;
      case Var::kContentType:
        append_value(out, req.header("content-type"), escape);
        break;
      case Var::kUpstreamAddr:
        if (log) append_value(out, log->upstream_addr, escape);
        break;
      case Var::kUpstreamStatus:
        if (log) append_value(out, log->upstream_status, escape);
        break;
      case Var::kUpstreamResponseTime:
        if (log) append_value(out, log->upstream_response_time, escape);
        break;
      case Var::kHostname:
        append_value(out, hostname(), escape);
        break;
      case Var::kPid:
        append_uint(out, static_cast<uint64_t>(getpid()));
        break;
      case Var::kBinaryRemoteAddr:
        if (ctx.peer && ctx.peer->family() == AF_INET)
          append_value(out, std::string_view(reinterpret_cast<const char*>(&ctx.peer->u.in.sin_addr), 4), escape);
        else if (ctx.peer && ctx.peer->family() == AF_INET6)
          append_value(out, std::string_view(reinterpret_cast<const char*>(&ctx.peer->u.in6.sin6_addr), 16), escape);
        break;
      case Var::kLimitReqStatus:
        append_value(out, limit_status_name(req.limit_req_status), escape);
        break;
      case Var::kLimitConnStatus:
        append_value(out, limit_status_name(req.limit_conn_status), escape);
        break;
  }
}

}  // namespace baton::http

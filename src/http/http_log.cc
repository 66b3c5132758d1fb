#include "http/http_log.h"

#include <stdio.h>

#include "core/clock.h"
#include "core/strings.h"

namespace baton::http {

namespace {

// Lines are written when the loop is about to block; a busy worker writes when this much is waiting.
constexpr size_t kFlushAt = 64 * 1024;

const char kHex[] = "0123456789ABCDEF";

void append_or_dash(std::string* out, std::string_view v) {
  if (v.empty()) out->push_back('-');
  else append_escaped(out, v);
}

}  // namespace

void append_escaped(std::string* out, std::string_view text) {
  for (unsigned char c : text) {
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
      out->append("\\x");
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
}

namespace {

// The length of the valid UTF-8 sequence that starts text (RFC 3629: no overlong forms, no
// surrogates, nothing past U+10FFFF); 0 when it does not start with one.
size_t utf8_sequence(std::string_view text) {
  auto b = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  auto cont = [&](size_t i) { return i < text.size() && (b(i) & 0xC0) == 0x80; };
  unsigned char c = b(0);
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // a surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;
    if (c == 0xF4 && b(1) >= 0x90) return 0;
    return 4;
  }
  return 0;
}

}  // namespace

void append_json_escaped(std::string* out, std::string_view text) {
  for (size_t i = 0; i < text.size(); i++) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c >= 0x80) {
          // UTF-8 goes as it is (JSON text is UTF-8: a name reads as it was written); a byte that
          // is not part of a valid sequence is written \u00XX, so the line stays valid JSON.
          if (size_t n = utf8_sequence(text.substr(i))) {
            out->append(text.substr(i, n));
            i += n - 1;
            break;
          }
        }
        if (c < 0x20 || c >= 0x7f) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
}

namespace {

void write_combined(std::string& b, const LogEntry& e, std::string_view host) {
  // $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
  b.append(host);
  b.append(" - ");
  if (e.remote_user.empty()) b.push_back('-');
  else append_escaped(&b, e.remote_user);
  b.append(" [");
  b.append(Clock::log_date());
  b.append("] \"");
  if (e.method.empty()) {
    b.push_back('-');
  } else {
    append_escaped(&b, e.method);
    b.push_back(' ');
    append_escaped(&b, e.target);
    b.append(" HTTP/");
    b.push_back(static_cast<char>('0' + e.version_major));
    b.push_back('.');
    b.push_back(static_cast<char>('0' + e.version_minor));
  }
  b.append("\" ");
  append_uint(&b, static_cast<uint64_t>(e.status));
  b.push_back(' ');
  append_uint(&b, e.body_bytes);
  b.append(" \"");
  append_or_dash(&b, e.referer);
  b.append("\" \"");
  append_or_dash(&b, e.user_agent);
  b.append("\"\n");
}

void write_json(std::string& b, const LogEntry& e, std::string_view host) {
  b.append("{\"time\":\"");
  b.append(Clock::iso_date());
  b.append("\",\"remote_addr\":\"");
  append_json_escaped(&b, host);
  b.append("\",\"method\":\"");
  append_json_escaped(&b, e.method);
  b.append("\",\"uri\":\"");
  append_json_escaped(&b, e.target);
  b.append("\",\"protocol\":\"HTTP/");
  b.push_back(static_cast<char>('0' + e.version_major));
  b.push_back('.');
  b.push_back(static_cast<char>('0' + e.version_minor));
  b.append("\",\"status\":");
  append_uint(&b, static_cast<uint64_t>(e.status));
  b.append(",\"body_bytes_sent\":");
  append_uint(&b, e.body_bytes);
  b.append(",\"referer\":\"");
  append_json_escaped(&b, e.referer);
  b.append("\",\"user_agent\":\"");
  append_json_escaped(&b, e.user_agent);
  char rt[32];
  int n = snprintf(rt, sizeof(rt), "%.3f", e.request_time < 0 ? 0.0 : e.request_time);
  b.append("\",\"request_time\":");
  b.append(rt, static_cast<size_t>(n));
  if (!e.upstream_addr.empty()) {
    b.append(",\"upstream_addr\":\"");
    append_json_escaped(&b, e.upstream_addr);
    b.append("\",\"upstream_status\":\"");
    append_json_escaped(&b, e.upstream_status);
    b.append("\",\"upstream_response_time\":\"");
    append_json_escaped(&b, e.upstream_response_time);
    b.append("\"");
  }
  b.append("}\n");
}

// if=: nginx's rule, a line unless the value is empty or "0".
bool wanted(const AccessLog& log, const VarContext& vars) {
  if (!log.condition) return true;
  std::string v;
  log.condition->evaluate(vars, &v);
  return !v.empty() && v != "0";
}

}  // namespace

void access_log(const Settings& s, const LogEntry& e, const VarContext& vars) {
  if (s.access_logs.empty()) return;
  char host_buf[64];
  std::string_view host(host_buf, e.peer->host_into(host_buf, sizeof(host_buf)));
  VarContext here = vars;
  here.log = &e;
  for (const AccessLog& log : s.access_logs) {
    if (!wanted(log, here)) continue;
    AccessLogFile* f = log.file.get();
    std::string& b = f->buf;
    if (log.format == LogFormat::kCombined) {
      write_combined(b, e, host);
    } else if (log.format == LogFormat::kJson) {
      write_json(b, e, host);
    } else {
      log.custom->format.evaluate(here, &b, log.custom->escape);
      b.push_back('\n');
    }
    if (b.size() >= kFlushAt) f->flush();
  }
}

}  // namespace baton::http

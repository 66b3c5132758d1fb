// The access log: nginx's combined format or one JSON object per line, buffered per worker and
// written before the event loop blocks.
#pragma once

#include <cstdint>
#include <string_view>

#include "http/http_config.h"

namespace baton::http {

struct LogEntry {
  const PeerAddr* peer;
  std::string_view method;
  std::string_view target;
  int version_major;
  int version_minor;
  int status;
  uint64_t body_bytes;
  std::string_view referer;
  std::string_view user_agent;
  std::string_view remote_user;  // the user of the request's Basic credentials; "" when none
  double request_time;
  // A proxied request: each server tried, in order, as nginx writes them ("10.0.0.1:80, 10.0.0.2:80").
  std::string_view upstream_addr;
  std::string_view upstream_status;
  std::string_view upstream_response_time;
};

// Writes e to each access log of s (vars: the request's variables, for a custom format and if=).
void access_log(const Settings& s, const LogEntry& e, const VarContext& vars);

// Appends text escaped for the combined format ('"', '\\' and bytes outside 0x20..0x7e as \xHH).
void append_escaped(std::string* out, std::string_view text);
// ... and for a JSON string: '"', '\\' and control characters escaped, valid UTF-8 as it is, any
// other byte as \u00XX.
void append_json_escaped(std::string* out, std::string_view text);

}  // namespace baton::http

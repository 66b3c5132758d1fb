// Cached wall-clock time and its formatted forms, refreshed at most once per loop iteration and
// reformatted at most once per second: the Date header, access log and error log timestamps.
#pragma once

#include <ctime>
#include <string_view>

namespace baton {

class Clock {
 public:
  // Re-reads the time; cheap when called many times within one second.
  static void update();
  static time_t now() { return sec_; }
  static double now_precise() { return precise_; }
  // "Sat, 21 Nov 2026 04:44:58 GMT"
  static std::string_view http_date() { return {http_, 29}; }
  // "21/Nov/2026:04:44:58 +0000"
  static std::string_view log_date() { return {log_, 26}; }
  // "2026/11/21 04:44:58"
  static std::string_view err_date() { return {err_, 19}; }
  // "2026-11-21T04:44:58+00:00"
  static std::string_view iso_date() { return {iso_, 25}; }

 private:
  static time_t sec_;
  static double precise_;
  static char http_[32];
  static char log_[32];
  static char err_[32];
  static char iso_[32];
};

// Formats t as an IMF-fixdate into out (room for 32 bytes); returns 29.
size_t format_http_date(time_t t, char* out);
// Parses IMF-fixdate (and the two obsolete forms RFC 9110 asks recipients to accept); -1 if invalid.
time_t parse_http_date(std::string_view s);

}  // namespace baton

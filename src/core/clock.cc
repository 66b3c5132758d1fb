#include "core/clock.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include <cstdint>

namespace baton {

time_t Clock::sec_ = 0;
double Clock::precise_ = 0;
char Clock::http_[32];
char Clock::log_[32];
char Clock::err_[32];
char Clock::iso_[32];

static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

namespace {

void put2(char* p, int v) {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
}

}  // namespace

// Every static response carries a Last-Modified: this is on the hot path, so the calendar is
// computed here (days to year/month/day by the proleptic Gregorian cycle of 146097 days) rather
// than through gmtime_r and snprintf.
size_t format_http_date(time_t t, char* out) {
  // The same file's date, again and again: one entry per process is most of the win.
  static time_t last_t = -1;
  static char last[32];
  if (t == last_t) {
    memcpy(out, last, 30);
    return 29;
  }
  int64_t secs = static_cast<int64_t>(t);
  int64_t days = secs / 86400;
  int64_t rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    days--;
  }
  int weekday = static_cast<int>((days % 7 + 11) % 7);  // 1970-01-01 was a Thursday
  // Shift the epoch to 0000-03-01 so that the leap day ends each 400-year era.
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;                                        // [0, 146096]
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  int64_t year = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                 // [0, 365]
  int64_t mp = (5 * doy + 2) / 153;                                      // March = 0
  int day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  int month = static_cast<int>(mp < 10 ? mp + 2 : mp - 10);             // January = 0
  if (month < 2) year++;
  // Years past 9999 (or before 0) are not representable in the format; clamp.
  if (year > 9999) year = 9999;
  if (year < 0) year = 0;
  int y = static_cast<int>(year);
  memcpy(out, kDays[weekday], 3);
  out[3] = ',';
  out[4] = ' ';
  put2(out + 5, day);
  out[7] = ' ';
  memcpy(out + 8, kMonths[month], 3);
  out[11] = ' ';
  put2(out + 12, y / 100);
  put2(out + 14, y % 100);
  out[16] = ' ';
  int r = static_cast<int>(rem);
  put2(out + 17, r / 3600);
  out[19] = ':';
  put2(out + 20, r / 60 % 60);
  out[22] = ':';
  put2(out + 23, r % 60);
  memcpy(out + 25, " GMT", 5);  // with the terminating NUL
  memcpy(last, out, 30);
  last_t = t;
  return 29;
}

void Clock::update() {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  precise_ = static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  if (tv.tv_sec == sec_) return;
  sec_ = tv.tv_sec;
  format_http_date(sec_, http_);
  struct tm tm;
  gmtime_r(&sec_, &tm);
  int year = (tm.tm_year + 1900) % 10000;
  int mon = tm.tm_mon % 12, day = tm.tm_mday % 100, h = tm.tm_hour % 100, mi = tm.tm_min % 100, se = tm.tm_sec % 100;
  snprintf(log_, sizeof(log_), "%02d/%s/%04d:%02d:%02d:%02d +0000", day, kMonths[mon], year, h, mi, se);
  snprintf(err_, sizeof(err_), "%04d/%02d/%02d %02d:%02d:%02d", year, mon + 1, day, h, mi, se);
  snprintf(iso_, sizeof(iso_), "%04d-%02d-%02dT%02d:%02d:%02d+00:00", year, mon + 1, day, h, mi, se);
}

static int month_index(std::string_view m) {
  for (int i = 0; i < 12; i++)
    if (m == kMonths[i]) return i;
  return -1;
}

static bool digits(std::string_view s, int* out) {
  int v = 0;
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

static bool parse_hms(std::string_view s, int* h, int* mi, int* se) {
  return s.size() == 8 && s[2] == ':' && s[5] == ':' && digits(s.substr(0, 2), h) &&
         digits(s.substr(3, 2), mi) && digits(s.substr(6, 2), se);
}

static time_t make_time(int year, int mon, int day, int h, int mi, int se) {
  if (mon < 0 || day < 1 || day > 31 || h > 23 || mi > 59 || se > 60 || year < 1970) return -1;
  // Days from civil (proleptic Gregorian), without the local time zone.
  int y = year - (mon < 2 ? 1 : 0);
  int era = y / 400;
  int yoe = y - era * 400;
  int mp = (mon + 10) % 12;  // mon counts from 0; the formula wants March = 0
  int doy = (153 * mp + 2) / 5 + day - 1;
  int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  int64_t days = static_cast<int64_t>(era) * 146097 + doe - 719468;
  return static_cast<time_t>(days * 86400 + h * 3600 + mi * 60 + se);
}

time_t parse_http_date(std::string_view s) {
  int day, year, h, mi, se;
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
  if (s.size() == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' && s[16] == ' ' &&
      s.substr(25) == " GMT") {
    if (!digits(s.substr(5, 2), &day) || !digits(s.substr(12, 4), &year) ||
        !parse_hms(s.substr(17, 8), &h, &mi, &se))
      return -1;
    return make_time(year, month_index(s.substr(8, 3)), day, h, mi, se);
  }
  // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
  size_t comma = s.find(", ");
  if (comma != std::string_view::npos && s.size() == comma + 24 && s[comma + 4] == '-' &&
      s[comma + 8] == '-' && s.substr(s.size() - 4) == " GMT") {
    std::string_view d = s.substr(comma + 2);
    if (!digits(d.substr(0, 2), &day) || !digits(d.substr(7, 2), &year) ||
        !parse_hms(d.substr(10, 8), &h, &mi, &se))
      return -1;
    year += year < 70 ? 2000 : 1900;
    return make_time(year, month_index(d.substr(3, 3)), day, h, mi, se);
  }
  // asctime: "Sun Nov  6 08:49:37 1994"
  if (s.size() == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ') {
    std::string_view dd = s.substr(8, 2);
    if (dd[0] == ' ') dd.remove_prefix(1);
    if (!digits(dd, &day) || !digits(s.substr(20, 4), &year) ||
        !parse_hms(s.substr(11, 8), &h, &mi, &se))
      return -1;
    return make_time(year, month_index(s.substr(4, 3)), day, h, mi, se);
  }
  return -1;
}

}  // namespace baton

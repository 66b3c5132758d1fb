// Unit tests of src/core/clock.h: HTTP dates both ways and the cached formatted clock.
#include "core/clock.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

namespace baton {
namespace {

std::string http_date(time_t t) {
  char buf[32];
  size_t n = format_http_date(t, buf);
  EXPECT_EQ(n, 29u);
  EXPECT_EQ(strlen(buf), 29u);
  return std::string(buf, n);
}

TEST(FormatHttpDate, KnownValues) {
  EXPECT_EQ(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");  // RFC 9110's example
  EXPECT_EQ(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(http_date(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");
  EXPECT_EQ(http_date(2147483647), "Tue, 19 Jan 2038 03:14:07 GMT");
  EXPECT_EQ(http_date(4102444800), "Fri, 01 Jan 2100 00:00:00 GMT");
  EXPECT_EQ(http_date(253402300799), "Fri, 31 Dec 9999 23:59:59 GMT");
}

TEST(ParseHttpDate, ImfFixdate) {
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
  EXPECT_EQ(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
  EXPECT_EQ(parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"), 951782400);
  EXPECT_EQ(parse_http_date("Fri, 01 Jan 2100 00:00:00 GMT"), 4102444800);
}

TEST(ParseHttpDate, Rfc850) {
  EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
  EXPECT_EQ(parse_http_date("Wednesday, 09-Nov-05 08:49:37 GMT"), parse_http_date("Wed, 09 Nov 2005 08:49:37 GMT"));
  EXPECT_EQ(parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT"), 0);
}

TEST(ParseHttpDate, Asctime) {
  EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), 784111777);
  EXPECT_EQ(parse_http_date("Wed Nov 16 08:49:37 1994"), 784111777 + 10 * 86400);
}

TEST(ParseHttpDate, Invalid) {
  for (const char* s : {
           "",
           "yesterday",
           "Sun, 06 Nov 1994 08:49:37 UTC",
           "Sun, 06 Nov 1994 08:49:37 GMT ",
           " Sun, 06 Nov 1994 08:49:37 GMT",
           "Sun, 06 Nov 1994 08:49:37",
           "Sun, 6 Nov 1994 08:49:37 GMT",
           "Sun, 06 Foo 1994 08:49:37 GMT",
           "Sun, 06 nov 1994 08:49:37 GMT",
           "Sun, 00 Nov 1994 08:49:37 GMT",
           "Sun, 32 Nov 1994 08:49:37 GMT",
           "Sun, 06 Nov 1994 24:00:00 GMT",
           "Sun, 06 Nov 1994 08:60:00 GMT",
           "Sun, 06 Nov 1994 08:49:61 GMT",
           "Sun, 06 Nov 1994 08-49-37 GMT",
           "Sun, 06 Nov 19x4 08:49:37 GMT",
           "Sun, 06 Nov 1969 08:49:37 GMT",
           "Sunday, 06-Nov-1994 08:49:37 GMT",
           "Sunday, 06-Xyz-94 08:49:37 GMT",
           "Sunday, 06-Nov-94 08:49:37 UTC",
           "Sun Nov  6 08:49:37 94",
           "Sun Nov 6 08:49:37 1994",
           "Sun Nov  6 08:49:37 1994 GMT",
           "Sun Foo  6 08:49:37 1994",
       }) {
    EXPECT_EQ(parse_http_date(s), -1) << "\"" << s << "\"";
  }
}

TEST(HttpDate, RoundTrip) {
  for (time_t t : {time_t{0}, time_t{1}, time_t{59}, time_t{86399}, time_t{784111777}, time_t{951782399},
                   time_t{951782400}, time_t{978307200}, time_t{1709164800}, time_t{2147483647},
                   time_t{2147483648}, time_t{4102444799}, time_t{253402300799}}) {
    EXPECT_EQ(parse_http_date(http_date(t)), t) << http_date(t);
  }
  // Every day across a few years, leap years included.
  for (time_t t = 946684800; t < 946684800 + 5 * 366 * 86400; t += 86400 + 3661) {
    ASSERT_EQ(parse_http_date(http_date(t)), t) << http_date(t);
  }
}

// The clock reads CLOCK_REALTIME; time() may read a coarser clock that lags it by a tick, so that
// across a second boundary time() could say the second before the one the clock already shows.
double realtime() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

TEST(Clock, UpdateFormatsTheCurrentTime) {
  time_t before = static_cast<time_t>(realtime());
  Clock::update();
  time_t after = static_cast<time_t>(realtime());
  time_t now = Clock::now();
  EXPECT_GE(now, before);
  EXPECT_LE(now, after);
  EXPECT_GE(Clock::now_precise(), static_cast<double>(now));
  EXPECT_LT(Clock::now_precise(), static_cast<double>(now) + 1.0);

  std::string_view d = Clock::http_date();
  ASSERT_EQ(d.size(), 29u);
  EXPECT_TRUE(d.ends_with(" GMT")) << d;
  EXPECT_EQ(parse_http_date(d), now) << d;
  EXPECT_EQ(d, http_date(now));

  struct tm tm;
  gmtime_r(&now, &tm);
  char want[64];
  strftime(want, sizeof(want), "%d/%b/%Y:%H:%M:%S +0000", &tm);
  EXPECT_EQ(Clock::log_date(), want);
  strftime(want, sizeof(want), "%Y/%m/%d %H:%M:%S", &tm);
  EXPECT_EQ(Clock::err_date(), want);
  strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S+00:00", &tm);
  EXPECT_EQ(Clock::iso_date(), want);
}

TEST(Clock, RepeatedUpdatesStayConsistent) {
  for (int i = 0; i < 1000; i++) Clock::update();
  EXPECT_EQ(Clock::http_date(), http_date(Clock::now()));
  EXPECT_LT(Clock::now_precise() - realtime(), 0.001);
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

TEST(FormatHttpDate, AgreesWithTheCLibrary) {
  // The hand-written calendar against gmtime_r + strftime, over leap days, century and 400-year
  // boundaries, and pseudo-random times from 1970 to 9999.
  std::vector<time_t> times = {0, 86399, 86400, 951782400 /* 2000-02-29 */, 951868800, 4107542400 /* 2100-03-01 */,
                               4107456000, 253402300799 /* 9999-12-31 23:59:59 */, 1700000000};
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 20000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    times.push_back(static_cast<time_t>(x % 253402300800ull));
  }
  for (time_t t : times) {
    char got[32], want[64];
    struct tm tm;
    ASSERT_NE(gmtime_r(&t, &tm), nullptr);
    strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    ASSERT_EQ(format_http_date(t, got), 29u);
    ASSERT_STREQ(got, want) << "t = " << t;
  }
}

}  // namespace
}  // namespace baton

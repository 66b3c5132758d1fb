// Unit tests of src/http/http_range.h: the Range header against a file of known size.
#include "http/http_range.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace baton::http {
namespace {

std::vector<ByteRange> ranges;

RangeResult parse(std::string_view header, uint64_t size) { return parse_range(header, size, &ranges); }

void expect_ranges(std::vector<std::pair<uint64_t, uint64_t>> want) {
  ASSERT_EQ(ranges.size(), want.size());
  for (size_t i = 0; i < want.size(); i++) {
    EXPECT_EQ(ranges[i].first, want[i].first) << "range " << i;
    EXPECT_EQ(ranges[i].last, want[i].second) << "range " << i;
  }
}

TEST(ParseRange, Single) {
  ASSERT_EQ(parse("bytes=0-9", 100), RangeResult::kOk);
  expect_ranges({{0, 9}});
  EXPECT_EQ(ranges[0].length(), 10u);
  ASSERT_EQ(parse("bytes=5-5", 100), RangeResult::kOk);
  expect_ranges({{5, 5}});
  EXPECT_EQ(ranges[0].length(), 1u);
  ASSERT_EQ(parse("bytes=0-99", 100), RangeResult::kOk);
  expect_ranges({{0, 99}});
}

TEST(ParseRange, Suffix) {
  ASSERT_EQ(parse("bytes=-10", 100), RangeResult::kOk);
  expect_ranges({{90, 99}});
  ASSERT_EQ(parse("bytes=-100", 100), RangeResult::kOk);
  expect_ranges({{0, 99}});
  ASSERT_EQ(parse("bytes=-500", 100), RangeResult::kOk);  // longer than the file: all of it
  expect_ranges({{0, 99}});
}

TEST(ParseRange, OpenEnded) {
  ASSERT_EQ(parse("bytes=90-", 100), RangeResult::kOk);
  expect_ranges({{90, 99}});
  ASSERT_EQ(parse("bytes=0-", 1), RangeResult::kOk);
  expect_ranges({{0, 0}});
}

TEST(ParseRange, LastIsClampedToSizeMinusOne) {
  ASSERT_EQ(parse("bytes=50-1000", 100), RangeResult::kOk);
  expect_ranges({{50, 99}});
  ASSERT_EQ(parse("bytes=0-18446744073709551615", 100), RangeResult::kOk);
  expect_ranges({{0, 99}});
}

TEST(ParseRange, UnitIsCaseInsensitiveAndSpacesAreAllowed) {
  ASSERT_EQ(parse("Bytes=0-1", 100), RangeResult::kOk);
  expect_ranges({{0, 1}});
  ASSERT_EQ(parse("  bytes=0-1 , 4-5  ", 100), RangeResult::kOk);
  expect_ranges({{0, 1}, {4, 5}});
}

TEST(ParseRange, Multiple) {
  ASSERT_EQ(parse("bytes=0-0,-1", 100), RangeResult::kOk);
  expect_ranges({{0, 0}, {99, 99}});
  ASSERT_EQ(parse("bytes=10-19,30-39,90-", 100), RangeResult::kOk);
  expect_ranges({{10, 19}, {30, 39}, {90, 99}});
  ASSERT_EQ(parse("bytes=0-1,,4-5,", 100), RangeResult::kOk);  // empty list elements are allowed
  expect_ranges({{0, 1}, {4, 5}});
}

TEST(ParseRange, Unsatisfiable) {
  EXPECT_EQ(parse("bytes=100-", 100), RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse("bytes=100-200", 100), RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse("bytes=1000-", 100), RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse("bytes=-0", 100), RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse("bytes=200-300,100-", 100), RangeResult::kUnsatisfiable);
}

TEST(ParseRange, UnsatisfiableRangesAmongGoodOnesAreDropped) {
  ASSERT_EQ(parse("bytes=200-300,0-1", 100), RangeResult::kOk);
  expect_ranges({{0, 1}});
}

TEST(ParseRange, InvalidSyntaxIsIgnored) {
  for (const char* h : {"", "bytes", "bytes=", "bytes=,", "items=0-1", "bytes 0-1", "bytes=abc",
                        "bytes=1", "bytes=a-b", "bytes=1-x", "bytes=-", "bytes=--1", "bytes=0-1,x",
                        "bytes=+1-2", "bytes=1-2-3", "bytes=0x10-20"}) {
    EXPECT_EQ(parse(h, 100), RangeResult::kIgnore) << "\"" << h << "\"";
  }
}

TEST(ParseRange, LastBeforeFirstIsIgnored) {
  EXPECT_EQ(parse("bytes=5-2", 100), RangeResult::kIgnore);
  EXPECT_EQ(parse("bytes=0-1,5-2", 100), RangeResult::kIgnore);  // one bad spec spoils the header
}

std::string many_ranges(size_t n) {
  std::string h = "bytes=";
  for (size_t i = 0; i < n; i++) {
    if (i) h += ",";
    h += std::to_string(i * 2) + "-" + std::to_string(i * 2);
  }
  return h;
}

TEST(ParseRange, TooManyRangesAreIgnored) {
  ASSERT_EQ(parse(many_ranges(kMaxRanges), 1000), RangeResult::kOk);
  EXPECT_EQ(ranges.size(), kMaxRanges);
  EXPECT_EQ(parse(many_ranges(kMaxRanges + 1), 1000), RangeResult::kIgnore);
}

TEST(ParseRange, OverlappingPileIsIgnored) {
  // Together more bytes than the file has: the whole file is cheaper.
  EXPECT_EQ(parse("bytes=0-99,0-99", 100), RangeResult::kIgnore);
  EXPECT_EQ(parse("bytes=-60,0-59", 100), RangeResult::kIgnore);
}

TEST(ParseRange, ZeroSizeFile) {
  EXPECT_EQ(parse("bytes=0-", 0), RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse("bytes=0-0", 0), RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse("bytes=-5", 0), RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse("bytes=x", 0), RangeResult::kIgnore);
}

TEST(ParseRange, PreviousRangesAreNotKept) {
  ranges = {{1, 2}, {3, 4}};
  ASSERT_EQ(parse("bytes=7-8", 100), RangeResult::kOk);
  expect_ranges({{7, 8}});
}

}  // namespace
}  // namespace baton::http

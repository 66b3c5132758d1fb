// Unit tests of src/core/strings.h.
#include "core/strings.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace baton {
namespace {

TEST(Strings, AsciiLower) {
  EXPECT_EQ(ascii_lower('A'), 'a');
  EXPECT_EQ(ascii_lower('Z'), 'z');
  EXPECT_EQ(ascii_lower('a'), 'a');
  EXPECT_EQ(ascii_lower('@'), '@');
  EXPECT_EQ(ascii_lower('['), '[');
  EXPECT_EQ(ascii_lower('\xC4'), '\xC4');  // no locale folding of non-ASCII bytes
}

TEST(Strings, Iequals) {
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_TRUE(iequals("KEEP-ALIVE", "keep-alive"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("close", "closed"));
  EXPECT_FALSE(iequals("closed", "close"));
  EXPECT_FALSE(iequals("abc", "abd"));
  EXPECT_FALSE(iequals("@", "`"));  // 0x40 and 0x60 differ by the case bit but are not letters
  EXPECT_FALSE(iequals("[", "{"));
  EXPECT_FALSE(iequals(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

TEST(Strings, IstartsWith) {
  EXPECT_TRUE(istarts_with("Bytes=0-1", "bytes="));
  EXPECT_TRUE(istarts_with("abc", ""));
  EXPECT_FALSE(istarts_with("byte", "bytes"));
  EXPECT_FALSE(istarts_with("items=0-1", "bytes="));
}

TEST(Strings, Trim) {
  EXPECT_EQ(trim("  a b \t"), "a b");
  EXPECT_EQ(trim("\t\tvalue"), "value");
  EXPECT_EQ(trim("value\r\n"), "value");
  EXPECT_EQ(trim("   "), "");
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(trim("x"), "x");
  EXPECT_EQ(trim(" inner  space "), "inner  space");
}

std::vector<std::string> words(std::string_view s) {
  std::vector<std::string> out;
  for (std::string_view w : split_ws(s)) out.emplace_back(w);
  return out;
}

TEST(Strings, SplitWs) {
  using V = std::vector<std::string>;
  EXPECT_EQ(words("a b c"), (V{"a", "b", "c"}));
  EXPECT_EQ(words("  a \t b\t\tc  "), (V{"a", "b", "c"}));
  EXPECT_EQ(words("single"), (V{"single"}));
  EXPECT_EQ(words(""), V{});
  EXPECT_EQ(words(" \t "), V{});
  EXPECT_EQ(words("$uri $uri/ =404"), (V{"$uri", "$uri/", "=404"}));
}

TEST(Strings, ParseUint) {
  uint64_t v = 0;
  ASSERT_TRUE(parse_uint("0", &v));
  EXPECT_EQ(v, 0u);
  ASSERT_TRUE(parse_uint("12345", &v));
  EXPECT_EQ(v, 12345u);
  ASSERT_TRUE(parse_uint("007", &v));
  EXPECT_EQ(v, 7u);
  ASSERT_TRUE(parse_uint("18446744073709551615", &v));
  EXPECT_EQ(v, UINT64_MAX);
  ASSERT_TRUE(parse_uint("0000000000000000000000000000018446744073709551615", &v));
  EXPECT_EQ(v, UINT64_MAX);
}

TEST(Strings, ParseUintRejects) {
  uint64_t v = 42;
  EXPECT_FALSE(parse_uint("18446744073709551616", &v));  // UINT64_MAX + 1
  EXPECT_FALSE(parse_uint("18446744073709551620", &v));
  EXPECT_FALSE(parse_uint("99999999999999999999", &v));
  EXPECT_FALSE(parse_uint("184467440737095516150", &v));
  EXPECT_FALSE(parse_uint("", &v));
  EXPECT_FALSE(parse_uint("-1", &v));
  EXPECT_FALSE(parse_uint("+1", &v));
  EXPECT_FALSE(parse_uint(" 1", &v));
  EXPECT_FALSE(parse_uint("1 ", &v));
  EXPECT_FALSE(parse_uint("1a", &v));
  EXPECT_FALSE(parse_uint("0x10", &v));
  EXPECT_FALSE(parse_uint("1.0", &v));
  EXPECT_EQ(v, 42u);  // untouched on failure
}

TEST(Strings, AppendUint) {
  std::string s;
  append_uint(&s, 0);
  EXPECT_EQ(s, "0");
  s = "len=";
  append_uint(&s, 1234567);
  EXPECT_EQ(s, "len=1234567");
  s.clear();
  append_uint(&s, UINT64_MAX);
  EXPECT_EQ(s, "18446744073709551615");
  for (uint64_t v : {uint64_t{9}, uint64_t{10}, uint64_t{99}, uint64_t{100}, uint64_t{1} << 32}) {
    s.clear();
    append_uint(&s, v);
    EXPECT_EQ(s, std::to_string(v));
  }
}

TEST(Strings, WriteUint) {
  char buf[32];
  char* end = write_uint(buf, 18446744073709551615ull);
  EXPECT_EQ(std::string(buf, end), "18446744073709551615");
  end = write_uint(buf, 5);
  EXPECT_EQ(end - buf, 1);
  EXPECT_EQ(buf[0], '5');
}

}  // namespace
}  // namespace baton

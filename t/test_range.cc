// Range requests: single, suffix and open ranges, multipart/byteranges, 416, If-Range.
#include <string>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr time_t kMtime = 1700000000;
const std::string kEtag = "\"6553f100-3e8\"";  // mtime 0x6553f100, size 1000 = 0x3e8
const std::string kLastModified = "Tue, 14 Nov 2023 22:13:20 GMT";

std::string thousand_bytes() {
  std::string s;
  for (int i = 0; s.size() < 1000; i++) s += std::to_string(i % 10);
  return s;
}

struct Part {
  Headers headers;
  std::string body;
};

// Splits a multipart/byteranges body. Returns false (with a message) when it is malformed.
bool parse_multipart(const std::string& body, const std::string& boundary, std::vector<Part>* parts,
                     std::string* why) {
  const std::string delim = "--" + boundary;
  size_t pos = body.find(delim);
  if (pos == std::string::npos) {
    *why = "no first boundary";
    return false;
  }
  pos += delim.size();
  while (true) {
    if (body.compare(pos, 2, "--") == 0) return true;  // closing delimiter
    if (body.compare(pos, 2, "\r\n") != 0) {
      *why = "boundary not followed by CRLF at " + std::to_string(pos);
      return false;
    }
    pos += 2;
    size_t head_end = body.find("\r\n\r\n", pos);
    if (head_end == std::string::npos) {
      *why = "part without header end";
      return false;
    }
    Part part;
    std::string_view head(body.data() + pos, head_end - pos);
    while (!head.empty()) {
      size_t eol = head.find("\r\n");
      std::string_view line = head.substr(0, eol);
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) {
        *why = "bad part header line: " + std::string(line);
        return false;
      }
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      part.headers.emplace(std::string(line.substr(0, colon)), std::string(value));
      if (eol == std::string_view::npos) break;
      head.remove_prefix(eol + 2);
    }
    size_t data_start = head_end + 4;
    size_t next = body.find("\r\n" + delim, data_start);
    if (next == std::string::npos) {
      *why = "part without following boundary";
      return false;
    }
    part.body = body.substr(data_start, next - data_start);
    parts->push_back(std::move(part));
    pos = next + 2 + delim.size();
  }
}

class Range : public ::testing::Test {
 protected:
  void SetUp() override {
    content = thousand_bytes();
    s.write_file("html/data.txt", content);
    s.set_mtime("html/data.txt", kMtime);
    s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"));
    ASSERT_TRUE(s.start());
    port = s.port();
  }

  Response range(const std::string& spec, const std::string& extra = "") {
    return get(port, "/data.txt", "Range: " + spec + "\r\n" + extra);
  }

  void expect_single(const Response& r, size_t first, size_t last) {
    EXPECT_EQ(r.status, 206) << r;
    EXPECT_EQ(r.reason, "Partial Content");
    EXPECT_EQ(r.header("Content-Range"),
              "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/1000")
        << r;
    EXPECT_EQ(r.header("Content-Length"), std::to_string(last - first + 1)) << r;
    EXPECT_EQ(r.header("Content-Type"), "text/plain") << r;
    EXPECT_EQ(r.body, content.substr(first, last - first + 1));
    EXPECT_TRUE(has_standard_headers(r));
  }

  BatonServer s;
  std::string content;
  int port = 0;
};

}  // namespace

TEST_F(Range, SingleRange) { expect_single(range("bytes=0-9"), 0, 9); }

TEST_F(Range, MiddleRange) { expect_single(range("bytes=100-199"), 100, 199); }

TEST_F(Range, SuffixRange) { expect_single(range("bytes=-100"), 900, 999); }

TEST_F(Range, OpenRange) { expect_single(range("bytes=990-"), 990, 999); }

TEST_F(Range, EndBeyondSizeIsClamped) { expect_single(range("bytes=995-5000"), 995, 999); }

TEST_F(Range, SuffixLargerThanFileIsWholeFile) {
  Response r = range("bytes=-5000");
  // The whole representation, as a 206 of everything or as a plain 200.
  if (r.status == 206) {
    EXPECT_EQ(r.header("Content-Range"), "bytes 0-999/1000") << r;
  } else {
    EXPECT_EQ(r.status, 200) << r;
  }
  EXPECT_EQ(r.body, content);
}

TEST_F(Range, MultipleRanges) {
  Response r = range("bytes=0-4,10-14,-3");
  ASSERT_EQ(r.status, 206) << r;
  std::string ct = r.header("Content-Type");
  const std::string prefix = "multipart/byteranges; boundary=";
  ASSERT_EQ(ct.rfind(prefix, 0), 0u) << r;
  std::string boundary = ct.substr(prefix.size());
  if (boundary.size() >= 2 && boundary.front() == '"' && boundary.back() == '"')
    boundary = boundary.substr(1, boundary.size() - 2);
  ASSERT_FALSE(boundary.empty());
  EXPECT_EQ(r.header("Content-Length"), std::to_string(r.body.size())) << r;
  EXPECT_FALSE(r.has("Content-Range")) << r;

  std::vector<Part> parts;
  std::string why;
  ASSERT_TRUE(parse_multipart(r.body, boundary, &parts, &why)) << why << "\n" << r.body;
  ASSERT_EQ(parts.size(), 3u) << r.body;
  const char* ranges[] = {"bytes 0-4/1000", "bytes 10-14/1000", "bytes 997-999/1000"};
  const std::string data[] = {content.substr(0, 5), content.substr(10, 5), content.substr(997, 3)};
  for (size_t i = 0; i < 3; i++) {
    EXPECT_EQ(parts[i].headers.find("Content-Range") != parts[i].headers.end()
                  ? parts[i].headers.find("Content-Range")->second
                  : "",
              ranges[i])
        << "part " << i;
    auto type = parts[i].headers.find("Content-Type");
    EXPECT_TRUE(type != parts[i].headers.end() && type->second == "text/plain") << "part " << i;
    EXPECT_EQ(parts[i].body, data[i]) << "part " << i;
  }
  // Nothing after the closing delimiter but an optional CRLF.
  std::string closing = "--" + boundary + "--";
  size_t end = r.body.rfind(closing);
  ASSERT_NE(end, std::string::npos);
  std::string tail = r.body.substr(end + closing.size());
  EXPECT_TRUE(tail.empty() || tail == "\r\n") << "trailing bytes after the closing boundary";
}

TEST_F(Range, UnsatisfiableRange) {
  Response r = range("bytes=2000-3000");
  EXPECT_TRUE(is_error_page(r, 416, "Range Not Satisfiable"));
  EXPECT_EQ(r.header("Content-Range"), "bytes */1000") << r;
}

TEST_F(Range, UnsatisfiableSuffixZero) {
  Response r = range("bytes=-0");
  EXPECT_EQ(r.status, 416) << r;
  EXPECT_EQ(r.header("Content-Range"), "bytes */1000") << r;
}

TEST_F(Range, UnitOtherThanBytesIgnored) {
  Response r = range("items=0-9");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, content);
}

TEST_F(Range, IfRangeMatchingEtag) {
  expect_single(range("bytes=0-9", "If-Range: " + kEtag + "\r\n"), 0, 9);
}

TEST_F(Range, IfRangeMatchingDate) {
  expect_single(range("bytes=0-9", "If-Range: " + kLastModified + "\r\n"), 0, 9);
}

TEST_F(Range, IfRangeNotMatchingEtag) {
  Response r = range("bytes=0-9", "If-Range: \"0-0\"\r\n");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Length"), "1000");
  EXPECT_FALSE(r.has("Content-Range")) << r;
  EXPECT_EQ(r.body, content);
}

TEST_F(Range, IfRangeNotMatchingDate) {
  Response r = range("bytes=0-9", "If-Range: Mon, 13 Nov 2023 22:13:20 GMT\r\n");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, content);
}

TEST_F(Range, RangesOnKeepAliveConnection) {
  Client c(port);
  Response a = c.exchange(req("GET", "/data.txt", "Range: bytes=0-1,3-4\r\n"));
  EXPECT_EQ(a.status, 206) << a;
  Response b = c.exchange(req("GET", "/data.txt", "Range: bytes=5-9\r\n"));
  EXPECT_EQ(b.status, 206) << b;
  EXPECT_EQ(b.body, content.substr(5, 5));
  Response d = c.exchange(req("GET", "/data.txt"));
  EXPECT_EQ(d.status, 200) << d;
  EXPECT_EQ(d.body, content);
}

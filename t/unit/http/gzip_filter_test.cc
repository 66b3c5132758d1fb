// Unit tests of the gzip filter of streamed answers (src/http/http_gzip_filter.cc) in front of a
// recording stream: which heads it compresses and how it rewrites them, that the body inflates to
// what was written whatever the pieces and the length, that a flush makes everything written so far
// decodable, and that it stops at once when the client's stream is gone.
#include "http/http_gzip_filter.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>
#include <vector>

#include "http/http_config.h"
#include "http/http_request.h"

namespace baton::http {
namespace {

// A client's stream that keeps what it is given.
class Recorder final : public ResponseStream {
 public:
  void start(const ResponseStart& r) override {
    started++;
    status = r.status;
    content_length = r.content_length;
    headers_at = r.headers;
    for (size_t i = 0; i < r.header_count; i++)
      headers.emplace_back(std::string(r.headers[i].name), std::string(r.headers[i].value));
  }
  bool write(const char* data, size_t len) override {
    writes++;
    if (!alive) return false;
    body.append(data, len);
    return true;
  }
  size_t queued() const override { return 12345; }
  void push() override { pushes++; }
  void finish() override { finished++; }
  void fail(int s) override { failed = s; }
  void abort() override { aborted++; }
  void resume_body() override {}
  uint64_t body_bytes_sent() const override { return body.size(); }

  std::string header(const std::string& name) const {
    for (const auto& [n, v] : headers)
      if (n == name) return v;
    return "<none>";
  }
  size_t count(const std::string& name) const {
    size_t k = 0;
    for (const auto& h : headers) k += h.first == name;
    return k;
  }

  bool alive = true;
  int started = 0, writes = 0, pushes = 0, finished = 0, aborted = 0, failed = 0;
  int status = 0;
  int64_t content_length = 0;
  const Header* headers_at = nullptr;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// The gzip stream in `in` inflated; with `whole`, "<bad>" unless it is one whole stream.
std::string inflate_all(const std::string& in, bool whole = true) {
  z_stream z{};
  if (inflateInit2(&z, 16 + 15) != Z_OK) return "<bad>";
  std::string out;
  char buf[65536];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_SYNC_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
    if (rc == Z_BUF_ERROR && !whole) rc = Z_STREAM_END;
  }
  bool ok = rc == Z_STREAM_END && (!whole || z.avail_in == 0);
  inflateEnd(&z);
  return ok ? out : "<bad>";
}

std::string text_of(size_t n) {
  std::string s;
  for (size_t i = 0; s.size() < n; i++) s += "line " + std::to_string(i) + " of a text\n";
  s.resize(n);
  return s;
}

class GzipFilterTest : public ::testing::Test {
 protected:
  GzipFilterTest() {
    s.gzip = true;
    s.gzip_types = {"text/html", "text/plain"};
    s.gzip_vary = true;
    s.gzip_min_length = 20;
  }
  ResponseStart head(int status, int64_t length, const std::vector<Header>& hs, bool no_body = false) {
    fields = hs;
    ResponseStart r;
    r.status = status;
    r.headers = fields.data();
    r.header_count = fields.size();
    r.content_length = length;
    r.no_body = no_body;
    return r;
  }
  Settings s;
  Recorder out;
  std::vector<Header> fields;
};

TEST_F(GzipFilterTest, CompressesAndRewritesTheHead) {
  GzipFilter f(&out, s, true);
  const std::string text = text_of(300000);
  f.start(head(200, static_cast<int64_t>(text.size()),
               {{"Content-Type", "text/plain; charset=utf-8"}, {"ETag", "\"abc\""}, {"Accept-Ranges", "bytes"},
                {"X-Other", "1"}}));
  EXPECT_TRUE(f.compressing());
  EXPECT_EQ(out.content_length, -1);
  EXPECT_EQ(out.header("ETag"), "W/\"abc\"");
  EXPECT_EQ(out.count("Accept-Ranges"), 0u);
  EXPECT_EQ(out.header("Content-Encoding"), "gzip");
  EXPECT_EQ(out.header("Vary"), "Accept-Encoding");
  EXPECT_EQ(out.header("X-Other"), "1");
  EXPECT_EQ(out.header("Content-Type"), "text/plain; charset=utf-8");
  // Odd pieces; the client's stream decides back-pressure.
  for (size_t at = 0; at < text.size(); at += 7777) ASSERT_TRUE(f.write(text.data() + at, std::min<size_t>(7777, text.size() - at)));
  EXPECT_EQ(f.queued(), 12345u);
  EXPECT_LT(out.body.size(), text.size() / 4);
  f.finish();
  EXPECT_FALSE(f.compressing());
  EXPECT_EQ(out.finished, 1);
  EXPECT_EQ(f.body_bytes_sent(), out.body.size());
  EXPECT_TRUE(inflate_all(out.body) == text);
}

TEST_F(GzipFilterTest, EveryLengthInflatesToWhatWasWritten) {
  // Short known lengths take a smaller window; lengths not known the full one.
  for (size_t n : {0, 1, 20, 250, 251, 500, 1000, 5000, 16000, 16123, 40000, 100000}) {
    for (bool known : {true, false}) {
      Recorder rec;
      Settings z = s;
      z.gzip_min_length = 0;
      GzipFilter f(&rec, z, true);
      std::string data = text_of(n);
      for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>(data[i] ^ (i * 131 >> 3));  // less regular
      f.start(head(200, known ? static_cast<int64_t>(n) : -1, {{"Content-Type", "text/html"}}));
      ASSERT_TRUE(f.compressing()) << n;
      ASSERT_TRUE(f.write(data.data(), data.size()));
      f.finish();
      EXPECT_TRUE(inflate_all(rec.body) == data) << n << (known ? " known" : " not known");
    }
  }
}

TEST_F(GzipFilterTest, AFlushMakesWhatWasWrittenDecodable) {
  GzipFilter f(&out, s, true);
  f.start(head(200, -1, {{"Content-Type", "text/html"}}));
  const std::string a = text_of(1000);
  ASSERT_TRUE(f.write(a.data(), a.size()));
  ASSERT_TRUE(f.flush());
  EXPECT_EQ(inflate_all(out.body, false), a);
  size_t before = out.body.size();
  ASSERT_TRUE(f.flush());  // nothing new: nothing written
  EXPECT_EQ(out.body.size(), before);
  ASSERT_TRUE(f.write("tail", 4));
  f.finish();
  EXPECT_EQ(inflate_all(out.body), a + "tail");
}

TEST_F(GzipFilterTest, PassesThroughWhatItDoesNotCompress) {
  struct Case {
    const char* why;
    int status;
    int64_t length;
    std::vector<Header> hs;
    bool no_body;
    bool client_ok;
    bool vary;
  };
  const std::vector<Case> cases = {
      {"a type not listed", 200, 1000, {{"Content-Type", "image/png"}}, false, true, false},
      {"no type", 200, 1000, {}, false, true, false},
      {"already encoded", 200, 1000, {{"Content-Type", "text/html"}, {"Content-Encoding", "br"}}, false, true, false},
      {"too short", 200, 19, {{"Content-Type", "text/html"}}, false, true, false},
      {"a 206", 206, 1000, {{"Content-Type", "text/html"}}, false, true, false},
      {"a 500", 500, 1000, {{"Content-Type", "text/html"}}, false, true, false},
      {"no body (HEAD, 204, 304)", 200, 1000, {{"Content-Type", "text/html"}}, true, true, false},
      {"a 101", 101, -1, {{"Upgrade", "websocket"}}, false, true, false},
      {"a client that may not have it", 200, 1000, {{"Content-Type", "text/html"}, {"ETag", "\"e\""}}, false, false, true},
      {"Vary names it already", 200, 1000, {{"Content-Type", "text/html"}, {"Vary", "Cookie, accept-encoding"}}, false, false, false},
      {"Vary: *", 404, 1000, {{"Content-Type", "text/html"}, {"Vary", "*"}}, false, false, false},
  };
  for (const Case& c : cases) {
    Recorder rec;
    GzipFilter f(&rec, s, c.client_ok);
    ResponseStart r = head(c.status, c.length, c.hs, c.no_body);
    f.start(r);
    EXPECT_FALSE(f.compressing()) << c.why;
    EXPECT_EQ(rec.content_length, c.length) << c.why;
    EXPECT_EQ(rec.count("Content-Encoding"), c.hs.size() > 1 && c.hs[1].name == "Content-Encoding" ? 1u : 0u) << c.why;
    EXPECT_EQ(rec.header("Vary") == "Accept-Encoding", c.vary) << c.why;
    if (c.vary) {
      EXPECT_EQ(rec.header("ETag"), "\"e\"") << c.why;
    } else {
      EXPECT_EQ(rec.headers_at, fields.data()) << c.why << ": the head was copied for nothing";
    }
    ASSERT_TRUE(f.write("plain", 5));
    f.finish();
    EXPECT_EQ(rec.body, "plain") << c.why;
    EXPECT_EQ(rec.finished, 1);
  }
  // gzip_vary off: no Vary; gzip off: nothing at all.
  s.gzip_vary = false;
  GzipFilter f(&out, s, false);
  f.start(head(200, 1000, {{"Content-Type", "text/html"}}));
  EXPECT_EQ(out.count("Vary"), 0u);
  Recorder off;
  s.gzip = false;
  GzipFilter g(&off, s, true);
  g.start(head(200, 1000, {{"Content-Type", "text/html"}}));
  EXPECT_FALSE(g.compressing());
  EXPECT_EQ(off.count("Content-Encoding"), 0u);
}

TEST_F(GzipFilterTest, AStreamThatIsGoneStopsIt) {
  GzipFilter f(&out, s, true);
  f.start(head(200, -1, {{"Content-Type", "text/html"}}));
  std::string data(1 << 20, '\0');
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  out.alive = false;
  EXPECT_FALSE(f.write(data.data(), data.size()));
  EXPECT_EQ(out.writes, 1);  // no more after the first refusal
  EXPECT_FALSE(f.compressing());  // zlib's state is let go at once
  EXPECT_TRUE(f.write("x", 1) == false);  // passes on to the stream, which refuses
  f.abort();
  EXPECT_EQ(out.aborted, 1);
}

TEST_F(GzipFilterTest, AbortLetsZlibGo) {
  GzipFilter f(&out, s, true);
  f.start(head(200, -1, {{"Content-Type", "text/html"}}));
  ASSERT_TRUE(f.write("some bytes", 10));
  f.abort();
  EXPECT_FALSE(f.compressing());
  EXPECT_EQ(out.aborted, 1);
  EXPECT_EQ(out.finished, 0);
  // A filter let go of in the middle (its handler deleted after the client went away): its
  // destructor ends zlib (a sanitizer build reports the state as a leak otherwise).
  {
    Recorder rec;
    GzipFilter g(&rec, s, true);
    g.start(head(200, -1, {{"Content-Type", "text/html"}}));
    ASSERT_TRUE(g.write("some more bytes", 15));
    EXPECT_TRUE(g.compressing());
  }
  // fail() before start() passes on.
  Recorder rec;
  GzipFilter g(&rec, s, true);
  g.fail(502);
  EXPECT_EQ(rec.failed, 502);
}

}  // namespace
}  // namespace baton::http

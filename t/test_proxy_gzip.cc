// gzip of proxied responses, compressed as they stream: what a client that accepts gzip gets from a
// real upstream (decompressed and compared with the upstream's bytes, chunked, the head's fields),
// what is never compressed (nginx's rules), that the access log counts the compressed bytes, that a
// slow client still holds the upstream back in bounded memory, and that what came before the
// upstream paused is not held back in the compressor.
#include <zlib.h>

#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "lib/proxy_util.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;
const char* kGzip = "Accept-Encoding: gzip, deflate, br\r\n";

// Inflates one gzip stream given in pieces; each piece of output goes to `sink`.
class Inflater {
 public:
  explicit Inflater(std::function<void(std::string_view)> sink) : sink_(std::move(sink)) {
    ok_ = inflateInit2(&z_, 16 + 15) == Z_OK;
  }
  ~Inflater() { inflateEnd(&z_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // false once the input is not (the start of) one gzip stream, or goes on after its end.
  bool feed(std::string_view in) {
    if (!ok_ || (ended_ && !in.empty())) return ok_ = false;
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    char buf[65536];
    while (z_.avail_in > 0 && !ended_) {
      z_.next_out = reinterpret_cast<Bytef*>(buf);
      z_.avail_out = sizeof(buf);
      int rc = inflate(&z_, Z_SYNC_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END) return ok_ = false;
      size_t n = sizeof(buf) - z_.avail_out;
      if (n > 0) sink_(std::string_view(buf, n));
      ended_ = rc == Z_STREAM_END;
      if (rc == Z_OK && n == 0 && z_.avail_in > 0 && z_.avail_out > 0) return ok_ = false;
    }
    if (ended_ && z_.avail_in > 0) return ok_ = false;
    return true;
  }
  bool ended() const { return ended_; }

 private:
  std::function<void(std::string_view)> sink_;
  z_stream z_{};
  bool ok_ = false;
  bool ended_ = false;
};

// A whole gzip body inflated; "<not gzip>" when it is not one whole gzip stream.
std::string gunzip(const std::string& in) {
  std::string out;
  Inflater z([&](std::string_view piece) { out.append(piece); });
  if (!z.feed(in) || !z.ended()) return "<not gzip>";
  return out;
}

std::string text_of(size_t n) {
  std::string s;
  for (size_t i = 0; s.size() < n; i++) s += "line " + std::to_string(i) + " of a text that compresses well\n";
  s.resize(n);
  return s;
}

// Reads a response head from `c`, "" when no complete head arrives; the body bytes that came with it
// go to `rest`.
std::string read_head(Client& c, std::string* rest) {
  std::string got;
  size_t end;
  while ((end = got.find("\r\n\r\n")) == std::string::npos) {
    std::string more = c.read_some(65536);
    if (more.empty() || got.size() > 65536) return "";
    got += more;
  }
  *rest = got.substr(end + 4);
  return got.substr(0, end + 4);
}

// Reads a chunked body from `c` (its first bytes in `buf`), handing each piece of data to `on_data`
// as it arrives. true once the last chunk and the end of the trailer have come; else `why` says what
// went wrong.
bool read_chunked(Client& c, std::string buf, const std::function<void(std::string_view)>& on_data, std::string* why) {
  auto more = [&] {
    std::string m = c.read_some(1 << 20);
    if (m.empty()) *why = "the body ended early: " + c.error();
    buf += m;
    return !m.empty();
  };
  auto line = [&](std::string* out) {
    size_t e;
    while ((e = buf.find("\r\n")) == std::string::npos)
      if (!more()) return false;
    *out = buf.substr(0, e);
    buf.erase(0, e + 2);
    return true;
  };
  for (;;) {
    std::string size_line;
    if (!line(&size_line)) return false;
    char* end = nullptr;
    uint64_t size = std::strtoull(size_line.c_str(), &end, 16);
    if (size_line.empty() || *end != '\0') {
      *why = "bad chunk size line \"" + size_line + "\"";
      return false;
    }
    if (size == 0) {
      std::string trailer;
      if (!line(&trailer)) return false;
      if (!trailer.empty()) *why = "a trailer: " + trailer;
      return trailer.empty();
    }
    while (size > 0) {
      if (buf.empty() && !more()) return false;
      size_t take = static_cast<size_t>(std::min<uint64_t>(size, buf.size()));
      on_data(std::string_view(buf).substr(0, take));
      buf.erase(0, take);
      size -= take;
    }
    while (buf.size() < 2)
      if (!more()) return false;
    if (buf.compare(0, 2, "\r\n") != 0) {
      *why = "no CRLF after a chunk";
      return false;
    }
    buf.erase(0, 2);
  }
}

class ProxyGzip : public ::testing::Test {
 public:
  static constexpr const char* kGzipConf =
      "gzip = on\ngzip_types = application/octet-stream text/plain\ngzip_vary = on\ngzip_min_length = 64\n";

  void start(std::string_view location_extra = kGzipConf) {
    ASSERT_TRUE(up.start()) << up.error();
    s.set_config(proxy_conf({up.address()}, "", location_extra, "client_max_body_size = 8m\n"));
    limit_sanitizer_quarantine(s);
    ASSERT_TRUE(s.start());
  }

  // The upstream's content compressed and sent back: each of the targets answers upstream_content(0, n).
  void expect_compressed_content(const std::string& target, uint64_t n) {
    Response r = get(s.port(), target, kGzip);
    ASSERT_EQ(r.status, 200) << target << "\n" << r;
    EXPECT_EQ(r.header("Content-Encoding"), "gzip") << target << "\n" << r;
    EXPECT_EQ(r.header("Transfer-Encoding"), "chunked") << target;
    EXPECT_FALSE(r.has("Content-Length")) << target << "\n" << r;
    EXPECT_EQ(r.header("Content-Type"), "application/octet-stream") << target;
    EXPECT_TRUE(same_bytes(gunzip(r.body), upstream_content(0, n))) << target;
  }

  TestUpstream up;
  BatonServer s;
};

// ---- what is compressed, and how ----

TEST_F(ProxyGzip, LargeBodiesAreCompressedAsTheyStreamAndDecompressToTheUpstreamBytes) {
  start();
  // Chunked from the upstream, with a Content-Length, and ended by the upstream's close.
  expect_compressed_content("/chunked/2500000", 2500000);
  expect_compressed_content("/size/3000000", 3000000);
  expect_compressed_content("/close/1500000", 1500000);
  // Several on one kept-alive connection, each a whole gzip stream of its own.
  Client c(s.port());
  for (uint64_t n : {100000u, 70000u, 1000u}) {
    Response r = c.exchange(req("GET", "/size/" + std::to_string(n), kGzip));
    EXPECT_EQ(r.header("Content-Encoding"), "gzip") << r;
    EXPECT_TRUE(same_bytes(gunzip(r.body), upstream_content(0, n))) << n;
  }
}

TEST_F(ProxyGzip, AnHttp11ClientGetsTheCompressedBodyChunked) {
  start();
  Client c(s.port());
  ASSERT_TRUE(c.send(req("GET", "/size/200000", kGzip)));
  std::string rest;
  std::string head = read_head(c, &rest);
  ASSERT_TRUE(head.starts_with("HTTP/1.1 200 ")) << head << c.error();
  EXPECT_TRUE(contains(head, "\r\nTransfer-Encoding: chunked\r\n")) << head;
  EXPECT_TRUE(contains(head, "\r\nContent-Encoding: gzip\r\n")) << head;
  EXPECT_FALSE(contains(to_lower(head), "content-length")) << head;
  std::string body, why;
  ASSERT_TRUE(read_chunked(c, rest, [&](std::string_view d) { body.append(d); }, &why)) << why;
  EXPECT_TRUE(same_bytes(gunzip(body), upstream_content(0, 200000)));
  // The connection goes on.
  Response again = c.exchange(req("GET", "/size/10"));
  EXPECT_EQ(again.body, upstream_content(0, 10));
}

TEST_F(ProxyGzip, ATextShrinksAndTheAccessLogCountsTheCompressedBytes) {
  start();
  const std::string text = text_of(2 * kMiB + 3);
  Client c(s.port(), {.timeout = 10000ms});
  Response r = c.exchange(req("POST", "/echo?counted",
                              std::string(kGzip) + "Content-Type: text/plain\r\nContent-Length: " +
                                  std::to_string(text.size()) + "\r\n",
                              text));
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Encoding"), "gzip");
  EXPECT_LT(r.body.size(), text.size() / 4);
  EXPECT_TRUE(same_bytes(gunzip(r.body), text));
  // $body_bytes_sent (the field after the status in the combined format): the compressed bytes.
  std::string line;
  ASSERT_TRUE(wait_for(
      [&] {
        std::string log = s.access_log();
        size_t at = log.find("\"POST /echo?counted HTTP/1.1\" ");
        if (at == std::string::npos) return false;
        line = log.substr(at, log.find('\n', at) - at);
        return true;
      },
      3000ms))
      << s.access_log();
  EXPECT_TRUE(contains(line, "\" 200 " + std::to_string(r.body.size()) + " ")) << line << "\ncompressed: " << r.body.size();
}

TEST_F(ProxyGzip, TheHeadOfACompressedResponse) {
  start();
  // A strong ETag becomes weak, Accept-Ranges goes, Vary is added.
  Response r = get(s.port(), "/size/1000?header=ETag:%22v1%22&header=Accept-Ranges:bytes", kGzip);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Encoding"), "gzip") << r;
  EXPECT_EQ(r.header("ETag"), "W/\"v1\"") << r;
  EXPECT_FALSE(r.has("Accept-Ranges")) << r;
  EXPECT_EQ(r.count("Vary"), 1u) << r;
  EXPECT_EQ(r.header("Vary"), "Accept-Encoding") << r;
  EXPECT_EQ(r.header("X-Upstream"), "upstream");
  EXPECT_TRUE(same_bytes(gunzip(r.body), upstream_content(0, 1000)));
  // A weak one stays as it is.
  r = get(s.port(), "/size/1000?header=ETag:W/%22v2%22", kGzip);
  EXPECT_EQ(r.header("ETag"), "W/\"v2\"") << r;
  // The upstream's Vary naming Accept-Encoding already: not twice. Another Vary: both.
  r = get(s.port(), "/size/1000?header=Vary:accept-encoding", kGzip);
  EXPECT_EQ(r.header("Content-Encoding"), "gzip") << r;
  EXPECT_EQ(r.count("Vary"), 1u) << r;
  EXPECT_EQ(r.header("Vary"), "accept-encoding") << r;
  r = get(s.port(), "/size/1000?header=Vary:Cookie,%20Accept-Encoding", kGzip);
  EXPECT_EQ(r.count("Vary"), 1u) << r;
  r = get(s.port(), "/size/1000?header=Vary:Cookie", kGzip);
  EXPECT_EQ(r.count("Vary"), 2u) << r;

  // A client that does not accept gzip: as the upstream sent it, Vary all the same.
  for (const char* ae : {"", "Accept-Encoding: gzip;q=0, identity\r\n", "Accept-Encoding: br\r\n"}) {
    r = get(s.port(), "/size/1000?header=ETag:%22v1%22&header=Accept-Ranges:bytes", ae);
    EXPECT_FALSE(r.has("Content-Encoding")) << ae << r;
    EXPECT_EQ(r.header("Content-Length"), "1000") << ae << r;
    EXPECT_EQ(r.header("ETag"), "\"v1\"") << ae;
    EXPECT_EQ(r.header("Accept-Ranges"), "bytes") << ae;
    EXPECT_EQ(r.header("Vary"), "Accept-Encoding") << ae << r;
    EXPECT_TRUE(same_bytes(r.body, upstream_content(0, 1000))) << ae;
  }
}

// ---- what is not ----

TEST_F(ProxyGzip, NotAResponseTheUpstreamEncodedNorOneOfAnotherType) {
  start();
  expect_compressed_content("/size/5000", 5000);
  // Content-Encoding from the upstream: passed on as it is.
  Response r = get(s.port(), "/size/5000?header=Content-Encoding:br", kGzip);
  EXPECT_EQ(r.count("Content-Encoding"), 1u) << r;
  EXPECT_EQ(r.header("Content-Encoding"), "br");
  EXPECT_EQ(r.header("Content-Length"), "5000");
  EXPECT_TRUE(same_bytes(r.body, upstream_content(0, 5000)));
  // A type that is not in gzip_types (nor any Vary for it).
  const std::string text = text_of(5000);
  Client c(s.port());
  r = c.exchange(req("POST", "/echo", std::string(kGzip) + "Content-Type: image/png\r\nContent-Length: 5000\r\n", text));
  EXPECT_EQ(r.header("Content-Type"), "image/png") << r;
  EXPECT_FALSE(r.has("Content-Encoding")) << r;
  EXPECT_FALSE(r.has("Vary")) << r;
  EXPECT_EQ(r.body, text);
  // The same text as text/plain is.
  r = c.exchange(req("POST", "/echo", std::string(kGzip) + "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5000\r\n", text));
  EXPECT_EQ(r.header("Content-Encoding"), "gzip") << r;
  EXPECT_EQ(gunzip(r.body), text);
}

TEST_F(ProxyGzip, MinLengthAppliesToALengthTheUpstreamGave) {
  start();
  Response r = get(s.port(), "/size/63", kGzip);
  EXPECT_FALSE(r.has("Content-Encoding")) << r;
  EXPECT_FALSE(r.has("Vary")) << r;
  EXPECT_EQ(r.header("Content-Length"), "63");
  EXPECT_EQ(r.body, upstream_content(0, 63));
  r = get(s.port(), "/size/64", kGzip);
  EXPECT_EQ(r.header("Content-Encoding"), "gzip") << r;
  EXPECT_EQ(gunzip(r.body), upstream_content(0, 64));
  // A length not known in advance: compressed, however short it turns out.
  r = get(s.port(), "/chunked/10", kGzip);
  EXPECT_EQ(r.header("Content-Encoding"), "gzip") << r;
  EXPECT_EQ(gunzip(r.body), upstream_content(0, 10));
}

TEST_F(ProxyGzip, Only200403And404AndNeverWithoutABody) {
  start("gzip = on\ngzip_types = text/plain\ngzip_min_length = 1\n");
  for (int code : {200, 403, 404}) {
    Response r = get(s.port(), "/status/" + std::to_string(code), kGzip);
    EXPECT_EQ(r.status, code);
    EXPECT_EQ(r.header("Content-Encoding"), "gzip") << r;
    EXPECT_EQ(gunzip(r.body), "status " + std::to_string(code) + "\n") << code;
  }
  for (int code : {206, 302, 410, 500, 503}) {
    Response r = get(s.port(), "/status/" + std::to_string(code), kGzip);
    EXPECT_EQ(r.status, code);
    EXPECT_FALSE(r.has("Content-Encoding")) << r;
    EXPECT_EQ(r.body, "status " + std::to_string(code) + "\n") << code;
  }
  for (int code : {204, 304}) {
    Client c(s.port());
    ASSERT_TRUE(c.send(req("GET", "/status/" + std::to_string(code), kGzip)));
    std::optional<Response> r = c.read_response();
    ASSERT_TRUE(r) << c.error();
    EXPECT_EQ(r->status, code);
    EXPECT_FALSE(r->has("Content-Encoding")) << *r;
    EXPECT_FALSE(r->has("Transfer-Encoding")) << *r;
    // Nothing follows the head: the connection answers the next request.
    EXPECT_EQ(c.exchange(req("GET", "/size/5")).body, upstream_content(0, 5));
  }
}

TEST_F(ProxyGzip, NotForHeadNorHttp10NorARequestThroughAProxy) {
  start();
  expect_compressed_content("/size/5000", 5000);
  Response r = head(s.port(), "/size/5000", kGzip);
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.has("Content-Encoding")) << r;
  EXPECT_EQ(r.header("Content-Length"), "5000") << r;
  EXPECT_TRUE(r.body.empty());
  {
    Client c(s.port());
    r = c.exchange("GET /size/5000 HTTP/1.0\r\nHost: localhost\r\n" + std::string(kGzip) + "\r\n");
    EXPECT_EQ(r.status, 200);
    EXPECT_FALSE(r.has("Content-Encoding")) << r;
    EXPECT_EQ(r.header("Vary"), "Accept-Encoding") << r;
    EXPECT_TRUE(same_bytes(r.body, upstream_content(0, 5000)));
  }
  r = get(s.port(), "/size/5000", std::string(kGzip) + "Via: 1.1 cache\r\n");
  EXPECT_FALSE(r.has("Content-Encoding")) << r;
  EXPECT_EQ(r.header("Vary"), "Accept-Encoding") << r;
  EXPECT_TRUE(same_bytes(r.body, upstream_content(0, 5000)));
}

TEST_F(ProxyGzip, ProxiedAnyCompressesForARequestThroughAProxy) {
  start("gzip = on\ngzip_types = application/octet-stream\ngzip_proxied = any\n");
  Response r = get(s.port(), "/size/5000", std::string(kGzip) + "Via: 1.1 cache\r\n");
  EXPECT_EQ(r.header("Content-Encoding"), "gzip") << r;
  EXPECT_FALSE(r.has("Vary")) << r;  // gzip_vary is off
  EXPECT_TRUE(same_bytes(gunzip(r.body), upstream_content(0, 5000)));
}

// ---- streaming ----

TEST_F(ProxyGzip, ASlowClientHoldsTheUpstreamBackInBoundedMemory) {
  start();
  ASSERT_EQ(get(s.port(), "/size/100000", kGzip).status, 200);  // the worker's buffers exist
  std::vector<pid_t> w = s.worker_pids();
  ASSERT_EQ(w.size(), 1u);
  // Random bytes: compressed, they are as many as before, and a proxy that kept what the client does
  // not take yet would show in its memory.
  const uint64_t n = 40 * kMiB;
  RssWatch rss(w[0]);
  Client c(s.port(), {.timeout = 10000ms, .rcvbuf = 64 * 1024});
  ASSERT_TRUE(c.send(req("GET", "/size/" + std::to_string(n), kGzip)));
  std::string rest;
  std::string head = read_head(c, &rest);
  ASSERT_TRUE(head.starts_with("HTTP/1.1 200 ")) << head << c.error();
  ASSERT_TRUE(contains(head, "\r\nContent-Encoding: gzip\r\n")) << head;
  uint64_t got = 0;
  bool matches = true, paused = false;
  long paused_growth = -1;
  Inflater z([&](std::string_view piece) {
    if (matches && upstream_content_mismatch(piece, got) != std::string::npos) matches = false;
    got += piece.size();
    if (!paused && got >= kMiB) {
      // The client stops reading for a while: the proxy stops reading the upstream rather than keep
      // the rest of the body for it.
      paused = true;
      std::this_thread::sleep_for(3000ms);
      paused_growth = rss.growth_kib();
    }
  });
  std::string why;
  bool inflated = true;
  ASSERT_TRUE(read_chunked(c, rest, [&](std::string_view d) { inflated = inflated && z.feed(d); }, &why)) << why;
  rss.stop();
  EXPECT_TRUE(inflated && z.ended()) << "not one whole gzip stream";
  EXPECT_TRUE(matches) << "the body does not decompress to the upstream's bytes";
  EXPECT_EQ(got, n);
  EXPECT_TRUE(paused);
  EXPECT_GE(paused_growth, 0);
  EXPECT_LT(paused_growth, 16 * 1024) << rss.describe();
  EXPECT_LT(rss.growth_kib(), 16 * 1024) << rss.describe();
  RecordProperty("rss_growth_kib", std::to_string(rss.growth_kib()));
}

TEST_F(ProxyGzip, WhatCameBeforeTheUpstreamPausedIsNotHeldBack) {
  start();
  // The upstream sends half of the body, then nothing for 4 s: the client can decompress all of that
  // half meanwhile (deflate would otherwise keep the last of it until more input or the end).
  const uint64_t n = 400000;
  Client c(s.port(), {.timeout = 10000ms});
  auto t0 = SteadyClock::now();
  ASSERT_TRUE(c.send(req("GET", "/mid-delay/4000/size/" + std::to_string(n), kGzip)));
  std::string rest;
  std::string head = read_head(c, &rest);
  ASSERT_TRUE(contains(head, "\r\nContent-Encoding: gzip\r\n")) << head;
  uint64_t got = 0;
  bool matches = true;
  SteadyClock::duration half_at{};
  Inflater z([&](std::string_view piece) {
    if (matches && upstream_content_mismatch(piece, got) != std::string::npos) matches = false;
    got += piece.size();
    if (got >= n / 2 && half_at == SteadyClock::duration{}) half_at = SteadyClock::now() - t0;
  });
  std::string why;
  bool inflated = true;
  ASSERT_TRUE(read_chunked(c, rest, [&](std::string_view d) { inflated = inflated && z.feed(d); }, &why)) << why;
  auto total = SteadyClock::now() - t0;
  EXPECT_TRUE(inflated && z.ended());
  EXPECT_TRUE(matches);
  EXPECT_EQ(got, n);
  EXPECT_GE(total, 3900ms);
  EXPECT_LT(half_at, 3000ms) << "the first half arrived only after "
                             << std::chrono::duration_cast<Millis>(half_at).count() << " ms";
}

TEST_F(ProxyGzip, AClientLeavingMidResponseLeavesNothingBehind) {
  start();
  ASSERT_EQ(get(s.port(), "/size/100000", kGzip).header("Content-Encoding"), "gzip");
  std::vector<pid_t> w = s.worker_pids();
  ASSERT_EQ(w.size(), 1u);
  for (std::string target : {"/size/30000000", "/chunked/30000000", "/mid-delay/500/size/3000000"}) {
    {
      Client c(s.port(), {.timeout = 10000ms});
      ASSERT_TRUE(c.send(req("GET", target, kGzip)));
      std::string rest;
      std::string head = read_head(c, &rest);
      ASSERT_TRUE(contains(head, "\r\nContent-Encoding: gzip\r\n")) << target << ": " << head;
      EXPECT_FALSE(c.read_some(65536).empty()) << target;
    }
    // Gone with most of the body still to come; the next exchange is whole.
    Response r = get(s.port(), "/size/5000", kGzip);
    EXPECT_TRUE(same_bytes(gunzip(r.body), upstream_content(0, 5000))) << target;
  }
  std::this_thread::sleep_for(700ms);
  EXPECT_EQ(s.worker_pids(), w) << s.error_log();
  std::string log = s.error_log();
  EXPECT_FALSE(contains(log, "[alert]")) << log;
  EXPECT_FALSE(contains(log, "deflate")) << log;
}

}  // namespace

// gzip and gzip_static for static files: what a client that accepts gzip gets (and one that does
// not), decompressed and compared with the file; a weak ETag, Vary, never a compressed range, the
// minimum length and the types; FILE.gz served under the same rules as FILE.
#include <zlib.h>

#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

// Inflates a gzip body; "<not gzip>" when it is not one whole gzip stream.
std::string gunzip(const std::string& in) {
  z_stream z{};
  if (inflateInit2(&z, 16 + 15) != Z_OK) return "<not gzip>";
  std::string out;
  char buf[65536];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&z);
      return "<not gzip>";
    }
    out.append(buf, sizeof(buf) - z.avail_out);
  } while (rc != Z_STREAM_END);
  bool whole = z.avail_in == 0;
  inflateEnd(&z);
  return whole ? out : "<not gzip>";
}

std::string text_of(size_t n) {
  std::string s;
  for (size_t i = 0; s.size() < n; i++) s += "line " + std::to_string(i) + " of a text that compresses well\n";
  s.resize(n);
  return s;
}

const char* kGzip = "Accept-Encoding: gzip, deflate, br\r\n";

}  // namespace

TEST(Gzip, CompressesForClientsThatAcceptIt) {
  BatonServer s;
  const std::string text = text_of(100 * 1024);
  const std::string big = text_of(3 * 1024 * 1024);
  s.write_file("html/a.txt", text);
  s.write_file("html/big.txt", big);
  s.write_file("html/small.txt", "tiny");
  s.write_file("html/page.html", "<html>" + text_of(5000) + "</html>");
  s.write_file("html/data.bin", text);
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                           "gzip = on\ngzip_types = text/plain\ngzip_vary = on\ngzip_comp_level = 6\n"));
  ASSERT_TRUE(s.start());

  Response r = get(s.port(), "/a.txt", kGzip);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Encoding"), "gzip");
  EXPECT_EQ(r.header("Vary"), "Accept-Encoding");
  EXPECT_EQ(r.header("Content-Type"), "text/plain");
  EXPECT_FALSE(r.has("Accept-Ranges")) << r;
  EXPECT_LT(r.body.size(), text.size() / 4);
  EXPECT_EQ(r.header("Content-Length"), std::to_string(r.body.size()));
  EXPECT_TRUE(gunzip(r.body) == text) << "the body does not decompress to the file";
  std::string weak = r.header("ETag");
  EXPECT_TRUE(weak.starts_with("W/\"")) << weak;

  // The same file again (from the worker's compressed copy), and a file too large for the file
  // cache, read and compressed whole.
  EXPECT_TRUE(gunzip(get(s.port(), "/a.txt", kGzip).body) == text);
  r = get(s.port(), "/big.txt", kGzip);
  EXPECT_EQ(r.header("Content-Encoding"), "gzip");
  EXPECT_TRUE(gunzip(r.body) == big);
  // text/html always.
  r = get(s.port(), "/page.html", kGzip);
  EXPECT_EQ(r.header("Content-Encoding"), "gzip");

  // A client that does not accept it gets the file, with its strong ETag, and Vary all the same.
  for (const char* ae : {"", "Accept-Encoding: gzip;q=0, identity\r\n", "Accept-Encoding: br\r\n",
                         "Accept-Encoding: *;q=0.000\r\n"}) {
    r = get(s.port(), "/a.txt", ae);
    EXPECT_FALSE(r.has("Content-Encoding")) << ae << r;
    EXPECT_EQ(r.body.size(), text.size()) << ae;
    EXPECT_EQ(r.header("Vary"), "Accept-Encoding") << ae;
    EXPECT_EQ(r.header("ETag"), weak.substr(2)) << ae;
  }
  r = get(s.port(), "/a.txt", "Accept-Encoding: *\r\n");
  EXPECT_EQ(r.header("Content-Encoding"), "gzip");
  r = get(s.port(), "/a.txt", "Accept-Encoding: GZIP;q=0.5\r\n");
  EXPECT_EQ(r.header("Content-Encoding"), "gzip");

  // Never a compressed range.
  r = get(s.port(), "/a.txt", std::string(kGzip) + "Range: bytes=0-99\r\n");
  EXPECT_EQ(r.status, 206);
  EXPECT_FALSE(r.has("Content-Encoding"));
  EXPECT_EQ(r.body, text.substr(0, 100));
  // Too small, or not a listed type: as it is, and no Vary.
  r = get(s.port(), "/small.txt", kGzip);
  EXPECT_FALSE(r.has("Content-Encoding"));
  EXPECT_FALSE(r.has("Vary"));
  r = get(s.port(), "/data.bin", kGzip);
  EXPECT_FALSE(r.has("Content-Encoding"));
  // The weak ETag revalidates; HEAD has the compressed head without a body.
  r = get(s.port(), "/a.txt", std::string(kGzip) + "If-None-Match: " + weak + "\r\n");
  EXPECT_EQ(r.status, 304);
  EXPECT_EQ(r.header("ETag"), weak);
  r = head(s.port(), "/a.txt", kGzip);
  EXPECT_EQ(r.header("Content-Encoding"), "gzip");
  EXPECT_TRUE(r.body.empty());

  // Not through a proxy (Via), which could keep the compressed answer for other clients, nor to an
  // HTTP/1.0 client (nginx's defaults).
  r = get(s.port(), "/a.txt", std::string(kGzip) + "Via: 1.1 cache\r\n");
  EXPECT_FALSE(r.has("Content-Encoding")) << r;
  {
    Client c(s.port());
    r = c.exchange("GET /a.txt HTTP/1.0\r\nHost: x\r\n" + std::string(kGzip) + "\r\n");
    EXPECT_FALSE(r.has("Content-Encoding")) << r;
  }

  // A changed file is compressed again.
  std::string changed = text_of(100 * 1024 + 7);
  s.write_file("html/a.txt", changed);
  EXPECT_TRUE(wait_for([&] { return gunzip(get(s.port(), "/a.txt", kGzip).body) == changed; }, 5000ms));
  // Even rewritten with the same size and its old modification time (rsync --inplace -t, cp -p).
  s.set_mtime("html/a.txt", 1000000000);
  EXPECT_TRUE(gunzip(get(s.port(), "/a.txt", kGzip).body) == changed);
  std::string same_size = changed;
  same_size[0] = 'X';
  s.write_file("html/a.txt", same_size);
  s.set_mtime("html/a.txt", 1000000000);
  EXPECT_TRUE(wait_for([&] { return gunzip(get(s.port(), "/a.txt", kGzip).body) == same_size; }, 5000ms));
}

TEST(Gzip, ProxiedAnyCompressesThroughAProxy) {
  BatonServer s;
  s.write_file("html/a.txt", text_of(4000));
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n"
                           "gzip = on\ngzip_types = text/plain\ngzip_proxied = any\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/a.txt", std::string(kGzip) + "Via: 1.1 cache\r\n");
  EXPECT_EQ(r.header("Content-Encoding"), "gzip") << r;
}

TEST(Gzip, StaticServesTheCompressedFileWhenItIsThere) {
  BatonServer s;
  s.write_file("html/app.css", "the original\n");
  s.write_file("html/app.css.gz", "pretend-gzip-bytes");
  s.write_file("html/only.css", "no gz beside me\n");
  s.write_file("html/linked.css", "linked original\n");
  s.make_symlink("/etc/hostname", "html/linked.css.gz");
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\ngzip_static = on\ngzip_vary = on\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/app.css", kGzip);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "pretend-gzip-bytes");
  EXPECT_EQ(r.header("Content-Encoding"), "gzip");
  EXPECT_EQ(r.header("Content-Type"), "text/css");
  EXPECT_EQ(r.header("Vary"), "Accept-Encoding");
  r = get(s.port(), "/app.css");
  EXPECT_EQ(r.body, "the original\n");
  EXPECT_FALSE(r.has("Content-Encoding"));
  EXPECT_EQ(get(s.port(), "/only.css", kGzip).body, "no gz beside me\n");
  // A .gz that leaves the root (disable_symlinks outside_root) is not served.
  r = get(s.port(), "/linked.css", kGzip);
  EXPECT_EQ(r.body, "linked original\n");
  EXPECT_FALSE(r.has("Content-Encoding"));
  // nginx's rules for whom a compressed answer is for hold here too: not HTTP/1.0, not through a
  // proxy (Via) without gzip_proxied = any.
  r = get(s.port(), "/app.css", std::string(kGzip) + "Via: 1.1 cache\r\n");
  EXPECT_EQ(r.body, "the original\n");
  Client c(s.port());
  r = c.exchange("GET /app.css HTTP/1.0\r\nHost: localhost\r\n" + std::string(kGzip) + "\r\n");
  EXPECT_EQ(r.body, "the original\n");
  EXPECT_FALSE(r.has("Content-Encoding"));
}

TEST(GzipConfig, ValuesAreChecked) {
  BatonServer s;
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\ngzip_comp_level = 10\n"));
  RunResult r = s.test_config();
  EXPECT_TRUE(contains(r.err, "\"gzip_comp_level\" must be between 1 and 9")) << r.err;
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\ngzip_types = text\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, "invalid MIME type \"text\"")) << r.err;
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\ngzip_proxied = expired\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, "\"gzip_proxied = expired\" is not supported (off or any)")) << r.err;
}

// Static files: headers, HEAD, large files, index and directories, conditional requests, MIME
// types, expires, alias, try_files, return, and location matching.
#include <sys/stat.h>

#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr time_t kMtime = 1700000000;  // Tue, 14 Nov 2023 22:13:20 GMT = 0x6553f100
const std::string kHello = "Hello, baton!\n";

const char* kServers =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "server_name = localhost\n"
    "root = html\n"
    "index = index.html\n"
    "\n"
    "[location /cached/]\n"
    "expires = 1h\n"
    "\n"
    "[location /pics/]\n"
    "alias = @PREFIX@/images/\n"
    "\n"
    "[location = /favicon.ico]\n"
    "alias = @PREFIX@/images/pic.png\n"
    "\n"
    "[location /robots.txt]\n"
    "alias = @PREFIX@/meta/robots.txt\n"
    "\n"
    "[location /photos]\n"
    "alias = @PREFIX@/images\n"
    "\n"
    "[location /img]\n"
    "alias = @PREFIX@/images/\n"
    "disable_symlinks = off\n"
    "\n"
    "[location /app/]\n"
    "try_files = $uri $uri/ /fallback.html\n"
    "\n"
    "[location /strict/]\n"
    "try_files = $uri =404\n"
    "\n"
    "[location = /ok]\n"
    "return = 200 ok\n"
    "\n"
    "[location = /greeting]\n"
    "return = 200 hello there\n"
    "\n"
    "[location = /old]\n"
    "return = 301 /new\n"
    "\n"
    "[location = /away]\n"
    "return = 301 http://example.com/elsewhere\n"
    "\n"
    "[location = /gone]\n"
    "return = 404\n"
    "\n"
    "[location = /exact]\n"
    "return = 200 exact\n"
    "\n"
    "[location /exact]\n"
    "return = 200 prefix\n"
    "\n"
    "[location ^~ /images/]\n"
    "return = 200 caret\n"
    "\n"
    "[location /images/deep/]\n"
    "return = 200 deep\n"
    "\n"
    "[location /inherit/]\n"
    "expires = off\n"
    "\n"
    "[location /other/]\n"
    "root = other_root\n"
    "\n"
    "[location /typed/]\n"
    "default_type = text/x-baton\n";

class Static : public ::testing::Test {
 protected:
  void SetUp() override {
    s.write_file("html/hello.txt", kHello);
    s.set_mtime("html/hello.txt", kMtime);
    s.write_file("html/page.html", "<p>page</p>\n");
    s.write_file("html/style.css", "p { color: red }\n");
    s.write_file("html/data.json", "{\"a\": 1}\n");
    s.write_file("html/blob.qqq", "unknown type\n");
    s.write_file("html/with space.txt", "spaced\n");
    s.write_file("html/index.html", "<h1>site index</h1>\n");
    s.write_file("html/docs/index.html", "<h1>docs index</h1>\n");
    s.make_dir("html/empty");
    s.write_file("html/cached/c.txt", "cached\n");
    s.write_file("images/pic.png", "\x89PNG fake image");
    s.write_file("meta/robots.txt", "User-agent: *\n");
    s.write_file("html/app/exists.txt", "app file\n");
    s.write_file("html/fallback.html", "<p>fallback</p>\n");
    s.write_file("html/strict/here.txt", "strict file\n");
    s.write_file("html/inherit/file.txt", "inherited root\n");
    s.write_file("other_root/other/file.txt", "other root\n");
    s.write_file("html/other/file.txt", "wrong root\n");
    s.write_file("html/typed/thing", "typed\n");
    s.write_file("html/typed/thing.txt", "typed text\n");
    s.set_config(make_config(kServers));
    ASSERT_TRUE(s.start());
    port = s.port();
  }

  BatonServer s;
  int port = 0;
};

}  // namespace

TEST_F(Static, GetFileHeadersAndBody) {
  Response r = get(port, "/hello.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.reason, "OK");
  EXPECT_TRUE(has_standard_headers(r));
  EXPECT_EQ(r.body, kHello);
  EXPECT_EQ(r.header("Content-Type"), "text/plain") << r;
  EXPECT_EQ(r.header("Content-Length"), std::to_string(kHello.size()));
  EXPECT_EQ(r.header("ETag"), "\"6553f100-e\"") << r;
  EXPECT_EQ(r.header("Last-Modified"), "Tue, 14 Nov 2023 22:13:20 GMT") << r;
  EXPECT_EQ(r.header("Accept-Ranges"), "bytes") << r;
  EXPECT_FALSE(r.has("Transfer-Encoding")) << r;
}

TEST_F(Static, EtagFollowsMtimeAndSize) {
  std::string content(1000, 'x');
  s.write_file("html/k.txt", content);
  s.set_mtime("html/k.txt", 0x12345678);
  Response r = get(port, "/k.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("ETag"), "\"12345678-3e8\"") << r;
  EXPECT_EQ(r.header("Last-Modified"), http_date(0x12345678)) << r;
}

TEST_F(Static, HeadHasHeadersButNoBody) {
  Client c(port);
  Response h = c.exchange(req("HEAD", "/hello.txt"), true);
  EXPECT_EQ(h.status, 200) << h;
  EXPECT_EQ(h.header("Content-Length"), std::to_string(kHello.size())) << h;
  EXPECT_EQ(h.header("Content-Type"), "text/plain");
  EXPECT_EQ(h.header("ETag"), "\"6553f100-e\"");
  EXPECT_TRUE(has_standard_headers(h));
  // Had a body followed the HEAD response, it would be read as the start of this one.
  Response g = c.exchange(req("GET", "/page.html"));
  EXPECT_EQ(g.status, 200) << g;
  EXPECT_EQ(g.body, "<p>page</p>\n");
}

TEST_F(Static, ContentTypeByExtension) {
  EXPECT_EQ(get(port, "/page.html").header("Content-Type"), "text/html");
  EXPECT_EQ(get(port, "/style.css").header("Content-Type"), "text/css");
  EXPECT_EQ(get(port, "/data.json").header("Content-Type"), "application/json");
  EXPECT_EQ(get(port, "/pics/pic.png").header("Content-Type"), "image/png");
}

TEST_F(Static, DefaultTypeForUnknownExtension) {
  Response r = get(port, "/blob.qqq");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Type"), "application/octet-stream") << r;
  EXPECT_EQ(r.body, "unknown type\n");
}

TEST_F(Static, DefaultTypeSetInLocation) {
  Response r = get(port, "/typed/thing");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Type"), "text/x-baton") << r;
  // A known extension still wins over default_type.
  EXPECT_EQ(get(port, "/typed/thing.txt").header("Content-Type"), "text/plain");
}

TEST_F(Static, LargeFilesByteExact) {
  std::string small = s.write_generated("html/100k.bin", 100 * 1024, 7);
  std::string big = s.write_generated("html/5m.bin", 5 * 1024 * 1024, 8);
  Client c(port);
  Response a = c.exchange(req("GET", "/100k.bin"));
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.header("Content-Length"), "102400");
  EXPECT_TRUE(same_bytes(a.body, small));
  Response b = c.exchange(req("GET", "/5m.bin"));
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(b.header("Content-Length"), "5242880");
  EXPECT_TRUE(same_bytes(b.body, big));
  // The connection is still in step after the large bodies.
  Response d = c.exchange(req("GET", "/hello.txt"));
  EXPECT_EQ(d.body, kHello);
}

TEST_F(Static, QueryStringIgnoredForFiles) {
  Response r = get(port, "/hello.txt?v=1&x=%20");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, kHello);
}

TEST_F(Static, PercentEncodedPathDecoded) {
  Response r = get(port, "/with%20space.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "spaced\n");
}

TEST_F(Static, IndexFileForRoot) {
  Response r = get(port, "/");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "<h1>site index</h1>\n");
  EXPECT_EQ(r.header("Content-Type"), "text/html");
  EXPECT_EQ(r.header("Content-Length"), "20");
}

TEST_F(Static, IndexFileForDirectory) {
  Response r = get(port, "/docs/");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "<h1>docs index</h1>\n");
  EXPECT_EQ(r.header("Content-Type"), "text/html");
}

TEST_F(Static, DirectoryWithoutSlashRedirects) {
  Response r = get(port, "/docs?x=1&y=2");
  EXPECT_EQ(r.status, 301) << r;
  EXPECT_EQ(r.reason, "Moved Permanently");
  std::string loc = r.header("Location");
  // Either a path or an absolute URL for this server.
  EXPECT_TRUE(loc == "/docs/?x=1&y=2" || (loc.rfind("http://", 0) == 0 && loc.ends_with("/docs/?x=1&y=2")))
      << r;
  Response plain = get(port, "/docs");
  EXPECT_EQ(plain.status, 301);
  EXPECT_TRUE(plain.header("Location").ends_with("/docs/")) << plain;
}

TEST_F(Static, DirectoryWithoutIndexIsForbidden) {
  Response r = get(port, "/empty/");
  EXPECT_TRUE(is_error_page(r, 403, "Forbidden"));
  EXPECT_TRUE(has_standard_headers(r));
}

TEST_F(Static, MissingFileIsNotFoundAndKeepsConnection) {
  Client c(port);
  Response r = c.exchange(req("GET", "/no/such/file.txt"));
  EXPECT_TRUE(is_error_page(r, 404, "Not Found"));
  EXPECT_TRUE(has_standard_headers(r));
  EXPECT_FALSE(r.connection_close()) << r;
  Response again = c.exchange(req("GET", "/hello.txt"));
  EXPECT_EQ(again.status, 200) << again;
  EXPECT_EQ(again.body, kHello);
}

TEST_F(Static, IfNoneMatch) {
  Client c(port);
  Response r = c.exchange(req("GET", "/hello.txt", "If-None-Match: \"6553f100-e\"\r\n"));
  EXPECT_EQ(r.status, 304) << r;
  EXPECT_EQ(r.reason, "Not Modified");
  EXPECT_EQ(r.header("ETag"), "\"6553f100-e\"") << r;
  EXPECT_TRUE(has_standard_headers(r));
  // No body follows a 304: the next response on the connection parses.
  Response list = c.exchange(req("GET", "/hello.txt", "If-None-Match: \"nope\", \"6553f100-e\"\r\n"));
  EXPECT_EQ(list.status, 304) << list;
  Response other = c.exchange(req("GET", "/hello.txt", "If-None-Match: \"6553f100-f\"\r\n"));
  EXPECT_EQ(other.status, 200) << other;
  EXPECT_EQ(other.body, kHello);
}

TEST_F(Static, IfModifiedSince) {
  Client c(port);
  Response r = c.exchange(req("GET", "/hello.txt", "If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT\r\n"));
  EXPECT_EQ(r.status, 304) << r;
  EXPECT_TRUE(r.body.empty());
  Response older = c.exchange(req("GET", "/hello.txt", "If-Modified-Since: Mon, 13 Nov 2023 22:13:20 GMT\r\n"));
  EXPECT_EQ(older.status, 200) << older;
  EXPECT_EQ(older.body, kHello);
}

TEST_F(Static, HeadIfNoneMatch) {
  Response r = head(port, "/hello.txt", "If-None-Match: \"6553f100-e\"\r\n");
  EXPECT_EQ(r.status, 304) << r;
}

TEST_F(Static, Expires) {
  Response r = get(port, "/cached/c.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "cached\n");
  EXPECT_EQ(r.header("Cache-Control"), "max-age=3600") << r;
  auto date = parse_http_date(r.header("Date"));
  auto expires = parse_http_date(r.header("Expires"));
  ASSERT_TRUE(date && expires) << r;
  EXPECT_NEAR(static_cast<double>(*expires - *date), 3600.0, 2.0) << r;
  // Not set where expires is not configured.
  Response plain = get(port, "/hello.txt");
  EXPECT_FALSE(plain.has("Expires")) << plain;
  EXPECT_FALSE(plain.has("Cache-Control")) << plain;
}

TEST_F(Static, Alias) {
  Response r = get(port, "/pics/pic.png");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "\x89PNG fake image");
  EXPECT_EQ(r.header("Content-Type"), "image/png");
  EXPECT_EQ(get(port, "/pics/none.png").status, 404);
}

// An alias may name a file (nginx's "location = /favicon.ico { alias /srv/img/fav.png; }"): the
// location's URI is that file.
TEST_F(Static, AliasNamesAFile) {
  Response exact = get(port, "/favicon.ico");
  EXPECT_EQ(exact.status, 200) << exact;
  EXPECT_EQ(exact.body, "\x89PNG fake image");
  Response prefix = get(port, "/robots.txt");
  EXPECT_EQ(prefix.status, 200) << prefix;
  EXPECT_EQ(prefix.body, "User-agent: *\n");
  EXPECT_EQ(head(port, "/robots.txt").status, 200);
  // The rest of a longer URI is appended to the file's name, as nginx does: no such file.
  EXPECT_EQ(get(port, "/robots.txt/x").status, 404);
  EXPECT_EQ(get(port, "/robots.txtx").status, 404);
}

// An alias without a trailing slash, on a prefix without one: the URI's rest is appended.
TEST_F(Static, AliasWithoutSlash) {
  Response r = get(port, "/photos/pic.png");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "\x89PNG fake image");
  // The directory itself is addressed with its slash.
  Response dir = get(port, "/photos");
  EXPECT_EQ(dir.status, 301) << dir;
  EXPECT_TRUE(dir.header("Location").ends_with("/photos/")) << dir;
  // Nothing above the alias can be reached through the missing slash ("/photos../").
  EXPECT_EQ(get(port, "/photos../meta/robots.txt").status, 404);
  // nginx's classic: a prefix without its slash over an alias with one, "/img../" would be
  // "images/../". The alias is the top: nothing above it is served, even with links allowed.
  EXPECT_EQ(get(port, "/img/pic.png").status, 200);
  EXPECT_EQ(get(port, "/img../meta/robots.txt").status, 404);
  EXPECT_EQ(get(port, "/img..").status, 404);
}

TEST_F(Static, TryFilesWithFallback) {
  Response found = get(port, "/app/exists.txt");
  EXPECT_EQ(found.status, 200) << found;
  EXPECT_EQ(found.body, "app file\n");
  Response fallback = get(port, "/app/anything/else");
  EXPECT_EQ(fallback.status, 200) << fallback;
  EXPECT_EQ(fallback.body, "<p>fallback</p>\n");
  EXPECT_EQ(fallback.header("Content-Type"), "text/html");
}

TEST_F(Static, TryFilesEqualsCode) {
  Response found = get(port, "/strict/here.txt");
  EXPECT_EQ(found.status, 200) << found;
  EXPECT_EQ(found.body, "strict file\n");
  EXPECT_TRUE(is_error_page(get(port, "/strict/missing.txt"), 404, "Not Found"));
}

TEST_F(Static, ReturnText) {
  Response r = get(port, "/ok");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Type"), "text/plain") << r;
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(r.header("Content-Length"), "2");
  EXPECT_TRUE(has_standard_headers(r));
  EXPECT_EQ(get(port, "/greeting").body, "hello there");
}

TEST_F(Static, ReturnRedirect) {
  Response r = get(port, "/old");
  EXPECT_EQ(r.status, 301) << r;
  std::string loc = r.header("Location");
  EXPECT_TRUE(loc == "/new" || (loc.rfind("http://", 0) == 0 && loc.ends_with("/new"))) << r;
  Response away = get(port, "/away");
  EXPECT_EQ(away.status, 301) << away;
  EXPECT_EQ(away.header("Location"), "http://example.com/elsewhere") << away;
}

TEST_F(Static, ReturnErrorCode) {
  Response r = get(port, "/gone");
  EXPECT_TRUE(is_error_page(r, 404, "Not Found"));
}

TEST_F(Static, ExactLocationBeatsPrefix) {
  EXPECT_EQ(get(port, "/exact").body, "exact");
  EXPECT_EQ(get(port, "/exactly").body, "prefix");
  EXPECT_EQ(get(port, "/exact/sub").body, "prefix");
}

TEST_F(Static, LongestPrefixWins) {
  EXPECT_EQ(get(port, "/images/a.png").body, "caret");
  EXPECT_EQ(get(port, "/images/deep/a.png").body, "deep");
}

TEST_F(Static, RootInheritedIntoLocation) {
  Response r = get(port, "/inherit/file.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "inherited root\n");
}

TEST_F(Static, RootOverriddenInLocation) {
  Response r = get(port, "/other/file.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "other root\n");
}

TEST_F(Static, ServerRootWithoutLocation) {
  // A URI that matches no location is served with the server's settings.
  Response r = get(port, "/page.html");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "<p>page</p>\n");
}

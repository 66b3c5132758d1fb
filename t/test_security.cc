// Nothing outside root is reachable: dot segments, encoded dots, NUL bytes and symlinks; harmless
// path forms are normalised and served.
#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

class Security : public ::testing::Test {
 protected:
  void SetUp() override {
    s.write_file("secret/secret.txt", "top secret\n");
    s.write_file("html/hello.txt", "hello\n");
    s.write_file("html/sub/file.txt", "sub file\n");
    s.make_symlink("hello.txt", "html/link.txt");                     // inside root, relative
    s.make_symlink(s.path("html/sub"), "html/sublink");                // inside root, absolute, a directory
    s.make_symlink("sub", "html/rellink");                             // inside root, relative, a directory
    s.make_symlink(s.path("secret/secret.txt"), "html/out.txt");       // outside root
    s.make_symlink("../secret", "html/outdir");                        // outside root, a directory
    s.make_symlink(s.path("secret/secret.txt"), "html/free/out.txt");  // outside, but allowed there
    s.make_symlink("../hello.txt", "html/free/in.txt");
    s.make_symlink("../hello.txt", "html/strict/in.txt");
    s.write_file("html/strict/plain.txt", "plain\n");
    s.set_config(make_config(
        "[server main]\n"
        "listen = 127.0.0.1:@PORT@\n"
        "root = html\n"
        "\n"
        "[location /free/]\n"
        "disable_symlinks = off\n"
        "\n"
        "[location /strict/]\n"
        "disable_symlinks = on\n"));
    ASSERT_TRUE(s.start());
    port = s.port();
  }

  // The raw target is sent as is; the response must be a 400 and the connection closed.
  void expect_bad_request(const std::string& target) {
    Client c(port);
    Response r = c.exchange("GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    EXPECT_TRUE(is_error_page(r, 400, "Bad Request")) << "target " << target;
    EXPECT_TRUE(r.connection_close()) << "target " << target << r;
    EXPECT_TRUE(c.is_closed_by_peer(2000ms)) << "target " << target;
    EXPECT_FALSE(contains(r.body, "top secret"));
  }

  BatonServer s;
  int port = 0;
};

}  // namespace

TEST_F(Security, DotDotAtRoot) { expect_bad_request("/../secret/secret.txt"); }

TEST_F(Security, EncodedDotDot) { expect_bad_request("/%2e%2e/secret/secret.txt"); }

TEST_F(Security, EncodedDotDotUppercase) { expect_bad_request("/%2E%2E/secret/secret.txt"); }

TEST_F(Security, MixedEncodedDotDot) { expect_bad_request("/.%2e/secret/secret.txt"); }

TEST_F(Security, DotDotEscapingAfterDescent) { expect_bad_request("/sub/../../secret/secret.txt"); }

TEST_F(Security, EncodedSlashDotDot) {
  // Whether %2f is decoded into a separator (then 400) or kept in a name (then 404), the file
  // outside root is never served.
  Response r = get(port, "/sub/..%2f..%2fsecret/secret.txt");
  EXPECT_TRUE(r.status == 400 || r.status == 404) << r;
  EXPECT_FALSE(contains(r.body, "top secret")) << r;
}

TEST_F(Security, NulByteInPath) { expect_bad_request("/hello.txt%00.png"); }

TEST_F(Security, DotDotThatStaysInsideIsServed) {
  Response r = get(port, "/sub/../hello.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "hello\n");
}

TEST_F(Security, DotSegmentsNormalised) {
  Response r = get(port, "/sub/./file.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "sub file\n");
  Response dots = get(port, "/./sub/x/../file.txt");
  EXPECT_EQ(dots.status, 200) << dots;
  EXPECT_EQ(dots.body, "sub file\n");
}

TEST_F(Security, DoubleSlashesNormalised) {
  Response r = get(port, "//sub//file.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "sub file\n");
}

TEST_F(Security, SymlinkInsideRootFollowed) {
  Response r = get(port, "/link.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "hello\n");
}

TEST_F(Security, AbsoluteSymlinkInsideRootFollowed) {
  // The link is written with an absolute path, but its target stays inside root.
  Response dir = get(port, "/sublink/file.txt");
  EXPECT_EQ(dir.status, 200) << dir;
  EXPECT_EQ(dir.body, "sub file\n");
}

TEST_F(Security, RelativeSymlinkToDirectoryInsideRootFollowed) {
  Response r = get(port, "/rellink/file.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "sub file\n");
}

TEST_F(Security, SymlinkOutsideRootForbidden) {
  Response r = get(port, "/out.txt");
  EXPECT_TRUE(is_error_page(r, 403, "Forbidden"));
  EXPECT_FALSE(contains(r.body, "top secret"));
  Response dir = get(port, "/outdir/secret.txt");
  EXPECT_TRUE(is_error_page(dir, 403, "Forbidden"));
  EXPECT_FALSE(contains(dir.body, "top secret"));
}

TEST_F(Security, SymlinksAllowedWhenDisabled) {
  Response r = get(port, "/free/out.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "top secret\n");
  Response in = get(port, "/free/in.txt");
  EXPECT_EQ(in.status, 200) << in;
  EXPECT_EQ(in.body, "hello\n");
}

TEST_F(Security, EverySymlinkRefusedWhenOn) {
  Response r = get(port, "/strict/in.txt");
  EXPECT_TRUE(is_error_page(r, 403, "Forbidden"));
  Response plain = get(port, "/strict/plain.txt");
  EXPECT_EQ(plain.status, 200) << plain;
  EXPECT_EQ(plain.body, "plain\n");
}

TEST_F(Security, ControlCharacterInTarget) { expect_bad_request("/hello\x01.txt"); }

TEST_F(Security, AbsoluteFormTargetStaysInRoot) {
  // An absolute-form target is allowed, but its path is still confined to root.
  Client c(port);
  Response r = c.exchange("GET http://localhost/../secret/secret.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_FALSE(contains(r.body, "top secret")) << r;
  EXPECT_NE(r.status, 200) << r;
}

// Virtual servers chosen by Host and server_name: exact names, `*.suffix` wildcards,
// default_server, Host with a port, and the default when nothing matches.
#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

std::string body_for(int port, const std::string& host) {
  Client c(port);
  Response r = c.exchange("GET /who.txt HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.status, 200) << "Host: " << host << r;
  return r.body;
}

class VHost : public ::testing::Test {
 protected:
  void SetUp() override {
    s.write_file("site_a/who.txt", "A\n");
    s.write_file("site_b/who.txt", "B\n");
    s.write_file("site_c/who.txt", "C\n");
    s.write_file("site_d/who.txt", "D\n");
  }

  BatonServer s;
};

}  // namespace

TEST_F(VHost, ExactWildcardAndExplicitDefault) {
  s.set_config(make_config(
      "[server a]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = a.test www.a.test\n"
      "root = site_a\n"
      "\n"
      "[server b]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = *.example.com\n"
      "root = site_b\n"
      "\n"
      "[server c]\n"
      "listen = 127.0.0.1:@PORT@ default_server\n"
      "server_name = c.test\n"
      "root = site_c\n"));
  ASSERT_TRUE(s.start());
  int port = s.port();
  EXPECT_EQ(body_for(port, "a.test"), "A\n");
  EXPECT_EQ(body_for(port, "www.a.test"), "A\n");
  EXPECT_EQ(body_for(port, "c.test"), "C\n");
  EXPECT_EQ(body_for(port, "www.example.com"), "B\n");
  EXPECT_EQ(body_for(port, "api.example.com"), "B\n");
  // `*.example.com` does not cover example.com itself.
  EXPECT_EQ(body_for(port, "example.com"), "C\n");
  EXPECT_EQ(body_for(port, "unknown.test"), "C\n");
  EXPECT_EQ(body_for(port, "127.0.0.1"), "C\n");
}

TEST_F(VHost, HostWithPortAndCase) {
  s.set_config(make_config(
      "[server c]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = c.test\n"
      "root = site_c\n"
      "\n"
      "[server a]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = a.test\n"
      "root = site_a\n"
      "\n"
      "[server b]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = *.example.com\n"
      "root = site_b\n"));
  ASSERT_TRUE(s.start());
  int port = s.port();
  EXPECT_EQ(body_for(port, "a.test:8080"), "A\n");
  EXPECT_EQ(body_for(port, "a.test:" + std::to_string(port)), "A\n");
  EXPECT_EQ(body_for(port, "A.TEST"), "A\n");
  EXPECT_EQ(body_for(port, "WWW.Example.COM:81"), "B\n");
}

TEST_F(VHost, FirstServerIsDefaultWithoutDefaultServer) {
  s.set_config(make_config(
      "[server c]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = c.test\n"
      "root = site_c\n"
      "\n"
      "[server a]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = a.test\n"
      "root = site_a\n"));
  ASSERT_TRUE(s.start());
  int port = s.port();
  EXPECT_EQ(body_for(port, "nobody.test"), "C\n");
  EXPECT_EQ(body_for(port, "a.test"), "A\n");
  // HTTP/1.0 without Host goes to the default server as well.
  Client c(port);
  Response r = c.exchange("GET /who.txt HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "C\n");
}

TEST_F(VHost, ServersOnDifferentPorts) {
  s.set_config(make_config(
      "[server a]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = a.test\n"
      "root = site_a\n"
      "\n"
      "[server d]\n"
      "listen = 127.0.0.1:@PORT2@\n"
      "server_name = d.test\n"
      "root = site_d\n"));
  ASSERT_TRUE(s.start());
  // The name of a server on another port does not matter: each port has its own default.
  EXPECT_EQ(body_for(s.port(0), "d.test"), "A\n");
  EXPECT_EQ(body_for(s.port(1), "a.test"), "D\n");
  EXPECT_EQ(body_for(s.port(1), "d.test"), "D\n");
}

TEST_F(VHost, HostChosenPerRequestOnKeepAlive) {
  s.set_config(make_config(
      "[server a]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = a.test\n"
      "root = site_a\n"
      "\n"
      "[server b]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = b.test\n"
      "root = site_b\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  Response a = c.exchange("GET /who.txt HTTP/1.1\r\nHost: b.test\r\n\r\n");
  Response b = c.exchange("GET /who.txt HTTP/1.1\r\nHost: a.test\r\n\r\n");
  EXPECT_EQ(a.body, "B\n");
  EXPECT_EQ(b.body, "A\n");
}

TEST_F(VHost, AbsoluteFormTargetPicksTheServerOfItsAuthority) {
  // RFC 9112 3.2.2: a target in absolute form names the host; Host is then ignored.
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = main.test\n"
      "root = site_a\n"
      "\n"
      "[server other]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "server_name = other.test\n"
      "root = site_b\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  Response r = c.exchange("GET http://other.test/who.txt HTTP/1.1\r\nHost: main.test\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "B\n");
  r = c.exchange("GET http://OTHER.test:8080/who.txt?x=1 HTTP/1.1\r\nHost: main.test\r\n\r\n");
  EXPECT_EQ(r.body, "B\n");
  r = c.exchange("GET http://main.test/who.txt HTTP/1.1\r\nHost: other.test\r\n\r\n");
  EXPECT_EQ(r.body, "A\n");
  // The access log keeps the target as it was sent.
  EXPECT_TRUE(wait_for([&] { return contains(s.access_log(), "\"GET http://other.test/who.txt HTTP/1.1\" 200"); },
                       3000ms))
      << s.access_log();
  // An authority that cannot be a host is refused.
  Client bad(s.port());
  Response rb = bad.exchange("GET http://user@main.test/who.txt HTTP/1.1\r\nHost: main.test\r\n\r\n");
  EXPECT_EQ(rb.status, 400) << rb;
}

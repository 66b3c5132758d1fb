// Listeners: IPv6, Unix domain sockets, several addresses in one server, port-only form.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "harness.h"

using namespace baton_test;

TEST(Listen, Ipv6Loopback) {
  if (!ipv6_loopback_available()) GTEST_SKIP() << "no IPv6 loopback";
  BatonServer s;
  s.write_file("html/a.txt", "over v6\n");
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "listen = [::1]:@PORT2@\n"
      "root = html\n"));
  // Ready once both addresses listen (the master opens them one after the other).
  int v4 = s.port(0), v6 = s.port(1);
  ASSERT_TRUE(s.start([&] { return can_connect(v4, 200ms) && can_connect("::1", v6, 200ms); }));
  Client c("::1", s.port(1));
  ASSERT_TRUE(c.connected());
  Response r = c.exchange("GET /a.txt HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "over v6\n");
  EXPECT_TRUE(wait_for([&] { return contains(s.access_log(), "::1 - - ["); }, 3000ms)) << s.access_log();
}

TEST(Listen, Ipv6Only) {
  if (!ipv6_loopback_available()) GTEST_SKIP() << "no IPv6 loopback";
  BatonServer s;
  s.write_file("html/a.txt", "v6 only\n");
  s.set_config(make_config(
      "[server main]\n"
      "listen = [::1]:@PORT@\n"
      "root = html\n"));
  int port = s.port();
  ASSERT_TRUE(s.start([&] { return can_connect("::1", port, 200ms); }));
  Client c("::1", port);
  Response r = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(r.body, "v6 only\n");
}

TEST(Listen, UnixSocket) {
  BatonServer s;
  s.write_file("html/a.txt", "over unix\n");
  std::string sock = s.path("http.sock");
  s.set_config(make_config(
      "[server main]\n"
      "listen = unix:@PREFIX@/http.sock\n"
      "root = html\n"));
  ASSERT_TRUE(s.start([&] { return file_exists(sock); }));
  Client c = Client::unix_socket(sock);
  ASSERT_TRUE(c.connected());
  Response r = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "over unix\n");
  Response again = c.exchange(req("GET", "/a.txt", "Connection: close\r\n"));
  EXPECT_EQ(again.body, "over unix\n");
  EXPECT_TRUE(c.is_closed_by_peer(2000ms));
}

TEST(Listen, TwoPortsInOneServer) {
  BatonServer s;
  s.write_file("html/a.txt", "same server\n");
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "listen = 127.0.0.1:@PORT2@\n"
      "root = html\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(0), "/a.txt").body, "same server\n");
  EXPECT_EQ(get(s.port(1), "/a.txt").body, "same server\n");
}

TEST(Listen, PortOnlyMeansAllAddresses) {
  BatonServer s;
  s.write_file("html/a.txt", "any address\n");
  s.set_config(make_config(
      "[server main]\n"
      "listen = @PORT@\n"
      "root = html\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/a.txt");
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "any address\n");
}

TEST(Listen, PortInUseIsReported) {
  // Another process holds the port: baton must fail to start, not run without the listener.
  BatonServer s;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  struct sockaddr_in sa {};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(static_cast<uint16_t>(s.port()));
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(fd, 8), 0);
  s.set_config(make_config(
      "[server main]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"));
  RunResult r = run_baton({"-p", s.prefix(), "-c", s.config_path()}, 5000ms);
  ::close(fd);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err + s.error_log(), std::to_string(s.port()))) << r.err << s.error_log();
}

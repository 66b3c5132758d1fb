// Unit tests of src/os/unix/socket.h: listen addresses and listening sockets.
#include "os/unix/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace baton {
namespace {

SockAddr parsed(std::string_view text) {
  SockAddr a;
  std::string err = parse_sockaddr(text, &a);
  EXPECT_EQ(err, "") << text;
  return a;
}

std::string parse_error(std::string_view text) {
  SockAddr a;
  return parse_sockaddr(text, &a);
}

TEST(ParseSockaddr, Ipv4) {
  SockAddr a = parsed("127.0.0.1:8080");
  EXPECT_EQ(a.family(), AF_INET);
  EXPECT_EQ(a.len, sizeof(sockaddr_in));
  auto* in = reinterpret_cast<const sockaddr_in*>(&a.storage);
  EXPECT_EQ(ntohs(in->sin_port), 8080);
  EXPECT_EQ(ntohl(in->sin_addr.s_addr), INADDR_LOOPBACK);
  EXPECT_EQ(a.to_string(), "127.0.0.1:8080");
  EXPECT_EQ(a.host(), "127.0.0.1");
}

TEST(ParseSockaddr, PortOnlyMeansAnyAddress) {
  EXPECT_EQ(parsed("8080").to_string(), "0.0.0.0:8080");
  EXPECT_EQ(parsed("*:8080").to_string(), "0.0.0.0:8080");
  EXPECT_EQ(parsed(":81").to_string(), "0.0.0.0:81");
  EXPECT_TRUE(parsed("8080") == parsed("0.0.0.0:8080"));
}

TEST(ParseSockaddr, Localhost) { EXPECT_EQ(parsed("localhost:80").to_string(), "127.0.0.1:80"); }

TEST(ParseSockaddr, Ipv6) {
  SockAddr a = parsed("[::1]:8080");
  EXPECT_EQ(a.family(), AF_INET6);
  EXPECT_EQ(a.len, sizeof(sockaddr_in6));
  auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
  EXPECT_EQ(ntohs(in6->sin6_port), 8080);
  EXPECT_TRUE(IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
  EXPECT_EQ(a.to_string(), "[::1]:8080");
  EXPECT_EQ(a.host(), "::1");
  EXPECT_EQ(parsed("[::]:80").to_string(), "[::]:80");
  EXPECT_EQ(parsed("[2001:DB8::1]:443").to_string(), "[2001:db8::1]:443");
}

TEST(ParseSockaddr, Unix) {
  SockAddr a = parsed("unix:/tmp/x.sock");
  EXPECT_EQ(a.family(), AF_UNIX);
  auto* un = reinterpret_cast<const sockaddr_un*>(&a.storage);
  EXPECT_STREQ(un->sun_path, "/tmp/x.sock");
  EXPECT_EQ(a.len, offsetof(sockaddr_un, sun_path) + strlen("/tmp/x.sock") + 1);
  EXPECT_EQ(a.to_string(), "unix:/tmp/x.sock");
  EXPECT_EQ(a.host(), "unix:");
}

TEST(ParseSockaddr, Errors) {
  for (const char* bad : {"", "0", "65536", "99999", "123456", "-1", "80a", "127.0.0.1:", "127.0.0.1:abc",
                          "127.0.0.1:0", "127.0.0.1", "256.0.0.1:80", "1.2.3:80", "example.com:80",
                          "[::1]", "[::1]8080", "[::1]:", "[::1:80", "[zz::1]:80", "[::1]:65536",
                          "::1:8080", "unix:"}) {
    EXPECT_NE(parse_error(bad), "") << "\"" << bad << "\" was accepted";
  }
  EXPECT_NE(parse_error("unix:/" + std::string(200, 'x')), "");  // longer than sun_path
}

TEST(ParseSockaddr, ErrorClearsTheOutput) {
  SockAddr a = parsed("127.0.0.1:80");
  EXPECT_NE(parse_sockaddr("bogus:port", &a), "");
  EXPECT_NE(a.to_string(), "127.0.0.1:80");
}

TEST(SockAddr, Equality) {
  EXPECT_TRUE(parsed("127.0.0.1:80") == parsed("127.0.0.1:80"));
  EXPECT_FALSE(parsed("127.0.0.1:80") == parsed("127.0.0.1:81"));
  EXPECT_FALSE(parsed("127.0.0.1:80") == parsed("127.0.0.2:80"));
  EXPECT_FALSE(parsed("0.0.0.0:80") == parsed("[::]:80"));
  EXPECT_TRUE(parsed("unix:/a") == parsed("unix:/a"));
  EXPECT_FALSE(parsed("unix:/a") == parsed("unix:/b"));
}

TEST(SockAddr, HostInto) {
  char buf[INET6_ADDRSTRLEN + 8];
  SockAddr a = parsed("10.1.2.3:80");
  size_t n = a.host_into(buf, sizeof(buf));
  EXPECT_EQ(std::string(buf, n), "10.1.2.3");
  SockAddr empty;
  EXPECT_EQ(empty.host_into(buf, sizeof(buf)), 0u);
  EXPECT_EQ(empty.host(), "");
}

// A loopback address with port 0 (parse_sockaddr refuses port 0 in configuration).
SockAddr loopback(uint16_t port) {
  SockAddr a;
  auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.len = sizeof(sockaddr_in);
  return a;
}

uint16_t bound_port(int fd) {
  sockaddr_in in{};
  socklen_t len = sizeof(in);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&in), &len), 0);
  return ntohs(in.sin_port);
}

TEST(OpenListener, LoopbackIsNonBlockingAndCloseOnExec) {
  std::string err;
  Fd fd = open_listener(loopback(0), ListenOptions{}, &err);
  ASSERT_TRUE(fd.valid()) << err;
  EXPECT_EQ(err, "");
  int fdflags = fcntl(fd.get(), F_GETFD);
  ASSERT_GE(fdflags, 0);
  EXPECT_TRUE(fdflags & FD_CLOEXEC);
  int flflags = fcntl(fd.get(), F_GETFL);
  ASSERT_GE(flflags, 0);
  EXPECT_TRUE(flflags & O_NONBLOCK);

  int listening = 0;
  socklen_t len = sizeof(listening);
  ASSERT_EQ(getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len), 0);
  EXPECT_EQ(listening, 1);

  // It accepts a connection.
  uint16_t port = bound_port(fd.get());
  ASSERT_NE(port, 0);
  Fd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  SockAddr to = loopback(port);
  ASSERT_EQ(connect(client.get(), to.sa(), to.len), 0) << strerror(errno);
  Fd accepted(accept4(fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted.valid()) << strerror(errno);
}

TEST(OpenListener, SameAddressTwiceFails) {
  std::string err;
  Fd first = open_listener(loopback(0), ListenOptions{}, &err);
  ASSERT_TRUE(first.valid()) << err;
  uint16_t port = bound_port(first.get());
  err.clear();
  Fd second = open_listener(loopback(port), ListenOptions{}, &err);
  EXPECT_FALSE(second.valid());
  std::string want = "bind() to 127.0.0.1:" + std::to_string(port) + " failed (";
  EXPECT_EQ(err.rfind(want, 0), 0u) << err;
  EXPECT_NE(err.find(strerror(EADDRINUSE)), std::string::npos) << err;
}

TEST(OpenListener, ReuseportAllowsASecondListener) {
  ListenOptions opts;
  opts.reuseport = true;
  std::string err;
  Fd first = open_listener(loopback(0), opts, &err);
  ASSERT_TRUE(first.valid()) << err;
  Fd second = open_listener(loopback(bound_port(first.get())), opts, &err);
  EXPECT_TRUE(second.valid()) << err;
}

TEST(OpenListener, UnixSocketAndStaleFile) {
  char dir[] = "/tmp/baton-socket-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/s.sock";
  SockAddr a = parsed("unix:" + path);
  std::string err;
  {
    Fd fd = open_listener(a, ListenOptions{}, &err);
    ASSERT_TRUE(fd.valid()) << err;
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_TRUE(fcntl(fd.get(), F_GETFD) & FD_CLOEXEC);
    EXPECT_TRUE(fcntl(fd.get(), F_GETFL) & O_NONBLOCK);

    // While it listens, a second listener on the same path fails (and does not steal the path).
    Fd again = open_listener(a, ListenOptions{}, &err);
    EXPECT_FALSE(again.valid());
    EXPECT_EQ(err.rfind("bind() to unix:" + path + " failed (", 0), 0u) << err;
  }
  // The socket file outlives the closed listener; a new listener replaces the stale file.
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  err.clear();
  Fd fd = open_listener(a, ListenOptions{}, &err);
  EXPECT_TRUE(fd.valid()) << err;
  fd.reset();
  unlink(path.c_str());
  rmdir(dir);
}

TEST(OpenListener, Ipv6Loopback) {
  SockAddr a;
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  in6->sin6_family = AF_INET6;
  in6->sin6_addr = in6addr_loopback;
  a.len = sizeof(sockaddr_in6);
  std::string err;
  Fd fd = open_listener(a, ListenOptions{}, &err);
  if (!fd.valid() && (err.find("socket()") == 0 || err.find(strerror(EADDRNOTAVAIL)) != std::string::npos))
    GTEST_SKIP() << "no IPv6 here: " << err;
  ASSERT_TRUE(fd.valid()) << err;
  int v6only = 0;
  socklen_t len = sizeof(v6only);
  ASSERT_EQ(getsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len), 0);
  EXPECT_EQ(v6only, 1);  // [::]:80 must not also take 0.0.0.0:80
}

TEST(PeerAddr, KeepsIpv4AndIpv6HostAndPort) {
  SockAddr a;
  ASSERT_EQ(parse_sockaddr("203.0.113.7:5555", &a), "");
  PeerAddr p(a);
  EXPECT_EQ(p.family(), AF_INET);
  EXPECT_EQ(p.to_string(), "203.0.113.7:5555");
  char host[64];
  size_t n = p.host_into(host, sizeof(host));
  EXPECT_EQ(std::string(host, n), "203.0.113.7");

  SockAddr b;
  ASSERT_EQ(parse_sockaddr("[2001:db8::1]:443", &b), "");
  PeerAddr q(b);
  EXPECT_EQ(q.family(), AF_INET6);
  EXPECT_EQ(q.to_string(), "[2001:db8::1]:443");
  n = q.host_into(host, sizeof(host));
  EXPECT_EQ(std::string(host, n), "2001:db8::1");
}

TEST(PeerAddr, Ipv4HostIsWrittenAsInetNtopWritesIt) {
  // Octets of one, two and three digits, zeros and the extremes, against the C library's text.
  for (const char* text : {"0.0.0.0", "255.255.255.255", "10.0.99.100", "1.22.103.9", "192.168.0.1", "127.0.0.1"}) {
    SockAddr a;
    ASSERT_EQ(parse_sockaddr(std::string(text) + ":80", &a), "");
    PeerAddr p(a);
    char host[64];
    size_t n = p.host_into(host, sizeof(host));
    char want[INET_ADDRSTRLEN];
    ASSERT_NE(inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr, want, sizeof(want)), nullptr);
    EXPECT_EQ(std::string(host, n), want);
    EXPECT_EQ(std::string(host), text);  // NUL-terminated too
  }
}

TEST(PeerAddr, UnixPeerHasNoPath) {
  SockAddr a;
  ASSERT_EQ(parse_sockaddr("unix:/tmp/some.sock", &a), "");
  PeerAddr p(a);
  EXPECT_EQ(p.family(), AF_UNIX);
  EXPECT_EQ(p.to_string(), "unix:");
  char host[64];
  size_t n = p.host_into(host, sizeof(host));
  EXPECT_EQ(std::string(host, n), "unix:");
  EXPECT_LT(sizeof(PeerAddr), sizeof(SockAddr) / 3);
}

}  // namespace
}  // namespace baton

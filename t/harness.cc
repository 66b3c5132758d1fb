// Black-box test harness: process control, temporary prefixes and a raw HTTP/1.x client.
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

namespace baton_test {

namespace {

int remaining_ms(SteadyClock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()).count();
  if (left < 0) return 0;
  if (left > INT_MAX) return INT_MAX;
  return static_cast<int>(left);
}

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether the comma-separated header value lists `token` (case-insensitive).
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view item = trim(value.substr(0, comma));
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

void write_all_or_die(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ADD_FAILURE() << errno_text(("write " + path).c_str());
      return;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

void make_dirs(const std::string& path) {
  // Creates every missing component of `path`.
  for (size_t pos = 1; pos <= path.size(); pos++) {
    if (pos != path.size() && path[pos] != '/') continue;
    std::string part = path.substr(0, pos);
    if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
      ADD_FAILURE() << errno_text(("mkdir " + part).c_str());
      return;
    }
  }
}

std::string parent_dir(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos || slash == 0 ? std::string("/") : path.substr(0, slash);
}

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  ::remove(path);
  return 0;
}

constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr const char* kWeekdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

bool parse_digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

// ---- strings ----

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

int line_of(std::string_view text, std::string_view needle) {
  int line = 1;
  while (true) {
    size_t nl = text.find('\n');
    if (contains(text.substr(0, nl), needle)) return line;
    if (nl == std::string_view::npos) return 0;
    text.remove_prefix(nl + 1);
    line++;
  }
}

bool matches_pattern(std::string_view text, std::string_view pattern) {
  while (!pattern.empty()) {
    if (pattern[0] != '%' || pattern.size() < 2) {
      if (text.empty() || text[0] != pattern[0]) return false;
      text.remove_prefix(1);
      pattern.remove_prefix(1);
      continue;
    }
    char kind = pattern[1];
    pattern.remove_prefix(2);
    if (kind == '*') {
      for (size_t skip = 0; skip <= text.size(); skip++)
        if (matches_pattern(text.substr(skip), pattern)) return true;
      return false;
    }
    if (text.empty()) return false;
    unsigned char c = static_cast<unsigned char>(text[0]);
    switch (kind) {
      case 'd':
        if (!std::isdigit(c)) return false;
        break;
      case '+': {
        size_t n = 0;
        while (n < text.size() && std::isdigit(static_cast<unsigned char>(text[n]))) n++;
        if (n == 0) return false;
        for (size_t take = n; take >= 1; take--)
          if (matches_pattern(text.substr(take), pattern)) return true;
        return false;
      }
      case 'a':
        if (!std::isalpha(c)) return false;
        break;
      case 's':
        if (c != '+' && c != '-') return false;
        break;
      case '%':
        if (c != '%') return false;
        break;
      default:
        return false;  // a mistake in the pattern
    }
    text.remove_prefix(1);
  }
  return text.empty();
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  if (from.empty()) return s;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

bool CaseInsensitiveLess::operator()(std::string_view a, std::string_view b) const {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; i++) {
    int ca = std::tolower(static_cast<unsigned char>(a[i]));
    int cb = std::tolower(static_cast<unsigned char>(b[i]));
    if (ca != cb) return ca < cb;
  }
  return a.size() < b.size();
}

// ---- Response ----

bool Response::has(std::string_view name) const { return headers.find(name) != headers.end(); }

std::string Response::header(std::string_view name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

size_t Response::count(std::string_view name) const { return headers.count(std::string(name)); }

bool Response::connection_close() const {
  auto [lo, hi] = headers.equal_range(std::string("Connection"));
  for (auto it = lo; it != hi; ++it)
    if (has_token(it->second, "close")) return true;
  return false;
}

bool Response::connection_keep_alive() const {
  auto [lo, hi] = headers.equal_range(std::string("Connection"));
  for (auto it = lo; it != hi; ++it)
    if (has_token(it->second, "keep-alive")) return true;
  return false;
}

std::ostream& operator<<(std::ostream& os, const Response& r) {
  os << "\n  " << r.version << " " << r.status << " " << r.reason << "\n";
  for (const auto& [k, v] : r.headers) os << "  " << k << ": " << v << "\n";
  os << "  body (" << r.body.size() << " bytes)";
  if (!r.body.empty()) {
    std::string shown = r.body.substr(0, 300);
    for (char& c : shown)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\n') || static_cast<unsigned char>(c) >= 0x7f) c = '.';
    os << ": " << shown << (r.body.size() > 300 ? "..." : "");
  }
  return os;
}

::testing::AssertionResult is_error_page(const Response& r, int code, std::string_view reason) {
  std::string expect = std::to_string(code) + " " + std::string(reason);
  if (r.status != code || r.reason != reason)
    return ::testing::AssertionFailure() << "expected status line " << expect << ", got" << r;
  if (to_lower(r.header("Content-Type")).rfind("text/html", 0) != 0)
    return ::testing::AssertionFailure() << "error page is not text/html:" << r;
  if (!contains(r.body, "<title>" + expect + "</title>") || !contains(r.body, "<h1>" + expect + "</h1>"))
    return ::testing::AssertionFailure() << "error page lacks <title>/<h1> " << expect << ":" << r;
  if (r.has("Content-Length") && r.header("Content-Length") != std::to_string(r.body.size()))
    return ::testing::AssertionFailure() << "Content-Length does not match the body:" << r;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult has_standard_headers(const Response& r) {
  if (r.version != "HTTP/1.1") return ::testing::AssertionFailure() << "status line is not HTTP/1.1:" << r;
  if (r.header("Server") != "baton/0.1.0")
    return ::testing::AssertionFailure() << "expected Server: baton/0.1.0:" << r;
  if (r.count("Date") != 1 || !is_imf_fixdate(r.header("Date")))
    return ::testing::AssertionFailure() << "expected one Date in IMF-fixdate form:" << r;
  return ::testing::AssertionSuccess();
}

// ---- dates ----

std::string http_date(time_t t) {
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kWeekdays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::optional<time_t> parse_http_date(std::string_view s) {
  // "Sun, 06 Nov 1994 08:49:37 GMT"
  if (s.size() != 29 || s.substr(3, 2) != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[19] != ':' ||
      s[22] != ':' || s.substr(25) != " GMT")
    return std::nullopt;
  struct tm tm {};
  int wday = -1;
  for (int i = 0; i < 7; i++)
    if (s.substr(0, 3) == kWeekdays[i]) wday = i;
  tm.tm_mon = -1;
  for (int i = 0; i < 12; i++)
    if (s.substr(8, 3) == kMonths[i]) tm.tm_mon = i;
  int year;
  if (wday < 0 || tm.tm_mon < 0 || !parse_digits(s, 5, 2, &tm.tm_mday) || !parse_digits(s, 12, 4, &year) ||
      !parse_digits(s, 17, 2, &tm.tm_hour) || !parse_digits(s, 20, 2, &tm.tm_min) ||
      !parse_digits(s, 23, 2, &tm.tm_sec))
    return std::nullopt;
  tm.tm_year = year - 1900;
  time_t t = timegm(&tm);
  if (t == static_cast<time_t>(-1) || http_date(t) != s) return std::nullopt;  // also checks the weekday
  return t;
}

bool is_imf_fixdate(std::string_view s) { return parse_http_date(s).has_value(); }

// ---- Client ----

Client::Client(int port, ClientOptions opts) : Client("127.0.0.1", port, opts) {}

Client::Client(const std::string& address, int port, ClientOptions opts) : opts_(opts) {
  struct sockaddr_in v4 {};
  struct sockaddr_in6 v6 {};
  if (inet_pton(AF_INET, address.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(static_cast<uint16_t>(port));
    connect_to(reinterpret_cast<sockaddr*>(&v4), sizeof v4, AF_INET);
  } else if (inet_pton(AF_INET6, address.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(static_cast<uint16_t>(port));
    connect_to(reinterpret_cast<sockaddr*>(&v6), sizeof v6, AF_INET6);
  } else {
    error_ = "not a numeric address: " + address;
  }
  if (fd_ < 0) ADD_FAILURE() << "cannot connect to " << address << " port " << port << ": " << error_;
}

Client Client::unix_socket(const std::string& path, ClientOptions opts) {
  Client c;
  c.opts_ = opts;
  struct sockaddr_un sun {};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    c.error_ = "unix socket path too long: " + path;
  } else {
    std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    c.connect_to(reinterpret_cast<sockaddr*>(&sun), sizeof sun, AF_UNIX);
  }
  if (c.fd_ < 0) ADD_FAILURE() << "cannot connect to unix:" << path << ": " << c.error_;
  return c;
}

Client::Client(Client&& other) noexcept
    : fd_(other.fd_), opts_(other.opts_), buf_(std::move(other.buf_)), error_(std::move(other.error_)),
      eof_(other.eof_) {
  other.fd_ = -1;
}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    opts_ = other.opts_;
    buf_ = std::move(other.buf_);
    error_ = std::move(other.error_);
    eof_ = other.eof_;
    other.fd_ = -1;
  }
  return *this;
}

Client::~Client() { close(); }

void Client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool Client::connect_to(const struct sockaddr* sa, socklen_t len, int family) {
  fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) {
    error_ = errno_text("socket");
    return false;
  }
  if (opts_.rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &opts_.rcvbuf, sizeof opts_.rcvbuf);
  if (::connect(fd_, sa, len) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) {
      error_ = errno_text("connect");
      close();
      return false;
    }
    struct pollfd p = {fd_, POLLOUT, 0};
    int n = ::poll(&p, 1, static_cast<int>(opts_.timeout.count()));
    int err = 0;
    socklen_t elen = sizeof err;
    if (n <= 0) {
      error_ = "connect timed out";
    } else if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
      error_ = std::string("connect: ") + std::strerror(err);
    }
    if (n <= 0 || err != 0) {
      close();
      return false;
    }
  }
  return true;
}

bool Client::send(std::string_view data) {
  if (fd_ < 0) {
    error_ = "send on a closed client";
    return false;
  }
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd p = {fd_, POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(opts_.timeout.count())) <= 0) {
        error_ = "send timed out";
        return false;
      }
      continue;
    }
    error_ = errno_text("send");
    return false;
  }
  return true;
}

Client::Fill Client::fill(SteadyClock::time_point deadline) {
  if (fd_ < 0) {
    error_ = "read on a closed client";
    return Fill::kError;
  }
  if (eof_) return Fill::kEof;
  char chunk[65536];
  while (true) {
    struct pollfd p = {fd_, POLLIN, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error_ = errno_text("poll");
      return Fill::kError;
    }
    if (n == 0) {
      error_ = "timed out waiting for data";
      return Fill::kTimeout;
    }
    ssize_t got = ::recv(fd_, chunk, sizeof chunk, 0);
    if (got > 0) {
      buf_.append(chunk, static_cast<size_t>(got));
      return Fill::kData;
    }
    if (got == 0 || errno == ECONNRESET) {
      error_ = got == 0 ? "connection closed by the server" : "connection reset by the server";
      eof_ = true;
      return Fill::kEof;
    }
    if (errno == EINTR || errno == EAGAIN) continue;
    error_ = errno_text("recv");
    return Fill::kError;
  }
}

bool Client::need(size_t n, SteadyClock::time_point deadline) {
  while (buf_.size() < n) {
    if (fill(deadline) != Fill::kData) return false;
    deadline = SteadyClock::now() + opts_.timeout;  // the timeout is for inactivity
  }
  return true;
}

std::optional<Response> Client::read_response(bool head) {
  auto deadline = [this] { return SteadyClock::now() + opts_.timeout; };
  size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    if (buf_.size() > (1u << 20)) {
      error_ = "response header larger than 1 MiB";
      return std::nullopt;
    }
    if (fill(deadline()) != Fill::kData) {
      if (!buf_.empty()) error_ += " (after " + std::to_string(buf_.size()) + " bytes of a response head)";
      return std::nullopt;
    }
  }
  std::string head_text = buf_.substr(0, end + 2);
  buf_.erase(0, end + 4);

  Response r;
  size_t eol = head_text.find("\r\n");
  std::string_view status_line = std::string_view(head_text).substr(0, eol);
  size_t sp = status_line.find(' ');
  if (sp == std::string_view::npos || status_line.size() < sp + 4 ||
      (status_line.size() > sp + 4 && status_line[sp + 4] != ' ')) {
    error_ = "bad status line: " + std::string(status_line);
    return std::nullopt;
  }
  r.version = std::string(status_line.substr(0, sp));
  if (!parse_digits(status_line, sp + 1, 3, &r.status)) {
    error_ = "bad status code: " + std::string(status_line);
    return std::nullopt;
  }
  if (status_line.size() > sp + 5) r.reason = std::string(status_line.substr(sp + 5));

  std::string_view rest = std::string_view(head_text).substr(eol + 2);
  while (!rest.empty()) {
    size_t e = rest.find("\r\n");
    std::string_view line = rest.substr(0, e);
    rest.remove_prefix(e + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      error_ = "bad header line: " + std::string(line);
      return std::nullopt;
    }
    r.headers.emplace(std::string(line.substr(0, colon)), std::string(trim(line.substr(colon + 1))));
  }

  if (head || r.status / 100 == 1 || r.status == 204 || r.status == 304) return r;

  if (r.has("Transfer-Encoding") && has_token(r.header("Transfer-Encoding"), "chunked")) {
    while (true) {
      size_t le;
      while ((le = buf_.find("\r\n")) == std::string::npos)
        if (fill(deadline()) != Fill::kData) return std::nullopt;
      std::string size_line = buf_.substr(0, le);
      buf_.erase(0, le + 2);
      size_t size = 0;
      size_t digits = 0;
      for (char c : size_line) {
        if (!std::isxdigit(static_cast<unsigned char>(c))) break;
        int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : std::tolower(c) - 'a' + 10;
        size = size * 16 + static_cast<size_t>(v);
        digits++;
      }
      if (digits == 0) {
        error_ = "bad chunk size line: " + size_line;
        return std::nullopt;
      }
      if (size == 0) {
        // Trailer fields, then the empty line.
        while (true) {
          while ((le = buf_.find("\r\n")) == std::string::npos)
            if (fill(deadline()) != Fill::kData) return std::nullopt;
          buf_.erase(0, le + 2);
          if (le == 0) return r;
        }
      }
      if (!need(size + 2, deadline())) return std::nullopt;
      if (buf_.compare(size, 2, "\r\n") != 0) {
        error_ = "chunk data not followed by CRLF";
        return std::nullopt;
      }
      r.body.append(buf_, 0, size);
      buf_.erase(0, size + 2);
    }
  }

  if (r.has("Content-Length")) {
    std::string cl = r.header("Content-Length");
    char* endp = nullptr;
    unsigned long long n = std::strtoull(cl.c_str(), &endp, 10);
    if (cl.empty() || *endp != '\0') {
      error_ = "bad Content-Length: " + cl;
      return std::nullopt;
    }
    if (!need(n, deadline())) {
      error_ += " (body has " + std::to_string(buf_.size()) + " of " + cl + " bytes)";
      return std::nullopt;
    }
    r.body = buf_.substr(0, n);
    buf_.erase(0, n);
    return r;
  }

  // Delimited by the end of the connection.
  while (true) {
    Fill f = fill(deadline());
    if (f == Fill::kEof) break;
    if (f != Fill::kData) return std::nullopt;
  }
  r.body = std::move(buf_);
  buf_.clear();
  return r;
}

Response Client::exchange(std::string_view request, bool head) {
  if (!send(request)) {
    ADD_FAILURE() << "sending the request failed: " << error_;
    return Response{};
  }
  std::optional<Response> r = read_response(head);
  if (!r) {
    ADD_FAILURE() << "no response: " << error_;
    return Response{};
  }
  return *r;
}

std::string Client::read_all_until_close(Millis timeout) {
  auto deadline = SteadyClock::now() + timeout;
  while (fill(deadline) == Fill::kData) {
  }
  std::string out = std::move(buf_);
  buf_.clear();
  return out;
}

std::string Client::read_some(size_t max) {
  if (buf_.empty() && fill(SteadyClock::now() + opts_.timeout) != Fill::kData) return std::string();
  std::string out = buf_.substr(0, max);
  buf_.erase(0, out.size());
  return out;
}

bool Client::is_closed_by_peer(Millis timeout) {
  auto deadline = SteadyClock::now() + timeout;
  while (true) {
    switch (fill(deadline)) {
      case Fill::kData: continue;
      case Fill::kEof: return true;
      case Fill::kError: return true;  // the connection is unusable
      case Fill::kTimeout: return false;
    }
  }
}

std::string req(std::string_view method, std::string_view target, std::string_view extra_headers,
                std::string_view body) {
  std::string s;
  s.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: localhost\r\n");
  s.append(extra_headers).append("\r\n").append(body);
  return s;
}

Response get(int port, std::string_view target, std::string_view extra_headers) {
  Client c(port);
  if (!c.connected()) return Response{};
  return c.exchange(req("GET", target, std::string(extra_headers) + "Connection: close\r\n"));
}

Response head(int port, std::string_view target, std::string_view extra_headers) {
  Client c(port);
  if (!c.connected()) return Response{};
  return c.exchange(req("HEAD", target, std::string(extra_headers) + "Connection: close\r\n"), true);
}

bool can_connect(int port, Millis timeout) { return can_connect("127.0.0.1", port, timeout); }

bool can_connect(const std::string& address, int port, Millis timeout) {
  struct sockaddr_storage ss {};
  socklen_t len;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof *v6;
  } else {
    return false;
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) {
    ok = true;
  } else if (errno == EINPROGRESS) {
    struct pollfd p = {fd, POLLOUT, 0};
    int err = 0;
    socklen_t elen = sizeof err;
    ok = ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 &&
         ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0;
  }
  ::close(fd);
  return ok;
}

bool ipv6_loopback_available() {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct sockaddr_in6 sa {};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  ::close(fd);
  return ok;
}

// ---- processes and files ----

bool wait_for(const std::function<bool()>& predicate, Millis timeout, Millis step) {
  auto deadline = SteadyClock::now() + timeout;
  while (true) {
    if (predicate()) return true;
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::string();
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

int count_open_fds(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return -1;
  int n = 0;
  while (struct dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) n++;
  ::closedir(d);
  return n;
}

long process_rss_kib(pid_t pid) {
  std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
  size_t at = status.find("\nVmRSS:");
  if (at == std::string::npos) return -1;
  return std::strtol(status.c_str() + at + 7, nullptr, 10);
}

std::string process_cmdline(pid_t pid) {
  std::string s = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  for (char& c : s)
    if (c == '\0') c = ' ';
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

bool process_alive(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

std::vector<pid_t> child_pids(pid_t pid) {
  std::set<pid_t> kids;
  std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  bool have_children_files = false;
  if (DIR* d = ::opendir(task_dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::string file = task_dir + "/" + e->d_name + "/children";
      if (!file_exists(file)) continue;
      have_children_files = true;
      std::istringstream in(read_file(file));
      pid_t k;
      while (in >> k) kids.insert(k);
    }
    ::closedir(d);
  }
  if (!have_children_files) {
    // Kernels without CONFIG_PROC_CHILDREN: scan every process for its parent.
    if (DIR* d = ::opendir("/proc")) {
      while (struct dirent* e = ::readdir(d)) {
        if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
        std::string stat = read_file(std::string("/proc/") + e->d_name + "/stat");
        size_t paren = stat.rfind(')');
        if (paren == std::string::npos) continue;
        std::istringstream in(stat.substr(paren + 2));
        char state;
        pid_t ppid;
        if (in >> state >> ppid && ppid == pid) kids.insert(static_cast<pid_t>(std::atoi(e->d_name)));
      }
      ::closedir(d);
    }
  }
  std::vector<pid_t> out;
  for (pid_t k : kids)
    if (process_alive(k)) out.push_back(k);
  return out;
}

std::string generate_content(size_t size, unsigned seed) {
  std::string s(size, '\0');
  uint64_t x = 0x9e3779b97f4a7c15ull ^ (static_cast<uint64_t>(seed) * 0x2545f4914f6cdd1dull);
  for (size_t i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

::testing::AssertionResult same_bytes(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t n = std::min(got.size(), want.size());
  size_t i = 0;
  while (i < n && got[i] == want[i]) i++;
  return ::testing::AssertionFailure() << "got " << got.size() << " bytes, expected " << want.size()
                                       << "; first difference at offset " << i;
}

std::string baton_binary() {
  if (const char* env = std::getenv("BATON_BINARY"); env && *env) return env;
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "baton";
  self[n] = '\0';
  return parent_dir(self) + "/baton";
}

namespace {

// What to exec, prepared before the fork so that the child (of a process that may run threads) only
// has to call async-signal-safe functions.
struct ExecSpec {
  std::string binary;
  std::vector<std::string> arg_store;
  std::vector<std::string> env_store;
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::string exec_error;  // written if execve fails
};

ExecSpec make_exec_spec(const std::string& binary, const std::vector<std::string>& args,
                        const std::vector<std::pair<std::string, std::string>>& env) {
  ExecSpec spec;
  spec.binary = binary;
  spec.arg_store.push_back(binary);
  spec.arg_store.insert(spec.arg_store.end(), args.begin(), args.end());
  for (char** e = environ; e && *e; e++) {
    std::string_view entry(*e);
    std::string_view name = entry.substr(0, entry.find('='));
    bool replaced = std::any_of(env.begin(), env.end(), [&](const auto& kv) { return kv.first == name; });
    if (!replaced) spec.env_store.emplace_back(entry);
  }
  for (const auto& [k, v] : env) spec.env_store.push_back(k + "=" + v);
  for (std::string& a : spec.arg_store) spec.argv.push_back(a.data());
  spec.argv.push_back(nullptr);
  for (std::string& e : spec.env_store) spec.envp.push_back(e.data());
  spec.envp.push_back(nullptr);
  spec.exec_error = "exec " + binary + ": ";
  return spec;
}

// The child side of a fork: plain signal state, then exec.
[[noreturn]] void exec_spec(const ExecSpec& spec) {
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int sig = 1; sig < NSIG; sig++) ::signal(sig, SIG_DFL);
  ::execve(spec.binary.c_str(), spec.argv.data(), spec.envp.data());
  std::string msg = spec.exec_error + std::strerror(errno) + "\n";
  ssize_t ignored = ::write(2, msg.data(), msg.size());
  (void)ignored;
  ::_exit(127);
}

int pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_in sa {};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0)
    port = ntohs(sa.sin_port);
  ::close(fd);
  return port;
}

}  // namespace

RunResult run_baton(const std::vector<std::string>& args, Millis timeout) {
  RunOptions opts;
  opts.timeout = timeout;
  return run_baton_with(args, opts);
}

std::string tool_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path && *path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

RunResult run_baton_with(const std::vector<std::string>& args, const RunOptions& opts) {
  RunResult res;
  Millis timeout = opts.timeout;
  ExecSpec spec = make_exec_spec(opts.binary.empty() ? baton_binary() : opts.binary, args, opts.env);
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return res;
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return res;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    if (opts.gid != static_cast<gid_t>(-1)) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(opts.gid) != 0) ::_exit(126);
    }
    if (opts.uid != static_cast<uid_t>(-1) && ::setuid(opts.uid) != 0) ::_exit(126);
    exec_spec(spec);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (pid < 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    res.err = errno_text("fork");
    return res;
  }
  auto deadline = SteadyClock::now() + timeout;
  struct pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&res.out, &res.err};
  int open_count = 2;
  bool timed_out = false;
  while (open_count > 0) {
    int n = ::poll(fds, 2, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      timed_out = true;
      break;
    }
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        open_count--;
      }
    }
  }
  for (auto& p : fds)
    if (p.fd >= 0) ::close(p.fd);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    res.err += "\n[test harness: baton did not finish in time and was killed]";
    res.exit_code = -1;
  } else {
    res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  return res;
}

// ---- BatonServer ----

BatonServer::BatonServer() {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/baton-t.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) {
    ADD_FAILURE() << errno_text(("mkdtemp " + tmpl).c_str());
    prefix_ = "/nonexistent-baton-prefix";
    return;
  }
  prefix_ = buf.data();
  ::chmod(prefix_.c_str(), 0755);
  make_dir("conf");
  make_dir("logs");
  make_dir("html");
  write_file("conf/mime.types",
             "[types]\n"
             "text/html = html htm\n"
             "text/plain = txt\n"
             "image/png = png\n"
             "application/json = json\n"
             "text/css = css\n");
}

BatonServer::~BatonServer() {
  bool failed = ::testing::Test::HasFailure();
  if (!exited_ || !own_processes().empty()) stop(SIGTERM, 5000ms);
  kill_leftovers();
  if (failed) std::cerr << diagnostics();
  const char* keep = std::getenv("BATON_TEST_KEEP");
  if (keep && *keep) {
    std::cerr << "[test harness] kept prefix " << prefix_ << "\n";
  } else if (prefix_.rfind("/nonexistent", 0) != 0) {
    ::nftw(prefix_.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  }
}

std::string BatonServer::path(std::string_view rel) const {
  if (rel.empty()) return prefix_;
  return prefix_ + "/" + std::string(rel);
}

void BatonServer::write_file(std::string_view rel, std::string_view content) const {
  std::string p = path(rel);
  make_dirs(parent_dir(p));
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    ADD_FAILURE() << errno_text(("open " + p).c_str());
    return;
  }
  ::fchmod(fd, 0644);
  write_all_or_die(fd, content, p);
  ::close(fd);
}

std::string BatonServer::write_generated(std::string_view rel, size_t size, unsigned seed) const {
  std::string content = generate_content(size, seed);
  write_file(rel, content);
  return content;
}

void BatonServer::make_dir(std::string_view rel) const { make_dirs(path(rel)); }

void BatonServer::make_symlink(std::string_view target, std::string_view rel) const {
  std::string p = path(rel);
  make_dirs(parent_dir(p));
  if (::symlink(std::string(target).c_str(), p.c_str()) != 0) ADD_FAILURE() << errno_text(("symlink " + p).c_str());
}

void BatonServer::set_mtime(std::string_view rel, time_t mtime) const {
  std::string p = path(rel);
  struct timespec times[2] = {{mtime, 0}, {mtime, 0}};
  if (::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
    ADD_FAILURE() << errno_text(("utimensat " + p).c_str());
}

int BatonServer::port(size_t index) {
  while (ports_.size() <= index) {
    int p = pick_free_port();
    if (p <= 0) {
      ADD_FAILURE() << "cannot find a free port";
      return 0;
    }
    if (std::find(ports_.begin(), ports_.end(), p) == ports_.end()) ports_.push_back(p);
  }
  return ports_[index];
}

void BatonServer::set_config(std::string_view text) {
  std::string s = replace_all(std::string(text), "@PREFIX@", prefix_);
  const char* names[] = {"@PORT@", "@PORT2@", "@PORT3@"};
  for (size_t i = 0; i < 3; i++)
    if (contains(s, names[i])) s = replace_all(s, names[i], std::to_string(port(i)));
  config_ = s;
  write_file("conf/baton.ini", config_);
}

RunResult BatonServer::test_config(const std::vector<std::string>& flags) const {
  std::vector<std::string> args = {"-p", prefix_};
  args.insert(args.end(), flags.begin(), flags.end());
  args.push_back("-c");
  args.push_back(config_path());
  return run_baton(args);
}

::testing::AssertionResult BatonServer::start(const std::function<bool()>& ready) {
  if (!exited_) return ::testing::AssertionFailure() << "the server is already running";
  std::string binary = this->binary();
  if (::access(binary.c_str(), X_OK) != 0)
    return ::testing::AssertionFailure() << "no baton binary at " << binary << " (set BATON_BINARY)";
  std::function<bool()> is_ready = ready;
  if (!is_ready) {
    int p = port(0);
    is_ready = [p] { return can_connect(p, 200ms); };
  }
  std::string out = path("server.stdout"), err = path("server.stderr");
  ExecSpec spec = make_exec_spec(binary, {"-p", prefix_, "-c", config_path()}, env_);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return ::testing::AssertionFailure() << errno_text("fork");
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int in_fd = ::open("/dev/null", O_RDONLY);
    int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in_fd >= 0) ::dup2(in_fd, 0);
    if (out_fd >= 0) ::dup2(out_fd, 1);
    if (err_fd >= 0) ::dup2(err_fd, 2);
    exec_spec(spec);
  }
  master_ = pid;
  exited_ = false;
  known_workers_.clear();
  auto deadline = SteadyClock::now() + 10000ms;
  while (true) {
    if (!running()) {
      return ::testing::AssertionFailure() << "baton exited during start-up with status " << exit_status_
                                           << diagnostics();
    }
    if (is_ready()) return ::testing::AssertionSuccess();
    if (SteadyClock::now() >= deadline) break;
    std::this_thread::sleep_for(20ms);
  }
  return ::testing::AssertionFailure() << "baton did not become ready within 10 s" << diagnostics();
}

std::vector<pid_t> BatonServer::worker_pids() const {
  if (exited_) return {};
  std::vector<pid_t> w = child_pids(master_);
  for (pid_t p : w)
    if (std::find(known_workers_.begin(), known_workers_.end(), p) == known_workers_.end())
      known_workers_.push_back(p);
  return w;
}

bool BatonServer::signal(int sig) const { return !exited_ && ::kill(master_, sig) == 0; }

bool BatonServer::running() {
  if (exited_) return false;
  int status = 0;
  pid_t r = ::waitpid(master_, &status, WNOHANG);
  if (r == master_) {
    exited_ = true;
    exit_status_ = status;
    return false;
  }
  return true;
}

std::optional<int> BatonServer::wait_exit(Millis timeout) {
  if (wait_for([this] { return !running(); }, timeout, 5ms)) return exit_status_;
  return std::nullopt;
}

std::optional<int> BatonServer::stop(int sig, Millis timeout) {
  if (master_ < 0) return std::nullopt;
  {
    // After a live upgrade: other masters of this server (the successor named by the pid file, and
    // the old one if it is still draining) are stopped with the same signal.
    bool original_running = running();
    std::vector<pid_t> masters;
    for (pid_t m : census().masters)
      if (m != master_) masters.push_back(m);
    if (!masters.empty()) {
      for (pid_t m : masters) workers_of(m);  // remember the workers
      if (original_running) {
        worker_pids();
        ::kill(master_, sig);
      }
      for (pid_t m : masters) ::kill(m, sig);
      bool all_gone = wait_for(
          [&] {
            if (original_running && running()) return false;
            return std::none_of(masters.begin(), masters.end(), [](pid_t m) { return process_alive(m); });
          },
          timeout, 5ms);
      if (all_gone) {
        wait_for(
            [this] {
              for (pid_t w : known_workers_)
                if (process_alive(w)) return false;
              return true;
            },
            2000ms);
      }
      kill_leftovers();
      if (!all_gone) return std::nullopt;
      // The harness cannot know the exit status of a master that is not its child: 0 stands for
      // "exited in time".
      return original_running ? std::optional<int>(exit_status_) : std::optional<int>(0);
    }
  }
  if (!running()) {
    kill_leftovers();
    return exit_status_;
  }
  worker_pids();  // remember them, to clean up if they outlive the master
  ::kill(master_, sig);
  std::optional<int> status = wait_exit(timeout);
  if (!status) {
    kill_leftovers();
    return std::nullopt;
  }
  // Workers should follow their master; give them a moment, then make sure.
  wait_for(
      [this] {
        for (pid_t w : known_workers_)
          if (process_alive(w)) return false;
        return true;
      },
      2000ms);
  kill_leftovers();
  return status;
}

void BatonServer::kill_leftovers() {
  if (master_ < 0) return;
  if (!exited_) {
    ::kill(master_, SIGKILL);
    int status;
    while (::waitpid(master_, &status, 0) < 0 && errno == EINTR) {
    }
    exited_ = true;
    exit_status_ = status;
  }
  // The master made its own process group at start; anything left in it is ours.
  ::kill(-master_, SIGKILL);
  for (pid_t w : known_workers_)
    if (process_alive(w)) ::kill(w, SIGKILL);
  // Masters started by a live upgrade (and their workers), should any have left the group.
  for (int round = 0; round < 3; round++) {
    std::vector<pid_t> left = own_processes();
    if (left.empty()) break;
    for (pid_t p : left) ::kill(p, SIGKILL);
    wait_for([this] { return own_processes().empty(); }, 1000ms);
  }
}

std::string BatonServer::diagnostics() const {
  auto tail = [](std::string s) {
    if (s.size() > 4000) s = "..." + s.substr(s.size() - 4000);
    return s;
  };
  std::ostringstream os;
  os << "\n---- baton prefix: " << prefix_ << "\n---- logs/error.log:\n"
     << tail(error_log()) << "\n---- stderr:\n"
     << tail(server_stderr()) << "\n----\n";
  return os.str();
}

std::string make_config(std::string_view servers, std::string_view http_extra, int workers) {
  std::string s;
  s += "[main]\n";
  s += "worker_processes = " + std::to_string(workers) + "\n";
  s += "error_log = logs/error.log\n";
  s += "pid = logs/baton.pid\n";
  s += "\n[http]\n";
  s += "types = conf/mime.types\n";
  s += "access_log = logs/access.log combined\n";
  s += "default_type = application/octet-stream\n";
  s += http_extra;
  if (!http_extra.empty() && http_extra.back() != '\n') s += "\n";
  s += "\n";
  s += servers;
  return s;
}

std::string make_config_main(std::string_view main_extra, std::string_view servers, std::string_view http_extra,
                             int workers) {
  std::string s = make_config(servers, http_extra, workers);
  std::string extra(main_extra);
  if (!extra.empty() && extra.back() != '\n') extra += "\n";
  size_t pos = s.find("\n[http]\n");
  s.insert(pos, extra);
  return s;
}

std::string make_runtime_config(std::string_view servers, std::string_view main_extra, int workers,
                                std::string_view http_extra) {
  const std::vector<std::string> defaults = {"quit_timeout = 2s", "upgrade_timeout = 3s",
                                             "restart_initial_backoff = 200ms"};
  std::string extra(main_extra);
  if (!extra.empty() && extra.back() != '\n') extra += "\n";
  std::string main;
  for (const std::string& line : defaults) {
    std::string key = line.substr(0, line.find(' '));
    std::string lines = "\n" + extra;
    if (!contains(lines, "\n" + key + " ") && !contains(lines, "\n" + key + "=")) main += line + "\n";
  }
  main += extra;
  return make_config_main(main, servers, "keepalive_timeout = 5s\n" + std::string(http_extra), workers);
}

// ---- process runtime helpers ----

namespace {

struct ProcStat {
  pid_t ppid = -1;
  pid_t pgrp = -1;
  char state = '?';
};

std::optional<ProcStat> read_proc_stat(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return std::nullopt;
  std::istringstream in(stat.substr(paren + 2));
  ProcStat st;
  if (!(in >> st.state >> st.ppid >> st.pgrp)) return std::nullopt;
  return st;
}

std::vector<pid_t> all_pids() {
  std::vector<pid_t> out;
  if (DIR* d = ::opendir("/proc")) {
    while (struct dirent* e = ::readdir(d)) {
      if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
      out.push_back(static_cast<pid_t>(std::atol(e->d_name)));
    }
    ::closedir(d);
  }
  return out;
}

// Parses a decimal number that makes up all of `s`.
bool parse_long(std::string_view s, long* out) {
  if (s.empty() || s.size() > 18) return false;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

// `key=value` tokens separated by single spaces, in exactly the order of `keys`.
bool parse_fields(std::string_view line, const std::vector<std::string>& keys, std::vector<std::string>* values) {
  values->clear();
  for (size_t i = 0; i < keys.size(); i++) {
    std::string prefix = keys[i] + "=";
    if (line.substr(0, prefix.size()) != prefix) return false;
    line.remove_prefix(prefix.size());
    size_t sp = line.find(' ');
    if (i + 1 == keys.size()) {
      if (sp != std::string_view::npos) return false;
      values->emplace_back(line);
    } else {
      if (sp == std::string_view::npos) return false;
      values->emplace_back(line.substr(0, sp));
      line.remove_prefix(sp + 1);
    }
  }
  return true;
}

}  // namespace

pid_t parent_of(pid_t pid) {
  auto st = read_proc_stat(pid);
  return st ? st->ppid : -1;
}

pid_t process_group_of(pid_t pid) {
  auto st = read_proc_stat(pid);
  return st ? st->pgrp : -1;
}

std::string process_exe(pid_t pid) {
  char buf[PATH_MAX + 32];
  std::string link = "/proc/" + std::to_string(pid) + "/exe";
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return std::string();
  return std::string(buf, static_cast<size_t>(n));
}

bool is_master_title(std::string_view cmdline) { return cmdline.rfind("baton: master process", 0) == 0; }
bool is_worker_title(std::string_view cmdline) { return cmdline.rfind("baton: worker process", 0) == 0; }

pid_t wait_for_new_master(pid_t old_master, const std::vector<pid_t>& workers, Millis timeout) {
  pid_t found = 0;
  wait_for(
      [&] {
        for (pid_t c : child_pids(old_master)) {
          if (std::find(workers.begin(), workers.end(), c) != workers.end()) continue;
          if (!is_worker_title(process_cmdline(c))) {
            found = c;
            return true;
          }
        }
        return false;
      },
      timeout, 2ms);
  return found;
}

pid_t read_pid_file(const std::string& path) {
  std::string text = trim_end(read_file(path));
  long v = 0;
  if (!parse_long(text, &v) || v <= 0) return 0;
  return static_cast<pid_t>(v);
}

std::string trim_end(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  return s;
}

std::string describe(const RunResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

bool none_alive(const std::vector<pid_t>& pids) {
  for (pid_t p : pids)
    if (process_alive(p)) return false;
  return true;
}

std::optional<StatusReport> status_of(const BatonServer& s) {
  RunResult r = s.ctl("status");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  std::string why;
  std::optional<StatusReport> st = parse_status(r.out, &why);
  EXPECT_TRUE(st) << why << "\n" << describe(r);
  return r.exit_code == 0 ? st : std::nullopt;
}

std::optional<UpgradeOutcome> parse_upgrade_success(std::string_view out) {
  std::string line = trim_end(std::string(out));
  constexpr std::string_view kHead = "upgrade succeeded: master pid ";
  constexpr std::string_view kMid = ", generation ";
  if (line.rfind(kHead, 0) != 0 || contains(line, "\n")) return std::nullopt;
  std::string_view rest = std::string_view(line).substr(kHead.size());
  size_t mid = rest.find(kMid);
  if (mid == std::string_view::npos) return std::nullopt;
  long pid = 0, gen = 0;
  if (!parse_long(rest.substr(0, mid), &pid) || !parse_long(rest.substr(mid + kMid.size()), &gen) || pid <= 0)
    return std::nullopt;
  return UpgradeOutcome{static_cast<pid_t>(pid), gen};
}

std::optional<long> parse_reload_success(std::string_view out) {
  std::string line = trim_end(std::string(out));
  constexpr std::string_view kHead = "reload succeeded: generation ";
  if (line.rfind(kHead, 0) != 0) return std::nullopt;
  long gen = 0;
  if (!parse_long(std::string_view(line).substr(kHead.size()), &gen)) return std::nullopt;
  return gen;
}

std::optional<StatusReport> parse_status(std::string_view out, std::string* error) {
  std::string dummy;
  std::string& err = error ? *error : dummy;
  StatusReport r;
  std::string text = trim_end(std::string(out));
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    n++;
    std::vector<std::string> v;
    long num = 0;
    if (n == 1) {
      if (line.rfind("master: ", 0) != 0 ||
          !parse_fields(std::string_view(line).substr(8), {"pid", "generation", "state"}, &v)) {
        err = "line 1 is not `master: pid=P generation=G state=S`: " + line;
        return std::nullopt;
      }
      if (!parse_long(v[0], &num)) return err = "bad master pid: " + line, std::nullopt;
      r.master_pid = static_cast<pid_t>(num);
      if (!parse_long(v[1], &r.generation)) return err = "bad master generation: " + line, std::nullopt;
      r.state = v[2];
      if (r.state != "running" && r.state != "upgrading") return err = "bad master state: " + line, std::nullopt;
      continue;
    }
    std::string note;
    if (size_t open = line.find(" ("); open != std::string::npos && line.back() == ')') {
      note = line.substr(open + 2, line.size() - open - 3);
      line.resize(open);
    }
    if (line.rfind("worker: ", 0) != 0 ||
        !parse_fields(std::string_view(line).substr(8), {"pid", "generation", "state", "connections", "received"}, &v)) {
      err = "line " + std::to_string(n) + " is not `worker: pid=W generation=G state=S connections=N received=R`: " + line;
      return std::nullopt;
    }
    StatusReport::Worker w;
    if (!parse_long(v[0], &num)) return err = "bad worker pid: " + line, std::nullopt;
    w.pid = static_cast<pid_t>(num);
    if (!parse_long(v[1], &w.generation)) return err = "bad worker generation: " + line, std::nullopt;
    w.state = v[2];
    if (w.state != "active" && w.state != "draining" && w.state != "not-responding")
      return err = "bad worker state: " + line, std::nullopt;
    if ((w.state == "not-responding") != !note.empty()) return err = "bad note for the worker state: " + line, std::nullopt;
    w.note = note;
    if (!parse_long(v[3], &w.connections)) return err = "bad connection count: " + line, std::nullopt;
    if (!parse_long(v[4], &w.received)) return err = "bad received count: " + line, std::nullopt;
    r.workers.push_back(w);
  }
  if (n == 0) {
    err = "empty output";
    return std::nullopt;
  }
  return r;
}

bool install_content(std::string_view content, const std::string& to) {
  std::string tmp = to + ".tmp-install";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  if (fd < 0) {
    ADD_FAILURE() << errno_text(("open " + tmp).c_str());
    return false;
  }
  write_all_or_die(fd, content, tmp);
  ::fchmod(fd, 0755);
  ::close(fd);
  if (::rename(tmp.c_str(), to.c_str()) != 0) {
    ADD_FAILURE() << errno_text(("rename " + tmp).c_str());
    return false;
  }
  return true;
}

bool install_file(const std::string& from, const std::string& to, std::string_view extra) {
  std::string content = read_file(from);
  if (content.empty()) {
    ADD_FAILURE() << "cannot read " << from;
    return false;
  }
  content.append(extra);
  make_dirs(parent_dir(to));
  return install_content(content, to);
}

// ---- stand-ins for the new binary of a live upgrade ----

namespace {

std::string self_executable() {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return std::string();
  return std::string(self, static_cast<size_t>(n));
}

// The control protocol as it travels (see the design's "Live binary upgrade"): one message per
// SOCK_SEQPACKET packet, a header (magic "btcn", version 1, type, payload length, number of
// descriptors; host byte order) and a payload of "key=value" lines.
struct WireHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t length;
  uint32_t nfds;
};
constexpr uint32_t kWireMagic = 0x6274636eu;
constexpr uint16_t kWireRegister = 1, kWireFdRequest = 3, kWireFdTransferStart = 4, kWireAck = 5, kWireFd = 11;

bool wire_send(int fd, uint16_t type, const std::string& payload) {
  WireHeader h{kWireMagic, 1, type, static_cast<uint32_t>(payload.size()), 0};
  std::string packet(reinterpret_cast<const char*>(&h), sizeof h);
  packet += payload;
  return ::send(fd, packet.data(), packet.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(packet.size());
}

// The next message's type (-1 on error, end of stream or after 10 s); its descriptors stay open.
int wire_recv(int fd, std::string* payload) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 10000) != 1) return -1;
  std::string buf(sizeof(WireHeader) + 65536, '\0');
  iovec iov{buf.data(), buf.size()};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 64)];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  ssize_t n = ::recvmsg(fd, &mh, 0);
  WireHeader h;
  if (n < static_cast<ssize_t>(sizeof h)) return -1;
  std::memcpy(&h, buf.data(), sizeof h);
  if (h.magic != kWireMagic) return -1;
  payload->assign(buf.data() + sizeof h, static_cast<size_t>(n) - sizeof h);
  return h.type;
}

long wire_field(const std::string& payload, const std::string& key) {
  std::istringstream in(payload);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + "=", 0) == 0) return std::atol(line.c_str() + key.size() + 1);
  return -1;
}

int wire_connect(const std::string& text) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (text.empty() || text.size() >= sizeof a.sun_path) return -1;
  socklen_t len;
  if (text[0] == '@') {
    std::memcpy(a.sun_path + 1, text.data() + 1, text.size() - 1);
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size());
  } else {
    std::memcpy(a.sun_path, text.data(), text.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size() + 1);
  }
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&a), len) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string base64_decode(std::string_view in) {
  static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    size_t v = kAlphabet.find(c);
    if (v == std::string::npos) break;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// The scripted new master: runs in place of the tests when the test binary is started as the new
// binary of an upgrade (see install_scripted_new_master). Its exit status says how far it got.
int scripted_new_master(std::string_view role) {
  const char* sock = std::getenv("BATON_CONTROL_SOCKET");
  const char* mark = std::getenv("BATON_T_MARK");
  if (!sock || !mark) return 10;
  std::string address = base64_decode(sock);
  std::string payload;
  int reg = wire_connect(address);
  if (reg < 0 || !wire_send(reg, kWireRegister, "role=upgrade\npid=" + std::to_string(::getpid()) + "\n") ||
      wire_recv(reg, &payload) != kWireAck)
    return 11;
  int transfer = wire_connect(address);
  if (transfer < 0 || !wire_send(transfer, kWireFdRequest, "") || wire_recv(transfer, &payload) != kWireFdTransferStart)
    return 12;
  if (role == "holds-listeners") {
    long count = wire_field(payload, "count");
    if (count < 0 || !wire_send(transfer, kWireAck, "")) return 13;
    for (long i = 0; i < count; i++)
      if (wire_recv(transfer, &payload) != kWireFd) return 14;
    if (!wire_send(transfer, kWireAck, "count=" + std::to_string(count) + "\n")) return 15;
  }
  int fd = ::open(mark, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) ::close(fd);
  // Waits to be killed; a bound so that nothing is left behind should nobody do it.
  for (int i = 0; i < 120; i++) ::sleep(1);
  return 16;
}

// Before GoogleTest starts: the test binary started as a scripted new master plays that part only.
const bool kScriptedNewMasterChecked = [] {
  const char* role = std::getenv("BATON_T_NEW_MASTER");
  if (role && std::getenv("BATON_UPGRADE")) ::_exit(scripted_new_master(role));
  return true;
}();

}  // namespace

bool install_stopping_binary(const std::string& real, const std::string& path) {
  return install_content("#!/bin/sh\n[ \"$BATON_UPGRADE\" = 1 ] && kill -STOP $$\nexec '" + real + "' \"$@\"\n", path);
}

bool install_scripted_new_master(ScriptedNewMaster role, const std::string& path, const std::string& mark) {
  std::string self = self_executable();
  if (self.empty()) {
    ADD_FAILURE() << errno_text("readlink /proc/self/exe");
    return false;
  }
  const char* name = role == ScriptedNewMaster::kStallsTransfer ? "stalls-transfer" : "holds-listeners";
  return install_content("#!/bin/sh\nBATON_T_NEW_MASTER=" + std::string(name) + " BATON_T_MARK='" + mark + "' exec '" +
                             self + "'\n",
                         path);
}

bool process_stopped(pid_t pid) {
  auto st = read_proc_stat(pid);
  return st && st->state == 'T';
}

// ---- BatonServer: process runtime ----

std::string BatonServer::binary() const { return binary_.empty() ? baton_binary() : binary_; }

void BatonServer::set_env(const std::string& name, const std::string& value) {
  for (auto& kv : env_) {
    if (kv.first == name) {
      kv.second = value;
      return;
    }
  }
  env_.emplace_back(name, value);
}

pid_t BatonServer::pid_from_file() const { return read_pid_file(pid_path()); }

pid_t BatonServer::current_master() const {
  pid_t p = pid_from_file();
  if (p > 0 && process_alive(p)) return p;
  p = read_pid_file(oldbin_path());
  if (p > 0 && process_alive(p)) return p;
  if (!exited_ && process_alive(master_)) return master_;
  return 0;
}

std::vector<pid_t> BatonServer::workers_of(pid_t master) const {
  std::vector<pid_t> out;
  if (master <= 0) return out;
  for (pid_t c : child_pids(master)) {
    if (!is_worker_title(process_cmdline(c))) continue;
    out.push_back(c);
    if (std::find(known_workers_.begin(), known_workers_.end(), c) == known_workers_.end())
      known_workers_.push_back(c);
  }
  return out;
}

bool BatonServer::original_exited() { return !running(); }

bool BatonServer::wait_old_generations_gone(Millis timeout) const {
  return wait_for(
      [&] {
        Census c = census();
        return c.masters.size() == 1 && c.draining.empty() && c.others.empty() && !c.workers.empty();
      },
      timeout, 20ms);
}

std::vector<pid_t> BatonServer::own_processes() const {
  std::vector<pid_t> out;
  if (master_ <= 0 || prefix_.rfind("/nonexistent", 0) == 0) return out;
  const pid_t self = ::getpid();
  std::map<pid_t, pid_t> parents;
  std::set<pid_t> mine;
  for (pid_t p : all_pids()) {
    if (p == self) continue;
    auto st = read_proc_stat(p);
    if (!st || st->state == 'Z' || st->state == 'X') continue;
    parents[p] = st->ppid;
    if (st->pgrp == master_) {
      mine.insert(p);
      continue;
    }
    std::string cmd = process_cmdline(p);
    if (is_master_title(cmd) && contains(cmd, prefix_)) mine.insert(p);
  }
  // Descendants of those.
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& [p, pp] : parents) {
      if (!mine.count(p) && mine.count(pp)) {
        mine.insert(p);
        grew = true;
      }
    }
  }
  out.assign(mine.begin(), mine.end());
  return out;
}

BatonServer::Census BatonServer::census() const {
  Census c;
  for (pid_t p : own_processes()) {
    std::string cmd = process_cmdline(p);
    if (!process_alive(p)) continue;
    if (is_master_title(cmd)) {
      c.masters.push_back(p);
    } else if (cmd == "baton: worker process") {
      c.workers.push_back(p);
    } else if (is_worker_title(cmd)) {
      c.draining.push_back(p);
    } else {
      c.others.push_back(p);
    }
  }
  return c;
}

std::string BatonServer::Census::describe() const {
  std::ostringstream os;
  auto list = [&](const char* name, const std::vector<pid_t>& v) {
    os << name << ":";
    for (pid_t p : v) os << " " << p << " [" << process_cmdline(p) << "] (parent " << parent_of(p) << ")";
    os << "\n";
  };
  list("masters", masters);
  list("workers", workers);
  list("draining", draining);
  list("others", others);
  return os.str();
}

RunResult BatonServer::ctl(std::string_view signal, Millis timeout) const {
  return run_baton({"-p", prefix_, "-c", config_path(), "-s", std::string(signal)}, timeout);
}

// ---- NotifySocket ----

std::optional<std::string> NotifySocket::Message::field(std::string_view key) const {
  std::string_view rest = text;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == '=')
      return std::string(line.substr(key.size() + 1));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  return std::nullopt;
}

NotifySocket::NotifySocket(std::string address) : address_(std::move(address)) {
  struct sockaddr_un sun {};
  sun.sun_family = AF_UNIX;
  socklen_t len;
  if (address_.empty() || address_.size() >= sizeof sun.sun_path) {
    error_ = "bad notification socket address: " + address_;
    return;
  }
  if (address_[0] == '@') {
    sun.sun_path[0] = '\0';
    std::memcpy(sun.sun_path + 1, address_.data() + 1, address_.size() - 1);
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
  } else {
    path_ = address_;
    ::unlink(path_.c_str());
    std::memcpy(sun.sun_path, address_.c_str(), address_.size() + 1);
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size() + 1);
  }
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error_ = errno_text("socket");
    return;
  }
  int one = 1;
  ::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
  int big = 1 << 20;
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&sun), len) != 0) {
    error_ = errno_text(("bind " + address_).c_str());
    ::close(fd_);
    fd_ = -1;
    return;
  }
  if (!path_.empty()) ::chmod(path_.c_str(), 0666);
}

NotifySocket::~NotifySocket() {
  if (fd_ >= 0) ::close(fd_);
  if (!path_.empty()) ::unlink(path_.c_str());
}

std::optional<NotifySocket::Message> NotifySocket::receive(Millis timeout) {
  if (fd_ < 0) return std::nullopt;
  auto deadline = SteadyClock::now() + timeout;
  while (true) {
    struct pollfd p = {fd_, POLLIN, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    char buf[8192];
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(struct ucred)) + 64];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    ssize_t got = ::recvmsg(fd_, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      error_ = errno_text("recvmsg");
      return std::nullopt;
    }
    Message m;
    m.text.assign(buf, static_cast<size_t>(got));
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        struct ucred cred;
        std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
        m.sender = cred.pid;
      } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        // Descriptors are not expected; do not leak them.
        size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
          ::close(fd);
        }
      }
    }
    history_.push_back(m);
    return m;
  }
}

std::optional<NotifySocket::Message> NotifySocket::wait_for(const std::function<bool(const Message&)>& pred,
                                                            Millis timeout) {
  auto deadline = SteadyClock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
    if (left < 0ms) left = 0ms;
    std::optional<Message> m = receive(left);
    if (!m) return std::nullopt;
    if (pred(*m)) return m;
  }
}

std::optional<NotifySocket::Message> NotifySocket::wait_for_field(std::string_view key, std::string_view value,
                                                                  Millis timeout) {
  std::string k(key), v(value);
  return wait_for([k, v](const Message& m) { return m.field(k) == v; }, timeout);
}

std::string NotifySocket::describe() const {
  std::ostringstream os;
  os << history_.size() << " notification(s) on " << address_ << (error_.empty() ? "" : " (" + error_ + ")")
     << ":\n";
  for (const Message& m : history_) {
    std::string t = m.text;
    for (char& c : t)
      if (c == '\n') c = '|';
    os << "  from " << m.sender << ": " << t << "\n";
  }
  return os.str();
}

// ---- LoadGenerator ----

struct LoadGenerator::State {
  LoadOptions opts;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0}, failed{0}, refused{0}, connections{0};
  mutable std::mutex mu;
  std::vector<std::string> errors;
  SteadyClock::time_point started = SteadyClock::now();
  std::vector<std::thread> threads;

  void fail(const std::string& what) {
    failed++;
    std::lock_guard<std::mutex> lock(mu);
    if (errors.size() < 20) {
      auto ms = std::chrono::duration_cast<Millis>(SteadyClock::now() - started).count();
      errors.push_back("at " + std::to_string(ms) + " ms: " + what);
    }
  }
};

namespace {

// One connection of the load generator, blocking I/O with a poll timeout.
class LoadConn {
 public:
  ~LoadConn() { close(); }
  // 1 connected, 0 refused, -1 another error (in *err).
  int open(int port, Millis timeout, std::string* err) {
    close();
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) {
      *err = errno_text("socket");
      return -1;
    }
    struct sockaddr_in sa {};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    int e = rc == 0 ? 0 : errno;
    if (rc != 0 && e == EINPROGRESS) {
      struct pollfd p = {fd_, POLLOUT, 0};
      int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
      socklen_t elen = sizeof e;
      if (n <= 0) {
        e = ETIMEDOUT;
      } else if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &e, &elen) != 0) {
        e = errno;
      }
    }
    if (e != 0) {
      close();
      *err = std::string("connect: ") + std::strerror(e);
      return e == ECONNREFUSED ? 0 : -1;
    }
    buf_.clear();
    return 1;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool is_open() const { return fd_ >= 0; }

  bool send_all(std::string_view data, Millis timeout, std::string* err) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        struct pollfd p = {fd_, POLLOUT, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) {
          *err = "send timed out";
          return false;
        }
        continue;
      }
      *err = errno_text("send");
      return false;
    }
    return true;
  }

  // 1 data, 0 end of stream (or reset), -1 timeout or error.
  int fill(Millis timeout, std::string* err) {
    while (true) {
      struct pollfd p = {fd_, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        *err = "timed out waiting for the response";
        return -1;
      }
      char chunk[16384];
      ssize_t got = ::recv(fd_, chunk, sizeof chunk, 0);
      if (got > 0) {
        buf_.append(chunk, static_cast<size_t>(got));
        return 1;
      }
      if (got == 0) {
        *err = "connection closed by the server";
        return 0;
      }
      if (errno == ECONNRESET) {
        *err = "connection reset by the server";
        return 0;
      }
      if (errno == EINTR || errno == EAGAIN) continue;
      *err = errno_text("recv");
      return -1;
    }
  }

  // Reads one response with a Content-Length. Returns false (with *err) unless a complete one came.
  bool read_response(Millis timeout, int* status, std::string* body, bool* close_after, std::string* err) {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (buf_.size() > 65536) {
        *err = "response head too large";
        return false;
      }
      if (fill(timeout, err) != 1) {
        if (!buf_.empty()) *err += " (after " + std::to_string(buf_.size()) + " bytes of the head)";
        return false;
      }
    }
    std::string head = buf_.substr(0, end + 2);
    buf_.erase(0, end + 4);
    if (head.size() < 12 || head.compare(0, 9, "HTTP/1.1 ") != 0 || !parse_digits(head, 9, 3, status)) {
      *err = "bad status line: " + head.substr(0, head.find("\r\n"));
      return false;
    }
    long length = -1;
    *close_after = false;
    size_t pos = head.find("\r\n") + 2;
    while (pos < head.size()) {
      size_t eol = head.find("\r\n", pos);
      std::string_view line = std::string_view(head).substr(pos, eol - pos);
      pos = eol + 2;
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view name = line.substr(0, colon);
      std::string_view value = trim(line.substr(colon + 1));
      if (iequals(name, "Content-Length")) {
        if (!parse_long(value, &length)) {
          *err = "bad Content-Length";
          return false;
        }
      } else if (iequals(name, "Connection") && has_token(value, "close")) {
        *close_after = true;
      }
    }
    if (length < 0) {
      *err = "response without Content-Length";
      return false;
    }
    while (buf_.size() < static_cast<size_t>(length)) {
      if (fill(timeout, err) != 1) {
        *err += " (in the body)";
        return false;
      }
    }
    body->assign(buf_, 0, static_cast<size_t>(length));
    buf_.erase(0, static_cast<size_t>(length));
    return true;
  }

  // Waits for the server to close the connection; false on a timeout or unexpected data.
  bool await_close(Millis timeout, std::string* err) {
    while (true) {
      int r = fill(timeout, err);
      if (r == 0) return true;
      if (r < 0) return false;
      if (!buf_.empty()) {
        *err = "unexpected data after the response";
        return false;
      }
    }
  }

 private:
  int fd_ = -1;
  std::string buf_;
};

void load_thread(LoadGenerator::State* st, bool keepalive) {
  const LoadOptions& o = st->opts;
  std::string request = "GET " + o.target + " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: baton-load\r\n";
  if (!keepalive) request += "Connection: close\r\n";
  request += "\r\n";
  LoadConn conn;
  bool fresh = false;
  while (!st->stop.load()) {
    std::string err;
    if (!conn.is_open()) {
      int r = conn.open(o.port, o.timeout, &err);
      if (r <= 0) {
        if (r == 0) st->refused++;
        st->fail(err);
        std::this_thread::sleep_for(10ms);
        continue;
      }
      st->connections++;
      fresh = true;
      if (!o.connection_preamble.empty() && !conn.send_all(o.connection_preamble, o.timeout, &err)) {
        st->fail("sending the preamble: " + err);
        conn.close();
        continue;
      }
    }
    int status = 0;
    std::string body;
    bool close_after = false;
    if (!conn.send_all(request, o.timeout, &err) ||
        !conn.read_response(o.timeout, &status, &body, &close_after, &err)) {
      st->fail(std::string(keepalive ? "keep-alive" : "close") + " client, " +
               (fresh ? "first request on a connection: " : "later request on a connection: ") + err);
      conn.close();
      continue;
    }
    fresh = false;
    if (status != 200 || body != o.expected_body) {
      st->fail("status " + std::to_string(status) + ", body of " + std::to_string(body.size()) + " bytes" +
               (body.size() < 200 ? ": " + body : std::string()));
      conn.close();
      continue;
    }
    st->ok++;
    if (!keepalive || close_after) {
      if (!conn.await_close(o.timeout, &err)) st->fail("after a response with Connection: close: " + err);
      conn.close();
    }
    if (o.pause > 0ms) std::this_thread::sleep_for(o.pause);
  }
}

}  // namespace

LoadGenerator::LoadGenerator(LoadOptions opts) : state_(new State) {
  state_->opts = std::move(opts);
  for (int i = 0; i < state_->opts.keepalive_threads; i++) state_->threads.emplace_back(load_thread, state_, true);
  for (int i = 0; i < state_->opts.close_threads; i++) state_->threads.emplace_back(load_thread, state_, false);
}

LoadGenerator::~LoadGenerator() {
  stop();
  delete state_;
}

void LoadGenerator::stop() {
  state_->stop = true;
  for (std::thread& t : state_->threads)
    if (t.joinable()) t.join();
  state_->threads.clear();
}

uint64_t LoadGenerator::requests() const { return state_->ok.load(); }
uint64_t LoadGenerator::failures() const { return state_->failed.load(); }
uint64_t LoadGenerator::refused() const { return state_->refused.load(); }
uint64_t LoadGenerator::connections() const { return state_->connections.load(); }

std::vector<std::string> LoadGenerator::errors() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->errors;
}

std::string LoadGenerator::summary() const {
  std::ostringstream os;
  os << requests() << " requests ok, " << failures() << " failed (" << refused() << " connections refused), "
     << connections() << " connections";
  for (const std::string& e : errors()) os << "\n  " << e;
  return os.str();
}

}  // namespace baton_test

#include "conn_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include "core/clock.h"
#include "core/strings.h"

// ---- counting closes --------------------------------------------------------------------------
//
// Defined in the test binary, this close() is the one every call in it reaches (the server's Fd
// included); it hands each call to the kernel unchanged and only counts the watched descriptors.

namespace {

constexpr int kMaxWatched = 4096;
bool g_watched[kMaxWatched];
int g_closes[kMaxWatched];
int g_devnull = -1;

bool watchable(int fd) { return fd >= 0 && fd < kMaxWatched; }

}  // namespace

extern "C" int close(int fd) {
  int r = static_cast<int>(::syscall(SYS_close, fd));
  if (watchable(fd) && g_watched[fd]) {
    int err = errno;
    // The first close leaves the number taken: a second one then closes the stand-in and is
    // counted, rather than closing whatever the kernel would have put there next.
    if (++g_closes[fd] == 1 && r == 0 && g_devnull >= 0) ::dup2(g_devnull, fd);
    errno = err;
  }
  return r;
}

namespace baton::http::conntest {

void watch_closes(int fd) {
  if (!watchable(fd)) {
    ADD_FAILURE() << "descriptor " << fd << " is beyond what the close counter watches";
    return;
  }
  if (g_devnull < 0) g_devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  g_watched[fd] = true;
  g_closes[fd] = 0;
}

int closes_of(int fd) { return watchable(fd) ? g_closes[fd] : -1; }

void unwatch_closes(int fd) {
  if (!watchable(fd) || !g_watched[fd]) return;
  g_watched[fd] = false;
  // Exactly one close: the number holds the stand-in, which goes now. Any other count: the number
  // is not ours to close.
  if (g_closes[fd] == 1) ::syscall(SYS_close, fd);
  g_closes[fd] = 0;
}

// ---- responses --------------------------------------------------------------------------------

namespace {

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string Response::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (iequal(n, name)) return v;
  return "";
}

bool Response::has(std::string_view name) const { return count(name) > 0; }

size_t Response::count(std::string_view name) const {
  size_t n = 0;
  for (const auto& h : headers) n += iequal(h.first, name);
  return n;
}

bool Response::connection_close() const {
  for (const auto& [n, v] : headers) {
    if (!iequal(n, "connection")) continue;
    std::string_view rest = v;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      if (iequal(trim_ows(rest.substr(0, comma)), "close")) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

std::ostream& operator<<(std::ostream& os, const Response& r) {
  os << r.version << ' ' << r.status << ' ' << r.reason << '\n';
  for (const auto& [n, v] : r.headers) os << n << ": " << v << '\n';
  os << "[body: " << r.body.size() << " bytes";
  if (!r.body.empty()) os << ": " << r.body.substr(0, 200);
  return os << "]";
}

bool parse_response(std::string_view in, bool head, bool eof, Response* out, std::string* error) {
  error->clear();
  size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    if (eof && !in.empty()) *error = "the stream ended inside a response head";
    return false;
  }
  Response r;
  std::string_view h = in.substr(0, head_end + 2);
  size_t eol = h.find("\r\n");
  std::string_view line = h.substr(0, eol);
  h.remove_prefix(eol + 2);
  // HTTP/1.x SP 3DIGIT SP reason
  if (line.size() < 12 || !line.starts_with("HTTP/1.") || line[8] != ' ' || (line.size() > 12 && line[12] != ' ')) {
    *error = "bad status line: " + std::string(line);
    return false;
  }
  r.version = std::string(line.substr(0, 8));
  for (size_t i = 9; i < 12; i++) {
    if (!std::isdigit(static_cast<unsigned char>(line[i]))) {
      *error = "bad status code: " + std::string(line);
      return false;
    }
    r.status = r.status * 10 + (line[i] - '0');
  }
  if (line.size() > 13) r.reason = std::string(line.substr(13));
  while (!h.empty()) {
    eol = h.find("\r\n");
    line = h.substr(0, eol);
    h.remove_prefix(eol + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      *error = "bad header line: " + std::string(line);
      return false;
    }
    r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(trim_ows(line.substr(colon + 1))));
  }
  size_t pos = head_end + 4;
  bool no_body = head || (r.status >= 100 && r.status < 200) || r.status == 204 || r.status == 304;
  if (no_body) {
    r.wire_bytes = pos;
    *out = std::move(r);
    return true;
  }
  if (iequal(r.header("transfer-encoding"), "chunked")) {
    r.chunked = true;
    for (;;) {
      size_t le = in.find("\r\n", pos);
      if (le == std::string_view::npos) return false;
      std::string_view size_text = in.substr(pos, le - pos);
      size_t semi = size_text.find(';');
      if (semi != std::string_view::npos) size_text = size_text.substr(0, semi);
      if (size_text.empty() || size_text.size() > 15) {
        *error = "bad chunk size: " + std::string(size_text);
        return false;
      }
      size_t size = 0;
      for (char ch : size_text) {
        int d = std::isdigit(static_cast<unsigned char>(ch)) ? ch - '0'
                : (ch >= 'a' && ch <= 'f')                  ? ch - 'a' + 10
                : (ch >= 'A' && ch <= 'F')                  ? ch - 'A' + 10
                                                            : -1;
        if (d < 0) {
          *error = "bad chunk size: " + std::string(size_text);
          return false;
        }
        size = size * 16 + static_cast<size_t>(d);
      }
      pos = le + 2;
      if (size == 0) {
        // Trailer fields (none expected), then the empty line.
        for (;;) {
          size_t te = in.find("\r\n", pos);
          if (te == std::string_view::npos) return false;
          bool empty = te == pos;
          pos = te + 2;
          if (empty) break;
        }
        r.wire_bytes = pos;
        *out = std::move(r);
        return true;
      }
      if (in.size() < pos + size + 2) return false;
      r.body.append(in.substr(pos, size));
      if (in.substr(pos + size, 2) != "\r\n") {
        *error = "chunk not followed by CRLF";
        return false;
      }
      pos += size + 2;
    }
  }
  std::string cl = r.header("content-length");
  if (!cl.empty()) {
    size_t len = std::stoull(cl);
    if (in.size() - pos < len) {
      if (eof) *error = "the stream ended inside a body";
      return false;
    }
    r.body = std::string(in.substr(pos, len));
    r.wire_bytes = pos + len;
    *out = std::move(r);
    return true;
  }
  // Delimited by the end of the stream.
  if (!eof) return false;
  r.body = std::string(in.substr(pos));
  r.wire_bytes = in.size();
  *out = std::move(r);
  return true;
}

std::string req(std::string_view method, std::string_view target, std::string_view extra, std::string_view body) {
  std::string s;
  s.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: localhost\r\n");
  s.append(extra).append("\r\n").append(body);
  return s;
}

std::string pattern_bytes(size_t size, unsigned seed) {
  std::string s(size, '\0');
  uint32_t x = 2463534242u ^ seed;
  for (size_t i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>((x >> 11) ^ i);
  }
  return s;
}

::testing::AssertionResult same_bytes(std::string_view got, std::string_view want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t n = std::min(got.size(), want.size());
  size_t at = 0;
  while (at < n && got[at] == want[at]) at++;
  return ::testing::AssertionFailure() << "got " << got.size() << " bytes, want " << want.size()
                                       << "; first difference at byte " << at;
}

// ---- the process from outside -------------------------------------------------------------------

size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

size_t heap_in_use() {
#ifdef __SANITIZE_ADDRESS__
  // The sanitizer's allocator serves the process, not the one mallinfo2() describes.
  return 0;
#else
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
#endif
}

// ---- the client end -----------------------------------------------------------------------------

TestClient::~TestClient() { close(); }

bool TestClient::send(std::string_view data, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return false;
    if (std::chrono::steady_clock::now() > deadline) return false;
    f_->turn();  // the server reads, and the socket has room again
  }
  return true;
}

size_t TestClient::send_now(std::string_view data) {
  ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

bool TestClient::pull() {
  char chunk[64 * 1024];
  while (!eof_) {
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      buf_.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    eof_ = true;  // 0, or a reset: the server's side has ended
  }
  return !eof_;
}

std::optional<Response> TestClient::read_response(bool head, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    pull();
    Response r;
    std::string err;
    if (parse_response(buf_, head, eof_, &r, &err)) {
      buf_.erase(0, r.wire_bytes);
      return r;
    }
    if (!err.empty()) {
      ADD_FAILURE() << err << "\nreceived: " << buf_.substr(0, 400);
      return std::nullopt;
    }
    if (eof_ || std::chrono::steady_clock::now() > deadline) return std::nullopt;
    f_->turn();
  }
}

bool TestClient::wait_eof(Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    pull();
    if (eof_) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    f_->turn();
  }
}

std::string TestClient::read_once(size_t max, Millis timeout) {
  if (!f_->run_until([&] { return unread() > 0; }, timeout)) return "";
  std::string out(max, '\0');
  ssize_t n = ::recv(fd_, out.data(), max, MSG_DONTWAIT);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

size_t TestClient::unread() const {
  int n = 0;
  if (fd_ < 0 || ::ioctl(fd_, FIONREAD, &n) < 0) return 0;
  return static_cast<size_t>(n);
}

void TestClient::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

void TestClient::close() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
}

// ---- the fixture --------------------------------------------------------------------------------

ConnFixture::ConnFixture() {
  // As in a worker: a write to a client that is gone fails instead of killing the process (sendfile
  // has no MSG_NOSIGNAL).
  signal(SIGPIPE, SIG_IGN);
  Clock::update();
  char tmpl[] = "/tmp/baton-conn-XXXXXX";
  if (!mkdtemp(tmpl)) {
    ADD_FAILURE() << "mkdtemp: " << strerror(errno);
    return;
  }
  prefix_ = tmpl;
  ::mkdir((prefix_ + "/html").c_str(), 0755);
}

ConnFixture::~ConnFixture() {
  clients_.clear();
  if (conns_) conns_->close_all();
  // The order of a worker's end: the HTTP state goes before the connection list and the loop, and
  // the loop deletes last what was closed.
  worker_.reset();
  conns_.reset();
  if (loop_) ev_timer_stop(loop_->raw(), &wake_);
  loop_.reset();
  // The static handler keeps its root directories' descriptors for the life of the process, keyed
  // by the address of the root setting: a worker has one configuration for life. A later test's
  // configuration must not be allocated where this one was (it would find this test's root, gone
  // by then), so each one is kept until the end.
  static std::vector<std::unique_ptr<HttpConf>> retired;
  if (conf_) retired.push_back(std::move(conf_));
  for (int fd : watched_) unwatch_closes(fd);
  std::error_code ec;
  if (!prefix_.empty()) std::filesystem::remove_all(prefix_, ec);
}

void ConnFixture::TearDown() {
  if (!checked_ && loop_) close_clients_and_check();
}

std::string ConnFixture::path(std::string_view rel) const { return prefix_ + "/" + std::string(rel); }

void ConnFixture::write_file(std::string_view rel, std::string_view content) {
  std::string p = path(rel);
  std::filesystem::create_directories(std::filesystem::path(p).parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(content.data(), static_cast<std::streamsize>(content.size()));
  ASSERT_TRUE(f.good()) << "cannot write " << p;
}

void ConnFixture::configure(std::string_view text) {
  std::string t(text);
  for (size_t at; (at = t.find("@PREFIX@")) != std::string::npos;) t.replace(at, 8, prefix_);
  try {
    conf_file_ = read_conf_text("test.ini", t);
    conf_ = parse_http_conf(conf_file_, prefix_);
  } catch (const ConfError& e) {
    FAIL() << "configuration refused: " << e.what() << "\n" << t;
  }
  ASSERT_FALSE(conf_->listens.empty()) << "the configuration needs a [server] with a listen";
  const ListenGroup& g = *conf_->listens.front();
  listening_.addr = g.addr;
  listening_.opts = g.opts;
  listening_.key = g.text;
  listening_.ctx = conf_->listens.front().get();
  loop_ = std::make_unique<EventLoop>();
  conns_ = std::make_unique<ConnectionList>();
  worker_ = std::make_unique<HttpWorker>(loop_.get(), conns_.get(), conf_.get());
  ev_init(&wake_, [](struct ev_loop*, ev_timer*, int) {});
}

TestClient& ConnFixture::connect(std::string_view first) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
    ADD_FAILURE() << "socketpair: " << strerror(errno);
    sv[0] = sv[1] = -1;
  }
  clients_.push_back(std::make_unique<TestClient>(this, sv[1], sv[0]));
  TestClient& c = *clients_.back();
  if (sv[0] < 0) return c;
  if (!first.empty()) {
    EXPECT_EQ(c.send_now(first), first.size()) << "the first bytes must fit the socket";
  }
  watch_closes(sv[0]);
  watched_.push_back(sv[0]);
  // What accept() gives for a unix socket's client: an unnamed address.
  SockAddr peer;
  peer.storage.ss_family = AF_UNIX;
  peer.len = sizeof(sa_family_t);
  HttpWorker::on_accept(worker_.get(), Fd(sv[0]), peer, &listening_);
  return c;
}

void ConnFixture::turn(Millis wait) {
  struct ev_loop* raw = loop_->raw();
  if (wait.count() <= 0) {
    ev_run(raw, EVRUN_NOWAIT);
    return;
  }
  // The loop returns after one round of events, or when this timer wakes it: never later.
  ev_timer_set(&wake_, static_cast<double>(wait.count()) / 1000.0, 0.);
  ev_timer_start(raw, &wake_);
  ev_run(raw, EVRUN_ONCE);
  ev_timer_stop(raw, &wake_);
}

bool ConnFixture::run_until(const std::function<bool()>& pred, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return pred();
    turn();
  }
  return true;
}

void ConnFixture::close_clients_and_check() {
  checked_ = true;
  for (auto& c : clients_) c->close();
  EXPECT_TRUE(run_until([&] { return connections() == 0; }, 3000ms))
      << connections() << " connection(s) still open after every client closed";
  // Deleted objects go after the callbacks: a few more rounds let any late close happen now.
  for (int i = 0; i < 3; i++) turn(0ms);
  for (int fd : watched_)
    EXPECT_EQ(closes_of(fd), 1) << "the server's descriptor " << fd << " was closed " << closes_of(fd) << " times";
}

}  // namespace baton::http::conntest

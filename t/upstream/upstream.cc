// baton_upstream: the real upstream server the proxy's black-box tests start. Its command line, its
// log and every behaviour are specified in t/lib/upstream.h, which it shares with the test binary.
//
// One detached thread per connection with blocking sockets: the program serves a handful of
// connections at a time and must be obviously correct, not fast. Nothing here shares code with baton.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "../lib/upstream.h"

namespace {

using Clock = std::chrono::steady_clock;
using baton_test::fnv1a;
using baton_test::hash_hex;

constexpr size_t kMaxHead = 64 * 1024;
constexpr size_t kMaxLine = 8 * 1024;  // chunk-size and trailer lines
constexpr int kDrainMs = 2000;         // how long a closing connection keeps reading
constexpr size_t kChunkSizes[] = {1, 10, 100, 1000, 4096, 8191, 16384, 65536, 65537};

struct Options {
  std::string listen = "127.0.0.1:0";
  std::string name = "upstream";
  double idle_close = 0;  // seconds, 0: never
  bool keepalive_header = false;
  long max_requests = 0;  // 0: no limit
  std::string log_path;
};

Options g_opts;
std::atomic<long> g_next_connection{0};
std::atomic<long> g_connections{0};
std::atomic<long> g_requests{0};
int g_log_fd = -1;
std::mutex g_log_mu;

// ---- small helpers ----

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool has_token(std::string_view list, std::string_view token) {
  while (true) {
    size_t comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) return false;
    list.remove_prefix(comma + 1);
  }
}

// Decimal digits only, no sign, at most 15 of them (no overflow, and nothing a test needs is larger).
std::optional<uint64_t> parse_number(std::string_view s) {
  if (s.empty() || s.size() > 15) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

const char* reason_phrase(int code) {
  switch (code) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

// ---- SHA-1 (FIPS 180-4) and base64, for Sec-WebSocket-Accept only ----

uint32_t rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

std::array<unsigned char, 20> sha1(std::string_view data) {
  uint32_t h[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u};
  std::string msg(data);
  uint64_t bits = static_cast<uint64_t>(data.size()) * 8;
  msg.push_back(static_cast<char>(0x80));
  while (msg.size() % 64 != 56) msg.push_back('\0');
  for (int i = 7; i >= 0; i--) msg.push_back(static_cast<char>(bits >> (i * 8)));
  for (size_t block = 0; block < msg.size(); block += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++) {
      const auto* p = reinterpret_cast<const unsigned char*>(msg.data() + block + static_cast<size_t>(i) * 4);
      w[i] = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
    }
    for (int i = 16; i < 80; i++) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
      uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5a827999u;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ed9eba1u;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8f1bbcdcu;
      } else {
        f = b ^ c ^ d;
        k = 0xca62c1d6u;
      }
      uint32_t t = rotl(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rotl(b, 30);
      b = a;
      a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  std::array<unsigned char, 20> out;
  for (int i = 0; i < 20; i++) out[static_cast<size_t>(i)] = static_cast<unsigned char>(h[i / 4] >> (24 - 8 * (i % 4)));
  return out;
}

std::string base64(const unsigned char* p, size_t n) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = uint32_t{p[i]} << 16;
    if (i + 1 < n) v |= uint32_t{p[i + 1]} << 8;
    if (i + 2 < n) v |= p[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? kAlphabet[v & 63] : '=');
  }
  return out;
}

std::string websocket_accept(std::string_view key) {
  auto digest = sha1(std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
  return base64(digest.data(), digest.size());
}

// ---- the log ----

void log_request(long conn, long req, std::string_view method, std::string_view target, uint64_t length,
                 uint64_t hash, bool complete) {
  if (g_log_fd < 0) return;
  std::string line = "conn=" + std::to_string(conn) + " req=" + std::to_string(req) + " method=" +
                     std::string(method) + " target=" + std::string(target) + " body=" + std::to_string(length) +
                     " hash=" + hash_hex(hash) + " complete=" + (complete ? "1" : "0") + "\n";
  // One write per line under the lock: lines of concurrent connections never interleave, and the
  // line is in the file (O_APPEND, no user-space buffer) before the response starts.
  std::lock_guard<std::mutex> lock(g_log_mu);
  std::string_view rest = line;
  while (!rest.empty()) {
    ssize_t n = ::write(g_log_fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    rest.remove_prefix(static_cast<size_t>(n));
  }
}

// ---- a parsed request ----

struct Request {
  std::string head;  // exactly as received, through the empty line
  std::string_view method, target, version;
  std::vector<std::pair<std::string_view, std::string_view>> headers;  // views into head
  bool http10 = false;
  bool chunked = false;
  uint64_t content_length = 0;
  bool keep_alive = true;

  std::string_view header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (iequals(k, name)) return v;
    return {};
  }
  bool has_header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (iequals(k, name)) return true;
    return false;
  }
  bool header_has_token(std::string_view name, std::string_view token) const {
    for (const auto& [k, v] : headers)
      if (iequals(k, name) && has_token(v, token)) return true;
    return false;
  }
};

bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// Parses r->head; false when it is not a request this server accepts.
bool parse_head(Request* r) {
  std::string_view text = r->head;
  size_t eol = text.find("\r\n");
  std::string_view line = text.substr(0, eol);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != line.npos)
    return false;
  r->method = line.substr(0, sp1);
  r->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  r->version = line.substr(sp2 + 1);
  if (r->method.empty() || r->target.empty() || !std::all_of(r->method.begin(), r->method.end(), is_tchar))
    return false;
  for (char c : r->target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  if (r->version == "HTTP/1.0") {
    r->http10 = true;
  } else if (r->version != "HTTP/1.1") {
    return false;
  }
  std::string_view rest = text.substr(eol + 2);
  while (true) {
    size_t e = rest.find("\r\n");
    if (e == 0) break;  // the empty line
    std::string_view h = rest.substr(0, e);
    rest.remove_prefix(e + 2);
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    std::string_view name = h.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), is_tchar)) return false;
    std::string_view value = trim(h.substr(colon + 1));
    for (char c : value)
      if (c == '\r' || c == '\n' || c == '\0') return false;
    r->headers.emplace_back(name, value);
  }

  bool have_length = false;
  bool have_te = false;
  for (const auto& [k, v] : r->headers) {
    if (iequals(k, "Content-Length")) {
      auto n = parse_number(v);
      if (!n || (have_length && *n != r->content_length)) return false;
      have_length = true;
      r->content_length = *n;
    } else if (iequals(k, "Transfer-Encoding")) {
      if (have_te || !iequals(v, "chunked")) return false;
      have_te = true;
    }
  }
  if (have_te && have_length) return false;
  r->chunked = have_te;
  if (r->http10) {
    r->keep_alive = r->header_has_token("Connection", "keep-alive");
  } else {
    r->keep_alive = !r->header_has_token("Connection", "close");
  }
  return true;
}

// The path's modifiers and behaviour.
struct Plan {
  long delay_ms = 0;
  long body_delay_ms = 0;
  long mid_delay_ms = 0;
  long sink_kbps = 0;
  long sink_delay_ms = 0;
  std::string_view action;  // "/size/10", ...
};

std::optional<Plan> make_plan(std::string_view path) {
  Plan p;
  while (true) {
    long* value;
    std::string_view prefix;
    if (path.rfind("/delay/", 0) == 0) {
      prefix = "/delay/";
      value = &p.delay_ms;
    } else if (path.rfind("/body-delay/", 0) == 0) {
      prefix = "/body-delay/";
      value = &p.body_delay_ms;
    } else if (path.rfind("/mid-delay/", 0) == 0) {
      prefix = "/mid-delay/";
      value = &p.mid_delay_ms;
    } else if (path.rfind("/slow-sink/", 0) == 0) {
      prefix = "/slow-sink/";
      value = &p.sink_kbps;
    } else if (path.rfind("/sink-delay/", 0) == 0) {
      prefix = "/sink-delay/";
      value = &p.sink_delay_ms;
    } else {
      break;
    }
    path.remove_prefix(prefix.size());
    size_t slash = path.find('/');
    auto n = parse_number(path.substr(0, slash));
    if (!n || *n > 3600 * 1000 || (value == &p.sink_kbps && *n == 0)) return std::nullopt;
    *value = value == &p.sink_kbps ? static_cast<long>(*n) : *value + static_cast<long>(*n);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash);
    if (path.empty() || path == "/") {
      path = p.sink_kbps > 0 ? "/sink" : "/";
      break;
    }
  }
  p.action = path;
  return p;
}

// Query parameters header=NAME:VALUE, decoded into lines "NAME: VALUE\r\n"; nullopt when one is bad.
std::optional<std::string> extra_headers(std::string_view query) {
  std::string out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.rfind("header=", 0) != 0) continue;
    item.remove_prefix(7);
    std::string decoded;
    for (size_t i = 0; i < item.size(); i++) {
      if (item[i] == '%' && i + 2 < item.size() && hex_value(item[i + 1]) >= 0 && hex_value(item[i + 2]) >= 0) {
        decoded.push_back(static_cast<char>(hex_value(item[i + 1]) * 16 + hex_value(item[i + 2])));
        i += 2;
      } else {
        decoded.push_back(item[i]);
      }
    }
    size_t colon = decoded.find(':');
    if (colon == std::string::npos || colon == 0) return std::nullopt;
    for (char c : decoded)
      if (c == '\r' || c == '\n' || c == '\0') return std::nullopt;
    out += decoded.substr(0, colon) + ": " + std::string(trim(std::string_view(decoded).substr(colon + 1))) + "\r\n";
  }
  return out;
}

// ---- a connection ----

class Connection {
 public:
  Connection(int fd, long id) : fd_(fd), id_(id) {}
  ~Connection() {
    if (fd_ >= 0) ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void serve();

 private:
  enum class Io { kData, kEof, kTimeout, kError };

  // Reads once (at most `max` bytes) into the buffer, waiting up to timeout_ms (-1: forever).
  Io fill(int timeout_ms, size_t max = 65536);
  size_t available() const { return in_.size() - pos_; }
  std::string_view pending() const { return std::string_view(in_).substr(pos_); }
  void consume(size_t n);
  bool send_all(std::string_view data);

  // One request; false when the connection is over.
  bool handle_one();
  // The request body, fed to hash (and kept when `keep`); false when the peer went away first.
  bool read_body(const Request& r, const Plan& plan, bool keep, std::string* kept, uint64_t* length,
                 uint64_t* hash);
  bool read_line(std::string* line, size_t max);
  bool take(uint64_t n, const Plan& plan, bool keep, std::string* kept, uint64_t* length, uint64_t* hash);
  void pace(const Plan& plan, uint64_t* budget_out);

  std::string head(int code, const Request& r, std::string_view framing, bool closing,
                   std::string_view content_type = "text/plain") const;
  bool respond_simple(int code, const Request& r, std::string_view body, bool closing,
                      std::string_view content_type = "text/plain");
  // /size, /chunked and /close bodies: the content, after the /body-delay (and with the /mid-delay
  // after its first half)
  bool send_content(uint64_t n);
  void pause_before_body();

  void close_gracefully();
  void reset();
  void tunnel();

  int fd_;
  long id_;
  long requests_ = 0;  // on this connection
  bool counted_ = true;
  std::string in_;
  size_t pos_ = 0;
  std::string extra_;  // header= lines of the current request
  long body_delay_ms_ = 0;
  long mid_delay_ms_ = 0;
  Clock::time_point pace_start_;
  uint64_t paced_ = 0;
};

Connection::Io Connection::fill(int timeout_ms, size_t max) {
  if (pos_ > 0 && pos_ == in_.size()) {
    in_.clear();
    pos_ = 0;
  } else if (pos_ > (1u << 20) && pos_ * 2 > in_.size()) {
    in_.erase(0, pos_);
    pos_ = 0;
  }
  while (true) {
    struct pollfd p = {fd_, POLLIN, 0};
    int n = ::poll(&p, 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Io::kError;
    if (n == 0) return Io::kTimeout;
    size_t old = in_.size();
    in_.resize(old + max);
    ssize_t got = ::recv(fd_, in_.data() + old, max, 0);
    in_.resize(old + (got > 0 ? static_cast<size_t>(got) : 0));
    if (got > 0) return Io::kData;
    if (got == 0) return Io::kEof;
    if (errno == EINTR || errno == EAGAIN) continue;
    return Io::kError;
  }
}

void Connection::consume(size_t n) { pos_ += n; }

bool Connection::send_all(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void Connection::serve() {
  int one = 1;
  // Heads and small bodies go out as separate writes: without this Nagle and delayed ACKs would
  // add 40 ms stalls that the timing tests would see.
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  while (handle_one()) {
  }
}

bool Connection::handle_one() {
  // Wait for the first byte of a request; only here is the connection idle.
  if (available() == 0) {
    int timeout = -1;
    if (g_opts.idle_close > 0) timeout = static_cast<int>(g_opts.idle_close * 1000 + 0.5);
    Io io = fill(timeout);
    if (io == Io::kTimeout) {
      ::close(fd_);  // like an application server's keep-alive timer: no FIN first, no draining
      fd_ = -1;
      return false;
    }
    if (io != Io::kData) return false;
  }
  size_t end;
  while ((end = pending().find("\r\n\r\n")) == std::string_view::npos) {
    if (available() > kMaxHead) {
      Request none;
      none.http10 = false;
      respond_simple(400, none, "request head too large\n", true);
      close_gracefully();
      return false;
    }
    if (fill(-1) != Io::kData) return false;
  }
  Request r;
  r.head.assign(pending().substr(0, end + 4));
  consume(end + 4);
  requests_++;
  extra_.clear();
  bool ok = parse_head(&r);
  std::string_view target = ok ? r.target : std::string_view();
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view query = path.size() < target.size() ? target.substr(path.size() + 1) : std::string_view();
  std::optional<std::string> extra = ok ? extra_headers(query) : std::nullopt;
  if (!ok || !extra) {
    Request none;
    respond_simple(400, none, "bad request\n", true);
    close_gracefully();
    return false;
  }
  extra_ = *extra;

  if (path == "/__stats") {
    if (requests_ == 1) {
      counted_ = false;
      g_connections--;
    }
    requests_--;
    uint64_t length = 0, hash = 0;
    if (!read_body(r, Plan{}, false, nullptr, &length, &hash)) return false;
    std::string body = "{\"connections\":" + std::to_string(g_connections.load()) +
                       ",\"requests\":" + std::to_string(g_requests.load()) + "}";
    bool closing = !r.keep_alive;
    if (!respond_simple(200, r, body, closing, "application/json")) return false;
    if (closing) close_gracefully();
    return !closing;
  }
  g_requests++;

  std::optional<Plan> plan = make_plan(path);
  std::string_view action = plan ? plan->action : std::string_view();
  // /echo holds the body in memory: a declared length beyond 1 GiB is refused (after reading it).
  if (action == "/echo" && r.content_length > (uint64_t{1} << 30)) plan.reset();
  bool keep = plan && action == "/echo";

  if (!r.http10 && (r.chunked || r.content_length > 0) && r.header_has_token("Expect", "100-continue")) {
    if (!send_all("HTTP/1.1 100 Continue\r\n\r\n")) return false;
  }
  std::string kept;
  uint64_t length = 0, hash = baton_test::kFnv1aBasis;
  bool complete = read_body(r, plan ? *plan : Plan{}, keep, &kept, &length, &hash);
  log_request(id_, requests_, r.method, r.target, length, hash, complete);
  if (!complete) return false;

  bool head_only = r.method == "HEAD";
  bool closing = !r.keep_alive || (g_opts.max_requests > 0 && requests_ >= g_opts.max_requests);
  if (!plan) {
    respond_simple(400, r, "bad target\n", true);
    close_gracefully();
    return false;
  }
  if (plan->delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(plan->delay_ms));
  body_delay_ms_ = plan->body_delay_ms;
  mid_delay_ms_ = plan->mid_delay_ms;

  auto finish = [&](bool sent) {
    if (!sent) return false;
    if (closing) close_gracefully();
    return !closing;
  };
  auto number_after = [&](std::string_view prefix) -> std::optional<uint64_t> {
    if (action.rfind(prefix, 0) != 0) return std::nullopt;
    return parse_number(action.substr(prefix.size()));
  };
  bool numbered = action.rfind("/size/", 0) == 0 || action.rfind("/chunked/", 0) == 0 ||
                  action.rfind("/close/", 0) == 0 || action.rfind("/status/", 0) == 0;

  if (numbered) {
    std::optional<uint64_t> n;
    if ((n = number_after("/size/"))) {
      std::string h = head(200, r, "Content-Length: " + std::to_string(*n) + "\r\n", closing,
                           "application/octet-stream");
      if (!send_all(h)) return false;
      return finish(head_only || send_content(*n));
    }
    if ((n = number_after("/chunked/"))) {
      if (r.http10) {
        std::string h = head(200, r, "", true, "application/octet-stream");
        if (!send_all(h) || (!head_only && !send_content(*n))) return false;
        close_gracefully();
        return false;
      }
      std::string h = head(200, r, "Transfer-Encoding: chunked\r\n", closing, "application/octet-stream");
      if (!send_all(h)) return false;
      if (head_only) return finish(true);
      pause_before_body();
      uint64_t offset = 0;
      size_t k = 0;
      std::string out;
      while (offset < *n) {
        size_t size = kChunkSizes[k++ % std::size(kChunkSizes)];
        if (size > *n - offset) size = static_cast<size_t>(*n - offset);
        char line[32];
        int len = std::snprintf(line, sizeof line, "%zx\r\n", size);
        out.assign(line, static_cast<size_t>(len));
        size_t at = out.size();
        out.resize(at + size);
        baton_test::upstream_content_fill(offset, out.data() + at, size);
        out += "\r\n";
        if (!send_all(out)) return false;
        offset += size;
      }
      return finish(send_all("0\r\n\r\n"));
    }
    if ((n = number_after("/close/"))) {
      std::string h = head(200, r, "", true, "application/octet-stream");
      if (!send_all(h) || (!head_only && !send_content(*n))) return false;
      close_gracefully();
      return false;
    }
    if ((n = number_after("/status/")) && *n >= 200 && *n <= 599) {
      int code = static_cast<int>(*n);
      if (code == 204 || code == 304) return finish(send_all(head(code, r, "", closing, "")));
      return finish(respond_simple(code, r, "status " + std::to_string(code) + "\n", closing));
    }
    respond_simple(400, r, "bad target\n", true);
    close_gracefully();
    return false;
  }
  if (action == "/headers") return finish(respond_simple(200, r, r.head, closing));
  if (action == "/echo") {
    std::string_view type = r.header("Content-Type");
    if (type.empty()) type = "application/octet-stream";
    if (!r.chunked || r.http10) return finish(respond_simple(200, r, kept, closing, type));
    if (!send_all(head(200, r, "Transfer-Encoding: chunked\r\n", closing, type))) return false;
    if (head_only) return finish(true);
    std::string out;
    for (size_t at = 0; at < kept.size(); at += 16384) {
      size_t size = std::min<size_t>(16384, kept.size() - at);
      char line[32];
      int len = std::snprintf(line, sizeof line, "%zx\r\n", size);
      out.assign(line, static_cast<size_t>(len));
      out.append(kept, at, size);
      out += "\r\n";
      if (!send_all(out)) return false;
    }
    return finish(send_all("0\r\n\r\n"));
  }
  if (action == "/sink")
    return finish(respond_simple(200, r, "bytes=" + std::to_string(length) + " hash=" + hash_hex(hash), closing));
  if (action == "/hang") {
    while (true) {
      Io io = fill(-1);
      if (io != Io::kData) return false;
      pos_ = in_.size();
    }
  }
  if (action == "/reset") {
    reset();
    return false;
  }
  if (action == "/reset-after-head") {
    if (!send_all(head(200, r, "Content-Length: 1000\r\n", false, "application/octet-stream"))) return false;
    // Until the peer's kernel has acknowledged the head (nothing left unacknowledged in the send
    // queue), so that the reset cannot overtake it; at most 2 s.
    auto deadline = Clock::now() + std::chrono::seconds(2);
    int queued = 0;
    while (::ioctl(fd_, SIOCOUTQ, &queued) == 0 && queued > 0 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    reset();
    return false;
  }
  if (action == "/close-after-response") {
    if (!send_all(head(200, r, "Content-Length: 8\r\n", false)) || (!head_only && !send_all("closing\n")))
      return false;
    close_gracefully();
    return false;
  }
  if (action == "/ws") {
    std::string_view upgrade = r.header("Upgrade");
    if (upgrade.empty() || !r.header_has_token("Connection", "upgrade") || r.http10)
      return finish(respond_simple(426, r, "upgrade required\n", closing));
    std::string accept;
    if (iequals(upgrade, "websocket")) {
      std::string_view key = r.header("Sec-WebSocket-Key");
      if (key.empty()) return finish(respond_simple(400, r, "no Sec-WebSocket-Key\n", closing));
      accept = "Sec-WebSocket-Accept: " + websocket_accept(key) + "\r\n";
    }
    std::string h = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + std::string(upgrade) +
                    "\r\nConnection: Upgrade\r\n" + accept + "Server: baton-test-upstream\r\nX-Upstream: " +
                    g_opts.name + "\r\nX-Upstream-Connection: " + std::to_string(id_) +
                    "\r\nX-Upstream-Request: " + std::to_string(requests_) + "\r\n" + extra_ + "\r\n";
    if (!send_all(h)) return false;
    tunnel();
    return false;
  }
  if (action.rfind("/shape/", 0) == 0) {
    // Valid responses in shapes a proxy must cope with: interim heads, heads split across writes.
    std::string_view what = action.substr(7);
    std::vector<std::string> parts;
    if (what == "hints-then-200") {
      parts = {"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
               "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"};
    } else if (what == "split-head") {
      parts = {"HTTP/1.1 200 OK\r\nX-Part: 1\r\nContent-Le", "ngth: 2\r\n\r\nok"};
    } else if (what == "hints-split") {
      parts = {"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Le",
               "ngth: 2\r\n\r\nok"};
    } else {
      respond_simple(400, r, "unknown /shape/ kind\n", true);
      close_gracefully();
      return false;
    }
    for (size_t i = 0; i < parts.size(); i++) {
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!send_all(parts[i])) return false;
    }
    close_gracefully();
    return false;
  }
  if (action.rfind("/bad/", 0) == 0) {
    std::string_view what = action.substr(5);
    std::string raw;
    if (what == "status-line") {
      raw = "HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok";
    } else if (what == "cl-and-te") {
      raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    } else if (what == "two-cl") {
      raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!";
    } else if (what == "invalid-cl") {
      raw = "HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok";
    } else if (what == "no-crlf") {
      raw = "HTTP/1.1 200 OK\nContent-Length: 2\n\nok";
    } else if (what == "truncated-head") {
      raw = "HTTP/1.1 200 OK\r\nContent-Len";
    } else if (what == "truncated-body") {
      raw = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + baton_test::upstream_content(0, 10);
    } else if (what == "bad-chunk") {
      raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n";
    } else if (what == "not-http") {
      raw = "SSH-2.0-OpenSSH_9.2\r\n";
    } else {
      respond_simple(400, r, "unknown /bad/ kind\n", true);
      close_gracefully();
      return false;
    }
    if (send_all(raw)) close_gracefully();
    return false;
  }
  std::string body = g_opts.name + " " + std::string(r.method) + " " + std::string(r.target) + "\n";
  return finish(respond_simple(200, r, body, closing));
}

void Connection::pace(const Plan& plan, uint64_t* budget_out) {
  // Bytes of the body allowed so far at the paced rate, at least 1 (sleeping until then).
  double rate = static_cast<double>(plan.sink_kbps) * 1024.0;
  while (true) {
    double elapsed = std::chrono::duration<double>(Clock::now() - pace_start_).count();
    double allowed = elapsed * rate;
    if (allowed >= static_cast<double>(paced_) + 1) {
      *budget_out = static_cast<uint64_t>(allowed) - paced_;
      return;
    }
    double wait = (static_cast<double>(paced_) + 1024 - allowed) / rate;
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(wait, 0.05)));
  }
}

bool Connection::take(uint64_t n, const Plan& plan, bool keep, std::string* kept, uint64_t* length,
                      uint64_t* hash) {
  while (n > 0) {
    uint64_t budget = n;
    if (plan.sink_kbps > 0) pace(plan, &budget);
    if (available() == 0) {
      size_t max = 65536;
      if (plan.sink_kbps > 0) max = static_cast<size_t>(std::min<uint64_t>({budget, n, 65536}));
      if (fill(-1, max) != Io::kData) return false;
    }
    size_t k = static_cast<size_t>(std::min<uint64_t>({n, budget, available()}));
    std::string_view part = pending().substr(0, k);
    *hash = fnv1a(part, *hash);
    if (keep) kept->append(part);
    *length += k;
    paced_ += k;
    consume(k);
    n -= k;
  }
  return true;
}

bool Connection::read_line(std::string* line, size_t max) {
  size_t e;
  while ((e = pending().find("\r\n")) == std::string_view::npos) {
    if (available() > max) return false;
    if (fill(-1) != Io::kData) return false;
  }
  line->assign(pending().substr(0, e));
  consume(e + 2);
  return true;
}

bool Connection::read_body(const Request& r, const Plan& plan, bool keep, std::string* kept, uint64_t* length,
                           uint64_t* hash) {
  *length = 0;
  *hash = baton_test::kFnv1aBasis;
  pace_start_ = Clock::now();
  paced_ = 0;
  if ((plan.sink_kbps > 0 || plan.sink_delay_ms > 0) && (r.chunked || r.content_length > 0)) {
    int small = 64 * 1024;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  if (plan.sink_delay_ms > 0 && (r.chunked || r.content_length > 0))
    std::this_thread::sleep_for(std::chrono::milliseconds(plan.sink_delay_ms));
  if (!r.chunked) return take(r.content_length, plan, keep, kept, length, hash);
  std::string line;
  while (true) {
    if (!read_line(&line, kMaxLine)) return false;
    uint64_t size = 0;
    size_t digits = 0;
    for (char c : line) {
      int v = hex_value(c);
      if (v < 0) break;
      if (++digits > 15) return false;
      size = size * 16 + static_cast<uint64_t>(v);
    }
    if (digits == 0) return false;
    if (size == 0) break;
    if (!take(size, plan, keep, kept, length, hash)) return false;
    if (!read_line(&line, kMaxLine) || !line.empty()) return false;
  }
  // trailer fields up to the empty line
  while (true) {
    if (!read_line(&line, kMaxLine)) return false;
    if (line.empty()) return true;
  }
}

std::string Connection::head(int code, const Request& r, std::string_view framing, bool closing,
                             std::string_view content_type) const {
  std::string h = "HTTP/1.1 " + std::to_string(code) + " " + reason_phrase(code) +
                  "\r\nServer: baton-test-upstream\r\nX-Upstream: " + g_opts.name +
                  "\r\nX-Upstream-Connection: " + std::to_string(id_) +
                  "\r\nX-Upstream-Request: " + std::to_string(requests_) + "\r\n";
  if (!content_type.empty()) h += "Content-Type: " + std::string(content_type) + "\r\n";
  h += framing;
  if (closing) {
    h += "Connection: close\r\n";
  } else if (r.http10) {
    h += "Connection: keep-alive\r\n";
  } else if (g_opts.idle_close > 0 && g_opts.keepalive_header) {
    h += "Connection: keep-alive\r\nKeep-Alive: timeout=" +
         std::to_string(static_cast<long>(g_opts.idle_close)) + "\r\n";
  }
  h += extra_;
  h += "\r\n";
  return h;
}

bool Connection::respond_simple(int code, const Request& r, std::string_view body, bool closing,
                                std::string_view content_type) {
  std::string out = head(code, r, "Content-Length: " + std::to_string(body.size()) + "\r\n", closing, content_type);
  if (r.method != "HEAD") out.append(body);
  return send_all(out);
}

void Connection::pause_before_body() {
  if (body_delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(body_delay_ms_));
}

bool Connection::send_content(uint64_t n) {
  pause_before_body();
  std::string block(65536, '\0');
  const uint64_t half = mid_delay_ms_ > 0 ? n / 2 : n;
  for (uint64_t offset = 0; offset < n;) {
    uint64_t upto = offset < half ? half : n;
    size_t k = static_cast<size_t>(std::min<uint64_t>(block.size(), upto - offset));
    baton_test::upstream_content_fill(offset, block.data(), k);
    if (!send_all(std::string_view(block.data(), k))) return false;
    offset += k;
    if (offset == half && half < n) std::this_thread::sleep_for(std::chrono::milliseconds(mid_delay_ms_));
  }
  return true;
}

void Connection::close_gracefully() {
  if (fd_ < 0) return;
  ::shutdown(fd_, SHUT_WR);
  auto deadline = Clock::now() + std::chrono::milliseconds(kDrainMs);
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pos_ = in_.size();
    if (fill(static_cast<int>(left)) != Io::kData) break;
  }
  ::close(fd_);
  fd_ = -1;
}

void Connection::reset() {
  struct linger lg = {1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(fd_);
  fd_ = -1;
}

void Connection::tunnel() {
  // Echo: what the client sent after the head first, then everything that arrives. Reading and
  // writing alternate in this one thread; a client that sends without reading fills both
  // directions' buffers, as it would with any echo server.
  while (true) {
    if (available() > 0) {
      if (!send_all(pending())) return;
      pos_ = in_.size();
    }
    Io io = fill(-1);
    if (io != Io::kData) break;
  }
  ::shutdown(fd_, SHUT_WR);
  ::close(fd_);
  fd_ = -1;
}

// ---- main ----

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "baton_upstream: %s\n"
               "usage: baton_upstream [--listen ADDR] [--name NAME] [--idle-close SECONDS] "
               "[--keepalive-header] [--max-requests N] [--log FILE]\n",
               why.c_str());
  std::exit(2);
}

int listen_on(const std::string& spec) {
  std::string host = "127.0.0.1";
  std::string port = spec;
  if (!spec.empty() && spec[0] == '[') {
    size_t close = spec.find("]:");
    if (close == std::string::npos) usage("bad --listen address: " + spec);
    host = spec.substr(1, close - 1);
    port = spec.substr(close + 2);
  } else if (size_t colon = spec.rfind(':'); colon != std::string::npos) {
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
  }
  auto p = parse_number(port);
  if (!p || *p > 65535) usage("bad --listen port: " + spec);
  struct sockaddr_storage ss {};
  socklen_t len;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(*p));
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(*p));
    len = sizeof *v6;
  } else {
    usage("bad --listen address: " + spec);
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) usage(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0)
    usage("bind " + spec + ": " + std::strerror(errno));
  if (::listen(fd, 1024) != 0) usage(std::string("listen: ") + std::strerror(errno));
  return fd;
}

void serve_connection(int fd, long id) {
  Connection c(fd, id);
  c.serve();
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--listen") {
      g_opts.listen = value();
    } else if (a == "--name") {
      g_opts.name = value();
      for (char c : g_opts.name)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) usage("--name has a control character");
    } else if (a == "--idle-close") {
      std::string v = value();
      char* end = nullptr;
      g_opts.idle_close = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(g_opts.idle_close > 0) || g_opts.idle_close > 86400)
        usage("bad --idle-close: " + v);
    } else if (a == "--keepalive-header") {
      g_opts.keepalive_header = true;
    } else if (a == "--max-requests") {
      std::string v = value();
      auto n = parse_number(v);
      if (!n || *n == 0) usage("bad --max-requests: " + v);
      g_opts.max_requests = static_cast<long>(*n);
    } else if (a == "--log") {
      g_opts.log_path = value();
    } else {
      usage("unknown argument: " + a);
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  if (!g_opts.log_path.empty()) {
    g_log_fd = ::open(g_opts.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (g_log_fd < 0) usage("open " + g_opts.log_path + ": " + std::strerror(errno));
  }
  int lfd = listen_on(g_opts.listen);
  struct sockaddr_storage ss {};
  socklen_t len = sizeof ss;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&ss), &len);
  int port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  std::printf("port %d\n", port);
  std::fflush(stdout);

  while (true) {
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      std::fprintf(stderr, "baton_upstream: accept: %s\n", std::strerror(errno));
      return 1;
    }
    long id = ++g_next_connection;
    g_connections++;
    try {
      std::thread(serve_connection, fd, id).detach();
    } catch (const std::system_error& e) {
      // No thread for it (a resource limit): the peer sees the connection close, as with an
      // overloaded server.
      std::fprintf(stderr, "baton_upstream: no thread for a connection: %s\n", e.what());
      ::close(fd);
    }
  }
}

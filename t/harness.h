// Black-box test harness: runs the baton binary as a separate process in a temporary prefix with a
// configuration written by the test, and talks raw HTTP/1.x to it over real sockets. Nothing here is
// linked with the server's own code: the tests see only what a client, an operator or the kernel sees.
#pragma once

#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace baton_test {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// ---- strings ----

bool iequals(std::string_view a, std::string_view b);
std::string to_lower(std::string_view s);
bool contains(std::string_view haystack, std::string_view needle);
// 1-based number of the first line of `text` that contains `needle`, 0 if none does.
int line_of(std::string_view text, std::string_view needle);
// Whether all of `text` matches `pattern`: literal characters, except `%d` (one digit), `%+` (one or
// more digits), `%a` (one ASCII letter), `%s` (a sign, + or -), `%*` (any run of characters, maybe
// empty) and `%%` (a percent sign).
bool matches_pattern(std::string_view text, std::string_view pattern);
// Replaces every occurrence of `from` in `s` by `to`.
std::string replace_all(std::string s, std::string_view from, std::string_view to);

struct CaseInsensitiveLess {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const;
};
using Headers = std::multimap<std::string, std::string, CaseInsensitiveLess>;

// ---- HTTP responses as a client sees them ----

struct Response {
  std::string version;  // "HTTP/1.1"
  int status = 0;       // 0: nothing (or nothing parseable) was received
  std::string reason;
  Headers headers;
  std::string body;     // de-chunked when the response was chunked

  bool has(std::string_view name) const;
  // The first value of the header, "" when absent.
  std::string header(std::string_view name) const;
  size_t count(std::string_view name) const;
  // True when a Connection header lists the token `close` (or `keep-alive` for the second one).
  bool connection_close() const;
  bool connection_keep_alive() const;
};

std::ostream& operator<<(std::ostream& os, const Response& r);

// The response is one of baton's generated error pages: status line `CODE reason`,
// `Content-Type: text/html`, and a body with `<title>CODE reason</title>` and `<h1>CODE reason</h1>`.
::testing::AssertionResult is_error_page(const Response& r, int code, std::string_view reason);
// `Server: baton/0.1.0` and a `Date` in IMF-fixdate form.
::testing::AssertionResult has_standard_headers(const Response& r);

// ---- dates ----

std::string http_date(time_t t);                              // IMF-fixdate
bool is_imf_fixdate(std::string_view s);
std::optional<time_t> parse_http_date(std::string_view s);   // IMF-fixdate only

// ---- raw client ----

struct ClientOptions {
  Millis timeout = 5000ms;  // for every single wait (connect, each read, each send)
  int rcvbuf = 0;           // SO_RCVBUF set before connecting, when not 0
};

class Client {
 public:
  // TCP to 127.0.0.1:port.
  explicit Client(int port, ClientOptions opts = {});
  // TCP to a numeric IPv4 or IPv6 address.
  Client(const std::string& address, int port, ClientOptions opts = {});
  // AF_UNIX stream socket at `path`.
  static Client unix_socket(const std::string& path, ClientOptions opts = {});

  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Why the last operation failed (connect, send, read or parse).
  const std::string& error() const { return error_; }
  void set_timeout(Millis t) { opts_.timeout = t; }

  // Writes all of `data`; false if the peer went away or the send timed out.
  bool send(std::string_view data);
  // Reads and parses one response (a 1xx one counts as a response). `head`: the request was HEAD,
  // so no body follows whatever the headers say. nullopt on timeout, early close or a parse error.
  std::optional<Response> read_response(bool head = false);
  // send() then read_response(); records a test failure and returns an empty Response (status 0)
  // when no response arrives.
  Response exchange(std::string_view request, bool head = false);
  // Everything until the peer closes (or the timeout passes), including what is already buffered.
  std::string read_all_until_close(Millis timeout);
  // Up to `max` bytes: what is buffered, else one read. "" on close, error or timeout.
  std::string read_some(size_t max);
  // The peer closed (recv returned 0 or ECONNRESET) within `timeout`. Data received meanwhile is
  // kept in the buffer.
  bool is_closed_by_peer(Millis timeout);
  // Bytes received and not consumed by read_response/read_some.
  size_t buffered() const { return buf_.size(); }
  const std::string& buffer() const { return buf_; }
  void close();

 private:
  Client() = default;
  enum class Fill { kData, kEof, kTimeout, kError };
  Fill fill(SteadyClock::time_point deadline);
  bool connect_to(const struct sockaddr* sa, socklen_t len, int family);
  bool need(size_t n, SteadyClock::time_point deadline);

  int fd_ = -1;
  ClientOptions opts_;
  std::string buf_;
  std::string error_;
  bool eof_ = false;
};

// Request text: `METHOD TARGET HTTP/1.1`, `Host: localhost`, then `extra_headers` (each line ending
// in \r\n), then the empty line and `body`.
std::string req(std::string_view method, std::string_view target, std::string_view extra_headers = "",
                std::string_view body = "");
// One request on a fresh connection (`Connection: close` added); records a failure if no response.
Response get(int port, std::string_view target, std::string_view extra_headers = "");
Response head(int port, std::string_view target, std::string_view extra_headers = "");
// Whether a TCP connection to 127.0.0.1:port (or to a numeric IPv4/IPv6 address) is accepted (by
// the kernel) within `timeout`. Never records a failure.
bool can_connect(int port, Millis timeout = 1000ms);
bool can_connect(const std::string& address, int port, Millis timeout = 1000ms);
bool ipv6_loopback_available();

// ---- processes and files ----

bool wait_for(const std::function<bool()>& predicate, Millis timeout, Millis step = 10ms);
// The file's contents, "" when it cannot be read.
std::string read_file(const std::string& path);
bool file_exists(const std::string& path);
// Number of entries in /proc/PID/fd, -1 when it cannot be read.
int count_open_fds(pid_t pid);
// /proc/PID/cmdline with NULs turned into spaces and trailing blanks removed.
std::string process_cmdline(pid_t pid);
// The process exists and is not a zombie.
bool process_alive(pid_t pid);
// Direct children of `pid`.
std::vector<pid_t> child_pids(pid_t pid);
// Deterministic pseudo-random bytes (all 256 values occur), exactly `size` of them.
std::string generate_content(size_t size, unsigned seed = 1);
// Equality of two (possibly large) byte strings, reported as sizes and first difference rather than
// as the whole contents.
::testing::AssertionResult same_bytes(const std::string& got, const std::string& want);

// Path of the baton binary: $BATON_BINARY, else `baton` next to the test binary.
std::string baton_binary();

struct RunResult {
  int exit_code = -1;  // -1: killed by a signal or timed out
  std::string out;
  std::string err;
};
// Runs baton with `args` (argv[0] added) to completion, capturing stdout and stderr.
RunResult run_baton(const std::vector<std::string>& args, Millis timeout = 10000ms);

// A baton server in its own temporary prefix (PREFIX/conf, PREFIX/logs, PREFIX/html).
// Configuration placeholders: @PREFIX@, @PORT@ (= port(0)), @PORT2@ (= port(1)), @PORT3@ (= port(2)).
class BatonServer {
 public:
  BatonServer();
  ~BatonServer();
  BatonServer(const BatonServer&) = delete;
  BatonServer& operator=(const BatonServer&) = delete;

  const std::string& prefix() const { return prefix_; }
  std::string path(std::string_view rel) const;  // PREFIX/rel

  // Files are created mode 0644, directories 0755 (workers may run as another user); missing parent
  // directories are created.
  void write_file(std::string_view rel, std::string_view content) const;
  std::string write_generated(std::string_view rel, size_t size, unsigned seed = 1) const;
  void make_dir(std::string_view rel) const;
  void make_symlink(std::string_view target, std::string_view rel) const;
  // Sets the modification (and access) time of PREFIX/rel.
  void set_mtime(std::string_view rel, time_t mtime) const;

  // A free loopback TCP port, picked on first use and stable afterwards.
  int port(size_t index = 0);

  // Fills in the placeholders and writes PREFIX/conf/baton.ini.
  void set_config(std::string_view text);
  const std::string& config_text() const { return config_; }
  std::string config_path() const { return path("conf/baton.ini"); }
  // `baton -p PREFIX <flags> -c CONF`, for -t / -T.
  RunResult test_config(const std::vector<std::string>& flags = {"-t"}) const;

  // Starts `baton -p PREFIX -c PREFIX/conf/baton.ini` and waits (up to 10 s) until `ready` holds, by
  // default until 127.0.0.1:port(0) accepts connections. The failure carries the error log.
  ::testing::AssertionResult start(const std::function<bool()>& ready = {});
  pid_t master_pid() const { return master_; }
  std::vector<pid_t> worker_pids() const;
  bool signal(int sig) const;
  // Whether the master is still running (reaps it if it exited).
  bool running();
  // Waits for the master to exit; its wait status, or nullopt on timeout.
  std::optional<int> wait_exit(Millis timeout);
  // Sends `sig`, waits up to `timeout` for the master to exit, then SIGKILLs what is left.
  // The master's wait status, or nullopt if it had to be killed.
  std::optional<int> stop(int sig = SIGTERM, Millis timeout = 10000ms);

  std::string error_log() const { return read_file(path("logs/error.log")); }
  std::string access_log() const { return read_file(path("logs/access.log")); }
  std::string server_stderr() const { return read_file(path("server.stderr")); }

 private:
  std::string diagnostics() const;
  void kill_leftovers();

  std::string prefix_;
  std::string config_;
  std::vector<int> ports_;
  mutable std::vector<pid_t> known_workers_;
  pid_t master_ = -1;
  bool exited_ = true;
  int exit_status_ = 0;
};

// The configuration most tests start from:
//   [main] worker_processes, error_log = logs/error.log, pid = logs/baton.pid
//   [http] types = conf/mime.types, access_log = logs/access.log combined,
//          default_type = application/octet-stream, then `http_extra`
// followed by `servers` (the [server]/[location] sections, with placeholders).
std::string make_config(std::string_view servers, std::string_view http_extra = "", int workers = 1);

}  // namespace baton_test

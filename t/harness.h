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
#include <utility>
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
// VmRSS of a live process in KiB, -1 when unknown.
long process_rss_kib(pid_t pid);
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

  // ---- process runtime: live upgrade, reload, supervision ----
  //
  // A live upgrade keeps the master started by start() (same pid, new binary). Should a candidate
  // ever carry on as the master by itself, stop() and the destructor stop the master the pid file
  // names too (and whatever else of this server is left).

  // start() runs this file instead of baton_binary() (for tests that replace the binary on disk).
  void set_binary(std::string path) { binary_ = std::move(path); }
  std::string binary() const;
  // An environment variable for the master started by start() (in addition to the test's own).
  void set_env(const std::string& name, const std::string& value);

  // The pid file of make_config() (PREFIX/logs/baton.pid) and the one renamed during an upgrade.
  std::string pid_path() const { return path("logs/baton.pid"); }
  std::string oldbin_path() const { return pid_path() + ".oldbin"; }
  // The pid in the pid file, 0 when it is missing or unreadable.
  pid_t pid_from_file() const;
  // The master serving now: the pid file's pid when that process is alive, else the .oldbin's, else
  // the master start() started if it still runs; 0 when there is none.
  pid_t current_master() const;
  // Worker processes of `master` (its children titled `baton: worker process...`, draining ones
  // included; a new master during an upgrade is not a worker).
  std::vector<pid_t> workers_of(pid_t master) const;
  std::vector<pid_t> current_workers() const { return workers_of(current_master()); }
  // Waits until the server is one master with workers of one generation: no worker draining, no
  // candidate of an upgrade, nothing else (after an upgrade or a reload, the old generation is gone).
  bool wait_old_generations_gone(Millis timeout) const;
  // The master start() started has exited (reaps it); its wait status is exit_status().
  bool original_exited();
  int exit_status() const { return exit_status_; }

  // Every live process of this server (the process group of the master start() started, masters
  // whose title names this prefix, and their descendants), sorted by title.
  struct Census {
    std::vector<pid_t> masters;   // `baton: master process ...`
    std::vector<pid_t> workers;   // `baton: worker process` (active)
    std::vector<pid_t> draining;  // `baton: worker process (draining)` or another worker title
    std::vector<pid_t> others;    // anything else (a new binary that has not set its title yet, ...)
    std::string describe() const;
  };
  Census census() const;

  // `baton -p PREFIX -c CONF -s SIGNAL` (with baton_binary(), whatever binary the server runs).
  RunResult ctl(std::string_view signal, Millis timeout = 20000ms) const;

 private:
  std::string diagnostics() const;
  void kill_leftovers();
  std::vector<pid_t> own_processes() const;

  std::string prefix_;
  std::string config_;
  std::vector<int> ports_;
  mutable std::vector<pid_t> known_workers_;
  pid_t master_ = -1;
  bool exited_ = true;
  int exit_status_ = 0;
  std::string binary_;
  std::vector<std::pair<std::string, std::string>> env_;
};

// The configuration most tests start from:
//   [main] worker_processes, error_log = logs/error.log, pid = logs/baton.pid
//   [http] types = conf/mime.types, access_log = logs/access.log combined,
//          default_type = application/octet-stream, then `http_extra`
// followed by `servers` (the [server]/[location] sections, with placeholders).
std::string make_config(std::string_view servers, std::string_view http_extra = "", int workers = 1);
// The same with `main_extra` (lines) added to the [main] section.
std::string make_config_main(std::string_view main_extra, std::string_view servers, std::string_view http_extra = "",
                             int workers = 1);
// make_config_main() with the short timeouts the process runtime tests use: [main] quit_timeout = 2s,
// upgrade_timeout = 3s, restart_initial_backoff = 200ms (a key in `main_extra` replaces its default),
// and [http] keepalive_timeout = 5s before `http_extra`.
std::string make_runtime_config(std::string_view servers, std::string_view main_extra = "", int workers = 2,
                                std::string_view http_extra = "");

// ---- process runtime helpers ----

// Parent and process group of a live process, -1 when unknown.
pid_t parent_of(pid_t pid);
pid_t process_group_of(pid_t pid);
// Target of /proc/PID/exe ("" when unreadable); ends in " (deleted)" when the file was replaced.
std::string process_exe(pid_t pid);
bool is_master_title(std::string_view cmdline);  // `baton: master process...`
bool is_worker_title(std::string_view cmdline);  // `baton: worker process...`, draining included
// During an upgrade: the child of `old_master` that is neither in `workers` (its workers, known from
// before the upgrade: a worker just forked may not have its title yet) nor titled as a worker: the
// new master. It may not have exec'd yet when it is first seen, and may not have set its title yet
// while it waits in the handover delay. 0 when none appears within `timeout`.
pid_t wait_for_new_master(pid_t old_master, const std::vector<pid_t>& workers, Millis timeout);
// The pid a pid file holds, 0 when it is missing or does not hold one.
pid_t read_pid_file(const std::string& path);
// A daemon a test started is nobody's child: whatever happens, it is killed when this goes.
struct DaemonGuard {
  const BatonServer& s;
  ~DaemonGuard() {
    pid_t p = read_pid_file(s.pid_path());
    if (p > 0 && is_master_title(process_cmdline(p))) ::kill(p, SIGKILL);
  }
};
// Runs a baton binary to completion like run_baton(), with more control over the child.
struct RunOptions {
  std::string binary;                                        // "" = baton_binary()
  std::vector<std::pair<std::string, std::string>> env;      // added to the environment
  uid_t uid = static_cast<uid_t>(-1);                        // switch to this user (and gid) first
  gid_t gid = static_cast<gid_t>(-1);
  Millis timeout = 10000ms;
};
RunResult run_baton_with(const std::vector<std::string>& args, const RunOptions& opts);
// The absolute path of a program found on PATH, "" when it is not installed.
std::string tool_path(const std::string& name);

// A finished command's exit code and output, for failure messages.
std::string describe(const RunResult& r);
// No process of the list is alive.
bool none_alive(const std::vector<pid_t>& pids);

// `upgrade succeeded: master pid <N>, generation <G>` (one line on stdout).
struct UpgradeOutcome {
  pid_t pid = 0;
  long generation = 0;
};
std::optional<UpgradeOutcome> parse_upgrade_success(std::string_view out);
// `reload succeeded: generation <G>`.
std::optional<long> parse_reload_success(std::string_view out);
// `baton -s status` output:
//   master: pid=<P> generation=<G> state=<running|upgrading>
//   worker: pid=<W> generation=<G> state=<active|draining> connections=<N>   (any number of these)
//   worker: pid=<W> generation=<G> state=not-responding connections=<N> (last answer <S.S> s ago)
struct StatusReport {
  struct Worker {
    pid_t pid = 0;
    long generation = 0;
    std::string state;
    long connections = 0;
    long received = 0;  // connections handed to it by a worker of an older generation
    std::string note;  // the text in parentheses after a worker that does not respond
  };
  pid_t master_pid = 0;
  long generation = 0;
  std::string state;
  std::vector<Worker> workers;
};
// nullopt (with the reason in *error) unless every line has exactly one of the forms above and the
// master line comes first.
std::optional<StatusReport> parse_status(std::string_view out, std::string* error = nullptr);
// `-s status` of the server, expected to succeed and to parse; records failures and returns nullopt
// otherwise.
std::optional<StatusReport> status_of(const BatonServer& s);

// Removes trailing newlines, carriage returns and blanks.
std::string trim_end(std::string s);

// Copies a file (mode 0755), optionally appending `extra` bytes; writes a temporary name in the same
// directory and renames it over `to`, so a running binary at `to` keeps its old inode.
bool install_file(const std::string& from, const std::string& to, std::string_view extra = "");
// Writes `content` to `to` the same way (mode 0755).
bool install_content(std::string_view content, const std::string& to);

// ---- stand-ins for the new binary of a live upgrade ----
//
// They hold an upgrade at a chosen step without anything in baton for it: the old master runs the
// file at `path` as its new binary (install it over the path the server was started from).

// A script that, run as the candidate of an upgrade, stops itself (SIGSTOP, as a process manager or
// a debugger could) before it execs `real` with the arguments it was given; the test resumes it with
// SIGCONT. Until then the upgrade is under way and no step of it has been taken by the candidate.
// (Run as the master, when it re-executes into the proven file, it execs `real` at once.)
bool install_stopping_binary(const std::string& real, const std::string& path);
// A new master that speaks the control protocol (the test binary itself in another role) and then
// stops answering: kStallsTransfer registers, asks for the listeners and takes the announcement of
// the transfer but never acknowledges it; kHoldsListeners completes the transfer and never reports
// ready. Either creates the file `mark` once it has got that far, then waits until it is killed.
enum class ScriptedNewMaster { kStallsTransfer, kHoldsListeners };
bool install_scripted_new_master(ScriptedNewMaster role, const std::string& path, const std::string& mark);
// The process is stopped by a signal (state T in /proc/PID/stat).
bool process_stopped(pid_t pid);

// A datagram socket standing in for systemd's notification socket: give `address()` to the server as
// NOTIFY_SOCKET. `address`: a path, or `@name` for the abstract namespace.
class NotifySocket {
 public:
  struct Message {
    std::string text;  // the datagram as sent
    pid_t sender = 0;  // from SCM_CREDENTIALS
    // The value of `KEY=` in the datagram, nullopt when the datagram has no such line.
    std::optional<std::string> field(std::string_view key) const;
  };
  explicit NotifySocket(std::string address);
  ~NotifySocket();
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  bool ok() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }
  const std::string& address() const { return address_; }
  // The next datagram (also kept in history()).
  std::optional<Message> receive(Millis timeout);
  // Receives until a datagram satisfies `pred` and returns it; earlier ones stay in history().
  std::optional<Message> wait_for(const std::function<bool(const Message&)>& pred, Millis timeout);
  // Shorthand: the first datagram from now on with the line KEY=VALUE.
  std::optional<Message> wait_for_field(std::string_view key, std::string_view value, Millis timeout);
  const std::vector<Message>& history() const { return history_; }
  std::string describe() const;  // every datagram so far, for failure messages
  void clear() { history_.clear(); }

 private:
  std::string address_;
  std::string path_;  // the socket file to remove, "" for an abstract one
  int fd_ = -1;
  std::string error_;
  std::vector<Message> history_;
};

// A closed-loop HTTP load against 127.0.0.1:port, every request checked: keep-alive clients send one
// request after another on a connection (a new connection when a response says `Connection: close`),
// `Connection: close` clients one request per connection (and wait for the server to close it).
// A connection refused, reset or closed before a complete response, a timeout, a status other than
// 200 or a different body is a failure.
struct LoadOptions {
  int port = 0;
  std::string target = "/";
  std::string expected_body;
  int keepalive_threads = 8;
  int close_threads = 4;
  Millis timeout = 5000ms;  // for each wait of one request
  Millis pause = 0ms;       // between two requests of one thread (0: closed loop)
  // Bytes sent before each connection's first request (a PROXY protocol header, for instance).
  std::string connection_preamble;
};
class LoadGenerator {
 public:
  explicit LoadGenerator(LoadOptions opts);  // starts the threads
  ~LoadGenerator();                          // stops them
  LoadGenerator(const LoadGenerator&) = delete;
  LoadGenerator& operator=(const LoadGenerator&) = delete;

  void stop();  // waits for the request in flight of every thread
  uint64_t requests() const;  // successful ones
  uint64_t failures() const;  // failed requests, refused connections included
  uint64_t refused() const;   // connections refused
  uint64_t connections() const;
  std::vector<std::string> errors() const;  // the first few failures, described
  std::string summary() const;

  struct State;  // shared with the threads

 private:
  State* state_;
};

}  // namespace baton_test

// The test upstream: a small real HTTP/1.1 server (objs/baton_upstream, built from t/upstream/) that
// the proxy's black-box tests start as a separate process and put behind baton, plus the harness
// class that starts, queries and stops it. It is an origin server with scripted behaviours, not a
// mock of a peer: it speaks over real sockets, one thread per connection, blocking I/O.
//
// This header is shared by the program and the test binary, so it needs nothing but the standard
// library: the content function and the hash below are the same code on both sides.
//
// ---- command line ----------------------------------------------------------------------------
//
//   baton_upstream [--listen ADDR] [--name NAME] [--idle-close SECONDS] [--keepalive-header]
//                  [--max-requests N] [--log FILE]
//
//   --listen ADDR       IPV4:PORT, [IPV6]:PORT or PORT alone (on 127.0.0.1); default 127.0.0.1:0.
//                       Once listening it prints `port N` and a newline on stdout and flushes.
//   --name NAME         every response carries `X-Upstream: NAME` (default: upstream).
//   --idle-close S      (fractional seconds) closes a connection, with a plain close(), when no byte
//                       of a request has arrived for S seconds since the connection was accepted or
//                       since the last byte of the previous response was written, like the
//                       keep-alive timeout of many application servers. It never applies while a
//                       request is being read or answered. Without it connections stay open until
//                       the peer closes them.
//   --keepalive-header  with --idle-close: responses on a connection that stays open carry
//                       `Connection: keep-alive` and `Keep-Alive: timeout=N`, N the whole seconds of
//                       S rounded down (so 1.5 announces 1). No effect without --idle-close.
//   --max-requests N    the Nth request of a connection is answered with `Connection: close` and the
//                       connection is then closed.
//   --log FILE          one line per request, appended and flushed once the request (its body
//                       included) has been read and before anything of the response is sent:
//                         conn=C req=R method=M target=T body=LEN hash=HHHHHHHHHHHHHHHH complete=1
//                       C the connection's number (1, 2, ... in the order of accept, the
//                       harness's stats() connections included), R the request's
//                       number on its connection (1, 2, ...), T the request-target as received, LEN
//                       the body length (de-chunked), H its fnv1a() in 16 lowercase hex digits.
//                       complete=0 when the peer closed before the whole body arrived (LEN and H
//                       then cover what did). /__stats requests are not logged.
//
// SIGTERM (the default action) ends it at once; it needs no clean shutdown.
//
// ---- every response ----------------------------------------------------------------------------
//
// Status line `HTTP/1.1 CODE REASON`, then `Server: baton-test-upstream`, `X-Upstream: NAME`,
// `X-Upstream-Connection: C` and `X-Upstream-Request: R` (as in the log), the framing headers, and
// `Connection: close` when the server closes the connection after this response because the request
// asked for it (`Connection: close`, or HTTP/1.0 without `Connection: keep-alive`) or --max-requests
// was reached. HTTP/1.0 requests get keep-alive only with `Connection: keep-alive` (echoed in the
// response), and never a chunked response (close-delimited instead). Content-Type is
// application/octet-stream for the content bodies (/size, /chunked, /close), text/plain otherwise.
// No Date header.
//
// Extra response headers: each query parameter `header=NAME:VALUE` (percent-decoded; repeatable) adds
// the line `NAME: VALUE` to the response head, whatever the behaviour, e.g.
// `/status/302?header=Location:http%3A//a/b` or `/size/1?header=Connection:X-Foo&header=X-Foo:1`.
// A decoded value with CR, LF or NUL is refused with 400.
//
// Requests: request line `METHOD TARGET HTTP/1.1|HTTP/1.0`, header lines ended by CRLF, head at most
// 64 KiB. Body framed by Content-Length or `Transfer-Encoding: chunked` (extensions and trailers are
// accepted and dropped); both, a Transfer-Encoding other than chunked, an invalid Content-Length or a
// malformed head → 400 with `Connection: close`, not counted and not logged. Requests may be
// pipelined. A request with a body and `Expect: 100-continue` (HTTP/1.1) gets `100 Continue` first.
// The whole body is read (and logged) before the behaviour starts, whatever the behaviour.
//
// ---- behaviours, chosen by the path of the request-target (the query is not part of it) -------
//
// Modifiers, which may be stacked in front of a behaviour:
//   /delay/MS/<rest>      waits MS milliseconds (after reading and logging the request), then behaves
//                         as /<rest> (/delay/MS alone behaves as /).
//   /body-delay/MS/<rest> sends the head of a /size, /chunked or /close response at once and its
//                         body MS milliseconds later (an upstream that stalls in the middle).
//   /mid-delay/MS/<rest>  sends the first half (N / 2 bytes) of a /size or /close body, waits MS
//                         milliseconds, then sends the rest (an upstream that pauses mid-body).
//   /slow-sink/KBPS/<rest> reads the request body at no more than KBPS KiB per second, with the
//                         connection's receive buffer made small (64 KiB) so that the sender feels
//                         the back-pressure; then behaves as /<rest> (/slow-sink/KBPS alone: /sink).
//   /sink-delay/MS/<rest> waits MS milliseconds after the head before it reads the request body,
//                         with the receive buffer made small (64 KiB): an application that is busy
//                         before it takes an upload; then behaves as /<rest>.
// Behaviours (HEAD gets the same head with no body):
//   /size/N               200, N bytes of upstream_content(0, N), Content-Length.
//   /chunked/N            200, the same bytes with Transfer-Encoding: chunked, in chunks whose sizes
//                         cycle through 1, 10, 100, 1000, 4096, 8191, 16384, 65536, 65537 bytes.
//   /close/N              200, the same bytes with neither length nor chunking and `Connection:
//                         close`; the end of the body is the end of the connection.
//   /status/CODE          that status (200..599) with the body `status CODE\n` (none for 204, 304).
//   /headers              200, body = the request head exactly as received: request line, header
//                         lines and the empty line that ends the head (CRLFs included).
//   /echo                 200, body = the request body (held in memory: keep it modest), with
//                         Content-Length, or chunked when the request body was chunked (unless
//                         HTTP/1.0); Content-Type as in the request, else application/octet-stream.
//   /sink                 200, body `bytes=N hash=H` (no newline): the body's length and its
//                         fnv1a() in 16 lowercase hex digits. The body is never held in memory.
//   /hang                 never answers; keeps the connection (reading and dropping whatever comes)
//                         until the peer closes it. --idle-close does not apply.
//   /reset                resets the connection (SO_LINGER 0, close) without answering.
//   /reset-after-head     sends the head of a 200 with `Content-Length: 1000` and no body byte, waits
//                         until the peer has acknowledged the head, then resets the connection.
//   /close-after-response 200 `closing\n` with Content-Length and no `Connection: close`, then closes.
//   /ws                   with `Upgrade: X` and `Connection: ...upgrade...`: `101 Switching
//                         Protocols`, `Upgrade: X`, `Connection: Upgrade`, and for X = websocket
//                         `Sec-WebSocket-Accept` computed from `Sec-WebSocket-Key` (RFC 6455; without
//                         a key: 400). Then every byte received is sent back, both ways at once, until
//                         the peer half-closes or closes, and the server closes in turn. Without the
//                         upgrade headers, or in HTTP/1.0: 426.
//   /__stats              200, application/json `{"connections":N,"requests":M}`: connections accepted
//                         and requests read (head parsed) since start. The /__stats request is not
//                         counted, nor its connection when it is that connection's first request.
//   /bad/...              a malformed response, sent raw, then the connection is closed:
//     status-line           `HTTP/1.1 2OO OK` (letters O), Content-Length: 2, body `ok`
//     cl-and-te             Content-Length: 2 and Transfer-Encoding: chunked, a chunked `ok`
//     two-cl                Content-Length: 2 and Content-Length: 3, body `ok!`
//     invalid-cl            Content-Length: two, body `ok`
//     no-crlf               status line and headers ended by a bare LF, Content-Length: 2, body `ok`
//     truncated-head        `HTTP/1.1 200 OK\r\nContent-Len` and the close
//     truncated-body        a 200 with Content-Length: 1000, the first 10 bytes of the content, close
//     bad-chunk             a chunked 200 whose first chunk-size line is `zz`
//     not-http              `SSH-2.0-OpenSSH_9.2\r\n` (a server that speaks another protocol)
//   /shape/...            a valid 200 with body `ok` sent raw in a given shape, then the connection is
//                         closed:
//     hints-then-200        a 103 Early Hints head and the 200 in one write
//     split-head            the 200's head cut inside a field name, the rest 100 ms later
//     hints-split           a 103 and the start of the 200's head in one write, the rest 100 ms later
//   anything else         200, text/plain, body `NAME METHOD TARGET\n` (TARGET as received).
// A malformed number in a behaviour's path, an unknown /bad/ or /shape/ kind, or a Content-Length over 1 GiB
// for /echo → 400 with `Connection: close` (counted and logged: the request itself was valid).
//
// Closing: after a response that says `Connection: close`, /close/N, /close-after-response and the
// /bad ones the server half-closes (FIN), reads and drops what still comes for up to 2 s and then
// closes, so that unread bytes never turn into a reset that destroys the response. --idle-close is a
// plain close().

#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace baton_test {

// ---- deterministic content ----

// Byte i of the content of /size, /chunked and /close is byte (i % 8) of upstream_content_word(i / 8)
// (least significant byte first): every byte depends on i only, all 256 values occur, and the
// sequence does not repeat in any span a test uses, so a shifted, dropped or repeated block shows.
inline uint64_t upstream_content_word(uint64_t index) {
  // splitmix64's output function
  uint64_t z = index + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline unsigned char upstream_content_byte(uint64_t i) {
  return static_cast<unsigned char>(upstream_content_word(i >> 3) >> ((i & 7) * 8));
}

// Writes bytes [offset, offset + n) of the content to out.
inline void upstream_content_fill(uint64_t offset, char* out, size_t n) {
  size_t k = 0;
  while (k < n) {
    uint64_t i = offset + k;
    uint64_t word = upstream_content_word(i >> 3);
    for (unsigned b = static_cast<unsigned>(i & 7); b < 8 && k < n; b++, k++)
      out[k] = static_cast<char>(word >> (b * 8));
  }
}

inline std::string upstream_content(uint64_t offset, size_t n) {
  std::string s(n, '\0');
  upstream_content_fill(offset, s.data(), n);
  return s;
}

// Index in `data` of the first byte that differs from the content at `offset` + index;
// std::string_view::npos when all of `data` matches.
inline size_t upstream_content_mismatch(std::string_view data, uint64_t offset) {
  char block[4096];
  for (size_t done = 0; done < data.size(); done += sizeof block) {
    size_t n = data.size() - done < sizeof block ? data.size() - done : sizeof block;
    upstream_content_fill(offset + done, block, n);
    for (size_t k = 0; k < n; k++)
      if (data[done + k] != block[k]) return done + k;
  }
  return std::string_view::npos;
}

// ---- FNV-1a, 64 bits ----

constexpr uint64_t kFnv1aBasis = 0xcbf29ce484222325ull;
constexpr uint64_t kFnv1aPrime = 0x100000001b3ull;

// The hash of `data`; incremental: fnv1a(b, fnv1a(a)) == fnv1a(a + b).
inline uint64_t fnv1a(std::string_view data, uint64_t hash = kFnv1aBasis) {
  for (unsigned char c : data) {
    hash ^= c;
    hash *= kFnv1aPrime;
  }
  return hash;
}

// fnv1a() of upstream_content(offset, n), without holding it all in memory.
inline uint64_t upstream_content_hash(uint64_t offset, uint64_t n, uint64_t hash = kFnv1aBasis) {
  char block[65536];
  while (n > 0) {
    size_t k = n < sizeof block ? static_cast<size_t>(n) : sizeof block;
    upstream_content_fill(offset, block, k);
    hash = fnv1a(std::string_view(block, k), hash);
    offset += k;
    n -= k;
  }
  return hash;
}

// 16 lowercase hex digits, as in the log and in /sink's answer.
inline std::string hash_hex(uint64_t h) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; i--, h >>= 4) s[static_cast<size_t>(i)] = kDigits[h & 15];
  return s;
}

// ---- harness (defined in upstream.cc, part of the test binary only) ----

// Path of the program: $BATON_UPSTREAM_BINARY, else `baton_upstream` next to the test binary.
std::string upstream_binary();

class TestUpstream {
 public:
  struct Stats {
    long connections = -1;  // -1: /__stats could not be read
    long requests = -1;
  };
  // One line of the log (see --log above).
  struct LogLine {
    long connection = 0;
    long request = 0;
    std::string method;
    std::string target;
    uint64_t body_length = 0;
    uint64_t body_hash = 0;
    bool complete = false;
  };

  TestUpstream();
  ~TestUpstream();  // stop(), and removes the log unless it was given with --log
  TestUpstream(const TestUpstream&) = delete;
  TestUpstream& operator=(const TestUpstream&) = delete;
  // The process (and the log) move with the object: std::vector<TestUpstream> works.
  TestUpstream(TestUpstream&& other) noexcept;
  TestUpstream& operator=(TestUpstream&& other) noexcept;

  // Starts the program with `args` (the options above) and waits up to 10 s for its `port N` line.
  // Unless `args` has --log, a log in a temporary directory is added (the same for every start of
  // this object: the lines of earlier runs stay, with their own connection numbers). false (with the reason in
  // error(), also written to stderr) when it does not come up. The process dies with the thread
  // that called start() (PR_SET_PDEATHSIG), so call it from the test's own thread. No descriptor of
  // the test process leaks into it, and none of its descriptors stays open in the test process.
  bool start(const std::vector<std::string>& args = {});
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // "127.0.0.1:PORT", for `server =` lines and proxy_pass.
  std::string address() const;
  const std::string& log_path() const { return log_path_; }
  const std::string& error() const { return error_; }
  // The process runs (reaps it when it has exited).
  bool running();
  // SIGTERM, then SIGKILL after 2 s if needed; reaps the process. The log stays readable.
  void stop();
  // stop(), then start() again with the same arguments on the same port (a server that comes back,
  // for passive health tests). Its counters start from 0.
  bool restart();

  // GET /__stats on a fresh connection (which is not counted). {-1, -1} when it fails.
  Stats stats();
  // The log, parsed; lines that do not parse are skipped (log_text() has them all).
  std::vector<LogLine> log_lines() const;
  std::string log_text() const;
  // How many logged requests have this method and target (exact match of the target as received),
  // complete or not: a request counts once its head has arrived, as for a proxy deciding whether a
  // retry would send it twice.
  size_t received(std::string_view method, std::string_view target) const;

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::vector<std::string> args_;  // of the last start()
  std::string dir_;  // temporary directory of the default log, "" when none
  std::string log_path_;
  std::string error_;
};

// `conn=... complete=...` parsed; false when the line has another form.
bool parse_upstream_log_line(std::string_view line, TestUpstream::LogLine* out);

}  // namespace baton_test

// Request-level tests of the HTTP/1 connection without processes or ports: a real EventLoop runs in
// the test thread, each connection is one end of a socketpair handed to HttpWorker::on_accept as an
// accepted socket would be, and the test plays the client on the other end, turning the loop
// whenever it waits for the server. Everything happens in one thread, in an order the test decides,
// so the tests are fast and deterministic.
//
// Every test also checks how its connections end: once the client ends are closed, the worker's
// ConnectionList must be empty and each server descriptor must have been closed exactly once (the
// unit binary's close() counts closes of the descriptors a test watches).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/conf.h"
#include "event/connection.h"
#include "event/listener.h"
#include "event/loop.h"
#include "http/http_config.h"
#include "http/http_worker.h"

namespace baton::http::conntest {

using Millis = std::chrono::milliseconds;
using namespace std::chrono_literals;

// ---- responses as the client reads them -------------------------------------------------------

struct Response {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  // in order, names as sent
  std::string body;     // de-chunked
  bool chunked = false;
  size_t wire_bytes = 0;  // bytes of the stream this response took

  // The first value of the field, "" when absent (names compared without case).
  std::string header(std::string_view name) const;
  bool has(std::string_view name) const;
  size_t count(std::string_view name) const;
  // The Connection field lists `close`.
  bool connection_close() const;
};

std::ostream& operator<<(std::ostream& os, const Response& r);

// Parses the response at the start of `in`. head: it answers a HEAD, so no body follows whatever
// the head says; eof: the stream ended after `in` (ends a body delimited by the close). Returns
// true and fills *out when a whole response is there; false when more bytes are needed; sets
// *error when what is there cannot be a response.
bool parse_response(std::string_view in, bool head, bool eof, Response* out, std::string* error);

// The request text: `METHOD TARGET HTTP/1.1`, `Host: localhost`, `extra` (lines ending in CRLF),
// the empty line, then `body`.
std::string req(std::string_view method, std::string_view target, std::string_view extra = "",
                std::string_view body = "");

// Deterministic bytes (every value occurs), so that a large file can be compared byte for byte.
std::string pattern_bytes(size_t size, unsigned seed = 1);
// Equality of two large byte strings, reported as sizes and the first difference.
::testing::AssertionResult same_bytes(std::string_view got, std::string_view want);

// ---- what the process looks like from outside ---------------------------------------------------

// Resident memory of this process, in bytes.
size_t resident_bytes();
// Bytes the allocator has handed out and not taken back (0 where the allocator cannot say).
size_t heap_in_use();

// Counting the closes of chosen descriptors. The unit binary's close() goes through here: a watched
// descriptor's first close is counted and its number is occupied again at once (by /dev/null), so
// that nothing else can be given that number and a second close — of a number that may by then
// belong to someone else — is counted too instead of passing unseen.
void watch_closes(int fd);
int closes_of(int fd);
// Stops watching and releases the number (closing the stand-in, if any).
void unwatch_closes(int fd);

// ---- the fixture ----------------------------------------------------------------------------------

class ConnFixture;

// The client end of one socketpair. Non-blocking: whenever it has to wait for the server it turns
// the loop instead.
class TestClient {
 public:
  TestClient(ConnFixture* f, int fd, int server_fd) : f_(f), fd_(fd), server_fd_(server_fd) {}
  ~TestClient();
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  int fd() const { return fd_; }
  // The number the server end had; the server may have closed it by now.
  int server_fd() const { return server_fd_; }
  bool open() const { return fd_ >= 0; }

  // Writes all of data, turning the loop while the socket is full; false when the server closed
  // or the timeout passed.
  bool send(std::string_view data, Millis timeout = 2000ms);
  // One write of what fits now, without turning the loop; the bytes written.
  size_t send_now(std::string_view data);
  // What the socket holds now, appended to buffer() (no loop turn); false at the end of the stream.
  bool pull();
  // Turns the loop until one whole response is in the buffer, takes it out and returns it; nullopt
  // on timeout, on a malformed response, or when the server closed first.
  std::optional<Response> read_response(bool head = false, Millis timeout = 2000ms);
  // Turns the loop until the server's bytes stop coming: the end of the stream (true) or timeout.
  // What arrives meanwhile stays in the buffer.
  bool wait_eof(Millis timeout = 2000ms);
  // Turns the loop until the server has written something, then reads the socket with a single
  // recv() of up to max bytes (what one read of a client gets); "" on timeout or end of stream.
  std::string read_once(size_t max, Millis timeout = 2000ms);
  // Bytes the server wrote that this end has not read (what sits in the socket).
  size_t unread() const;
  bool eof() const { return eof_; }
  const std::string& buffer() const { return buf_; }
  std::string take_buffer() { return std::exchange(buf_, {}); }
  void shutdown_write();
  void close();

 private:
  ConnFixture* f_;
  int fd_;
  int server_fd_;
  std::string buf_;
  bool eof_ = false;
};

class ConnFixture : public ::testing::Test {
 protected:
  ConnFixture();
  ~ConnFixture() override;
  void TearDown() override;

  // The temporary prefix: root = html in a configuration means prefix()/html.
  const std::string& prefix() const { return prefix_; }
  std::string path(std::string_view rel) const;
  void write_file(std::string_view rel, std::string_view content);

  // Parses the configuration (it needs a [server] with a listen; only its first listen address is
  // used) and sets up the worker. A configuration error fails the test.
  void configure(std::string_view text);

  // A new connection, born as an accepted one: the server end goes to HttpWorker::on_accept. first:
  // bytes the client sent before the server saw the connection (they are there when it starts).
  TestClient& connect(std::string_view first = "");

  // One turn of the loop: handles what is ready, waiting at most `wait` for something to be.
  void turn(Millis wait = 5ms);
  // Turns the loop until pred() holds or the timeout passes; pred()'s last value.
  bool run_until(const std::function<bool()>& pred, Millis timeout = 2000ms);

  // Connections the worker has open (its ConnectionList).
  size_t connections() const { return conns_ ? conns_->size() : 0; }
  // Closes every client end and checks how the server ends went: none left open, each descriptor
  // closed exactly once. TearDown does this too; a test may call it to look at the state after.
  void close_clients_and_check();

  EventLoop& loop() { return *loop_; }
  HttpWorker& worker() { return *worker_; }

 private:
  friend class TestClient;

  std::string prefix_;
  ConfFile conf_file_;
  std::unique_ptr<HttpConf> conf_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<ConnectionList> conns_;
  std::unique_ptr<HttpWorker> worker_;
  Listening listening_;
  std::vector<std::unique_ptr<TestClient>> clients_;
  std::vector<int> watched_;
  ev_timer wake_{};
  bool checked_ = false;
};

}  // namespace baton::http::conntest

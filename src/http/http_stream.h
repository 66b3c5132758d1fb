// Handlers that answer later. Static files and `return` answer a request at once, from inside the
// parser's callback, into the worker's shared output buffer (no allocation, one write). A handler
// that must wait (the proxy waits for an upstream) is a RequestHandler instead: the connection hands
// it the request body as it arrives and a ResponseStream to answer through, and tells it when the
// client can take more output and when the exchange is over before its time.
//
// The stream decides the framing of what the handler sends: Content-Length when the handler knows
// the length, chunked for an HTTP/1.1 client when it does not, the end of the connection for an
// HTTP/1.0 one. An HTTP/2 stream will implement the same interface.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "event/loop.h"

namespace baton::http {

struct HandedConnection;

struct Header;

struct ResponseStart {
  int status = 200;
  // Header fields to send as they are (already checked; no framing or hop-by-hop fields: the
  // stream writes Content-Length / Transfer-Encoding / Connection itself).
  const Header* headers = nullptr;
  size_t header_count = 0;
  int64_t content_length = -1;  // -1: not known in advance
  bool no_body = false;         // 204, 304, or an answer to HEAD: no body follows whatever the length
};

class ResponseStream {
 public:
  // Sends the head. Only once, and before any body. A 101 to a request that asked to switch
  // protocols makes the connection a tunnel: write() then sends raw bytes, and finish() or abort()
  // ends the connection.
  virtual void start(const ResponseStart& r) = 0;
  // Queues body bytes. false: the stream is gone (the client went away; on_abort() has been
  // called). A producer watches queued() and pauses while the client does not keep up, until
  // on_output_ready().
  virtual bool write(const char* data, size_t len) = 0;
  // Bytes written and not yet taken by the client's socket (after push()).
  virtual size_t queued() const = 0;
  // start() and write() gather what they are given, so that a head and the body that came with it
  // leave in one write: push() sends what is gathered. A handler calls it before it returns to
  // the event loop (finish(), fail() and abort() push by themselves).
  virtual void push() = 0;
  // The response is complete (the last chunk goes out when chunked). The handler is deleted after
  // the current callbacks: it must have let go of everything by now.
  virtual void finish() = 0;
  // Answers with an error page instead (only before start()); ends the handler as finish() does.
  virtual void fail(int status) = 0;
  // The response cannot be completed (the source broke after start()): the client must not take
  // what it got for the whole answer, so the connection closes. Ends the handler as finish() does.
  virtual void abort() = 0;
  // Reading of the request body resumes after on_request_body() returned false.
  virtual void resume_body() = 0;
  // Bytes of the response body sent so far, for the access log.
  virtual uint64_t body_bytes_sent() const = 0;

 protected:
  ~ResponseStream() = default;
};

class RequestHandler : public Deletable {
 public:
  // Request body bytes, de-chunked, as they arrive. false: hold the rest back until resume_body().
  virtual bool on_request_body(const char* data, size_t len) = 0;
  // The body is complete (called at once for a request without one).
  virtual void on_request_body_end() = 0;
  // The client can take more output (write() returned false before).
  virtual void on_output_ready() = 0;
  // After a 101 answer the connection is a tunnel: what the client sends goes here, raw. false:
  // hold the rest back until resume_body(). The end of the client's stream comes as
  // on_tunnel_eof().
  virtual bool on_tunnel_data(const char*, size_t) { return true; }
  virtual void on_tunnel_eof() {}
  // Draining for a newer generation, a tunnel may move there (http_tunnel.h). How many bytes the
  // handler holds for the upstream's side, or -1 when its side cannot move (TLS to the upstream, an
  // upstream that ended its stream, no tunnel yet).
  virtual ssize_t tunnel_pending() const { return -1; }
  // Its part of the description: the upstream's descriptor (a duplicate), then the bytes queued for
  // it, its idle timeout. false: it cannot now. After a true the caller hands the tunnel over and
  // the handler lets go of the upstream without a word to it (its socket lives on elsewhere).
  virtual bool describe_tunnel(HandedConnection*) { return false; }
  virtual void tunnel_handed_over() {}
  // The exchange ends before its time: the client went away, a timeout struck, the worker is
  // quitting. Let go of everything; the stream must not be used again. The handler is deleted
  // after the current callbacks.
  virtual void on_abort() = 0;
};

}  // namespace baton::http

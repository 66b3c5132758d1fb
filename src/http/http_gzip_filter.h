// gzip for answers that stream (proxied responses): a ResponseStream that sits in front of the
// client's stream and compresses the body on its way through, with zlib's streaming deflate. It
// looks at the head in start() and compresses only what nginx's gzip filter would (the location's
// gzip settings, a request that may be answered compressed, a 200, 403 or 404 of a listed type with
// no Content-Encoding, long enough when its length is known); anything else passes through as it
// is, Vary added when gzip_vary asks for it.
//
// Memory: zlib's state while compressing (sized down for a short body of known length) and a buffer
// on the stack; what deflate produces goes on to the client's stream at once, so the producer's
// back-pressure (queued(), on_output_ready()) is the client's, as without the filter.
#pragma once

#include <cstdint>
#include <memory>

#include "http/http_stream.h"

struct z_stream_s;

namespace baton::http {

struct Settings;

class GzipFilter final : public ResponseStream {
 public:
  // out: the client's stream; s: the answering location's settings; client_ok: whether the request
  // may be answered compressed (gzip_client_ok()).
  GzipFilter(ResponseStream* out, const Settings& s, bool client_ok);
  ~GzipFilter();
  GzipFilter(const GzipFilter&) = delete;
  GzipFilter& operator=(const GzipFilter&) = delete;

  void start(const ResponseStart& r) override;
  bool write(const char* data, size_t len) override;
  size_t queued() const override { return out_->queued(); }
  void push() override { out_->push(); }
  void finish() override;
  void fail(int status) override { out_->fail(status); }
  void abort() override;
  void resume_body() override { out_->resume_body(); }
  uint64_t body_bytes_sent() const override { return out_->body_bytes_sent(); }

  // The producer's source has nothing more for now: what deflate holds of the bytes written so far
  // goes out (a sync flush), so that a body that comes slowly is not held back until more comes.
  // false: the stream is gone.
  bool flush();
  bool compressing() const { return z_ != nullptr; }

 private:
  // Runs deflate over the input it was given with `mode` and writes what it makes to out_. false:
  // the stream is gone or zlib failed (then the response is aborted).
  bool deflate_out(int mode);
  void end_zlib();

  ResponseStream* out_;
  const Settings& s_;
  bool client_ok_;
  bool unflushed_ = false;  // bytes went into deflate since the last flush
  std::unique_ptr<z_stream_s> z_;  // while compressing
};

}  // namespace baton::http

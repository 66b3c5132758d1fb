#include "http/http_gzip_filter.h"

#include <zlib.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/log.h"
#include "core/strings.h"
#include "http/http_config.h"
#include "http/http_gzip.h"
#include "http/http_request.h"

namespace baton::http {

namespace {

// What deflate writes into before it goes on to the client's stream.
constexpr size_t kOutBuffer = 16 * 1024;

// Whether a Vary value already covers Accept-Encoding (it names it, or is "*").
bool vary_covers_encoding(std::string_view v) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = trim(v.substr(0, comma));
    if (item == "*" || iequals(item, "accept-encoding")) return true;
    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
  }
  return false;
}

}  // namespace

GzipFilter::GzipFilter(ResponseStream* out, const Settings& s, bool client_ok)
    : out_(out), s_(s), client_ok_(client_ok) {}

GzipFilter::~GzipFilter() { end_zlib(); }

void GzipFilter::end_zlib() {
  if (!z_) return;
  deflateEnd(z_.get());
  z_.reset();
}

void GzipFilter::start(const ResponseStart& r) {
  std::string_view type, encoding;
  bool have_type = false, vary_done = false;
  size_t etag_bytes = 0;
  for (size_t i = 0; i < r.header_count; i++) {
    const Header& h = r.headers[i];
    if (iequals(h.name, "content-type") && !have_type) {
      type = h.value;
      have_type = true;
    } else if (iequals(h.name, "content-encoding")) {
      if (!trim(h.value).empty()) encoding = h.value;
    } else if (iequals(h.name, "vary")) {
      vary_done = vary_done || vary_covers_encoding(h.value);
    } else if (iequals(h.name, "etag")) {
      etag_bytes += h.value.size() + 2;
    }
  }
  // nginx's rules: these statuses only, a body, no coding already, long enough when the length is
  // known (a length not known is compressed), a listed type.
  bool eligible = s_.gzip && (r.status == 200 || r.status == 403 || r.status == 404) && !r.no_body &&
                  encoding.empty() &&
                  (r.content_length < 0 || static_cast<uint64_t>(r.content_length) >= s_.gzip_min_length) &&
                  gzip_type_matches(s_.gzip_types, type);
  bool add_vary = eligible && s_.gzip_vary && !vary_done;
  if (eligible && client_ok_) {
    // A short body of known length needs no 32 KiB window: the window (and the hash tables with it)
    // shrinks to the smallest that still covers the body, as nginx's does.
    int wbits = 15, mem_level = 8;
    if (r.content_length >= 0)
      while (wbits > 9 && r.content_length < (int64_t{1} << (wbits - 1)) - 262) wbits--, mem_level--;
    mem_level = std::max(mem_level, 1);
    z_ = std::make_unique<z_stream_s>();
    *z_ = z_stream_s{};
    // 16 + windowBits: a gzip header and trailer around the deflate stream.
    if (deflateInit2(z_.get(), s_.gzip_comp_level, Z_DEFLATED, 16 + wbits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
      log_error("deflateInit2() failed: the response is sent uncompressed");
      z_.reset();
    }
  }
  if (!z_ && !add_vary) {
    out_->start(r);
    return;
  }
  std::vector<Header> hs;
  hs.reserve(r.header_count + 2);
  std::string weak;  // the weak forms of the ETags, reserved whole: the views into it stay valid
  weak.reserve(etag_bytes);
  for (size_t i = 0; i < r.header_count; i++) {
    const Header& h = r.headers[i];
    if (z_) {
      // Compressed: no ranges of it, and the ETag names another representation, weakly equal.
      if (iequals(h.name, "accept-ranges") || iequals(h.name, "content-encoding")) continue;
      if (iequals(h.name, "etag") && !h.value.starts_with("W/")) {
        size_t at = weak.size();
        weak.append("W/");
        weak.append(h.value);
        hs.push_back(Header{h.name, std::string_view(weak).substr(at)});
        continue;
      }
    }
    hs.push_back(h);
  }
  if (z_) hs.push_back(Header{"Content-Encoding", "gzip"});
  if (add_vary) hs.push_back(Header{"Vary", "Accept-Encoding"});
  ResponseStart rs = r;
  rs.headers = hs.data();
  rs.header_count = hs.size();
  if (z_) rs.content_length = -1;  // the stream frames it (chunked for HTTP/1.1)
  out_->start(rs);
}

bool GzipFilter::write(const char* data, size_t len) {
  if (!z_) return out_->write(data, len);
  while (len > 0) {
    size_t piece = std::min<size_t>(len, 1u << 30);
    z_->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
    z_->avail_in = static_cast<uInt>(piece);
    unflushed_ = true;
    if (!deflate_out(Z_NO_FLUSH)) return false;
    data += piece;
    len -= piece;
  }
  return true;
}

bool GzipFilter::deflate_out(int mode) {
  char buf[kOutBuffer];
  for (;;) {
    z_->next_out = reinterpret_cast<Bytef*>(buf);
    z_->avail_out = sizeof(buf);
    int rc = deflate(z_.get(), mode);
    size_t made = sizeof(buf) - z_->avail_out;
    if (rc == Z_STREAM_ERROR || (rc == Z_BUF_ERROR && made == 0 && mode == Z_FINISH)) {
      log_error("deflate() failed (%d)", rc);
      end_zlib();
      out_->abort();
      return false;
    }
    if (made > 0 && !out_->write(buf, made)) {
      // The client is gone (the handler has been told).
      end_zlib();
      return false;
    }
    if (rc == Z_STREAM_END) return true;
    // All the input taken and room left over: deflate has nothing more to give for now.
    if (mode != Z_FINISH && z_->avail_in == 0 && z_->avail_out != 0) return true;
    if (rc == Z_BUF_ERROR && made == 0) return true;  // (nothing to do)
  }
}

bool GzipFilter::flush() {
  if (!z_ || !unflushed_) return true;
  unflushed_ = false;
  z_->avail_in = 0;
  return deflate_out(Z_SYNC_FLUSH);
}

void GzipFilter::finish() {
  if (z_) {
    z_->avail_in = 0;
    bool ok = deflate_out(Z_FINISH);
    end_zlib();
    if (!ok) return;  // aborted, or the client is gone
  }
  out_->finish();
}

void GzipFilter::abort() {
  end_zlib();
  out_->abort();
}

}  // namespace baton::http

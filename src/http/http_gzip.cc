#include "http/http_gzip.h"

#include <zlib.h>

#include <algorithm>

#include "core/strings.h"
#include "http/http_request.h"

namespace baton::http {

namespace {

// Whether a q value ("0", "0.0", "0.000", "1", "0.5") refuses the coding: it is zero.
bool q_is_zero(std::string_view q) {
  if (q.empty() || q[0] != '0') return false;
  for (size_t i = 1; i < q.size(); i++)
    if (q[i] != '.' && q[i] != '0') return false;
  return true;
}

}  // namespace

bool accepts_gzip(std::string_view ae) {
  int gzip = -1, star = -1;  // -1: not named; 0: refused (q=0); 1: accepted
  while (!ae.empty()) {
    size_t comma = ae.find(',');
    std::string_view item = ae.substr(0, comma);
    ae = comma == std::string_view::npos ? std::string_view() : ae.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = trim(item.substr(0, semi));
    bool accepted = true;
    while (semi != std::string_view::npos) {
      item = item.substr(semi + 1);
      semi = item.find(';');
      std::string_view p = trim(item.substr(0, semi));
      if (p.size() >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') accepted = !q_is_zero(trim(p.substr(2)));
    }
    if (iequals(coding, "gzip") || iequals(coding, "x-gzip")) gzip = std::max(gzip, accepted ? 1 : 0);
    else if (coding == "*") star = accepted ? 1 : 0;
  }
  if (gzip >= 0) return gzip == 1;
  return star == 1;
}

bool gzip_client_ok(const Request& req, bool proxied_any) {
  return req.version_minor >= 1 && (proxied_any || req.header("via").empty()) &&
         accepts_gzip(req.header("accept-encoding"));
}

bool gzip_type_matches(const std::vector<std::string>& types, std::string_view content_type) {
  std::string_view t = trim(content_type.substr(0, content_type.find(';')));
  for (const std::string& x : types)
    if (x == "*" || iequals(x, t)) return true;
  return false;
}

bool gzip_compress(std::string_view data, int level, std::string* out) {
  z_stream z{};
  // 31: a gzip header and trailer around the deflate stream; memLevel 8 is zlib's default.
  if (deflateInit2(&z, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  out->resize(deflateBound(&z, static_cast<uLong>(data.size())) + 32);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out->data());
  z.avail_out = static_cast<uInt>(out->size());
  int rc = deflate(&z, Z_FINISH);
  size_t produced = out->size() - z.avail_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return false;
  out->resize(produced);
  return true;
}

size_t GzipCache::KeyHash::operator()(const Key& k) const {
  size_t h = std::hash<uint64_t>()(static_cast<uint64_t>(k.ino));
  h ^= std::hash<uint64_t>()(static_cast<uint64_t>(k.mtime_ns ^ (k.ctime_ns << 1))) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h ^= std::hash<uint64_t>()(static_cast<uint64_t>(k.size) * 16 + static_cast<uint64_t>(k.level)) + (h << 6) + (h >> 2);
  return h ^ static_cast<size_t>(k.dev);
}

GzipCache::Key GzipCache::key_of(const struct stat& st, int level) {
  return Key{st.st_dev,
             st.st_ino,
             st.st_size,
             static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
             static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec,
             level};
}

namespace {

// What an entry costs: its bytes and the bookkeeping around them.
constexpr uint64_t kEntryOverhead = 160;

}  // namespace

void GzipCache::drop(const Key& k) {
  auto it = entries_.find(k);
  if (it == entries_.end()) return;
  bytes_ -= it->second.data.capacity() + kEntryOverhead;
  order_.erase(it->second.at);
  entries_.erase(it);
}

const std::string* GzipCache::find(const struct stat& st, int level) {
  auto it = entries_.find(key_of(st, level));
  if (it == entries_.end()) return nullptr;
  order_.splice(order_.begin(), order_, it->second.at);
  return &it->second.data;
}

const std::string* GzipCache::put(const struct stat& st, int level, std::string data) {
  Key k = key_of(st, level);
  // The older versions of the file: a file rewritten often would otherwise fill the cache with them.
  for (auto it = order_.begin(); it != order_.end();) {
    Key o = *it++;  // a copy: drop() frees the node it is in
    if (o.dev == k.dev && o.ino == k.ino && o.level == k.level) drop(o);
  }
  data.shrink_to_fit();  // compressed into a buffer sized for the worst case
  uint64_t cost = data.capacity() + kEntryOverhead;
  // The least recently used go until the new one fits.
  while (!order_.empty() && bytes_ + cost > kMaxBytes) drop(order_.back());
  order_.push_front(k);
  bytes_ += cost;
  Entry& e = entries_[k];
  e.data = std::move(data);
  e.at = order_.begin();
  return &e.data;
}

}  // namespace baton::http

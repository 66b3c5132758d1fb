// gzip: compressing static files for clients that accept it (gzip, gzip_types, gzip_min_length,
// gzip_comp_level, gzip_vary), and what gzip_static and the filter of streamed answers
// (http_gzip_filter.h) need. A file is compressed once per version and level in each worker and
// kept in a bounded cache: a busy file costs one compression, not one per request.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace baton::http {

// Whether an Accept-Encoding value accepts gzip (RFC 9110 12.5.3): "gzip" or "x-gzip" with a
// non-zero q, or "*" with a non-zero q when gzip is not named.
bool accepts_gzip(std::string_view accept_encoding);

struct Request;

// Whether the request may be answered compressed, whatever the answer: its client accepts gzip, and,
// as nginx's defaults (gzip_http_version 1.1, gzip_proxied off), it is not HTTP/1.0, nor came through
// a proxy (Via), which may keep the answer for other clients, unless proxied_any (gzip_proxied any).
bool gzip_client_ok(const Request& req, bool proxied_any);

// Whether a Content-Type (parameters ignored) is one of types ("*" matches any).
bool gzip_type_matches(const std::vector<std::string>& types, std::string_view content_type);

// Compresses data as one gzip member at level (1..9) into *out. False on a zlib failure.
bool gzip_compress(std::string_view data, int level, std::string* out);

class GzipCache {
 public:
  // Files larger than this are sent as they are (compressed in one piece, in memory).
  static constexpr uint64_t kMaxFileSize = 4 * 1024 * 1024;
  static constexpr uint64_t kMaxBytes = 32 * 1024 * 1024;  // memory kept per worker, entries included

  // The compressed form of the file whose identity st gives, at level; nullptr when not kept.
  const std::string* find(const struct stat& st, int level);
  // Keeps data (the compressed form) and returns it as kept; another version of the same file at
  // the same level goes.
  const std::string* put(const struct stat& st, int level, std::string data);

 private:
  // A file's version: its inode, size and both times. The change time cannot be set from user
  // space and moves with every write, so a file rewritten in place with its old size and an old
  // modification time (rsync --inplace -t, cp -p) is still another version.
  struct Key {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
    int64_t ctime_ns;
    int level;
    bool operator==(const Key&) const = default;
  };
  void drop(const Key& k);
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  static Key key_of(const struct stat& st, int level);
  using Order = std::list<Key>;  // most recently used first
  struct Entry {
    std::string data;
    Order::iterator at;
  };
  std::unordered_map<Key, Entry, KeyHash> entries_;
  Order order_;
  uint64_t bytes_ = 0;
};

}  // namespace baton::http

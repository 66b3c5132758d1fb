// A worker's cache of small static files: their bytes and their stat, so that a hit costs no
// system call (no open, fstat, read or close). An entry lives exactly as long as the kernel reports
// no change: every directory on the file's path and the file itself are watched with inotify before
// the file is read, and any event on one of them invalidates what depends on it. The root
// directory's own identity is checked when the static handler reopens it (once a second), which is
// how a root reached through a symbolic link follows that link.
//
// The inotify descriptor is watched at the loop's highest priority, so that within one loop
// iteration a change is taken in before any request is served from the cache.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "event/loop.h"
#include "os/unix/fd.h"

namespace baton::http {

struct CachedFile {
  std::string content;
  struct stat st;
};

class FileCache {
 public:
  // Files larger than this are not cached (they go out by sendfile).
  static constexpr uint64_t kMaxFileSize = 32 * 1024;
  static constexpr size_t kMaxEntries = 4096;
  static constexpr uint64_t kMaxBytes = 32 * 1024 * 1024;

  explicit FileCache(EventLoop* loop);
  ~FileCache();
  FileCache(const FileCache&) = delete;
  FileCache& operator=(const FileCache&) = delete;

  bool enabled() const { return inotify_.valid(); }

  // The entry for key when it is still valid, else nullptr. root_generation: the root directory's
  // identity as the static handler last saw it.
  const CachedFile* find(const std::string& key, uint64_t root_generation);

  // Starts an entry: watches base and every directory of rel down to the file, and the file. The
  // file must be read after this (with an open of its own), so that any change after the read is
  // reported. Returns false when the watches cannot be added (the file is then served uncached).
  bool begin(const std::string& base, std::string_view rel);
  // Stores the file read after begin() under key.
  const CachedFile* commit(std::string_view key, uint64_t root_generation, std::string content,
                           const struct stat& st);
  // Drops what begin() prepared when the file turns out not to be cacheable.
  void abandon();

  size_t size() const { return entries_.size(); }

 private:
  struct Dep {
    int wd;
    uint64_t generation;
  };
  struct Entry {
    CachedFile file;
    uint64_t root_generation;
    std::vector<Dep> deps;
  };
  struct Watch {
    uint64_t generation = 0;
    uint32_t refs = 0;
  };

  void on_events(int revents);
  void erase(std::unordered_map<std::string, Entry>::iterator it);
  void release(const std::vector<Dep>& deps);
  bool add_watch(const std::string& path);

  EventLoop* loop_;
  Fd inotify_;
  ev_io io_;
  std::unordered_map<std::string, Entry> entries_;
  std::unordered_map<int, Watch> watches_;
  uint64_t bytes_ = 0;
  std::vector<Dep> pending_;  // the watches begin() added, for commit()
  std::string path_;          // scratch for watch paths
};

}  // namespace baton::http

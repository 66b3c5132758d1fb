#include "http/http_file_cache.h"

#include <errno.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "core/log.h"

namespace baton::http {

namespace {

// Everything that can change what a path names or what a file holds: entries created, deleted or
// renamed in a directory, a file written or its attributes (link count included: a file replaced
// by a rename loses a link), the watched object itself deleted or moved.
constexpr uint32_t kWatchMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY | IN_ATTRIB |
                                IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF;

uint64_t next_generation() {
  // One counter for every watch, so that a (watch, generation) pair never comes back, even if the
  // kernel hands out a watch number again.
  static uint64_t counter = 0;
  return ++counter;
}

}  // namespace

FileCache::FileCache(EventLoop* loop) : loop_(loop) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    log_notice("inotify_init1() failed (%s): static files are not cached", strerror(errno));
    return;
  }
  inotify_.reset(fd);
  auto cb = ev_member_cb<FileCache, &FileCache::on_events>;
  ev_io_init(&io_, cb, fd, EV_READ);
  io_.data = this;
  ev_set_priority(&io_, EV_MAXPRI);
  ev_io_start(loop_->raw(), &io_);
}

FileCache::~FileCache() {
  if (inotify_.valid()) ev_io_stop(loop_->raw(), &io_);
}

const CachedFile* FileCache::find(const std::string& key, uint64_t root_generation) {
  if (entries_.empty()) return nullptr;
  auto it = entries_.find(key);  // no copy of the key: this is every hit
  if (it == entries_.end()) return nullptr;
  Entry& e = it->second;
  bool valid = e.root_generation == root_generation;
  for (const Dep& d : e.deps) {
    if (!valid) break;
    auto w = watches_.find(d.wd);
    valid = w != watches_.end() && w->second.generation == d.generation;
  }
  if (!valid) {
    erase(it);
    return nullptr;
  }
  return &e.file;
}

bool FileCache::add_watch(const std::string& path) {
  int wd = inotify_add_watch(inotify_.get(), path.c_str(), kWatchMask);
  if (wd < 0) {
    // ENOSPC: the user's watch limit (fs.inotify.max_user_watches) is reached.
    if (errno == ENOSPC) log_info("inotify_add_watch(\"%s\") failed (%s): file not cached", path.c_str(), strerror(errno));
    return false;
  }
  Watch& w = watches_[wd];
  if (w.refs == 0 && w.generation == 0) w.generation = next_generation();
  w.refs++;
  pending_.push_back({wd, w.generation});
  return true;
}

bool FileCache::begin(const std::string& base, std::string_view rel) {
  pending_.clear();
  if (!enabled()) return false;
  // Full: make room (any entry; a cache of small files refills at the cost of one miss each).
  while (!entries_.empty() && (entries_.size() >= kMaxEntries || bytes_ >= kMaxBytes)) erase(entries_.begin());
  // The root, each directory below it, then the file itself (a link followed to its target).
  path_.assign(base);
  bool ok = add_watch(path_);
  size_t pos = 0;
  while (ok && pos <= rel.size()) {
    size_t slash = rel.find('/', pos);
    std::string_view part = rel.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    if (!part.empty()) {
      if (path_.empty() || path_.back() != '/') path_.push_back('/');
      path_.append(part);
      ok = add_watch(path_);
    }
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  if (!ok) {
    abandon();
    return false;
  }
  return true;
}

void FileCache::abandon() {
  release(pending_);
  pending_.clear();
}

const CachedFile* FileCache::commit(std::string_view key, uint64_t root_generation, std::string content,
                                    const struct stat& st) {
  // A watch that fired between begin() and now makes the entry stale at once: keep it only if none did.
  for (const Dep& d : pending_) {
    auto w = watches_.find(d.wd);
    if (w == watches_.end() || w->second.generation != d.generation) {
      abandon();
      return nullptr;
    }
  }
  std::string k(key);
  auto old = entries_.find(k);
  if (old != entries_.end()) erase(old);
  Entry e;
  e.file.content = std::move(content);
  e.file.st = st;
  e.root_generation = root_generation;
  e.deps = std::move(pending_);
  pending_.clear();
  bytes_ += e.file.content.size();
  auto [it, inserted] = entries_.emplace(std::move(k), std::move(e));
  return &it->second.file;
}

void FileCache::erase(std::unordered_map<std::string, Entry>::iterator it) {
  if (it == entries_.end()) return;
  bytes_ -= it->second.file.content.size();
  release(it->second.deps);
  entries_.erase(it);
}

void FileCache::release(const std::vector<Dep>& deps) {
  for (const Dep& d : deps) {
    auto w = watches_.find(d.wd);
    if (w == watches_.end()) continue;
    if (--w->second.refs == 0) {
      inotify_rm_watch(inotify_.get(), d.wd);
      watches_.erase(w);
    }
  }
}

void FileCache::on_events(int) {
  alignas(struct inotify_event) char buf[8192];
  for (;;) {
    ssize_t n = ::read(inotify_.get(), buf, sizeof(buf));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;
    }
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<struct inotify_event*>(p);
      p += sizeof(struct inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        // Events were lost: nothing in the cache can be trusted.
        while (!entries_.empty()) erase(entries_.begin());
        continue;
      }
      auto w = watches_.find(ev->wd);
      if (w == watches_.end()) continue;
      if (ev->mask & IN_IGNORED) {
        // The kernel dropped the watch (its inode is gone): entries on it fail their next lookup.
        watches_.erase(w);
        continue;
      }
      w->second.generation = next_generation();
    }
  }
}

}  // namespace baton::http

// Shared memory between the master and its workers, and across a live upgrade: an anonymous file
// (memfd) mapped MAP_SHARED. The master makes a segment before it forks the workers, which inherit
// the mapping; its descriptor travels to a new binary like a listening socket does, so that what
// the segment holds (rate-limit state, counters) outlives reloads and upgrades.
//
// A segment is zero when made. Pages are given memory by the kernel as they are first touched: a
// large zone that is little used costs little.
#pragma once

#include <pthread.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "os/unix/fd.h"

namespace baton {

class SharedMemory {
 public:
  ~SharedMemory();
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;

  // A new zeroed segment of size bytes. nullptr with *err set on failure.
  static std::unique_ptr<SharedMemory> create(const char* name, size_t size, std::string* err);
  // Maps a segment made elsewhere (received from another process): its size is what the file
  // has. nullptr with *err set when it cannot be mapped.
  static std::unique_ptr<SharedMemory> attach(Fd fd, std::string* err);

  void* base() const { return base_; }
  size_t size() const { return size_; }
  int fd() const { return fd_.get(); }

 private:
  SharedMemory(Fd fd, void* base, size_t size) : fd_(std::move(fd)), base_(base), size_(size) {}
  Fd fd_;
  void* base_;
  size_t size_;
};

// A lock that lives in shared memory and is taken by several processes. It is robust: when a
// process dies holding it (a worker that crashed), the next one to lock it gets it, and learns so.
struct ShmMutex {
  pthread_mutex_t m;

  // Once, in the memory where it lives, by the process that makes the segment.
  bool init();
  // true when the previous owner died holding the lock: what it guards may be half-updated.
  bool lock();
  void unlock();
};

class ShmLock {
 public:
  explicit ShmLock(ShmMutex* m) : m_(m) { owner_died_ = m_->lock(); }
  ~ShmLock() { m_->unlock(); }
  ShmLock(const ShmLock&) = delete;
  ShmLock& operator=(const ShmLock&) = delete;
  bool owner_died() const { return owner_died_; }

 private:
  ShmMutex* m_;
  bool owner_died_;
};

}  // namespace baton

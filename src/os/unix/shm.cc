#include "os/unix/shm.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

namespace baton {

SharedMemory::~SharedMemory() {
  if (base_) munmap(base_, size_);
}

std::unique_ptr<SharedMemory> SharedMemory::create(const char* name, size_t size, std::string* err) {
  Fd fd(memfd_create(name, MFD_CLOEXEC));
  if (!fd) {
    *err = std::string("memfd_create() failed (") + strerror(errno) + ")";
    return nullptr;
  }
  if (ftruncate(fd.get(), static_cast<off_t>(size)) < 0) {
    *err = std::string("ftruncate() of shared memory failed (") + strerror(errno) + ")";
    return nullptr;
  }
  return attach(std::move(fd), err);
}

std::unique_ptr<SharedMemory> SharedMemory::attach(Fd fd, std::string* err) {
  struct stat st {};
  if (fstat(fd.get(), &st) < 0) {
    *err = std::string("fstat() of shared memory failed (") + strerror(errno) + ")";
    return nullptr;
  }
  if (st.st_size <= 0) {
    *err = "shared memory segment is empty";
    return nullptr;
  }
  size_t size = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) {
    *err = std::string("mmap() of shared memory failed (") + strerror(errno) + ")";
    return nullptr;
  }
  return std::unique_ptr<SharedMemory>(new SharedMemory(std::move(fd), p, size));
}

bool ShmMutex::init() {
  pthread_mutexattr_t a;
  if (pthread_mutexattr_init(&a) != 0) return false;
  bool ok = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) == 0 &&
            pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0 && pthread_mutex_init(&m, &a) == 0;
  pthread_mutexattr_destroy(&a);
  return ok;
}

bool ShmMutex::lock() {
  int rc = pthread_mutex_lock(&m);
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&m);
    return true;
  }
  return false;
}

void ShmMutex::unlock() { pthread_mutex_unlock(&m); }

}  // namespace baton

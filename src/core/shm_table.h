// A table of small keyed records in a shared memory segment, used by every process of the service
// at once: the state of a rate limit per client, the requests in progress per key. Records have a
// fixed size and are found by a keyed hash (SipHash with a secret made with the segment); they are
// kept in order of last use, so that the oldest can make room when the segment is full.
//
// The memory holds only offsets, never pointers: the segment may be mapped at another address in
// each process and by another binary after an upgrade, which checks the layout first.
//
// Every function but format() and open() is called with the table's lock held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "os/unix/shm.h"

namespace baton {

struct ShmRecord {
  static constexpr size_t kKeyMax = 48;  // a longer key is kept as a 128-bit keyed digest
  uint32_t next;   // in its hash chain (index + 1; 0 ends it)
  uint32_t newer;  // in the order of use (index + 1; 0: none)
  uint32_t older;
  uint16_t key_len;
  uint8_t digest;  // the key is a digest of a longer one
  uint8_t unused;
  uint64_t hash;
  char key[kKeyMax];
  int64_t v[2];    // the user's values, zero in a new record
};

class ShmTable {
 public:
  // The layout of the memory: a binary that finds another number makes a new segment.
  static constexpr uint32_t kLayout = 1;
  static constexpr size_t kMinSize = 16 * 1024;

  // Makes an empty table in zeroed memory. False when size is below kMinSize or the lock cannot be
  // made.
  static bool format(void* base, size_t size, uint32_t kind);
  // Whether the memory holds a table that format() made with this kind and layout.
  static bool check(void* base, size_t size, uint32_t kind) { return ShmTable(base, size, kind).valid(); }
  // The table that format() made in this memory (here or in another process), or an invalid table
  // when the memory holds no table of this kind and layout.
  ShmTable(void* base, size_t size, uint32_t kind);
  bool valid() const { return h_ != nullptr; }

  ShmMutex* mutex();
  // Called when the lock's last owner died holding it: the records may be half-written, so the
  // table starts over empty.
  void clear();

  // The record of key, made the most recently used; nullptr when there is none.
  ShmRecord* find(std::string_view key);
  // A new record for key (which has none), zeroed and the most recently used; nullptr when the
  // table is full (the caller may remove the oldest and try again).
  ShmRecord* insert(std::string_view key);
  void remove(ShmRecord* r);
  // The least recently used record, or nullptr.
  ShmRecord* oldest();
  // The next one after r in order of use, from the oldest; nullptr at the end.
  ShmRecord* newer(ShmRecord* r);

  uint32_t capacity() const;
  uint32_t count() const;
  // Changes with every clear(): a record remembered across one is not the same record any more.
  uint32_t epoch() const;

 private:
  struct Header;
  void digest_key(std::string_view key, uint64_t* hash, char* stored, uint16_t* len, uint8_t* digest) const;
  ShmRecord* at(uint32_t ref) { return ref ? &records_[ref - 1] : nullptr; }
  uint32_t ref(const ShmRecord* r) const { return static_cast<uint32_t>(r - records_) + 1; }
  void unlink_use(ShmRecord* r);
  void link_newest(ShmRecord* r);

  Header* h_ = nullptr;
  uint32_t* buckets_ = nullptr;
  ShmRecord* records_ = nullptr;
};

// A segment as the configuration asks for it: made or adopted when a generation opens its
// listeners (process/cycle.cc), by a key that says what it holds and how, so that a reload or an
// upgrade with the same zone finds the same memory and one with another does not.
struct ShmZone {
  std::string key;  // "zone KIND NAME SIZE ..."
  std::string name;
  size_t size = 0;
  uint32_t kind = 0;
  // How the memory of a new segment is laid out, and whether a segment found under the key (made
  // by another binary, perhaps) is laid out so.
  bool (*format)(void* base, size_t size, uint32_t kind) = ShmTable::format;
  bool (*check)(void* base, size_t size, uint32_t kind) = ShmTable::check;
  std::shared_ptr<SharedMemory> mem;  // set when the generation's listeners are opened
};

}  // namespace baton

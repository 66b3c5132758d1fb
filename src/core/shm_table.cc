#include "core/shm_table.h"

#include <sys/random.h>

#include <cstring>
#include <new>

#include "core/siphash.h"
#include "core/zone_stamp.h"

namespace baton {

namespace {
constexpr char kMagic[16] = "baton-zone";
}

struct ShmTable::Header {
  ZoneStamp stamp;
  uint64_t seed[4];   // two SipHash keys: the hash, and the digest's second half
  ShmMutex lock;
  uint32_t capacity;  // records
  uint32_t buckets;   // a power of two
  uint32_t used;      // records ever handed out from the start (the rest were never touched)
  uint32_t free;      // removed records to use again (chained by next)
  uint32_t oldest;
  uint32_t newest;
  uint32_t count;
  uint32_t epoch;
};

bool ShmTable::format(void* base, size_t size, uint32_t kind) {
  if (size < kMinSize) return false;
  auto* h = new (base) Header();
  size_t room = size - sizeof(Header);
  // About one bucket per record: each record costs its size and a bucket.
  uint32_t capacity = static_cast<uint32_t>(room / (sizeof(ShmRecord) + sizeof(uint32_t)));
  uint32_t buckets = 1;
  while (buckets * 2 <= capacity) buckets *= 2;
  size_t records_at = sizeof(Header) + buckets * sizeof(uint32_t);
  records_at = (records_at + alignof(ShmRecord) - 1) & ~(alignof(ShmRecord) - 1);
  h->capacity = static_cast<uint32_t>((size - records_at) / sizeof(ShmRecord));
  h->buckets = buckets;
  if (getrandom(h->seed, sizeof(h->seed), 0) != static_cast<ssize_t>(sizeof(h->seed))) return false;
  if (!h->lock.init()) return false;
  h->stamp.set(kMagic, kLayout, kind, size);
  return true;
}

ShmTable::ShmTable(void* base, size_t size, uint32_t kind) {
  auto* h = static_cast<Header*>(base);
  if (size < kMinSize || !h->stamp.matches(kMagic, kLayout, kind, size)) return;
  size_t records_at = sizeof(Header) + h->buckets * sizeof(uint32_t);
  records_at = (records_at + alignof(ShmRecord) - 1) & ~(alignof(ShmRecord) - 1);
  if (h->buckets == 0 || (h->buckets & (h->buckets - 1)) != 0 || records_at > size ||
      h->capacity > (size - records_at) / sizeof(ShmRecord) || h->used > h->capacity || h->free > h->used ||
      h->oldest > h->used || h->newest > h->used || h->count > h->used)
    return;
  h_ = h;
  buckets_ = reinterpret_cast<uint32_t*>(static_cast<char*>(base) + sizeof(Header));
  records_ = reinterpret_cast<ShmRecord*>(static_cast<char*>(base) + records_at);
}

ShmMutex* ShmTable::mutex() { return &h_->lock; }
uint32_t ShmTable::capacity() const { return h_->capacity; }
uint32_t ShmTable::count() const { return h_->count; }
uint32_t ShmTable::epoch() const { return h_->epoch; }

void ShmTable::clear() {
  memset(buckets_, 0, h_->buckets * sizeof(uint32_t));
  h_->used = h_->free = h_->oldest = h_->newest = h_->count = 0;
  h_->epoch++;
}

void ShmTable::digest_key(std::string_view key, uint64_t* hash, char* stored, uint16_t* len, uint8_t* digest) const {
  *hash = siphash24(key.data(), key.size(), h_->seed[0], h_->seed[1]);
  *len = static_cast<uint16_t>(key.size() > 0xffff ? 0xffff : key.size());
  if (key.size() <= ShmRecord::kKeyMax) {
    memcpy(stored, key.data(), key.size());
    *digest = 0;
    return;
  }
  // 128 bits under two secret keys stand for the key: two different keys share them by chance
  // with a probability of 2^-128, and not by design of whoever sent them.
  uint64_t second = siphash24(key.data(), key.size(), h_->seed[2], h_->seed[3]);
  memcpy(stored, hash, 8);
  memcpy(stored + 8, &second, 8);
  *len = 16;
  *digest = 1;
}

ShmRecord* ShmTable::find(std::string_view key) {
  uint64_t hash;
  char stored[ShmRecord::kKeyMax];
  uint16_t len;
  uint8_t digest;
  digest_key(key, &hash, stored, &len, &digest);
  for (uint32_t i = buckets_[hash & (h_->buckets - 1)]; i != 0;) {
    if (i > h_->used) return nullptr;  // never in a table this process keeps whole
    ShmRecord* r = &records_[i - 1];
    if (r->hash == hash && r->key_len == len && r->digest == digest && memcmp(r->key, stored, len) == 0) {
      unlink_use(r);
      link_newest(r);
      return r;
    }
    i = r->next;
  }
  return nullptr;
}

ShmRecord* ShmTable::insert(std::string_view key) {
  uint32_t i;
  if (h_->free) {
    i = h_->free;
    h_->free = records_[i - 1].next;
  } else if (h_->used < h_->capacity) {
    i = ++h_->used;
  } else {
    return nullptr;
  }
  ShmRecord* r = &records_[i - 1];
  memset(r, 0, sizeof(*r));
  digest_key(key, &r->hash, r->key, &r->key_len, &r->digest);
  uint32_t* bucket = &buckets_[r->hash & (h_->buckets - 1)];
  r->next = *bucket;
  *bucket = i;
  link_newest(r);
  h_->count++;
  return r;
}

void ShmTable::remove(ShmRecord* r) {
  uint32_t i = ref(r);
  for (uint32_t* p = &buckets_[r->hash & (h_->buckets - 1)]; *p != 0; p = &records_[*p - 1].next) {
    if (*p == i) {
      *p = r->next;
      break;
    }
  }
  unlink_use(r);
  r->next = h_->free;
  h_->free = i;
  h_->count--;
}

ShmRecord* ShmTable::oldest() { return at(h_->oldest); }
ShmRecord* ShmTable::newer(ShmRecord* r) { return at(r->newer); }

void ShmTable::unlink_use(ShmRecord* r) {
  uint32_t i = ref(r);
  if (r->newer) at(r->newer)->older = r->older;
  else if (h_->newest == i) h_->newest = r->older;
  if (r->older) at(r->older)->newer = r->newer;
  else if (h_->oldest == i) h_->oldest = r->newer;
  r->newer = r->older = 0;
}

void ShmTable::link_newest(ShmRecord* r) {
  uint32_t i = ref(r);
  r->older = h_->newest;
  r->newer = 0;
  if (h_->newest) at(h_->newest)->newer = i;
  h_->newest = i;
  if (!h_->oldest) h_->oldest = i;
}

}  // namespace baton

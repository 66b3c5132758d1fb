#include "core/status_zone.h"

#include <errno.h>
#include <signal.h>
#include <time.h>

#include <cstring>

#include "core/zone_stamp.h"
#include "os/unix/shm.h"

namespace baton {

static_assert(StatCounter::is_always_lock_free && StatGauge::is_always_lock_free &&
                  std::atomic<int32_t>::is_always_lock_free,
              "the status zone needs lock-free atomics: they are shared between processes");

namespace {
constexpr char kMagic[16] = "baton-status";
constexpr char kOther[] = "(other)";
}  // namespace

namespace status {

size_t time_bucket(double seconds) {
  size_t i = 0;
  while (i < kTimeBuckets - 1 && seconds > kTimeBounds[i]) i++;
  return i;
}

}  // namespace status

// The zone's memory. It is zero when made, which is what every counter starts as: format() writes
// only what is not zero, so that the slots' pages are touched only once a worker uses them.
struct StatusZone::Header {
  ZoneStamp stamp;
  ShmMutex lock;  // claiming, releasing, reading and naming; never while counting
  int64_t started;
  uint32_t slots_used;  // slots ever claimed, from the first (the rest were never touched)
  uint32_t server_count;
  uint32_t upstream_count;
  char server_names[status::kServers][status::kNameMax];
  char upstream_names[status::kUpstreams][status::kNameMax];
  StatEvents events;
  alignas(64) StatCounters retired;  // of the workers that are gone
  StatSlot overflow;
  StatSlot slots[status::kSlots];
};

size_t StatusZone::size() {
  constexpr size_t kPage = 4096;
  return (sizeof(Header) + kPage - 1) / kPage * kPage;
}

bool StatusZone::format(void* base, size_t size, uint32_t kind) {
  if (size < sizeof(Header)) return false;
  auto* h = static_cast<Header*>(base);
  if (!h->lock.init()) return false;
  h->started = static_cast<int64_t>(time(nullptr));
  h->stamp.set(kMagic, status::kLayout, kind, size);
  return true;
}

StatusZone::StatusZone(void* base, size_t size, uint32_t kind) {
  auto* h = static_cast<Header*>(base);
  // The size too: a change of the structures that was not given a new layout number still makes a
  // new zone, as long as it changes their size.
  if (!base || size != StatusZone::size() || !h->stamp.matches(kMagic, status::kLayout, kind, size) ||
      h->slots_used > status::kSlots || h->server_count > status::kServers ||
      h->upstream_count > status::kUpstreams)
    return;
  h_ = h;
}

StatEvents& StatusZone::events() { return h_->events; }

uint32_t StatusZone::name_index(char (*names)[status::kNameMax], uint32_t* count, uint32_t max, std::string_view name) {
  if (name.size() >= status::kNameMax) name = name.substr(0, status::kNameMax - 1);
  ShmLock lock(&h_->lock);
  for (uint32_t i = 0; i < *count; i++)
    if (strnlen(names[i], status::kNameMax) == name.size() && memcmp(names[i], name.data(), name.size()) == 0) return i;
  if (*count < max - 1) {
    memcpy(names[*count], name.data(), name.size());
    names[*count][name.size()] = '\0';
    return (*count)++;
  }
  if (*count == max - 1) {
    memcpy(names[max - 1], kOther, sizeof(kOther));
    *count = max;
  }
  return max - 1;
}

uint32_t StatusZone::server_index(std::string_view name) {
  return name_index(h_->server_names, &h_->server_count, status::kServers, name);
}

uint32_t StatusZone::upstream_index(std::string_view name) {
  return name_index(h_->upstream_names, &h_->upstream_count, status::kUpstreams, name);
}

StatSlot* StatusZone::claim(pid_t pid, bool* shared) {
  ShmLock lock(&h_->lock);
  *shared = false;
  StatSlot* free = nullptr;
  for (uint32_t i = 0; i < h_->slots_used; i++) {
    StatSlot* s = &h_->slots[i];
    int32_t owner = s->pid.load(std::memory_order_relaxed);
    // A slot of an earlier process with this pid, which nobody released: that process is gone.
    if (owner == pid) {
      fold(s);
      owner = 0;
    }
    if (owner == 0 && !free) free = s;
  }
  if (!free && h_->slots_used < status::kSlots) free = &h_->slots[h_->slots_used++];
  if (!free) {
    *shared = true;
    return &h_->overflow;
  }
  free->pid.store(pid, std::memory_order_relaxed);
  return free;
}

namespace {

void move_counter(StatCounter& from, StatCounter& to) {
  uint64_t v = from.load(std::memory_order_relaxed);
  if (!v) return;
  to.store(to.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
  from.store(0, std::memory_order_relaxed);
}

}  // namespace

void StatusZone::fold(StatSlot* s) {
  StatCounters& from = s->c;
  StatCounters& to = h_->retired;
  move_counter(from.accepted, to.accepted);
  move_counter(from.handled, to.handled);
  move_counter(from.requests, to.requests);
  for (uint32_t i = 0; i < h_->server_count; i++) {
    StatServer& a = from.servers[i];
    StatServer& b = to.servers[i];
    for (size_t k = 0; k < status::kClasses; k++) move_counter(a.requests[k], b.requests[k]);
    move_counter(a.bytes_sent, b.bytes_sent);
    move_counter(a.bytes_received, b.bytes_received);
    for (size_t k = 0; k < status::kTimeBuckets; k++) move_counter(a.time[k], b.time[k]);
    move_counter(a.time_us, b.time_us);
  }
  for (uint32_t i = 0; i < h_->upstream_count; i++) {
    StatUpstream& a = from.upstreams[i];
    StatUpstream& b = to.upstreams[i];
    move_counter(a.requests, b.requests);
    move_counter(a.attempts, b.attempts);
    for (size_t k = 0; k < status::kClasses; k++) move_counter(a.responses[k], b.responses[k]);
    for (size_t k = 0; k < 4; k++) move_counter(a.failures[k], b.failures[k]);
    move_counter(a.time_us, b.time_us);
    move_counter(a.time_count, b.time_count);
  }
  // The gauges of a process that is gone: its connections are closed.
  s->active.store(0, std::memory_order_relaxed);
  s->reading.store(0, std::memory_order_relaxed);
  s->writing.store(0, std::memory_order_relaxed);
  s->pid.store(0, std::memory_order_relaxed);
}

void StatusZone::release(pid_t pid) {
  if (pid <= 0) return;
  ShmLock lock(&h_->lock);
  for (uint32_t i = 0; i < h_->slots_used; i++)
    if (h_->slots[i].pid.load(std::memory_order_relaxed) == pid) fold(&h_->slots[i]);
}

void StatusZone::sweep() {
  ShmLock lock(&h_->lock);
  for (uint32_t i = 0; i < h_->slots_used; i++) {
    int32_t pid = h_->slots[i].pid.load(std::memory_order_relaxed);
    // (A process that exists but is not ours to signal is alive; a zombie too, until reaped.)
    if (pid > 0 && ::kill(pid, 0) < 0 && errno == ESRCH) fold(&h_->slots[i]);
  }
}

namespace {

uint64_t get(const StatCounter& c) { return c.load(std::memory_order_relaxed); }

void add_counters(const StatCounters& c, uint32_t servers, uint32_t upstreams, StatusSnapshot* out) {
  out->accepted += get(c.accepted);
  out->handled += get(c.handled);
  out->requests += get(c.requests);
  for (uint32_t i = 0; i < servers; i++) {
    const StatServer& a = c.servers[i];
    StatusSnapshot::Server& b = out->servers[i];
    for (size_t k = 0; k < status::kClasses; k++) b.requests[k] += get(a.requests[k]);
    b.bytes_sent += get(a.bytes_sent);
    b.bytes_received += get(a.bytes_received);
    for (size_t k = 0; k < status::kTimeBuckets; k++) b.time[k] += get(a.time[k]);
    b.time_us += get(a.time_us);
  }
  for (uint32_t i = 0; i < upstreams; i++) {
    const StatUpstream& a = c.upstreams[i];
    StatusSnapshot::Upstream& b = out->upstreams[i];
    b.requests += get(a.requests);
    b.attempts += get(a.attempts);
    for (size_t k = 0; k < status::kClasses; k++) b.responses[k] += get(a.responses[k]);
    for (size_t k = 0; k < 4; k++) b.failures[k] += get(a.failures[k]);
    b.time_us += get(a.time_us);
    b.time_count += get(a.time_count);
  }
}

void add_gauges(const StatSlot& s, StatusSnapshot* out) {
  out->active += s.active.load(std::memory_order_relaxed);
  out->reading += s.reading.load(std::memory_order_relaxed);
  out->writing += s.writing.load(std::memory_order_relaxed);
}

}  // namespace

void StatusZone::read(StatusSnapshot* out) {
  *out = StatusSnapshot();
  // Under the lock: a slot being folded is counted once, never twice nor not at all.
  ShmLock lock(&h_->lock);
  out->started = h_->started;
  uint32_t servers = h_->server_count, upstreams = h_->upstream_count;
  out->servers.resize(servers);
  for (uint32_t i = 0; i < servers; i++) out->servers[i].name.assign(h_->server_names[i], strnlen(h_->server_names[i], status::kNameMax));
  out->upstreams.resize(upstreams);
  for (uint32_t i = 0; i < upstreams; i++)
    out->upstreams[i].name.assign(h_->upstream_names[i], strnlen(h_->upstream_names[i], status::kNameMax));
  add_counters(h_->retired, servers, upstreams, out);
  add_counters(h_->overflow.c, servers, upstreams, out);
  add_gauges(h_->overflow, out);
  for (uint32_t i = 0; i < h_->slots_used; i++) {
    const StatSlot& s = h_->slots[i];
    if (s.pid.load(std::memory_order_relaxed) == 0) continue;  // free: zero
    add_counters(s.c, servers, upstreams, out);
    add_gauges(s, out);
  }
  // Between two workers' updates a sum may be off by one connection for a moment: never below 0.
  if (out->active < 0) out->active = 0;
  if (out->reading < 0) out->reading = 0;
  if (out->writing < 0) out->writing = 0;
  const StatEvents& e = h_->events;
  out->reloads_ok = get(e.reloads_ok);
  out->reloads_failed = get(e.reloads_failed);
  out->upgrades_succeeded = get(e.upgrades_succeeded);
  out->upgrades_failed = get(e.upgrades_failed);
  out->upgrades_rolled_back = get(e.upgrades_rolled_back);
  out->worker_restarts = get(e.worker_restarts);
}

StatusWriter::StatusWriter() {
  // Nobody reads it: what a process without a zone counts goes here.
  static StatSlot local{};
  slot_ = &local;
}

}  // namespace baton

// The service's status counters (stub_status, metrics): one shared memory zone for every process of
// the service, made when the service starts and handed over like the other zones (a reload adopts
// it, a live upgrade passes it to the new binary), so that what it counts is counted from the start
// of the service whatever reloads and upgrades happen in between.
//
// Nothing is shared on the hot path. Every worker process claims a slot of its own when it starts
// (by pid) and is the only one to write it: counters and gauges on its own cache lines, a relaxed
// load and store each, never a contended atomic. A reader (a stub_status or metrics request) sums
// the slots. When the master reaps a worker it folds the slot's counters into the retired totals
// and frees it: counters never go backwards, the gauges of a process that is gone are gone with it.
// The master writes its own events (reloads, upgrades, restarts) in the header.
//
// Bounds: kSlots worker processes at once (every generation); a worker that finds no free slot
// shares one overflow slot with the others in that case, written with atomic additions (exact,
// only slower; the connection gauges of such a worker that crashes stay counted). kServers server
// names and kUpstreams upstream names over the life of the service (a reload that renames adds
// names): the last index of each stands for every name beyond.
//
// The memory holds no pointers, and starts with a layout number: a binary with another layout makes
// a new zone (the counters start again), one with the same layout adopts it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace baton {

namespace status {

constexpr uint32_t kKind = 0x73746174;  // "stat", the zone's kind in memory
constexpr uint32_t kLayout = 1;
constexpr uint32_t kSlots = 256;
constexpr uint32_t kServers = 64;
constexpr uint32_t kUpstreams = 64;
constexpr size_t kNameMax = 64;  // a name's bytes kept, with its terminating NUL

// The request time histogram's upper bounds, in seconds; a last bucket (+Inf) takes the rest.
inline constexpr double kTimeBounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
constexpr size_t kTimeBuckets = sizeof(kTimeBounds) / sizeof(kTimeBounds[0]) + 1;

// Status classes: [1] .. [5] for 1xx .. 5xx, [0] for a request that ended without a status in them.
constexpr size_t kClasses = 6;
inline size_t status_class(int status) { return status >= 100 && status < 600 ? static_cast<size_t>(status / 100) : 0; }
size_t time_bucket(double seconds);

}  // namespace status

using StatCounter = std::atomic<uint64_t>;
using StatGauge = std::atomic<int64_t>;

struct StatServer {
  StatCounter requests[status::kClasses];  // answered, by status class
  StatCounter bytes_sent;
  StatCounter bytes_received;
  StatCounter time[status::kTimeBuckets];  // per bucket (not cumulative)
  StatCounter time_us;                     // the sum of the request times, in microseconds
};

enum class UpstreamFailure : uint8_t { kConnect, kTimeout, kError, kStatus };

struct StatUpstream {
  StatCounter requests;  // requests proxied to the group
  StatCounter attempts;  // servers tried (several per request with retries)
  StatCounter responses[status::kClasses];  // attempts answered with a response head, by class
  StatCounter failures[4];                  // by UpstreamFailure
  StatCounter time_us;                      // response times (to the end of the answer) of those
  StatCounter time_count;
};

struct StatCounters {
  StatCounter accepted;
  StatCounter handled;
  StatCounter requests;  // begun, as stub_status counts them
  StatServer servers[status::kServers];
  StatUpstream upstreams[status::kUpstreams];
};

struct alignas(64) StatSlot {
  std::atomic<int32_t> pid;  // the worker that owns it; 0: free
  int32_t unused;
  StatGauge active;   // client connections open
  StatGauge reading;  // ... reading a request head
  StatGauge writing;  // ... with a request read and its answer in progress
  alignas(64) StatCounters c;
};

// The master's events.
struct StatEvents {
  StatCounter reloads_ok;
  StatCounter reloads_failed;
  StatCounter upgrades_succeeded;
  StatCounter upgrades_failed;       // refused before a candidate ran
  StatCounter upgrades_rolled_back;  // the candidate failed: the old binary goes on
  StatCounter worker_restarts;       // workers that crashed and were restarted
};

// What a reader sees: the sums over every slot and the retired totals.
struct StatusSnapshot {
  int64_t started = 0;  // seconds since the epoch
  uint64_t accepted = 0, handled = 0, requests = 0;
  int64_t active = 0, reading = 0, writing = 0;
  struct Server {
    std::string name;
    uint64_t requests[status::kClasses] = {};
    uint64_t bytes_sent = 0, bytes_received = 0;
    uint64_t time[status::kTimeBuckets] = {};
    uint64_t time_us = 0;
  };
  std::vector<Server> servers;
  struct Upstream {
    std::string name;
    uint64_t requests = 0, attempts = 0;
    uint64_t responses[status::kClasses] = {};
    uint64_t failures[4] = {};
    uint64_t time_us = 0, time_count = 0;
  };
  std::vector<Upstream> upstreams;
  uint64_t reloads_ok = 0, reloads_failed = 0;
  uint64_t upgrades_succeeded = 0, upgrades_failed = 0, upgrades_rolled_back = 0;
  uint64_t worker_restarts = 0;
};

// A view of the zone's memory (made here or in another process).
class StatusZone {
 public:
  // The size of the segment this layout needs.
  static size_t size();
  static bool format(void* base, size_t size, uint32_t kind);
  static bool check(void* base, size_t size, uint32_t kind) { return StatusZone(base, size, kind).valid(); }
  StatusZone() = default;
  StatusZone(void* base, size_t size, uint32_t kind = status::kKind);
  bool valid() const { return h_ != nullptr; }

  // The index of a name (registered on first use); the last index for any name beyond the bound.
  uint32_t server_index(std::string_view name);
  uint32_t upstream_index(std::string_view name);

  // A worker's slot, claimed for pid: *shared is set when every slot is taken and the overflow slot
  // (shared, written with atomic additions) is returned.
  StatSlot* claim(pid_t pid, bool* shared);
  // The process pid is gone: its slot's counters go to the retired totals, the slot is free.
  void release(pid_t pid);
  // Releases the slots of processes that no longer exist (their master did not reap them).
  void sweep();

  StatEvents& events();
  void read(StatusSnapshot* out);

 private:
  struct Header;
  uint32_t name_index(char (*names)[status::kNameMax], uint32_t* count, uint32_t max, std::string_view name);
  void fold(StatSlot* s);
  Header* h_ = nullptr;
};

// A worker's side: the counting, on its own slot. Without a zone (a unit test), a slot of the
// process's own memory that nobody reads.
class StatusWriter {
 public:
  StatusWriter();
  void attach(StatSlot* slot, bool shared) {
    slot_ = slot;
    shared_ = shared;
  }
  StatSlot* slot() const { return slot_; }

  enum class State : uint8_t { kNone, kReading, kWriting };

  void accepted() {
    add(slot_->c.accepted);
    add(slot_->c.handled);
  }
  void client(int64_t delta) { add(slot_->active, delta); }
  void request_begun() { add(slot_->c.requests); }
  void state(State from, State to) {
    if (from == State::kReading) add(slot_->reading, -1);
    else if (from == State::kWriting) add(slot_->writing, -1);
    if (to == State::kReading) add(slot_->reading, 1);
    else if (to == State::kWriting) add(slot_->writing, 1);
  }
  void request_done(uint32_t server, int status, double seconds) {
    StatServer& s = slot_->c.servers[server];
    add(s.requests[status::status_class(status)]);
    if (seconds < 0) seconds = 0;
    add(s.time[status::time_bucket(seconds)]);
    add(s.time_us, static_cast<uint64_t>(seconds * 1e6));
  }
  void bytes(uint32_t server, uint64_t in, uint64_t out) {
    StatServer& s = slot_->c.servers[server];
    if (in) add(s.bytes_received, in);
    if (out) add(s.bytes_sent, out);
  }
  void upstream_request(uint32_t u) { add(slot_->c.upstreams[u].requests); }
  void upstream_attempt(uint32_t u) { add(slot_->c.upstreams[u].attempts); }
  void upstream_response(uint32_t u, int status, double seconds) {
    StatUpstream& s = slot_->c.upstreams[u];
    add(s.responses[status::status_class(status)]);
    add(s.time_us, static_cast<uint64_t>((seconds < 0 ? 0 : seconds) * 1e6));
    add(s.time_count);
  }
  void upstream_failure(uint32_t u, UpstreamFailure why) { add(slot_->c.upstreams[u].failures[static_cast<size_t>(why)]); }

 private:
  // The slot is this process's own: a plain read and write. The overflow slot is not.
  void add(StatCounter& c, uint64_t n = 1) {
    if (shared_) c.fetch_add(n, std::memory_order_relaxed);
    else c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void add(StatGauge& g, int64_t n) {
    if (shared_) g.fetch_add(n, std::memory_order_relaxed);
    else g.store(g.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  StatSlot* slot_;
  bool shared_ = false;
};

}  // namespace baton

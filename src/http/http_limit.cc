#include "http/http_limit.h"

#include <time.h>

#include <cinttypes>
#include <climits>

#include "core/strings.h"
#include "http/http_config.h"
#include "http/http_log.h"
#include "http/http_request.h"

namespace baton::http {

namespace {

// A clock every process of the machine shares (workers, and the binary after an upgrade), in
// milliseconds.
int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// A limit_req record: v[0] the excess (thousandths of a request), v[1] when it was last counted.
constexpr int kExcess = 0;
constexpr int kLast = 1;
// A limit_conn record: v[0] the requests in progress.
constexpr int kCount = 0;

ShmTable table_of(const LimitZone& z) {
  return ShmTable(z.shm.mem->base(), z.shm.mem->size(), static_cast<uint32_t>(z.kind));
}

// The lock of a zone, taken; a zone whose last holder died while writing starts over.
class ZoneLock {
 public:
  ZoneLock(ShmTable& t, const LimitZone& z) : lock_(t.mutex()) {
    if (lock_.owner_died()) {
      log_alert("a process died while it changed the limit zone \"%s\": its records are cleared", z.name.c_str());
      t.clear();
    }
  }

 private:
  ShmLock lock_;
};

// The excess of a record at now, one request more.
int64_t excess_at(const ShmRecord* r, uint64_t rate, int64_t now) {
  int64_t ms = now - r->v[kLast];
  if (ms < 0) ms = 0;
  int64_t drained = static_cast<int64_t>(rate * static_cast<uint64_t>(ms) / 1000);
  int64_t excess = r->v[kExcess] - drained;
  if (excess < 0) excess = 0;
  return excess + 1000;
}

// nginx's "a level lower" for the log line of a delay.
LogLevel delay_level(LogLevel l) {
  if (l <= LogLevel::kInfo) return l;
  return static_cast<LogLevel>(static_cast<int>(l) - 1);
}

void log_limited(LogLevel level, const VarContext& vars, const Request& req, const std::string& what) {
  if (!ErrorLog::enabled(level)) return;
  std::string line = what;
  char host[64];
  size_t n = vars.peer ? vars.peer->host_into(host, sizeof(host)) : 0;
  line.append(", client: ").append(host, n);
  if (vars.server && !vars.server->primary_name.empty()) line.append(", server: ").append(vars.server->primary_name);
  line.append(", request: \"");
  append_escaped(&line, req.method);
  line.push_back(' ');
  append_escaped(&line, req.target);
  line.push_back('"');
  if (!req.host_lower.empty()) {
    line.append(", host: \"");
    append_escaped(&line, req.host_lower);
    line.push_back('"');
  }
  log_printf(level, "%s", line.c_str());
}

// Finds or makes the record of key. When the zone is full, records that have drained (limit_req)
// or count nothing (limit_conn) go first, the oldest; for limit_req the oldest goes anyway if it
// must, as nginx does (that client's bucket starts over), while a limit_conn record that counts
// requests in progress is never dropped.
ShmRecord* record_of(ShmTable& t, const LimitZone& z, std::string_view key, int64_t now, bool* fresh) {
  *fresh = false;
  if (ShmRecord* r = t.find(key)) return r;
  // Two idle records of the oldest make room as a matter of course, as nginx's expiry does.
  for (int i = 0; i < 2; i++) {
    ShmRecord* old = t.oldest();
    if (!old) break;
    bool idle = z.kind == LimitKind::kReq ? excess_at(old, z.rate, now) - 1000 <= 0 && now - old->v[kLast] > 60000
                                          : old->v[kCount] <= 0;
    if (!idle) break;
    t.remove(old);
  }
  ShmRecord* r = t.insert(key);
  if (!r) {
    ShmRecord* old = t.oldest();
    for (int i = 0; old && i < 16; i++) {
      ShmRecord* next = t.newer(old);
      if (z.kind == LimitKind::kReq || old->v[kCount] <= 0) {
        t.remove(old);
        r = t.insert(key);
        break;
      }
      old = next;
    }
  }
  if (r) *fresh = true;
  return r;
}

}  // namespace

std::string_view limit_status_name(LimitStatus s) {
  switch (s) {
    case LimitStatus::kNone: return "";
    case LimitStatus::kPassed: return "PASSED";
    case LimitStatus::kDelayed: return "DELAYED";
    case LimitStatus::kRejected: return "REJECTED";
    case LimitStatus::kDelayedDryRun: return "DELAYED_DRY_RUN";
    case LimitStatus::kRejectedDryRun: return "REJECTED_DRY_RUN";
  }
  return "";
}

bool parse_limit_rate(std::string_view text, uint64_t* out) {
  uint64_t per = 0;
  if (text.ends_with("r/s")) per = 1;
  else if (text.ends_with("r/m")) per = 60;
  else return false;
  text.remove_suffix(3);
  uint64_t n = 0;
  if (!parse_uint(text, &n) || n == 0 || n > 1000000000) return false;
  *out = n * 1000 / per;
  if (*out == 0) *out = 1;
  return true;
}

int check_limit_req(const LimitSettings& s, const VarContext& vars, Request* req, double* delay) {
  *delay = 0;
  if (s.reqs.empty()) return 0;
  const int64_t now = now_ms();
  std::string key;
  // Every limit is looked at first; the request is counted in them only when none refuses it (a
  // request refused by the second zone does not use up the first one's rate).
  struct Seen {
    const LimitReq* limit;
    int64_t excess;
  };
  Seen seen[8];
  size_t n_seen = 0;
  const LimitReq* refused_by = nullptr;
  bool no_room = false;  // logged once the zone's lock is let go
  int64_t refused_excess = 0;
  for (const LimitReq& l : s.reqs) {
    key.clear();
    l.zone->key.evaluate(vars, &key);
    if (key.empty()) continue;
    ShmTable t = table_of(*l.zone);
    ZoneLock lock(t, *l.zone);
    bool fresh;
    ShmRecord* r = record_of(t, *l.zone, key, now, &fresh);
    if (!r) {
      refused_by = &l;
      no_room = true;
      break;
    }
    int64_t excess = 0;
    if (fresh) {
      r->v[kLast] = now;
    } else {
      excess = excess_at(r, l.zone->rate, now);
    }
    if (static_cast<uint64_t>(excess) > l.burst) {
      refused_by = &l;
      refused_excess = excess;
      break;
    }
    // With a single limit (the usual case) the request is counted under the same lock.
    if (s.reqs.size() == 1) {
      r->v[kExcess] = excess;
      r->v[kLast] = now;
    }
    if (n_seen < sizeof(seen) / sizeof(seen[0])) seen[n_seen++] = Seen{&l, excess};
  }
  if (no_room) log_error("could not make room in the limit_req zone \"%s\"", refused_by->zone->name.c_str());
  if (refused_by) {
    char what[160];
    snprintf(what, sizeof(what), "limiting requests%s, excess: %" PRId64 ".%03" PRId64 " by zone \"%s\"",
             s.req_dry_run ? ", dry run" : "", refused_excess / 1000, refused_excess % 1000, refused_by->zone->name.c_str());
    log_limited(s.req_log_level, vars, *req, what);
    req->limit_req_status = s.req_dry_run ? LimitStatus::kRejectedDryRun : LimitStatus::kRejected;
    return s.req_dry_run ? 0 : s.req_status;
  }
  // Counted in each, and the longest delay any of them asks for.
  int64_t wait_ms = 0;
  const Seen* longest = nullptr;
  for (size_t i = 0; i < n_seen; i++) {
    const LimitReq& l = *seen[i].limit;
    int64_t excess = seen[i].excess;
    if (s.reqs.size() > 1) {
      key.clear();
      l.zone->key.evaluate(vars, &key);
      ShmTable t = table_of(*l.zone);
      ZoneLock lock(t, *l.zone);
      bool fresh;
      if (ShmRecord* r = record_of(t, *l.zone, key, now, &fresh)) {
        excess = fresh ? 0 : excess_at(r, l.zone->rate, now);
        r->v[kExcess] = excess;
        r->v[kLast] = now;
      }
    }
    if (l.delay == UINT64_MAX || static_cast<uint64_t>(excess) <= l.delay) continue;
    int64_t ms = static_cast<int64_t>((static_cast<uint64_t>(excess) - l.delay) * 1000 / l.zone->rate);
    if (ms > wait_ms) {
      wait_ms = ms;
      longest = &seen[i];
    }
  }
  if (n_seen == 0) return 0;  // every key was empty: no limit applied
  if (wait_ms == 0) {
    req->limit_req_status = LimitStatus::kPassed;
    return 0;
  }
  char what[160];
  snprintf(what, sizeof(what), "delaying request%s, excess: %" PRId64 ".%03" PRId64 ", by zone \"%s\"",
           s.req_dry_run ? ", dry run" : "", longest->excess / 1000, longest->excess % 1000,
           longest->limit->zone->name.c_str());
  log_limited(delay_level(s.req_log_level), vars, *req, what);
  if (s.req_dry_run) {
    req->limit_req_status = LimitStatus::kDelayedDryRun;
    return 0;
  }
  req->limit_req_status = LimitStatus::kDelayed;
  *delay = static_cast<double>(wait_ms) / 1000.0;
  return -1;
}

int check_limit_conn(const LimitSettings& s, const VarContext& vars, Request* req) {
  if (s.conns.empty()) return 0;
  std::string key;
  bool applied = false;
  for (const LimitConn& l : s.conns) {
    key.clear();
    l.zone->key.evaluate(vars, &key);
    if (key.empty()) continue;
    applied = true;
    ShmTable t = table_of(*l.zone);
    bool full = false, no_room = false;
    {
      ZoneLock lock(t, *l.zone);
      bool fresh;
      ShmRecord* r = record_of(t, *l.zone, key, 0, &fresh);
      if (!r) {
        no_room = full = true;
      } else if (r->v[kCount] >= static_cast<int64_t>(l.max)) {
        full = true;
      }
      // A dry run counts too (it would refuse the requests a real limit refuses, not fewer).
      if (r && (!full || s.conn_dry_run)) {
        r->v[kCount]++;
        req->limit_conns.holds_.push_back(LimitConnHolds::Hold{l.zone, r, t.epoch()});
      }
    }
    if (no_room) log_error("could not make room in the limit_conn zone \"%s\"", l.zone->name.c_str());
    if (full) {
      log_limited(s.conn_log_level, vars, *req,
                  std::string("limiting connections") + (s.conn_dry_run ? ", dry run," : "") + " by zone \"" + l.zone->name + "\"");
      if (s.conn_dry_run) {
        req->limit_conn_status = LimitStatus::kRejectedDryRun;
        return 0;
      }
      req->limit_conns.release();
      req->limit_conn_status = LimitStatus::kRejected;
      return s.conn_status;
    }
  }
  if (applied) req->limit_conn_status = LimitStatus::kPassed;
  return 0;
}

size_t forget_conn_counts(const std::map<std::string, std::unique_ptr<LimitZone>>& zones) {
  size_t n = 0;
  for (const auto& [name, z] : zones) {
    if (z->kind != LimitKind::kConn || !z->shm.mem) continue;
    ShmTable t = table_of(*z);
    ShmLock lock(t.mutex());
    t.clear();
    n++;
  }
  return n;
}

void LimitConnHolds::release() {
  for (const Hold& h : holds_) {
    ShmTable t = table_of(*h.zone);
    ZoneLock lock(t, *h.zone);
    // A zone cleared in between (a process died) holds this record no more.
    ShmRecord* r = h.record;
    if (t.epoch() != h.epoch || r->v[kCount] <= 0) continue;
    if (--r->v[kCount] == 0) t.remove(r);
  }
  holds_.clear();
}

}  // namespace baton::http

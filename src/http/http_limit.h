// Request and connection limits shared by every worker: limit_req_zone / limit_req (a leaky bucket
// per key, nginx's algorithm: a rate, a burst that may queue, delayed or not) and limit_conn_zone /
// limit_conn (requests in progress per key). The state lives in shared memory zones (core/
// shm_table.h) that the master makes before forking the workers and that a reload or a live
// upgrade takes over, so a limit holds for the service, not per worker, and survives both.
//
// As nginx, limits run once per request, after the location is chosen and before allow/deny and
// authentication; limit_req before limit_conn; a request whose key is empty is not limited.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/log.h"
#include "core/shm_table.h"
#include "http/http_variables.h"

namespace baton::http {

struct Request;

enum class LimitKind : uint32_t { kReq = 0x6c726571, kConn = 0x6c636f6e };  // the zone's kind in memory

// limit_req_zone = NAME KEY rate=Nr/s|Nr/m [size=S], limit_conn_zone = NAME KEY [size=S]; in [http].
struct LimitZone {
  LimitKind kind = LimitKind::kReq;
  std::string name;
  std::string key_text;
  Template key;
  uint64_t rate = 0;  // requests per 1000 seconds (nginx's milli-requests per second)
  int line = 0;
  ShmZone shm;        // the memory, once the generation's zones are open
};

// limit_req = NAME [burst=N] [nodelay | delay=N]
struct LimitReq {
  const LimitZone* zone = nullptr;
  uint64_t burst = 0;  // in thousandths of a request, as the excess
  uint64_t delay = 0;  // the excess answered at once; UINT64_MAX for nodelay
};

// limit_conn = NAME N
struct LimitConn {
  const LimitZone* zone = nullptr;
  uint32_t max = 0;
};

struct LimitSettings {
  std::vector<LimitReq> reqs;  // a level that has any replaces the inherited ones
  int req_status = 503;
  LogLevel req_log_level = LogLevel::kError;  // rejections; delays are logged a level lower
  bool req_dry_run = false;
  std::vector<LimitConn> conns;
  int conn_status = 503;
  LogLevel conn_log_level = LogLevel::kError;
  bool conn_dry_run = false;
};

// $limit_req_status / $limit_conn_status
enum class LimitStatus : uint8_t { kNone, kPassed, kDelayed, kRejected, kDelayedDryRun, kRejectedDryRun };
std::string_view limit_status_name(LimitStatus s);

// The requests of limit_conn zones a request counts in, given back when it ends. Not copied with
// the request (an internal redirect's copy counts nowhere).
class LimitConnHolds {
 public:
  LimitConnHolds() = default;
  LimitConnHolds(const LimitConnHolds&) {}
  LimitConnHolds& operator=(const LimitConnHolds&) { return *this; }
  ~LimitConnHolds() { release(); }
  void release();
  bool empty() const { return holds_.empty(); }

 private:
  friend int check_limit_conn(const LimitSettings&, const VarContext&, Request*);
  struct Hold {
    const LimitZone* zone;
    ShmRecord* record;
    uint32_t epoch;  // the table's when counted: a table cleared since holds the record no more
  };
  std::vector<Hold> holds_;
};

// limit_req for a request: 0 to answer it now, -1 to answer it after *delay seconds, or the status
// to refuse it with. Sets req->limit_req_status and logs as nginx does.
int check_limit_req(const LimitSettings& s, const VarContext& vars, Request* req, double* delay);
// limit_conn for a request: 0 (it now counts in req->limit_conns until it ends) or the status to
// refuse it with.
int check_limit_conn(const LimitSettings& s, const VarContext& vars, Request* req);

// A worker that died (crashed, or killed) took the release of its requests' limit_conn counts with
// it: the master clears the limit_conn zones the worker used, so that its requests do not count for
// ever. Requests in progress elsewhere then count for nothing until they end: a short time of
// leniency rather than a key refused until the next restart. Returns the zones cleared.
size_t forget_conn_counts(const std::map<std::string, std::unique_ptr<LimitZone>>& zones);

// Parses "10r/s" / "30r/m" into requests per 1000 seconds; false when it is not a rate.
bool parse_limit_rate(std::string_view text, uint64_t* out);

}  // namespace baton::http

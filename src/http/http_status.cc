#include "http/http_status.h"

#include <stdio.h>

#include "config.h"
#include "http/http_response.h"

namespace baton::http {

namespace {

void append_uint(std::string* out, uint64_t v) {
  char buf[24];
  int n = snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(v));
  out->append(buf, static_cast<size_t>(n));
}

// Microseconds as seconds, exactly (no rounding through a double).
void append_seconds_us(std::string* out, uint64_t us) {
  char buf[40];
  int n = snprintf(buf, sizeof(buf), "%llu.%06llu", static_cast<unsigned long long>(us / 1000000),
                   static_cast<unsigned long long>(us % 1000000));
  out->append(buf, static_cast<size_t>(n));
}

void family(std::string* out, const char* name, const char* type, const char* help) {
  out->append("# HELP ").append(name).append(" ").append(help).append("\n");
  out->append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

// name{label="value"[,label2="value2"]} v
void sample(std::string* out, std::string_view name, std::string_view label, std::string_view value,
            std::string_view label2, std::string_view value2, uint64_t v) {
  out->append(name);
  if (!label.empty()) {
    out->append("{").append(label).append("=\"");
    append_label_value(out, value);
    out->append("\"");
    if (!label2.empty()) {
      out->append(",").append(label2).append("=\"");
      append_label_value(out, value2);
      out->append("\"");
    }
    out->append("}");
  }
  out->append(" ");
  append_uint(out, v);
  out->append("\n");
}

const char* const kClassNames[status::kClasses] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
const char* const kFailureNames[4] = {"connect", "timeout", "error", "status"};

// Classes 1xx..5xx always (a series that appears only once it is not zero is hard to rate); the
// requests that ended without a status in them only when there are some.
template <typename F>
void by_class(const uint64_t (&counts)[status::kClasses], F emit) {
  for (size_t k = 1; k < status::kClasses; k++) emit(kClassNames[k], counts[k]);
  if (counts[0]) emit(kClassNames[0], counts[0]);
}

}  // namespace

void append_label_value(std::string* out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') out->append("\\\\");
    else if (c == '"') out->append("\\\"");
    else if (c == '\n') out->append("\\n");
    else out->push_back(c);
  }
}

void format_stub_status(const StatusSnapshot& s, std::string* out) {
  int64_t waiting = s.active - s.reading - s.writing;
  if (waiting < 0) waiting = 0;
  // nginx's text, its blanks at the ends of lines included.
  char buf[256];
  int n = snprintf(buf, sizeof(buf),
                   "Active connections: %lld \nserver accepts handled requests\n %llu %llu %llu \n"
                   "Reading: %lld Writing: %lld Waiting: %lld \n",
                   static_cast<long long>(s.active), static_cast<unsigned long long>(s.accepted),
                   static_cast<unsigned long long>(s.handled), static_cast<unsigned long long>(s.requests),
                   static_cast<long long>(s.reading), static_cast<long long>(s.writing), static_cast<long long>(waiting));
  out->append(buf, static_cast<size_t>(n));
}

void format_metrics(const StatusSnapshot& s, std::string* out) {
  family(out, "baton_build_info", "gauge", "The running binary's version (always 1).");
  sample(out, "baton_build_info", "version", BATON_VERSION, "", "", 1);
  family(out, "baton_start_time_seconds", "gauge",
         "When the service started (its counters count from then), in seconds since the epoch.");
  sample(out, "baton_start_time_seconds", "", "", "", "", static_cast<uint64_t>(s.started));

  int64_t waiting = s.active - s.reading - s.writing;
  if (waiting < 0) waiting = 0;
  family(out, "baton_connections", "gauge",
         "Client connections open now: all of them (active), reading a request head, with an answer in progress "
         "(writing), idle (waiting).");
  sample(out, "baton_connections", "state", "active", "", "", static_cast<uint64_t>(s.active));
  sample(out, "baton_connections", "state", "reading", "", "", static_cast<uint64_t>(s.reading));
  sample(out, "baton_connections", "state", "writing", "", "", static_cast<uint64_t>(s.writing));
  sample(out, "baton_connections", "state", "waiting", "", "", static_cast<uint64_t>(waiting));
  family(out, "baton_connections_accepted_total", "counter", "Client connections accepted.");
  sample(out, "baton_connections_accepted_total", "", "", "", "", s.accepted);
  family(out, "baton_connections_handled_total", "counter", "Client connections handled.");
  sample(out, "baton_connections_handled_total", "", "", "", "", s.handled);
  family(out, "baton_requests_total", "counter", "Requests read (stub_status's requests), whatever their server.");
  sample(out, "baton_requests_total", "", "", "", "", s.requests);

  family(out, "baton_http_requests_total", "counter", "Requests answered, by server and status class.");
  for (const auto& srv : s.servers)
    by_class(srv.requests, [&](const char* code, uint64_t v) {
      sample(out, "baton_http_requests_total", "server", srv.name, "code", code, v);
    });
  family(out, "baton_http_sent_bytes_total", "counter", "Bytes sent to clients, by server.");
  for (const auto& srv : s.servers) sample(out, "baton_http_sent_bytes_total", "server", srv.name, "", "", srv.bytes_sent);
  family(out, "baton_http_received_bytes_total", "counter", "Bytes received from clients, by server.");
  for (const auto& srv : s.servers)
    sample(out, "baton_http_received_bytes_total", "server", srv.name, "", "", srv.bytes_received);
  family(out, "baton_http_request_duration_seconds", "histogram",
         "Request times (from the first byte of the request to the end of its answer), by server.");
  for (const auto& srv : s.servers) {
    uint64_t total = 0;
    for (size_t k = 0; k < status::kTimeBuckets; k++) {
      total += srv.time[k];
      char le[32];
      if (k + 1 < status::kTimeBuckets) snprintf(le, sizeof(le), "%g", status::kTimeBounds[k]);
      else snprintf(le, sizeof(le), "+Inf");
      sample(out, "baton_http_request_duration_seconds_bucket", "server", srv.name, "le", le, total);
    }
    out->append("baton_http_request_duration_seconds_sum{server=\"");
    append_label_value(out, srv.name);
    out->append("\"} ");
    append_seconds_us(out, srv.time_us);
    out->append("\n");
    sample(out, "baton_http_request_duration_seconds_count", "server", srv.name, "", "", total);
  }

  family(out, "baton_upstream_requests_total", "counter", "Requests proxied, by upstream group.");
  for (const auto& u : s.upstreams) sample(out, "baton_upstream_requests_total", "upstream", u.name, "", "", u.requests);
  family(out, "baton_upstream_attempts_total", "counter",
         "Servers tried for those requests (more than one per request when one fails), by upstream group.");
  for (const auto& u : s.upstreams) sample(out, "baton_upstream_attempts_total", "upstream", u.name, "", "", u.attempts);
  family(out, "baton_upstream_responses_total", "counter", "Responses of upstream servers, by group and status class.");
  for (const auto& u : s.upstreams)
    by_class(u.responses, [&](const char* code, uint64_t v) {
      sample(out, "baton_upstream_responses_total", "upstream", u.name, "code", code, v);
    });
  family(out, "baton_upstream_failures_total", "counter",
         "Failed attempts, by upstream group and kind: connect (could not connect), timeout, error (the "
         "connection failed or the answer was malformed), status (a status proxy_next_upstream names).");
  for (const auto& u : s.upstreams)
    for (size_t k = 0; k < 4; k++) sample(out, "baton_upstream_failures_total", "upstream", u.name, "type", kFailureNames[k], u.failures[k]);
  family(out, "baton_upstream_response_time_seconds", "summary",
         "Time from the start of an attempt to the end of the upstream's answer, by upstream group.");
  for (const auto& u : s.upstreams) {
    out->append("baton_upstream_response_time_seconds_sum{upstream=\"");
    append_label_value(out, u.name);
    out->append("\"} ");
    append_seconds_us(out, u.time_us);
    out->append("\n");
    sample(out, "baton_upstream_response_time_seconds_count", "upstream", u.name, "", "", u.time_count);
  }

  family(out, "baton_reloads_total", "counter", "Configuration reloads, by result.");
  sample(out, "baton_reloads_total", "result", "ok", "", "", s.reloads_ok);
  sample(out, "baton_reloads_total", "result", "failed", "", "", s.reloads_failed);
  family(out, "baton_upgrades_total", "counter",
         "Live binary upgrades, by outcome: succeeded, failed (refused before a new binary ran), rolled_back (the "
         "new binary failed; the old one goes on).");
  sample(out, "baton_upgrades_total", "result", "succeeded", "", "", s.upgrades_succeeded);
  sample(out, "baton_upgrades_total", "result", "failed", "", "", s.upgrades_failed);
  sample(out, "baton_upgrades_total", "result", "rolled_back", "", "", s.upgrades_rolled_back);
  family(out, "baton_worker_restarts_total", "counter", "Worker processes that crashed and were restarted.");
  sample(out, "baton_worker_restarts_total", "", "", "", "", s.worker_restarts);
}

void reply_status_page(HttpWorker* w, bool metrics, Reply* r) {
  StatusSnapshot snap;
  StatusZone zone = w->conf->status_zone();
  if (zone.valid()) zone.read(&snap);
  // Reused across requests: a worker answers one at a time, and the text is copied into the
  // response at once.
  static std::string body;
  body.clear();
  if (metrics) format_metrics(snap, &body);
  else format_stub_status(snap, &body);
  ResponseHead h;
  h.policy = r->policy;
  h.status = 200;
  h.keep_alive = r->keep_alive;
  h.http10 = r->http10;
  h.content_type = metrics ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain";
  h.content_length = static_cast<int64_t>(body.size());
  begin_head(r->out, h);
  end_head(r->out, h);
  r->status = 200;
  if (!r->head_only) {
    r->out->append(body);
    r->body_bytes = body.size();
  }
}

}  // namespace baton::http

// stub_status and metrics: a location that answers with the service's counters (core/status_zone.h),
// summed over every worker of every generation still running, plus those of the workers that are
// gone. stub_status is nginx's text, to the byte, so that its collectors read it; metrics is the
// Prometheus text exposition format (version 0.0.4).
#pragma once

#include <string>

#include "core/status_zone.h"
#include "http/http_connection.h"
#include "http/http_worker.h"

namespace baton::http {

// The answer to a GET or HEAD of a stub_status (metrics false) or metrics location: 200, text/plain.
void reply_status_page(HttpWorker* w, bool metrics, Reply* r);

// The bodies, from a snapshot (for the unit tests too).
void format_stub_status(const StatusSnapshot& s, std::string* out);
void format_metrics(const StatusSnapshot& s, std::string* out);
// A label value as the text format wants it: backslash, double quote and line feed escaped.
void append_label_value(std::string* out, std::string_view v);

}  // namespace baton::http

// Content handlers: static files (root, alias, index, try_files, conditional and range requests),
// `return`, and the error replies every handler shares.
#pragma once

#include "http/http_connection.h"
#include "http/http_worker.h"

namespace baton::http {

// An error page reply; status must be >= 300.
void reply_error(Reply* r, int status, const Settings& s);
void reply_return(Reply* r, const Location* loc, const Request& req);
void serve_static(HttpWorker* w, const Server* srv, const Location* loc, const Request& req, Reply* r);

}  // namespace baton::http

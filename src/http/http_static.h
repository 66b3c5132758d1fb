// Content handlers: static files (root, alias, index, try_files, conditional and range requests),
// `return`, and the error replies every handler shares.
#pragma once

#include "http/http_connection.h"
#include "http/http_variables.h"
#include "http/http_worker.h"

namespace baton::http {

// An error page reply; status must be >= 300.
void reply_error(Reply* r, int status, const Settings& s);
// `return`: a redirect (Location: the value) or a text body; variables evaluated from vars.
void reply_return(Reply* r, const Location* loc, const VarContext& vars);
// vars: for a `return` reached by an internal redirect (try_files).
void serve_static(HttpWorker* w, const Server* srv, const Location* loc, const Request& req, Reply* r,
                  const VarContext& vars);

}  // namespace baton::http

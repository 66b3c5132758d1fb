// Content handlers: static files (root, alias, index, try_files, conditional and range requests),
// `return`, and the error replies every handler shares.
#pragma once

#include "http/http_connection.h"
#include "http/http_variables.h"
#include "http/http_worker.h"

namespace baton::http {

// An error page reply; status must be >= 300.
// As nginx: ten internal redirects (try_files fallbacks, error pages) at most for one request.
constexpr int kMaxInternalRedirects = 10;

void reply_error(Reply* r, int status, const Settings& s);
// `return`: a redirect (Location: the value) or a text body; variables evaluated from vars.
void reply_return(Reply* r, const Location* loc, const VarContext& vars);
// A redirect to location (a rewrite's, a return's, a directory's without its slash).
void reply_redirect(Reply* r, int status, std::string_view location, const Settings& s);
// vars: for a `return` reached by an internal redirect (try_files).
void serve_static(HttpWorker* w, const Server* srv, const Location* loc, const Request& req, Reply* r,
                  const VarContext& vars);
// error_page: replaces the reply that starts at mark in *r->out (its status in r->status) by the page
// s names for that status, and returns true; false when there is none (the reply stays). A local
// page is an internal redirect: its path is served by the location of srv it falls in, as a GET
// (HEAD stays HEAD) without conditions or ranges, under the error's status (or =RESPONSE). A URL is
// a redirect. A page that cannot be served puts the reply back as it was, the built-in page.
bool reply_error_page(HttpWorker* w, const Server* srv, const Request& req, Reply* r, size_t mark, const Settings& s,
                      const VarContext& vars);

}  // namespace baton::http

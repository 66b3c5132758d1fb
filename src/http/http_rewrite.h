// Routing a request: the [server]'s rewrites, the choice of a location (nginx's order, regexes
// included), then the location's rewrites, again as long as a rewrite sends the request to another
// location — what nginx's rewrite and find-config phases do, in one place.
#pragma once

#include <string>

#include "http/http_config.h"
#include "http/http_request.h"

namespace baton::http {

// Routes *req (whose path and arguments a rewrite may change) on srv. vars.req must be req.
void route(const Server& srv, Request* req, const VarContext& vars, Route* out);

}  // namespace baton::http

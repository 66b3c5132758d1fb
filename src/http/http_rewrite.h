// Routing a request: the [server]'s rewrites, the choice of a location (nginx's order, regexes
// included), then the location's rewrites, again as long as a rewrite sends the request to another
// location — what nginx's rewrite and find-config phases do, in one place.
#pragma once

#include <string>

#include "http/http_config.h"

namespace baton::http {

struct Request;
struct VarContext;

struct Route {
  const Location* location = nullptr;
  bool server_return = false;   // the [server]'s `return` answers (no rewrite before it stopped)
  bool location_return = true;  // the location's `return` applies (false when a `break` came before it)
  int status = 0;               // set: the answer is this redirect (301, 302) or error (400, 500)
  std::string redirect;         // a redirect's Location
};

// Routes *req (whose path and arguments a rewrite may change) on srv. vars.req must be req.
void route(const Server& srv, Request* req, const VarContext& vars, Route* out);

}  // namespace baton::http

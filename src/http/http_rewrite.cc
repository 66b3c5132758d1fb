#include "http/http_rewrite.h"

#include "core/log.h"
#include "http/http_request.h"
#include "http/http_variables.h"

namespace baton::http {

namespace {

// As nginx: ten times through the locations, and a rewrite that goes round in circles is an error.
constexpr int kMaxRewriteCycles = 10;

enum class Step {
  kDone,     // no rewrite stopped: the level's `return` (if any) applies
  kBreak,    // `break`: stay, without the level's `return`
  kLast,     // look for the location again (`last`, or any rewrite of a location's that changed the URI)
  kAnswer,   // out->status is the answer
};

// Applies rw (whose regex has just matched req->path) to the request.
Step apply(const Rewrite& rw, Request* req, const VarContext& vars, Route* out) {
  std::string uri;
  bool redirect = rw.to_url || rw.flag == RewriteFlag::kRedirect || rw.flag == RewriteFlag::kPermanent;
  rw.uri.evaluate(vars, &uri, redirect ? Escape::kUrl : Escape::kNone);
  std::string args;
  // The arguments' values are escaped either way: a capture of the decoded path may hold a line
  // break or a '&', and the arguments go on a request line as they are.
  if (rw.has_args) rw.args.evaluate(vars, &args, Escape::kArgs);
  if (rw.keep_args && !req->query.empty()) {
    if (!args.empty()) args.push_back('&');
    args.append(req->query);
  }
  if (redirect) {
    out->status = rw.flag == RewriteFlag::kPermanent ? 301 : 302;
    out->redirect = std::move(uri);
    if (!args.empty()) {
      out->redirect.push_back('?');
      out->redirect.append(args);
    }
    return Step::kAnswer;
  }
  if (!resolve_segments(&uri)) {
    // A value the request brought ($arg_..., a header) cannot take the URI above the root.
    log_info("rewrite \"%s\" made \"%s\" of \"%.*s\", which is not a path under \"/\"", rw.re->pattern().c_str(),
             uri.c_str(), static_cast<int>(req->target.size()), req->target.data());
    out->status = uri.empty() || uri[0] != '/' ? 500 : 400;
    return Step::kAnswer;
  }
  req->path = std::move(uri);
  req->args = std::move(args);
  req->query = req->args;
  req->rewritten = true;
  req->rewrite_break = false;
  return Step::kDone;
}

// Runs a level's rewrites in order: those written before its `return` (the return ends the level
// in nginx). Returns how the level ended; *changed says whether the URI changed on the way.
Step run(const std::vector<Rewrite>& rewrites, int return_line, Request* req, const VarContext& vars, Route* out,
         bool* changed) {
  for (const Rewrite& rw : rewrites) {
    if (return_line && rw.line > return_line) break;
    if (!rw.re->match(req->path, &req->captures)) continue;
    Step s = apply(rw, req, vars, out);
    if (s == Step::kAnswer) return s;
    *changed = true;
    if (rw.flag == RewriteFlag::kLast) return Step::kLast;
    if (rw.flag == RewriteFlag::kBreak) {
      req->rewrite_break = true;
      return Step::kBreak;
    }
  }
  return Step::kDone;
}

}  // namespace

void route(const Server& srv, Request* req, const VarContext& vars, Route* out) {
  bool changed = false;
  if (!srv.rewrites.empty()) {
    int return_line = srv.server_return ? srv.server_return->return_line : 0;
    Step s = run(srv.rewrites, return_line, req, vars, out, &changed);
    if (s == Step::kAnswer) {
      out->location = srv.find_location(req->path, &req->captures);
      return;
    }
    // `last` or `break` at the server level ends the server's rewrites, its return included.
    out->server_return = s == Step::kDone && srv.server_return;
  } else {
    out->server_return = srv.server_return != nullptr;
  }
  for (int cycle = 0;; cycle++) {
    const Location* loc = srv.find_location(req->path, &req->captures);
    out->location = loc;
    if (out->server_return || loc->rewrites.empty()) return;
    if (cycle == kMaxRewriteCycles) {
      log_error("rewrite or internal redirection cycle while processing \"%s\"", req->path.c_str());
      out->status = 500;
      return;
    }
    changed = false;
    Step s = run(loc->rewrites, loc->return_code ? loc->return_line : 0, req, vars, out, &changed);
    if (s == Step::kAnswer) return;
    if (s == Step::kBreak) {
      out->location_return = false;
      return;
    }
    // Without a flag, the location's `return` comes next; without one, a changed URI is looked
    // for again once the location's rewrites are done.
    if (s == Step::kDone && (!changed || loc->return_code)) return;
  }
}

}  // namespace baton::http

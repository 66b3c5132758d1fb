#include "http/http_rewrite.h"

#include "core/log.h"
#include "http/http_log.h"
#include "http/http_request.h"
#include "http/http_variables.h"

namespace baton::http {

namespace {

// As nginx: a request's URI may change ten times on the way to its location; the eleventh change
// is a rewrite that goes round in circles, an error.
constexpr int kMaxRewriteChanges = 10;

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
    std::string shown, target;
    append_escaped(&shown, uri);
    append_escaped(&target, req->target);
    log_info("rewrite \"%s\" made \"%s\" of \"%s\", which is not a path under \"/\"", rw.re->pattern().c_str(),
             shown.c_str(), target.c_str());
    out->status = uri.empty() || uri[0] != '/' ? 500 : 400;
    return Step::kAnswer;
  }
  req->path = std::move(uri);
  req->args = std::move(args);
  req->query = req->args;
  req->rewritten = true;
  return Step::kDone;
}

// Runs a level's rewrites in order: those read before its `return` (the return ends the level in
// nginx). Returns how the level ended; *changed says whether the URI changed on the way.
Step run(const std::vector<Rewrite>& rewrites, size_t count, Request* req, const VarContext& vars, Route* out,
         bool* changed) {
  for (size_t i = 0; i < count; i++) {
    const Rewrite& rw = rewrites[i];
    Regex::Result m = rw.re->match(req->path, &req->captures);
    if (m == Regex::Result::kError) {
      out->status = 500;
      return Step::kAnswer;
    }
    if (m == Regex::Result::kNoMatch) continue;
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

size_t before_return(const std::vector<Rewrite>& rewrites, const Location* returns) {
  return returns && returns->return_code ? returns->rewrites_before_return : rewrites.size();
}

}  // namespace

void route(const Server& srv, Request* req, const VarContext& vars, Route* out) {
  bool changed = false;
  bool failed = false;
  if (!srv.rewrites.empty()) {
    Step s = run(srv.rewrites, before_return(srv.rewrites, srv.server_return.get()), req, vars, out, &changed);
    if (s == Step::kAnswer) {
      out->location = srv.find_location(req->path, &req->captures, &failed);
      return;
    }
    // `last` or `break` at the server level ends the server's rewrites, its return included.
    out->server_return = s == Step::kDone && srv.server_return;
  } else {
    out->server_return = srv.server_return != nullptr;
  }
  for (int changes = 0;;) {
    const Location* loc = srv.find_location(req->path, &req->captures, &failed);
    out->location = loc;
    if (failed) {
      out->status = 500;
      return;
    }
    if (out->server_return || loc->rewrites.empty()) return;
    changed = false;
    Step s = run(loc->rewrites, before_return(loc->rewrites, loc), req, vars, out, &changed);
    if (s == Step::kAnswer) return;
    if (s == Step::kBreak) {
      out->location_return = false;
      return;
    }
    // Without a flag, the location's `return` comes next; without one, a changed URI is looked
    // for again once the location's rewrites are done.
    if (s == Step::kDone && (!changed || loc->return_code)) return;
    if (++changes > kMaxRewriteChanges) {
      std::string shown;
      append_escaped(&shown, req->path);
      log_error("rewrite or internal redirection cycle while processing \"%s\"", shown.c_str());
      out->status = 500;
      return;
    }
  }
}

}  // namespace baton::http

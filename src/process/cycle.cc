#include "process/cycle.h"

#include <unistd.h>

#include "config.h"
#include "core/log.h"
#include "core/strings.h"
#include "process/start_checks.h"

namespace baton {

std::string Cycle::error_log_path() const {
  if (!opts.error_log.empty()) return resolve_path(opts.prefix, opts.error_log);
  if (!main.error_log.empty()) return resolve_path(opts.prefix, main.error_log);
  return resolve_path(opts.prefix, BATON_ERROR_LOG_PATH);
}

std::string listener_key(const SockAddr& addr, const ListenOptions& opts) {
  std::string key = addr.to_string();
  if (opts.proxy_protocol) key += " proxy_protocol";
  if (opts.ssl) key += " ssl";
  return key;
}

std::string Cycle::open_listeners(std::map<std::string, Fd>* adopt) {
  // The shared memory zones first: clients may connect as soon as a listener is open, and the
  // master should be as near to running as it can be by then.
  for (ShmZone* z : http->shm_zones()) {
    std::string err;
    if (adopt) {
      auto it = adopt->find(z->key);
      if (it != adopt->end()) {
        Fd fd = std::move(it->second);
        adopt->erase(it);
        std::shared_ptr<SharedMemory> mem = SharedMemory::attach(std::move(fd), &err);
        if (mem && z->check(mem->base(), mem->size(), z->kind)) {
          z->mem = std::move(mem);
          continue;
        }
        // Memory that this binary cannot read (another layout): the zone starts over.
        log_notice("zone \"%s\" is made anew: the memory handed over %s", z->name.c_str(),
                   mem ? "has another layout" : ("cannot be used (" + err + ")").c_str());
      }
    }
    z->mem = SharedMemory::create(("baton-zone-" + z->name).c_str(), z->size, &err);
    if (!z->mem) return "cannot make the shared memory of zone \"" + z->name + "\": " + err;
    if (!z->format(z->mem->base(), z->mem->size(), z->kind))
      return "cannot set up the shared memory of zone \"" + z->name + "\"";
  }
  http->bind_status();
  for (auto& group : http->listens) {
    auto ls = std::make_unique<Listening>();
    ls->addr = group->addr;
    ls->opts = group->opts;
    ls->key = listener_key(group->addr, group->opts);
    ls->ctx = group.get();
    if (adopt) {
      auto it = adopt->find(ls->key);
      if (it != adopt->end()) {
        ls->fd = std::move(it->second);
        adopt->erase(it);
        listening.push_back(std::move(ls));
        continue;
      }
    }
    std::string err;
    ls->fd = open_listener(ls->addr, ls->opts, &err);
    if (!ls->fd) return err;
    listening.push_back(std::move(ls));
  }
  return "";
}

std::vector<std::pair<std::string, int>> Cycle::handover_fds() const {
  std::vector<std::pair<std::string, int>> fds;
  for (const auto& ls : listening)
    if (ls->fd.valid()) fds.emplace_back(ls->key, ls->fd.get());
  for (ShmZone* z : http->shm_zones())
    if (z->mem) fds.emplace_back(z->key, z->mem->fd());
  return fds;
}

std::vector<int> Cycle::own_descriptors() const {
  std::vector<int> fds;
  for (const auto& ls : listening)
    if (ls->fd.valid()) fds.push_back(ls->fd.get());
  for (const auto& [path, log] : http->access_logs)
    if (log->fd >= 0) fds.push_back(log->fd);
  for (const auto& [path, log] : http->error_logs)
    if (log->fd > STDERR_FILENO) fds.push_back(log->fd);
  return fds;
}

std::unique_ptr<Cycle> load_cycle(const Options& opts) {
  auto cycle = std::make_unique<Cycle>();
  cycle->opts = opts;
  cycle->conf = read_conf_file(opts.conf_path);
  std::unique_ptr<ConfFile> globals;
  if (!opts.globals.empty()) globals = std::make_unique<ConfFile>(read_conf_globals(opts.globals));
  for (const ConfSection& sec : cycle->conf.sections) {
    static const char* const kKnown[] = {"main", "http", "server", "location", "upstream"};
    bool known = false;
    for (const char* k : kKnown) known = known || sec.kind == k;
    if (!known)
      cycle->conf.fail(sec.line, "unknown section [" + sec.kind + (sec.arg.empty() ? "" : " " + sec.arg) + "]");
  }
  parse_main_conf(cycle->conf, globals.get(), &cycle->main, opts.prefix);
  check_user(cycle->conf, globals.get(), cycle->main);
  cycle->http = http::parse_http_conf(cycle->conf, opts.prefix);
  if (cycle->http->servers.empty())
    throw ConfError(opts.conf_path + ":1: no [server] section: nothing to serve");
  return cycle;
}

}  // namespace baton

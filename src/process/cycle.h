// A configuration generation: the files read, the [main] settings and the HTTP configuration, plus
// the listening sockets opened for it. The master makes one at start-up (and, later, one per reload);
// workers are forked with it.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/conf.h"
#include "event/listener.h"
#include "http/http_config.h"

namespace baton {

struct Options {
  std::string prefix;        // absolute
  std::string conf_path;     // absolute
  std::string error_log;     // -e, "" if not given
  std::string globals;       // -g
  bool test = false;         // -t
  bool dump = false;         // -T
  bool quiet = false;        // -q
  std::string signal;        // -s
  std::string exe_path;      // absolute path of this binary
};

struct Cycle {
  Options opts;
  ConfFile conf;
  MainConf main;
  std::unique_ptr<http::HttpConf> http;
  std::vector<std::unique_ptr<Listening>> listening;

  std::string pid_path() const { return resolve_path(opts.prefix, main.pid); }
  std::string error_log_path() const;
  // Opens every listening socket of the HTTP configuration, taking from *adopt (key -> descriptor)
  // those that are already open: across a reload the old generation's sockets, across an upgrade the
  // ones the old master handed over. Returns an error text or "".
  // The shared memory zones of the configuration are made or taken from *adopt the same way.
  std::string open_listeners(std::map<std::string, Fd>* adopt = nullptr);
  // What a reload or an upgrade hands to the next generation, by key: the listening sockets and the
  // shared memory zones (descriptors owned by this cycle).
  std::vector<std::pair<std::string, int>> handover_fds() const;
  // Descriptors that belong to this generation and must survive in its workers.
  std::vector<int> own_descriptors() const;
};

// The key a listening socket is known by across reloads and upgrades: its address and the options
// that change how its connections are read.
std::string listener_key(const SockAddr& addr, const ListenOptions& opts);
// Whether a key handed over names a shared memory zone rather than a listening socket.
inline bool is_zone_key(const std::string& key) { return key.starts_with("zone "); }

// Reads and checks the whole configuration. Throws ConfError ("file:line: message").
std::unique_ptr<Cycle> load_cycle(const Options& opts);

}  // namespace baton

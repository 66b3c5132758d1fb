// The master process: holds the listening sockets, the logs, the pid file and the control socket;
// forks generations of workers and keeps them running under the restart policy; reloads its
// configuration (a new generation of workers, then the old one drains); and upgrades its own binary
// live, handing every listener to the new master and rolling back by itself when that fails.
#pragma once

#include <memory>

#include "process/cycle.h"

namespace baton {

// A fresh start. Returns the process exit status.
int master_process_main(std::unique_ptr<Cycle> cycle);

// The new binary of a live upgrade (BATON_UPGRADE=1 in the environment): it takes the listeners from
// the old master, starts its workers, and reports ready. Returns the process exit status.
int upgraded_master_main(const Options& opts);

}  // namespace baton

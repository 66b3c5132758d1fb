// The master process: holds the listening sockets, the logs, the pid file and the control socket;
// forks generations of workers and keeps them running under the restart policy; reloads its
// configuration (a new generation of workers, then the old one drains); and upgrades its own binary
// live without changing its PID: a candidate process runs the new binary and proves it serves, then
// the master adopts the candidate's workers and re-executes itself into that binary; any failure
// before that rolls back to the old workers.
#pragma once

#include <memory>

#include "process/cycle.h"

namespace baton {

// A fresh start. Returns the process exit status.
int master_process_main(std::unique_ptr<Cycle> cycle);

// The candidate of a live upgrade (BATON_UPGRADE=1 in the environment): the new binary, started by
// the master; it takes the listeners, starts its workers, reports ready, and hands its generation
// to the master that adopts it. Returns the process exit status.
int upgraded_master_main(const Options& opts);

// The master itself, re-executed into the new binary of an upgrade (BATON_RESUME=<descriptor of its
// state> in the environment): it takes up its workers, listeners and control socket where the old
// code left them. Returns the process exit status.
int resumed_master_main(const Options& opts, const char* state_fd);

}  // namespace baton

// The master process: holds the listening sockets, the logs and the pid file, forks the workers and
// keeps them running under the restart policy, and turns signals into shutdowns and log reopening.
#pragma once

#include "core/cycle.h"

namespace baton {

// Runs the master until it exits; returns the process exit status.
int master_process_main(std::unique_ptr<Cycle> cycle);

}  // namespace baton

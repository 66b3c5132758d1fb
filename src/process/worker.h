// A worker process: one event loop that accepts on the shared listening sockets and serves HTTP.
// It answers the master's signals: QUIT (finish what is in flight, then exit), TERM/INT (exit now),
// USR1 (reopen logs).
#pragma once

#include "os/unix/fd.h"
#include "process/cycle.h"

namespace baton {

// Runs in the forked child with its end of the master's channel; never returns.
[[noreturn]] void worker_process_main(Cycle* cycle, Fd channel);

}  // namespace baton

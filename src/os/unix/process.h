// Process-level facilities: the process title, signals delivered through a signalfd (no handler
// runs asynchronously: the loop reads them like any other event), privileges, limits, daemonizing.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "os/unix/fd.h"

namespace baton {

// Must be called first thing in main: keeps a copy of argv and environ and makes room to rewrite
// the title shown by ps.
void init_proc_title(int argc, char** argv);
void set_proc_title(const std::string& title);
// The arguments the process was started with (before the title was rewritten).
const std::vector<std::string>& saved_argv();

// Blocks the given signals and returns a signalfd (non-blocking, close-on-exec) that reads them.
Fd open_signalfd(std::initializer_list<int> signals);
// Unblocks every signal and restores default dispositions: for a child about to exec or a worker
// that sets up its own.
void reset_signals();
// Reads one pending signal from a signalfd; 0 when none is left.
int read_signal(int sfd, pid_t* sender = nullptr);

// Switches to user (and its primary group and supplementary groups). Returns an error text or "".
std::string switch_user(const std::string& user);
// Looks the user up without switching; returns an error text or "" and fills uid/gid.
std::string lookup_user(const std::string& user, uid_t* uid, gid_t* gid);

// Raises RLIMIT_NOFILE to at least want (as far as the hard limit allows, or further as root).
void raise_nofile_limit(rlim_t want);

// Detaches from the terminal: fork, setsid, stdin/stdout to /dev/null; stderr stays until the
// daemon is started. The process that called it does not return: it waits for the daemon to write
// one byte to *starter (started: it exits 0) or to close it (it failed, and said why on stderr:
// exit 1), at most wait_ms (then it says so and exits 1). Returns an error text or "".
std::string daemonize(Fd* starter, int wait_ms);
// Tells the process waiting in daemonize() that the daemon has started, and lets it go.
void release_starter(Fd* starter);

// The absolute path of the running executable as it was when the process started.
std::string executable_path(const char* argv0);

}  // namespace baton

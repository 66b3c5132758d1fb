// The master's signals, stopping (fast or graceful), and reopening the logs.
#include "process/master_internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "os/unix/process.h"
#include "os/unix/sd_notify.h"

namespace baton::master {

void Master::on_signal_cb(struct ev_loop*, ev_io* w, int) { static_cast<Master*>(w->data)->on_signals(); }

void Master::on_signals() {
  while (int sig = read_signal(sfd_)) {
    if (handed_) {
      // A candidate whose generation the master is adopting: the master acts for the service (and
      // reaps the workers, once they are its children; a Ctrl-C reaches it too). Should it carry on
      // as the master after all, it acts on these then (not_adopted).
      if (sig != SIGCHLD) held_signals_.push_back(sig);
      continue;
    }
    on_signal(sig);
  }
}

void Master::on_signal(int sig) {
  switch (sig) {
    case SIGCHLD:
      reap();
      break;
    case SIGTERM:
    case SIGINT:
      log_notice("signal %d (%s) received, exiting", sig, sig == SIGTERM ? "TERM" : "INT");
      stop(SIGTERM);
      break;
    case SIGQUIT:
      log_notice("signal %d (QUIT) received, shutting down gracefully", sig);
      stop(SIGQUIT);
      break;
    case SIGUSR1:
      log_notice("signal %d (USR1) received, reopening logs", sig);
      reopen_logs();
      break;
    case SIGHUP:
      log_notice("signal %d (HUP) received, reloading", sig);
      start_reload(nullptr);
      break;
    case SIGUSR2:
      log_notice("signal %d (USR2) received, upgrading the binary", sig);
      start_upgrade(nullptr);
      break;
    case SIGWINCH:
      if (replaced_ || stopping_) break;
      log_notice("signal %d (WINCH) received, stopping the workers gracefully", sig);
      winched_ = true;
      for (auto& s : slots_) ev_timer_stop(loop_->raw(), &s->restart);
      drain_workers(0);
      break;
  }
}

void Master::stop(int how) {
  if (stopping_ && how == SIGQUIT) return;
  stopping_ = true;
  sd_notify("STOPPING=1\n");
  for (auto& s : slots_) ev_timer_stop(loop_->raw(), &s->restart);
  if (upgrade_.active) rollback("the master is stopping");
  if (reload_.active) fail_reload("the master is stopping");
  if (how == SIGQUIT && !replaced_) {
    // Refuse new connections now; workers let their copies go and finish what they have.
    for (auto& ls : current_->listening) ls->fd.reset();
  }
  for (auto& w : workers_) ::kill(w->pid, how == SIGQUIT ? SIGQUIT : SIGTERM);
  double wait = how == SIGQUIT ? seconds(current_->main.quit_timeout_ms) + 1.0 : kFastStopSeconds;
  ev_timer_stop(loop_->raw(), &kill_timer_);
  ev_timer_set(&kill_timer_, wait, 0.);
  ev_timer_start(loop_->raw(), &kill_timer_);
  maybe_exit();
}

void Master::on_kill_timer_cb(struct ev_loop*, ev_timer* w, int) {
  auto* self = static_cast<Master*>(w->data);
  for (auto& wp : self->workers_) {
    log_alert("worker process %d did not exit in time, killing it", static_cast<int>(wp->pid));
    ::kill(wp->pid, SIGKILL);
  }
}

void Master::maybe_exit() {
  if ((stopping_ || replaced_) && workers_.empty() && !upgrade_.active) {
    leaving_ = true;
    loop_->stop();
  }
}

void Master::reopen_logs() {
  std::string err = ErrorLog::reopen();
  if (!err.empty()) log_alert("%s", err.c_str());
  err = current_->http->open_logs();
  if (!err.empty()) log_alert("%s", err.c_str());
  chown_logs(current_.get());
  for (auto& w : workers_) ::kill(w->pid, SIGUSR1);
}

// Workers may run as another user and reopen the files themselves on USR1.
void Master::chown_logs(Cycle* c) {
  if (geteuid() != 0) return;
  uid_t uid;
  gid_t gid;
  std::string user = c->main.user.empty() ? "nobody" : c->main.user;
  if (!lookup_user(user, &uid, &gid).empty()) return;
  for (auto& [path, log] : c->http->access_logs)
    if (chown(path.c_str(), uid, static_cast<gid_t>(-1)) < 0) log_warn("chown(\"%s\") failed (%s)", path.c_str(), strerror(errno));
  for (auto& [path, log] : c->http->error_logs)
    if (path != "stderr" && chown(path.c_str(), uid, static_cast<gid_t>(-1)) < 0)
      log_warn("chown(\"%s\") failed (%s)", path.c_str(), strerror(errno));
  if (ErrorLog::path() != "stderr" && chown(ErrorLog::path().c_str(), uid, static_cast<gid_t>(-1)) < 0)
    log_warn("chown(\"%s\") failed (%s)", ErrorLog::path().c_str(), strerror(errno));
}

}  // namespace baton::master

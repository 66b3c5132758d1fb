#include "process/master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "config.h"
#include "core/log.h"
#include "os/unix/process.h"
#include "os/unix/sd_notify.h"
#include "process/master_internal.h"
#include "process/worker.h"

namespace baton {
namespace master {

bool write_pid_file(const std::string& path) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    log_emerg("open() \"%s\" failed (%s)", tmp.c_str(), strerror(errno));
    return false;
  }
  std::string text = std::to_string(getpid()) + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) < 0) {
    log_emerg("cannot write pid file \"%s\" (%s)", path.c_str(), strerror(errno));
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

// ---- workers -----------------------------------------------------------------------------------

WorkerProc* Master::spawn(const std::shared_ptr<Cycle>& cycle, int generation, int slot) {
  Fd parent_end, child_end;
  if (!control_socketpair(&parent_end, &child_end)) {
    log_alert("socketpair() failed (%s)", strerror(errno));
    return nullptr;
  }
  pid_t pid = fork();
  if (pid < 0) {
    log_alert("fork() failed (%s)", strerror(errno));
    return nullptr;
  }
  if (pid == 0) worker_process_main(cycle.get(), std::move(child_end));
  auto w = std::make_unique<WorkerProc>();
  w->master = this;
  w->pid = pid;
  w->generation = generation;
  w->slot = slot;
  w->cycle = cycle;
  w->channel = std::move(parent_end);
  w->started = loop_->now();
  w->last_answer = w->started;
  ev_io_init(&w->io, on_channel_cb, w->channel.get(), EV_READ);
  w->io.data = w.get();
  ev_io_start(loop_->raw(), &w->io);
  log_notice("start worker process %d (generation %d)", static_cast<int>(pid), generation);
  WorkerProc* raw = w.get();
  workers_.push_back(std::move(w));
  return raw;
}

// One restart slot per configured worker of the current generation, each with its own backoff.
void Master::make_slots() {
  for (auto& s : slots_) ev_timer_stop(loop_->raw(), &s->restart);
  slots_.clear();
  for (int i = 0; i < current_->main.worker_processes; i++) {
    auto s = std::make_unique<Slot>();
    s->master = this;
    s->index = static_cast<size_t>(i);
    s->backoff = seconds(current_->main.restart_initial_backoff_ms);
    ev_init(&s->restart, on_restart_cb);
    s->restart.data = s.get();
    slots_.push_back(std::move(s));
  }
}

void Master::schedule_restart(size_t slot) {
  Slot& s = *slots_[slot];
  ev_timer_set(&s.restart, s.backoff, 0.);
  ev_timer_start(loop_->raw(), &s.restart);
  s.backoff = std::min(s.backoff * 2, seconds(current_->main.restart_max_backoff_ms));
}

void Master::on_restart_cb(struct ev_loop*, ev_timer* w, int) {
  auto* s = static_cast<Slot*>(w->data);
  Master* m = s->master;
  if (m->stopping_ || m->winched_ || m->replaced_) return;
  m->spawn(m->current_, m->generation_, static_cast<int>(s->index));
}

void Master::on_channel_cb(struct ev_loop*, ev_io* w, int) {
  auto* wp = static_cast<WorkerProc*>(w->data);
  wp->master->on_channel(wp);
}

void Master::on_channel(WorkerProc* w) {
  for (;;) {
    Message m;
    int r = recv_message(w->channel.get(), &m);
    if (r < 0 && errno == EAGAIN) return;
    if (r <= 0) {
      // The worker is gone; SIGCHLD tells how.
      ev_io_stop(loop_->raw(), &w->io);
      return;
    }
    w->last_answer = loop_->now();
    if (m.type == MsgType::kReady) {
      on_worker_ready(w);
    } else if (m.type == MsgType::kResult) {
      w->connections = m.get_int("connections");
      w->status_answered = true;
      w->ping_sent = 0;
      if (w->silent) {
        w->silent = false;
        log_notice("worker process %d responds again", static_cast<int>(w->pid));
      }
      finish_status_if_answered();
    }
  }
}

// One ping in flight per worker at most: a stopped worker does not collect a queue of them.
bool Master::ping(WorkerProc* w) {
  if (w->ping_sent > 0) return true;
  if (send_message(w->channel.get(), Message(MsgType::kStatus)) < 0) return false;
  w->ping_sent = loop_->now();
  return true;
}

void Master::on_ping_timer_cb(struct ev_loop*, ev_timer* t, int) {
  auto* self = static_cast<Master*>(t->data);
  double now = self->loop_->now();
  for (auto& w : self->workers_) {
    self->ping(w.get());
    if (!w->silent && w->not_responding(now)) {
      w->silent = true;
      log_warn("worker process %d does not respond (last answer %.1f s ago)", static_cast<int>(w->pid),
               now - w->last_answer);
    }
  }
}

bool Master::generation_ready(int generation) const {
  size_t n = 0;
  for (const auto& w : workers_) {
    if (w->generation != generation) continue;
    if (!w->ready) return false;
    n++;
  }
  return n > 0;
}

void Master::on_worker_ready(WorkerProc* w) {
  w->ready = true;
  if (w->draining) return;
  if (reload_.active && w->generation == reload_.generation) {
    if (generation_ready(reload_.generation)) commit_reload();
    return;
  }
  if (!announced_ready_ && w->generation == generation_ && generation_ready(generation_)) {
    announced_ready_ = true;
    ErrorLog::echo_emerg_to_stderr(false);  // started: from now on the error log alone
    if (old_master_) {
      tell_old_master_ready();
    } else {
      sd_notify("READY=1\nMAINPID=" + std::to_string(getpid()) + "\n");
    }
  }
}

void Master::send_shutdown(WorkerProc* w, const char* mode) {
  Message m(MsgType::kShutdown);
  m.set("mode", mode);
  if (send_message(w->channel.get(), m) < 0) ::kill(w->pid, strcmp(mode, "fast") == 0 ? SIGTERM : SIGQUIT);
}

// Drains every worker of a generation older than `below` (all of them when below is 0).
void Master::drain_workers(int below) {
  for (auto& w : workers_) {
    if (w->draining || (below && w->generation >= below)) continue;
    w->draining = true;
    w->slot = -1;
    send_shutdown(w.get(), "drain");
  }
}

void Master::reap() {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    if (upgrade_.active && pid == upgrade_.pid) {
      // Why exec failed, and what the new master said before it exited, may still wait in the
      // pipe and in its connections (which may not even be accepted yet).
      if (upgrade_.exec_result) on_exec_result();
      if (control_fd_) on_control_accept_cb(loop_->raw(), &control_io_, 0);
      for (ControlConn* c : std::vector<ControlConn*>(conns_.begin(), conns_.end())) {
        if (c->dead || c->peer_pid != pid) continue;
        Message m;
        while (!c->dead && recv_message(c->fd.get(), &m) == 1) on_control_message(c, m);
      }
      std::string why = upgrade_.reason;
      if (why.empty()) {
        if (WIFEXITED(status)) why = "the new master exited with code " + std::to_string(WEXITSTATUS(status));
        else why = "the new master was killed by signal " + std::to_string(WTERMSIG(status));
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127) why += " (it could not be executed)";
      }
      upgrade_.pid = 0;
      rollback(why);
      continue;
    }
    auto ab = std::find(abandoned_.begin(), abandoned_.end(), pid);
    if (ab != abandoned_.end()) {
      abandoned_.erase(ab);
      continue;
    }
    for (auto it = workers_.begin(); it != workers_.end(); ++it) {
      if ((*it)->pid != pid) continue;
      std::unique_ptr<WorkerProc> w = std::move(*it);
      workers_.erase(it);
      ev_io_stop(loop_->raw(), &w->io);
      on_worker_exit(w.get(), status);
      break;
    }
  }
  finish_status_if_answered();
  maybe_exit();
}

void Master::on_worker_exit(WorkerProc* w, int status) {
  if (WIFSIGNALED(status))
    log_notice("worker process %d exited on signal %d%s", static_cast<int>(w->pid), WTERMSIG(status),
               WCOREDUMP(status) ? " (core dumped)" : "");
  else
    log_notice("worker process %d exited with code %d", static_cast<int>(w->pid), WEXITSTATUS(status));
  if (stopping_ || w->draining) return;
  if (reload_.active && w->generation == reload_.generation) {
    fail_reload("a worker of the new configuration exited before it was ready");
    return;
  }
  if (w->generation != generation_ || winched_ || replaced_ || w->slot < 0) return;
  // A worker never leaves on its own while its master runs: this is a crash.
  on_worker_crash(static_cast<size_t>(w->slot), w->started);
}

void Master::on_worker_crash(size_t slot, double started) {
  Slot& s = *slots_[slot];
  double now = loop_->now();
  if (now - started >= kStableSeconds) s.backoff = seconds(current_->main.restart_initial_backoff_ms);
  while (!restarts_.empty() && now - restarts_.front() > 60.0) restarts_.pop_front();
  restarts_.push_back(now);
  if (static_cast<int>(restarts_.size()) > current_->main.restart_max_per_minute) {
    log_alert("workers crashed %zu times in the last minute (restart_max_per_minute = %d): giving up",
              restarts_.size(), current_->main.restart_max_per_minute);
    exit_code_ = 2;
    stop(SIGTERM);
    return;
  }
  log_notice("restarting worker in slot %zu in %.3fs", slot, s.backoff);
  schedule_restart(slot);
}

// ---- signals and stopping ----------------------------------------------------------------------

void Master::on_signal_cb(struct ev_loop*, ev_io* w, int) { static_cast<Master*>(w->data)->on_signals(); }

void Master::on_signals() {
  while (int sig = read_signal(sfd_)) {
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
  if ((stopping_ || replaced_) && workers_.empty() && !upgrade_.active) loop_->stop();
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
  if (ErrorLog::path() != "stderr" && chown(ErrorLog::path().c_str(), uid, static_cast<gid_t>(-1)) < 0)
    log_warn("chown(\"%s\") failed (%s)", ErrorLog::path().c_str(), strerror(errno));
}

// ---- control socket ----------------------------------------------------------------------------

std::string Master::open_control_socket() {
  control_addr_ = make_control_address(resolve_path(current_->opts.prefix, current_->main.control_socket), getpid());
  if (current_->main.control_socket == "abstract") control_addr_ = make_control_address("abstract", getpid());
  std::string err;
  control_fd_ = listen_control(control_addr_, &err);
  if (!control_fd_) return err;
  ev_io_init(&control_io_, on_control_accept_cb, control_fd_.get(), EV_READ);
  control_io_.data = this;
  ev_io_start(loop_->raw(), &control_io_);
  return "";
}

void Master::on_control_accept_cb(struct ev_loop*, ev_io* w, int) {
  auto* self = static_cast<Master*>(w->data);
  for (;;) {
    int fd = ::accept4(self->control_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    auto* c = new ControlConn();
    c->master = self;
    c->fd.reset(fd);
    if (!peer_allowed(fd, &c->peer_pid)) {
      log_warn("control socket: connection from pid %d of another user refused", static_cast<int>(c->peer_pid));
      c->fd.reset();
      delete c;
      continue;
    }
    ev_io_init(&c->io, on_control_conn_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(self->loop_->raw(), &c->io);
    self->conns_.push_back(c);
  }
}

void Master::on_control_conn_cb(struct ev_loop*, ev_io* w, int revents) {
  auto* c = static_cast<ControlConn*>(w->data);
  Master* self = c->master;
  if ((revents & EV_WRITE) && c == self->handover_.conn) self->send_handover_listeners();
  while (!c->dead) {
    Message m;
    int r = recv_message(c->fd.get(), &m);
    if (r < 0 && errno == EAGAIN) return;
    if (r <= 0) {
      self->close_conn(c);
      return;
    }
    self->on_control_message(c, m);
  }
}

void Master::close_conn(ControlConn* c) {
  if (c->dead) return;
  c->dead = true;
  ev_io_stop(loop_->raw(), &c->io);
  c->fd.reset();
  auto drop = [c](std::vector<ControlConn*>& v) { v.erase(std::remove(v.begin(), v.end(), c), v.end()); };
  drop(status_.waiters);
  drop(reload_.waiters);
  drop(upgrade_.waiters);
  // A new master that hangs up during the hand-over has failed; its exit, or the end of its
  // registration, brings the rollback with the reason it gave.
  if (handover_.conn == c) reset_handover();
  if (upgrade_.registration == c) {
    upgrade_.registration = nullptr;
    // The new master hung up before it was ready: it failed, or it is about to.
    if (upgrade_.active) {
      std::string why = upgrade_.reason.empty() ? "the new master closed its connection before it was ready" : upgrade_.reason;
      rollback(why);
    }
  }
  conns_.remove(c);
  loop_->defer_delete(c);
}

void Master::reply(ControlConn* c, bool ok, const std::string& text, const Message* extra) {
  if (!c || c->dead) return;
  Message m(MsgType::kResult);
  m.set("ok", ok ? "1" : "0");
  m.set(ok ? "message" : "reason", text);
  if (extra)
    for (const auto& [k, v] : extra->fields) m.set(k, v);
  send_message(c->fd.get(), m);
}

void Master::on_control_message(ControlConn* c, Message& m) {
  if (c == handover_.conn) return on_handover_message(c, m);
  switch (m.type) {
    case MsgType::kStatus:
      start_status(c);
      break;
    case MsgType::kReload:
      start_reload(c);
      break;
    case MsgType::kUpgrade:
      start_upgrade(c);
      break;
    case MsgType::kRegister:
      // The new master of an upgrade introduces itself on the connection it will report on.
      if (upgrade_.active && m.get("role") == "upgrade" && c->peer_pid == upgrade_.pid) {
        upgrade_.registration = c;
        Message ack(MsgType::kAck);
        ack.set("generation", static_cast<long long>(generation_));
        send_message(c->fd.get(), ack);
      } else {
        reply(c, false, "no upgrade is waiting for this process");
      }
      break;
    case MsgType::kFdRequest:
      if (!upgrade_.active || c->peer_pid != upgrade_.pid)
        reply(c, false, "listeners are only handed to the new master of an upgrade");
      else if (handover_.step != Handover::Step::kIdle)
        reply(c, false, "the listeners have already been handed over");
      else
        start_handover(c);
      break;
    case MsgType::kReady:
      // The new master's workers all accept: it may take over the pid file and the control socket.
      if (c == upgrade_.registration && upgrade_.active && !upgrade_.ready) {
        upgrade_.ready = true;
        upgrade_.new_generation = m.get_int("generation", generation_ + 1);
        send_message(c->fd.get(), Message(MsgType::kAck));
      }
      break;
    case MsgType::kAck:
      // ... and it has: from now on it is the master.
      if (c == upgrade_.registration && upgrade_.active && upgrade_.ready) upgrade_succeeded(c, m);
      break;
    case MsgType::kResult:
      if (upgrade_.active && c->peer_pid == upgrade_.pid && m.get("ok") == "0") upgrade_.reason = m.get("reason");
      break;
    default:
      reply(c, false, std::string("unexpected message ") + msg_type_name(m.type));
      break;
  }
}

void Master::start_status(ControlConn* c) {
  status_.waiters.push_back(c);
  if (status_.active) return;
  status_.active = true;
  // A worker with a ping in flight answers that one.
  for (auto& w : workers_) w->status_answered = !ping(w.get());
  ev_timer_set(&status_.timer, kStatusWaitSeconds, 0.);
  ev_timer_start(loop_->raw(), &status_.timer);
  finish_status_if_answered();
}

void Master::on_status_timer_cb(struct ev_loop*, ev_timer* w, int) { static_cast<Master*>(w->data)->finish_status(); }

// A status request is answered once every worker has reported (or has exited meanwhile), without
// waiting for those already known not to respond.
void Master::finish_status_if_answered() {
  if (!status_.active) return;
  double now = loop_->now();
  for (const auto& w : workers_)
    if (!w->status_answered && !w->not_responding(now)) return;
  finish_status();
}

void Master::finish_status() {
  if (!status_.active) return;
  status_.active = false;
  ev_timer_stop(loop_->raw(), &status_.timer);
  std::string text = "master: pid=" + std::to_string(getpid()) + " generation=" + std::to_string(generation_) +
                     " state=" + (upgrade_.active ? "upgrading" : replaced_ ? "replaced" : reload_.active ? "reloading" : "running") + "\n";
  double now = loop_->now();
  for (const auto& w : workers_) {
    // Not answered by now: silent for kPingTimeoutSeconds at least. Its count is the last known.
    bool answered = w->status_answered;
    text += "worker: pid=" + std::to_string(w->pid) + " generation=" + std::to_string(w->generation) +
            " state=" + (!answered ? "not-responding" : w->draining ? "draining" : w->ready ? "active" : "starting") +
            " connections=" + std::to_string(w->connections);
    if (!answered) {
      char note[64];
      snprintf(note, sizeof(note), " (last answer %.1f s ago)", now - w->last_answer);
      text += note;
    }
    text += "\n";
  }
  Message extra;
  extra.set("pid", static_cast<long long>(getpid()));
  extra.set("generation", static_cast<long long>(generation_));
  std::vector<ControlConn*> waiters;
  waiters.swap(status_.waiters);
  for (ControlConn* c : waiters) {
    Message m(MsgType::kResult);
    m.set("ok", "1");
    m.set("lines", static_cast<long long>(std::count(text.begin(), text.end(), '\n')));
    // Lines travel one field each: values are single lines.
    size_t start = 0, n = 0;
    while (start < text.size()) {
      size_t nl = text.find('\n', start);
      m.set("line" + std::to_string(n++), text.substr(start, nl - start));
      start = nl + 1;
    }
    if (!c->dead) send_message(c->fd.get(), m);
  }
}

// ---- reload ------------------------------------------------------------------------------------

void Master::start_reload(ControlConn* waiter) {
  auto refuse = [&](const std::string& why) {
    log_error("reload refused: %s", why.c_str());
    reply(waiter, false, why);
  };
  if (replaced_) return refuse("this master is being replaced by a new binary");
  if (stopping_) return refuse("the master is stopping");
  if (upgrade_.active) return refuse("an upgrade is in progress");
  if (reload_.active) return refuse("a reload is already in progress");
  sd_notify(sd_reloading_state());
  std::shared_ptr<Cycle> next;
  try {
    next = load_cycle(current_->opts);
  } catch (const ConfError& e) {
    log_error("reload failed: %s; the running configuration stays", e.what());
    sd_notify("READY=1\n");
    reply(waiter, false, e.what());
    return;
  }
  // Sockets with the same key stay the same sockets; only new addresses are opened.
  std::map<std::string, Fd> adopt;
  for (auto& ls : current_->listening) {
    if (!ls->fd.valid()) continue;
    int dup = fcntl(ls->fd.get(), F_DUPFD_CLOEXEC, 0);
    if (dup >= 0) adopt.emplace(ls->key, Fd(dup));
  }
  std::string err = next->open_listeners(&adopt);
  if (err.empty()) err = next->http->open_logs();
  if (!err.empty()) {
    log_error("reload failed: %s; the running configuration stays", err.c_str());
    sd_notify("READY=1\n");
    reply(waiter, false, err);
    return;
  }
  chown_logs(next.get());
  if (next->error_log_path() != current_->error_log_path() || next->main.log_level != current_->main.log_level) {
    std::string e = ErrorLog::open(next->error_log_path(), next->main.log_level);
    if (!e.empty()) log_alert("%s", e.c_str());
  }
  reload_.active = true;
  reload_.cycle = next;
  reload_.generation = generation_ + 1;
  if (waiter) reload_.waiters.push_back(waiter);
  for (int i = 0; i < next->main.worker_processes; i++) {
    if (!spawn(next, reload_.generation, i)) {
      fail_reload("could not start the new workers");
      return;
    }
  }
  ev_timer_set(&reload_.timer, seconds(next->main.upgrade_timeout_ms), 0.);
  ev_timer_start(loop_->raw(), &reload_.timer);
}

void Master::commit_reload() {
  ev_timer_stop(loop_->raw(), &reload_.timer);
  int old_generation = generation_;
  current_ = reload_.cycle;
  generation_ = reload_.generation;
  reload_.active = false;
  reload_.cycle.reset();
  winched_ = false;
  make_slots();
  drain_workers(generation_);
  log_notice("reload done: generation %d is serving, generation %d drains", generation_, old_generation);
  sd_notify("READY=1\n");
  Message extra;
  extra.set("generation", static_cast<long long>(generation_));
  std::vector<ControlConn*> waiters;
  waiters.swap(reload_.waiters);
  for (ControlConn* c : waiters) reply(c, true, "reload succeeded", &extra);
}

void Master::fail_reload(const std::string& reason) {
  if (!reload_.active) return;
  ev_timer_stop(loop_->raw(), &reload_.timer);
  reload_.active = false;
  for (auto& w : workers_) {
    if (w->generation == reload_.generation && !w->draining) {
      w->draining = true;
      w->slot = -1;
      send_shutdown(w.get(), "drain");
    }
  }
  reload_.cycle.reset();
  log_error("reload failed: %s; the running configuration stays", reason.c_str());
  sd_notify("READY=1\n");
  std::vector<ControlConn*> waiters;
  waiters.swap(reload_.waiters);
  for (ControlConn* c : waiters) reply(c, false, reason);
}

void Master::on_reload_timer_cb(struct ev_loop*, ev_timer* w, int) {
  auto* self = static_cast<Master*>(w->data);
  self->fail_reload("the new workers were not ready within upgrade_timeout");
}

// ---- upgrade: the old master's side --------------------------------------------------------------

void Master::start_upgrade(ControlConn* waiter) {
  auto refuse = [&](const std::string& why) {
    log_error("upgrade refused: %s", why.c_str());
    reply(waiter, false, why);
  };
  if (upgrade_.active) return refuse("an upgrade is already in progress");
  if (replaced_) return refuse("this master is already being replaced");
  if (stopping_) return refuse("the master is stopping");
  if (reload_.active) return refuse("a reload is in progress");

  std::string pid_path = current_->pid_path();
  std::string oldbin = pid_path + ".oldbin";
  if (::rename(pid_path.c_str(), oldbin.c_str()) < 0 && errno != ENOENT)
    log_warn("rename(\"%s\", \"%s\") failed (%s)", pid_path.c_str(), oldbin.c_str(), strerror(errno));
  sd_notify(sd_reloading_state());

  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC | O_NONBLOCK) < 0) {
    ::rename(oldbin.c_str(), pid_path.c_str());
    return refuse(std::string("pipe2() failed (") + strerror(errno) + ")");
  }
  const std::string& exe = current_->opts.exe_path;
  std::string env_sock = "BATON_CONTROL_SOCKET=" + base64_encode(control_addr_.text);
  std::vector<std::string> args = saved_argv();
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) {
    ::close(errpipe[0]);
    ::close(errpipe[1]);
    ::rename(oldbin.c_str(), pid_path.c_str());
    return refuse(std::string("fork() failed (") + strerror(errno) + ")");
  }
  if (pid == 0) {
    // Nothing of the old master crosses exec: the listeners come over the control socket.
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    reset_signals();
    putenv(const_cast<char*>("BATON_UPGRADE=1"));
    putenv(env_sock.data());
    execv(exe.c_str(), argv.data());
    int e = errno;
    ssize_t ignored = ::write(errpipe[1], &e, sizeof(e));
    (void)ignored;
    _exit(127);
  }
  ::close(errpipe[1]);

  upgrade_.active = true;
  upgrade_.ready = false;
  upgrade_.pid = pid;
  upgrade_.reason.clear();
  upgrade_.registration = nullptr;
  if (waiter) upgrade_.waiters.push_back(waiter);
  reset_handover();
  handover_.step = Handover::Step::kIdle;
  // Whether exec worked is known when the pipe closes or says why: the loop waits for it, and
  // upgrade_timeout counts from the fork, so that a binary that takes long to load is bounded too.
  upgrade_.exec_result.reset(errpipe[0]);
  ev_io_init(&upgrade_.exec_io, on_exec_result_cb, errpipe[0], EV_READ);
  upgrade_.exec_io.data = this;
  ev_io_start(loop_->raw(), &upgrade_.exec_io);
  ev_timer_set(&upgrade_.timer, seconds(current_->main.upgrade_timeout_ms), 0.);
  ev_timer_start(loop_->raw(), &upgrade_.timer);
}

void Master::on_exec_result_cb(struct ev_loop*, ev_io* w, int) { static_cast<Master*>(w->data)->on_exec_result(); }

void Master::on_exec_result() {
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(upgrade_.exec_result.get(), &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) return;  // the child has not reached exec yet
  ev_io_stop(loop_->raw(), &upgrade_.exec_io);
  upgrade_.exec_result.reset();
  if (!upgrade_.active) return;
  const std::string& exe = current_->opts.exe_path;
  if (n == static_cast<ssize_t>(sizeof(exec_errno))) {
    // The child's exit (127) brings the rollback, with this reason.
    upgrade_.reason = "cannot execute " + exe + " (" + strerror(exec_errno) + ")";
    return;
  }
  log_notice("upgrade: started new master %d from %s", static_cast<int>(upgrade_.pid), exe.c_str());
}

// Step 1: on the connection the new master asked on, announce how many listeners follow.
void Master::start_handover(ControlConn* c) {
  std::vector<Message> listeners;
  for (auto& ls : current_->listening) {
    if (!ls->fd.valid()) continue;
    int dup = fcntl(ls->fd.get(), F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      rollback("cannot hand over " + ls->key + ": fcntl(F_DUPFD_CLOEXEC) failed (" + strerror(errno) + ")");
      return;
    }
    Message m(MsgType::kFd);
    m.set("key", ls->key);
    m.fds.emplace_back(dup);
    listeners.push_back(std::move(m));
  }
  Message start(MsgType::kFdTransferStart);
  start.set("count", static_cast<long long>(listeners.size()));
  start.set("generation", static_cast<long long>(generation_));
  if (send_message(c->fd.get(), start) < 0) {
    rollback(std::string("cannot announce the listeners to the new master (") + strerror(errno) + ")");
    return;
  }
  handover_.conn = c;
  handover_.listeners = std::move(listeners);
  handover_.sent = 0;
  next_handover_step(Handover::Step::kAwaitStartAck);
}

// Each step has its own deadline.
void Master::next_handover_step(Handover::Step step) {
  handover_.step = step;
  ev_timer_stop(loop_->raw(), &handover_.timer);
  ev_timer_set(&handover_.timer, kHandoverStepSeconds, 0.);
  ev_timer_start(loop_->raw(), &handover_.timer);
}

// Steps 2 and 4: the new master acknowledges the announcement, then confirms what it received.
void Master::on_handover_message(ControlConn*, const Message& m) {
  if (m.type != MsgType::kAck || handover_.step == Handover::Step::kSending) {
    rollback(std::string("the new master sent an unexpected ") + msg_type_name(m.type) + " during the listener transfer");
    return;
  }
  if (handover_.step == Handover::Step::kAwaitStartAck) {
    next_handover_step(Handover::Step::kSending);
    send_handover_listeners();
    return;
  }
  long long got = m.get_int("count", -1);
  if (got != static_cast<long long>(handover_.sent)) {
    rollback("the new master confirmed " + std::to_string(got) + " of " + std::to_string(handover_.sent) + " listener(s)");
    return;
  }
  log_notice("upgrade: %zu listener(s) handed to the new master", handover_.sent);
  ControlConn* c = handover_.conn;
  reset_handover();
  handover_.step = Handover::Step::kDone;
  close_conn(c);
}

// Step 3: one descriptor per message with its key, as fast as the new master's queue takes them.
void Master::send_handover_listeners() {
  ControlConn* c = handover_.conn;
  if (!c || handover_.step != Handover::Step::kSending) return;
  while (handover_.sent < handover_.listeners.size()) {
    Message& m = handover_.listeners[handover_.sent];
    if (send_message(c->fd.get(), m) < 0) {
      if (errno == EAGAIN) {
        // The queue is full: go on when the new master has read some of it.
        ev_io_stop(loop_->raw(), &c->io);
        ev_io_set(&c->io, c->fd.get(), EV_READ | EV_WRITE);
        ev_io_start(loop_->raw(), &c->io);
        return;
      }
      rollback("sending " + m.get("key") + " to the new master failed (" + strerror(errno) + ")");
      return;
    }
    m.fds.clear();  // the new master has its own copy now
    handover_.sent++;
  }
  handover_.listeners.clear();
  ev_io_stop(loop_->raw(), &c->io);
  ev_io_set(&c->io, c->fd.get(), EV_READ);
  ev_io_start(loop_->raw(), &c->io);
  next_handover_step(Handover::Step::kAwaitDoneAck);
}

// Forgets the hand-over in progress (its connection is closed by whoever called this) and the
// duplicates it had not sent yet.
void Master::reset_handover() {
  ev_timer_stop(loop_->raw(), &handover_.timer);
  handover_.conn = nullptr;
  handover_.listeners.clear();
  handover_.sent = 0;
  if (handover_.step != Handover::Step::kDone) handover_.step = Handover::Step::kIdle;
}

void Master::on_handover_timer_cb(struct ev_loop*, ev_timer* w, int) {
  auto* self = static_cast<Master*>(w->data);
  const char* what = "confirm the listeners";
  if (self->handover_.step == Handover::Step::kAwaitStartAck) what = "acknowledge the listener transfer";
  else if (self->handover_.step == Handover::Step::kSending) what = "take the listeners";
  self->rollback(std::string("the new master did not ") + what + " within " + std::to_string(kHandoverStepMs) + "ms");
}

void Master::upgrade_succeeded(ControlConn*, const Message&) {
  ev_timer_stop(loop_->raw(), &upgrade_.timer);
  pid_t new_pid = upgrade_.pid;
  long long new_generation = upgrade_.new_generation;
  upgrade_.active = false;
  upgrade_.ready = false;
  upgrade_.pid = 0;
  replaced_ = true;
  log_notice("upgrade: new master %d (generation %lld) is serving; draining the old workers", static_cast<int>(new_pid),
             new_generation);
  Message extra;
  extra.set("pid", static_cast<long long>(new_pid));
  extra.set("generation", new_generation);
  std::vector<ControlConn*> waiters;
  waiters.swap(upgrade_.waiters);
  for (ControlConn* w : waiters) reply(w, true, "upgrade succeeded", &extra);
  for (auto& s : slots_) ev_timer_stop(loop_->raw(), &s->restart);
  // New -s clients find the new master from now on.
  ev_io_stop(loop_->raw(), &control_io_);
  control_fd_.reset();
  drain_workers(0);
  maybe_exit();
}

void Master::rollback(const std::string& reason) {
  if (!upgrade_.active) return;
  bool took_over = upgrade_.ready;  // the new master was told it may take the control socket
  upgrade_.active = false;
  upgrade_.ready = false;
  ev_timer_stop(loop_->raw(), &upgrade_.timer);
  ev_io_stop(loop_->raw(), &upgrade_.exec_io);
  upgrade_.exec_result.reset();
  if (handover_.conn) {
    ControlConn* h = handover_.conn;
    reset_handover();
    close_conn(h);
  }
  if (upgrade_.pid > 0) {
    // Its workers see their channel close and drain away by themselves.
    ::kill(upgrade_.pid, SIGKILL);
    abandoned_.push_back(upgrade_.pid);
    upgrade_.pid = 0;
  }
  if (upgrade_.registration) {
    ControlConn* r = upgrade_.registration;
    upgrade_.registration = nullptr;
    close_conn(r);
  }
  std::string pid_path = current_->pid_path();
  std::string oldbin = pid_path + ".oldbin";
  if (::rename(oldbin.c_str(), pid_path.c_str()) < 0)
    log_alert("rename(\"%s\", \"%s\") failed (%s)", oldbin.c_str(), pid_path.c_str(), strerror(errno));
  // The new master may have put its control socket at the path; this one takes it back.
  if (took_over && control_addr_.text[0] != '@') {
    ev_io_stop(loop_->raw(), &control_io_);
    std::string err = open_control_socket();
    if (!err.empty()) log_alert("%s", err.c_str());
  }
  sd_notify("READY=1\nMAINPID=" + std::to_string(getpid()) + "\n");
  log_error("upgrade failed: %s; rolled back, the old master keeps serving", reason.c_str());
  std::vector<ControlConn*> waiters;
  waiters.swap(upgrade_.waiters);
  for (ControlConn* w : waiters) reply(w, false, reason);
  maybe_exit();
}

void Master::on_upgrade_timer_cb(struct ev_loop*, ev_timer* w, int) {
  auto* self = static_cast<Master*>(w->data);
  self->rollback("the new master was not ready within upgrade_timeout (" +
                 std::to_string(self->current_->main.upgrade_timeout_ms) + "ms)");
}

// ---- upgrade: the new master's side ------------------------------------------------------------

// Every worker accepts: ask the old master for the go-ahead, and wait for it in the loop (this
// master's workers serve already, and their exits and the signals must not wait).
void Master::tell_old_master_ready() {
  Message ready(MsgType::kReady);
  ready.set("pid", static_cast<long long>(getpid()));
  ready.set("generation", static_cast<long long>(generation_));
  int fd = old_master_.get();
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 || send_message(fd, ready) < 0) return old_master_refused();
  ev_io_set(&old_master_io_, fd, EV_READ);
  ev_io_start(loop_->raw(), &old_master_io_);
  ev_timer_set(&old_master_timer_, kHandoverStepSeconds, 0.);
  ev_timer_start(loop_->raw(), &old_master_timer_);
}

void Master::on_old_master_cb(struct ev_loop*, ev_io* w, int) {
  auto* self = static_cast<Master*>(w->data);
  Message ack;
  int r = recv_message(self->old_master_.get(), &ack);
  if (r < 0 && errno == EAGAIN) return;
  if (r == 1 && ack.type == MsgType::kAck) self->take_over();
  else self->old_master_refused();
}

void Master::on_old_master_timer_cb(struct ev_loop*, ev_timer* w, int) {
  static_cast<Master*>(w->data)->old_master_refused();
}

void Master::old_master_refused() {
  ev_io_stop(loop_->raw(), &old_master_io_);
  ev_timer_stop(loop_->raw(), &old_master_timer_);
  old_master_.reset();
  // The old master rolled back (or is gone): this generation must not take over.
  log_alert("upgrade: the old master did not accept this master; exiting");
  exit_code_ = 1;
  stop(SIGTERM);
}

void Master::take_over() {
  ev_io_stop(loop_->raw(), &old_master_io_);
  ev_timer_stop(loop_->raw(), &old_master_timer_);
  // Only now the files that name the running master are this master's.
  write_pid_file(current_->pid_path());
  std::string err = open_control_socket();
  if (!err.empty()) log_alert("%s", err.c_str());
  // The old master answers `baton -s upgrade` once this confirmation arrives, so that whoever asked
  // finds the pid file and the control socket already naming this master.
  send_message(old_master_.get(), Message(MsgType::kAck));
  old_master_.reset();
  sd_notify("MAINPID=" + std::to_string(getpid()) + "\nREADY=1\n");
  log_notice("upgrade: this master (generation %d) has taken over", generation_);
}

// ---- the loop ----------------------------------------------------------------------------------

int Master::run(Fd upgrade_conn) {
  EventLoop loop;
  loop_ = &loop;
  old_master_ = std::move(upgrade_conn);
  Fd sfd = open_signalfd({SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD});
  if (!sfd) {
    log_emerg("signalfd() failed (%s)", strerror(errno));
    return 1;
  }
  sfd_ = sfd.get();
  signal(SIGPIPE, SIG_IGN);
  ev_io sig_watcher;
  ev_io_init(&sig_watcher, on_signal_cb, sfd_, EV_READ);
  sig_watcher.data = this;
  ev_io_start(loop.raw(), &sig_watcher);
  ev_init(&kill_timer_, on_kill_timer_cb);
  kill_timer_.data = this;
  ev_timer_init(&ping_timer_, on_ping_timer_cb, kPingIntervalSeconds, kPingIntervalSeconds);
  ping_timer_.data = this;
  ev_timer_start(loop.raw(), &ping_timer_);
  ev_init(&status_.timer, on_status_timer_cb);
  status_.timer.data = this;
  ev_init(&reload_.timer, on_reload_timer_cb);
  reload_.timer.data = this;
  ev_init(&upgrade_.timer, on_upgrade_timer_cb);
  upgrade_.timer.data = this;
  ev_init(&upgrade_.exec_io, on_exec_result_cb);
  upgrade_.exec_io.data = this;
  ev_init(&handover_.timer, on_handover_timer_cb);
  handover_.timer.data = this;
  ev_init(&old_master_io_, on_old_master_cb);
  old_master_io_.data = this;
  ev_init(&old_master_timer_, on_old_master_timer_cb);
  old_master_timer_.data = this;

  if (!old_master_) {
    std::string err = open_control_socket();
    if (!err.empty()) {
      log_emerg("%s", err.c_str());
      return 1;
    }
  }

  make_slots();
  for (int i = 0; i < current_->main.worker_processes; i++)
    if (!spawn(current_, generation_, i)) schedule_restart(static_cast<size_t>(i));
  loop.run();

  for (auto& s : slots_) ev_timer_stop(loop.raw(), &s->restart);
  ev_timer_stop(loop.raw(), &kill_timer_);
  ev_timer_stop(loop.raw(), &ping_timer_);
  ev_timer_stop(loop.raw(), &status_.timer);
  ev_timer_stop(loop.raw(), &reload_.timer);
  ev_timer_stop(loop.raw(), &upgrade_.timer);
  ev_io_stop(loop.raw(), &upgrade_.exec_io);
  ev_timer_stop(loop.raw(), &handover_.timer);
  ev_io_stop(loop.raw(), &old_master_io_);
  ev_timer_stop(loop.raw(), &old_master_timer_);
  ev_io_stop(loop.raw(), &sig_watcher);
  if (control_fd_) ev_io_stop(loop.raw(), &control_io_);
  for (ControlConn* c : std::vector<ControlConn*>(conns_.begin(), conns_.end())) close_conn(c);
  std::string pid_path = current_->pid_path();
  if (replaced_) {
    // The new master owns the pid file, the control socket and the unix listeners now. The
    // .oldbin file is this master's only while it names this master: the new one may already be
    // upgrading in turn.
    std::string oldbin = pid_path + ".oldbin";
    char buf[32] = {};
    int fd = ::open(oldbin.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
      ::close(fd);
      if (n > 0 && atol(buf) == static_cast<long>(getpid())) ::unlink(oldbin.c_str());
    }
    log_notice("exit (replaced by the new master)");
  } else {
    ::unlink(pid_path.c_str());
    if (control_fd_ && control_addr_.text[0] != '@') ::unlink(control_addr_.text.c_str());
    for (auto& ls : current_->listening) {
      if (ls->addr.family() != AF_UNIX) continue;
      auto* un = reinterpret_cast<const sockaddr_un*>(&ls->addr.storage);
      if (un->sun_path[0]) ::unlink(un->sun_path);
    }
    log_notice("exit");
  }
  return exit_code_;
}

void set_master_title(const Options& opts) {
  std::string title = "baton: master process";
  for (const std::string& arg : saved_argv()) title += " " + (&arg == &saved_argv()[0] ? opts.exe_path : arg);
  set_proc_title(title);
}

}  // namespace master

namespace {

// Another master answering on the control socket means this one must not start: it would take the
// socket path, the pid file and (for unix listeners) the socket files from under it.
bool another_master_running(const Cycle& c) {
  if (c.main.control_socket == "abstract") return false;  // bound by pid: no clash possible
  ControlAddress a = make_control_address(resolve_path(c.opts.prefix, c.main.control_socket), getpid());
  std::string err;
  return connect_control(a, &err).valid();
}

}  // namespace

int master_process_main(std::unique_ptr<Cycle> cycle) {
  Cycle* c = cycle.get();
  master::set_master_title(c->opts);
  if (another_master_running(*c)) {
    log_emerg("another master process answers on the control socket %s",
              resolve_path(c->opts.prefix, c->main.control_socket).c_str());
    return 1;
  }
  std::string err = c->open_listeners();
  if (!err.empty()) {
    log_emerg("%s", err.c_str());
    return 1;
  }
  err = c->http->open_logs();
  if (!err.empty()) {
    log_emerg("%s", err.c_str());
    return 1;
  }
  raise_nofile_limit(static_cast<rlim_t>(c->main.worker_connections) * 2 + 128);
  if (c->main.daemon) {
    err = daemonize();
    if (!err.empty()) {
      log_emerg("%s", err.c_str());
      return 1;
    }
    // A daemon keeps nothing of whoever started it: what would go to stderr goes to the error log
    // (unless the error log is stderr itself), so a caller reading its output is not held open.
    if (ErrorLog::path() != "stderr") ::dup2(ErrorLog::fd(), STDERR_FILENO);
  }
  if (!master::write_pid_file(c->pid_path())) return 1;
  log_notice("baton/%s started, master process %d, %d worker(s)", BATON_VERSION, static_cast<int>(getpid()),
             c->main.worker_processes);
  std::shared_ptr<Cycle> shared(std::move(cycle));
  master::Master master(std::move(shared), 1);
  return master.run();
}

int upgraded_master_main(const Options& opts) {
  master::set_master_title(opts);
  std::string encoded = getenv("BATON_CONTROL_SOCKET") ? getenv("BATON_CONTROL_SOCKET") : "";
  unsetenv("BATON_UPGRADE");
  unsetenv("BATON_CONTROL_SOCKET");
  std::string text;
  ControlAddress old_addr;
  if (!base64_decode(encoded, &text) || !control_address_from_text(text, &old_addr)) {
    fprintf(stderr, "baton: [emerg] BATON_CONTROL_SOCKET does not name a control socket\n");
    return 1;
  }
  std::string err;
  Fd conn = connect_control(old_addr, &err);
  if (!conn) {
    fprintf(stderr, "baton: [emerg] upgrade: %s\n", err.c_str());
    return 1;
  }
  auto fail = [&](const std::string& why) {
    Message m(MsgType::kResult);
    m.set("ok", "0");
    m.set("reason", why);
    send_message(conn.get(), m);
    log_emerg("upgrade: %s", why.c_str());
    return 1;
  };

  std::unique_ptr<Cycle> cycle;
  try {
    cycle = load_cycle(opts);
  } catch (const ConfError& e) {
    fprintf(stderr, "baton: [emerg] %s\n", e.what());
    return fail(e.what());
  }
  err = ErrorLog::open(cycle->error_log_path(), cycle->main.log_level);
  if (!err.empty()) {
    fprintf(stderr, "baton: [emerg] %s\n", err.c_str());
    return fail(err);
  }

  // The steps up to here and the hand-over below wait in place, each for at most kHandoverStepMs:
  // this process has no loop, no workers and nothing to serve yet, and the old master ends the
  // upgrade by itself (upgrade_timeout) should it wait too long. From Master::run() on, waiting
  // for the old master is an event of the loop like any other.
  Message reg(MsgType::kRegister);
  reg.set("role", "upgrade");
  reg.set("pid", static_cast<long long>(getpid()));
  Message ack;
  if (send_message(conn.get(), reg) < 0 || recv_message_timeout(conn.get(), &ack, master::kHandoverStepMs) != 1 ||
      ack.type != MsgType::kAck)
    return fail("the old master did not accept the registration");
  int generation = static_cast<int>(ack.get_int("generation", 0)) + 1;

  // The listeners, on a connection of their own.
  std::map<std::string, Fd> adopt;
  {
    Fd fdc = connect_control(old_addr, &err);
    if (!fdc) return fail(err);
    Message start;
    if (send_message(fdc.get(), Message(MsgType::kFdRequest)) < 0 ||
        recv_message_timeout(fdc.get(), &start, master::kHandoverStepMs) != 1 || start.type != MsgType::kFdTransferStart)
      return fail("the old master did not start the listener transfer");
    long long count = start.get_int("count", -1);
    if (count < 0) return fail("bad listener transfer announcement");
    if (send_message(fdc.get(), Message(MsgType::kAck)) < 0) return fail("listener transfer interrupted");
    for (long long i = 0; i < count; i++) {
      Message m;
      if (recv_message_timeout(fdc.get(), &m, master::kHandoverStepMs) != 1 || m.type != MsgType::kFd || m.fds.size() != 1)
        return fail("listener transfer interrupted (" + std::string(strerror(errno)) + ")");
      adopt[m.get("key")] = std::move(m.fds[0]);
    }
    Message done(MsgType::kAck);
    done.set("count", count);
    send_message(fdc.get(), done);
  }
  log_notice("upgrade: received %zu listener(s) from the old master", adopt.size());

  err = cycle->open_listeners(&adopt);
  if (err.empty()) err = cycle->http->open_logs();
  if (!err.empty()) return fail(err);
  if (!adopt.empty())
    log_notice("upgrade: %zu listener(s) no longer configured are left to the old master", adopt.size());
  adopt.clear();
  raise_nofile_limit(static_cast<rlim_t>(cycle->main.worker_connections) * 2 + 128);
  log_notice("baton/%s started by an upgrade, master process %d, generation %d", BATON_VERSION,
             static_cast<int>(getpid()), generation);
  std::shared_ptr<Cycle> shared(std::move(cycle));
  master::Master master(std::move(shared), generation);
  return master.run(std::move(conn));
}

}  // namespace baton

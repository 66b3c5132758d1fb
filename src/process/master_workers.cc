// The master's workers: forking them, their channels and pings, their exits, and restarting a
// crashed one after a backoff.
#include "process/master_internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "core/log.h"
#include "http/http_limit.h"
#include "os/unix/process.h"
#include "os/unix/sd_notify.h"
#include "process/worker.h"

namespace baton::master {

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
  if (pid == 0) {
    if (starter_) {
      starter_.reset();  // the starter hears from the master alone
      detach_stderr();
    }
    worker_process_main(cycle.get(), std::move(child_end));
  }
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
  // (A candidate whose generation is handed over forks nothing the master would not know about.)
  if (m->stopping_ || m->winched_ || m->replaced_ || m->handed_) return;
  m->spawn(m->current_, m->generation_, static_cast<int>(s->index));
}

void Master::on_channel_cb(struct ev_loop*, ev_io* w, int revents) {
  auto* wp = static_cast<WorkerProc*>(w->data);
  Master* m = wp->master;
  if (revents & EV_WRITE) {
    size_t before = wp->outbox.size();
    if (wp->outbox.flush(wp->channel.get()) < 0)
      log_info("%zu message(s) for worker %d are dropped: %s", before, static_cast<int>(wp->pid), strerror(errno));
    m->watch_channel(wp);
    // Room again: the old workers whose hand-overs waited are read again.
    if (m->queued_to_workers() <= kMaxQueuedHandOvers / 2)
      for (auto& w : m->workers_)
        if (w->reading_paused) {
          w->reading_paused = false;
          m->watch_channel(w.get());
        }
  }
  if (revents & EV_READ) m->on_channel(wp);
}

size_t Master::queued_to_workers() const {
  size_t n = 0;
  for (const auto& w : workers_) n += w->outbox.size();
  return n;
}

void Master::watch_channel(WorkerProc* w) {
  if (w->channel_closed) return;
  int want = (w->reading_paused ? 0 : EV_READ) | (w->outbox.empty() ? 0 : EV_WRITE);
  if (ev_is_active(&w->io) && (w->io.events & (EV_READ | EV_WRITE)) == want) return;
  ev_io_stop(loop_->raw(), &w->io);
  if (!want) return;
  ev_io_modify(&w->io, want);
  ev_io_start(loop_->raw(), &w->io);
}

void Master::on_channel(WorkerProc* w) {
  for (;;) {
    if (w->reading_paused) return;
    Message m;
    int r = recv_message(w->channel.get(), &m);
    if (r < 0 && errno == EAGAIN) return;
    if (r < 0 && errno == EPROTO) {
      // One message that could not be taken whole (descriptors beyond this process's limit): it is
      // dropped, with what it carried; the channel goes on.
      log_info("a message from worker %d was dropped (%s)", static_cast<int>(w->pid), strerror(errno));
      continue;
    }
    if (r <= 0) {
      // The worker is gone; SIGCHLD tells how.
      ev_io_stop(loop_->raw(), &w->io);
      w->outbox.clear();
      w->channel_closed = true;
      return;
    }
    w->last_answer = loop_->now();
    if (m.type == MsgType::kReady) {
      on_worker_ready(w);
    } else if (m.type == MsgType::kConnection) {
      pass_connection(w, m);
    } else if (m.type == MsgType::kResult) {
      w->connections = m.get_int("connections");
      w->received = m.get_int("received");
      w->status_answered = true;
      w->ping_sent = 0;
      if (w->silent) {
        w->silent = false;
        log_notice("worker process %d responds again", static_cast<int>(w->pid));
      }
      if (m.get("state") == "draining") {
        w->accepting = false;
      } else if (w->draining && w->accepting && m.has("state")) {
        ping(w);  // its drain was still on its way: the next answer comes after it
      }
      finish_status_if_answered();
      send_answers();
    }
  }
}

// One ping in flight per worker at most: a stopped worker does not collect a queue of them.
bool Master::ping(WorkerProc* w) {
  if (w->ping_sent > 0) return true;
  if (w->outbox.send(w->channel.get(), Message(MsgType::kStatus)) < 0) return false;
  watch_channel(w);
  w->ping_sent = loop_->now();
  return true;
}

void Master::on_ping_timer_cb(struct ev_loop*, ev_timer* t, int) {
  auto* self = static_cast<Master*>(t->data);
  double now = self->loop_->now();
  // Slots of workers no master reaped here (their master died): released once they are gone.
  if (StatusZone zone = self->current_->http->status_zone(); zone.valid()) zone.sweep();
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
  if (!announced_ready_ && w->generation == generation_ && generation_ready(generation_)) announce_started();
}

void Master::announce_started() {
  announced_ready_ = true;
  ErrorLog::echo_emerg_to_stderr(false);  // started: from now on the error log alone
  if (starter_) {
    detach_stderr();
    release_starter(&starter_);
  }
  if (old_master_) {
    tell_old_master_ready();
  } else {
    sd_notify("READY=1\nMAINPID=" + std::to_string(getpid()) + "\n");
  }
}

void Master::send_shutdown(WorkerProc* w, const char* mode, bool hand_over) {
  Message m(MsgType::kShutdown);
  m.set("mode", mode);
  // Tunnels too: a worker of an older binary, told this by its master, may hand them over.
  if (hand_over) m.set("handover", "1").set("tunnels", "1");
  // After what waits for it (connections from an older generation): it takes them before it drains.
  if (w->outbox.send(w->channel.get(), std::move(m)) < 0) ::kill(w->pid, strcmp(mode, "fast") == 0 ? SIGTERM : SIGQUIT);
  watch_channel(w);
}

// Drains every worker of a generation older than `below` (all of them when below is 0).
void Master::drain_workers(int below, bool hand_over) {
  for (auto& w : workers_) {
    if (w->draining || (below && w->generation >= below)) continue;
    drain_worker(w.get(), hand_over);
  }
}

void Master::drain_worker(WorkerProc* w, bool hand_over) {
  w->draining = true;
  w->slot = -1;
  send_shutdown(w, "drain", hand_over);
  ping(w);
}

// A draining worker hands over a connection: it goes, as it is (the master reads nothing of it), to
// the next ready worker of the current generation. With none, it closes here.
void Master::pass_connection(WorkerProc* from, Message& m) {
  if (!from->draining) return;  // only a generation on its way out hands connections over
  std::vector<WorkerProc*> ready;
  if (!stopping_ && !winched_ && !replaced_)
    for (auto& w : workers_)
      if (w->generation == generation_ && w->ready && !w->draining) ready.push_back(w.get());
  if (ready.empty()) {
    log_info("a connection handed over by worker %d is closed: no worker of the current generation takes connections",
             static_cast<int>(from->pid));
    return;
  }
  // The next one in turn, so that they get as many each; what its channel does not take at once
  // waits in its outbox.
  WorkerProc* to = ready[next_receiver_++ % ready.size()];
  if (to->outbox.send(to->channel.get(), std::move(m)) < 0)
    log_info("a connection handed over by worker %d is closed: %s", static_cast<int>(from->pid), strerror(errno));
  watch_channel(to);
  if (queued_to_workers() > kMaxQueuedHandOvers && !from->reading_paused) {
    // The new workers are behind: what the old one hands over waits on its side.
    from->reading_paused = true;
    watch_channel(from);
  }
}

void Master::answer_once_drained(Answer a) {
  answers_.list.push_back(std::move(a));
  if (!ev_is_active(&answers_.timer)) {
    ev_timer_set(&answers_.timer, kStopAcceptingSeconds, 0.);
    ev_timer_start(loop_->raw(), &answers_.timer);
  }
  send_answers();
}

void Master::send_answers(bool force) {
  if (answers_.list.empty()) return;
  if (!force)
    for (const auto& w : workers_)
      if (w->draining && w->accepting && !w->channel_closed) return;
  ev_timer_stop(loop_->raw(), &answers_.timer);
  std::vector<Answer> list;
  list.swap(answers_.list);
  for (Answer& a : list) {
    if (a.conn && !a.conn->dead) send_message(a.conn->fd.get(), a.msg);
    else if (!a.conn && a.fd) send_message(a.fd.get(), a.msg);
  }
}

void Master::on_answers_timer_cb(struct ev_loop*, ev_timer* t, int) {
  auto* self = static_cast<Master*>(t->data);
  for (const auto& w : self->workers_)
    if (w->draining && w->accepting && !w->channel_closed)
      log_info("worker process %d has not said within %.0f ms that it stopped accepting; not waited for",
               static_cast<int>(w->pid), kStopAcceptingSeconds * 1000);
  self->send_answers(true);
}

void Master::count(StatCounter StatEvents::*event) {
  StatusZone zone = current_->http->status_zone();
  if (zone.valid()) (zone.events().*event).fetch_add(1, std::memory_order_relaxed);
}

void Master::reap() {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    // A worker's slot of the status zone, whatever generation or master it was of: its counters go
    // to the retired totals (nothing for another child).
    if (StatusZone zone = current_->http->status_zone(); zone.valid()) zone.release(pid);
    if (upgrade_.active && pid == upgrade_.pid) {
      // Why exec failed, and what the candidate said before it exited, may still wait in the
      // pipe and in its connections (which may not even be accepted yet).
      if (upgrade_.exec_result) on_exec_result();
      // Its last words are read for the reason only: a candidate that has exited is adopted by no one.
      upgrade_.exited = true;
      if (control_fd_) on_control_accept_cb(loop_->raw(), &control_io_, 0);
      for (ControlConn* c : std::vector<ControlConn*>(conns_.begin(), conns_.end())) {
        if (c->dead || c->peer_pid != pid) continue;
        Message m;
        while (!c->dead && recv_message(c->fd.get(), &m) == 1) on_control_message(c, m);
      }
      std::string why = upgrade_.reason;
      if (why.empty()) {
        if (WIFEXITED(status)) why = "the candidate exited with code " + std::to_string(WEXITSTATUS(status));
        else why = "the candidate was killed by signal " + std::to_string(WTERMSIG(status));
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
      // What it said last is still read: a connection it handed over just before it left must
      // not be dropped with its channel.
      w->reading_paused = false;
      on_channel(w.get());
      ev_io_stop(loop_->raw(), &w->io);
      on_worker_exit(w.get(), status);
      break;
    }
  }
  finish_status_if_answered();
  send_answers();
  maybe_exit();
}

void Master::on_worker_exit(WorkerProc* w, int status) {
  if (WIFSIGNALED(status))
    log_notice("worker process %d exited on signal %d%s", static_cast<int>(w->pid), WTERMSIG(status),
               WCOREDUMP(status) ? " (core dumped)" : "");
  else
    log_notice("worker process %d exited with code %d", static_cast<int>(w->pid), WEXITSTATUS(status));
  if (!stopping_ && (WIFSIGNALED(status) || WEXITSTATUS(status) != 0) && w->cycle) {
    // It could not give back the limit_conn counts of its requests in progress.
    if (size_t n = http::forget_conn_counts(w->cycle->http->limit_zones))
      log_notice("%zu limit_conn zone(s) cleared: worker process %d could not release its counts", n,
                 static_cast<int>(w->pid));
  }
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
  count(&StatEvents::worker_restarts);
  schedule_restart(slot);
}

}  // namespace baton::master

// Reloading the configuration: a new generation of workers on the new configuration, committed once
// they all accept, after which the old generation drains; any failure leaves the running one serving.
#include "process/master_internal.h"

#include <fcntl.h>

#include <map>

#include "core/log.h"
#include "os/unix/sd_notify.h"

namespace baton::master {

void Master::start_reload(ControlConn* waiter) {
  auto refuse = [&](const std::string& why) {
    log_error("reload refused: %s", why.c_str());
    count(&StatEvents::reloads_failed);
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
    count(&StatEvents::reloads_failed);
    sd_notify("READY=1\n");
    reply(waiter, false, e.what());
    return;
  }
  // Sockets with the same key stay the same sockets; only new addresses are opened. The same for
  // shared memory zones: a limit's state outlives the reload.
  std::map<std::string, Fd> adopt;
  for (const auto& [key, fd] : current_->handover_fds()) {
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup >= 0) adopt.emplace(key, Fd(dup));
  }
  std::string err = next->open_listeners(&adopt);
  if (err.empty()) err = next->http->open_logs();
  if (!err.empty()) {
    log_error("reload failed: %s; the running configuration stays", err.c_str());
    count(&StatEvents::reloads_failed);
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
  drain_workers(generation_, true);
  log_notice("reload done: generation %d is serving, generation %d drains", generation_, old_generation);
  if (!announced_ready_) announce_started();  // a reload asked for before the start was done
  count(&StatEvents::reloads_ok);
  sd_notify("READY=1\n");
  std::vector<ControlConn*> waiters;
  waiters.swap(reload_.waiters);
  for (ControlConn* c : waiters) {
    Answer a;
    a.conn = c;
    a.msg = result(true, "reload succeeded");
    a.msg.set("generation", static_cast<long long>(generation_));
    answer_once_drained(std::move(a));
  }
}

void Master::fail_reload(const std::string& reason) {
  if (!reload_.active) return;
  ev_timer_stop(loop_->raw(), &reload_.timer);
  reload_.active = false;
  for (auto& w : workers_) {
    if (w->generation == reload_.generation && !w->draining) {
      drain_worker(w.get(), false);  // it may have begun to accept
    }
  }
  reload_.cycle.reset();
  log_error("reload failed: %s; the running configuration stays", reason.c_str());
  count(&StatEvents::reloads_failed);
  sd_notify("READY=1\n");
  std::vector<ControlConn*> waiters;
  waiters.swap(reload_.waiters);
  for (ControlConn* c : waiters) reply(c, false, reason);
}

void Master::on_reload_timer_cb(struct ev_loop*, ev_timer* w, int) {
  auto* self = static_cast<Master*>(w->data);
  self->fail_reload("the new workers were not ready within upgrade_timeout");
}

}  // namespace baton::master

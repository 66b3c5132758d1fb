// A live upgrade, on the side of the candidate: the new binary, started by the master, takes the
// listeners, starts its workers and reports ready; then it hands its generation to the master, which
// re-executes into this binary and adopts it (master_reexec.cc). A master of an older binary does not
// adopt: then the candidate takes over the pid file and the control socket itself, as it also does
// when the master fails to adopt it.
#include "process/master.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "config.h"
#include "core/log.h"
#include "event/tls.h"
#include "os/unix/process.h"
#include "os/unix/sd_notify.h"
#include "process/master_internal.h"

namespace baton {
namespace master {

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
  if (self->handed_) {
    // The master, now running this binary, has taken up the generation: say goodbye and leave.
    if (r == 1 && ack.type == MsgType::kAck && ack.get("adopted") == "1") {
      Message bye(MsgType::kAck);
      bye.set("bye", "1");
      if (send_message(self->old_master_.get(), bye) == 0) {
        self->adopted_ = true;
        self->leaving_ = true;
        self->loop_->stop();
        return;
      }
    }
    self->not_adopted(r == 0 ? "the master closed the connection" : "the master sent something else than the adoption");
    return;
  }
  if (r == 1 && ack.type == MsgType::kAck) {
    if (ack.get("adopt") == "1") self->hand_over_generation();
    else self->take_over();  // a master of an older binary, which does not adopt
  } else {
    self->old_master_refused();
  }
}

void Master::on_old_master_timer_cb(struct ev_loop*, ev_timer* w, int) {
  auto* self = static_cast<Master*>(w->data);
  if (self->handed_) self->not_adopted("the master did not adopt it in time");
  else self->old_master_refused();
}

// The master adopts this generation: it gets a copy of every listener, every worker's channel and
// the configuration files as this process read them, then re-executes into this binary and says
// "adopted". Meanwhile the workers serve; this process reads none of their channels and reaps none
// of them (a worker that exits stays a zombie, which the master reaps once it is its child).
void Master::hand_over_generation() {
  ev_io_stop(loop_->raw(), &old_master_io_);
  ev_timer_stop(loop_->raw(), &old_master_timer_);
  int fd = old_master_.get();
  auto send = [fd](const Message& m) {
    for (;;) {
      if (send_message(fd, m) == 0) return true;
      if (errno != EAGAIN) return false;
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, kHandoverStepMs) <= 0) return false;
    }
  };
  auto dup = [](int from) { return Fd(fcntl(from, F_DUPFD_CLOEXEC, 0)); };
  bool ok = true;
  long long listeners = 0, workers = 0;
  for (const auto& [key, fd] : current_->handover_fds()) {
    if (!ok) continue;
    Message m(MsgType::kFd);
    m.set("key", key);
    m.fds.push_back(dup(fd));
    ok = m.fds[0].valid() && send(m);
    listeners++;
  }
  double now = loop_->now();
  for (auto& w : workers_) {
    if (!ok) break;
    Message m(MsgType::kWorker);
    m.set("pid", static_cast<long long>(w->pid));
    m.set("generation", static_cast<long long>(w->generation));
    m.set("slot", static_cast<long long>(w->slot));
    m.set("ready", w->ready ? "1" : "0");
    m.set("draining", w->draining ? "1" : "0");
    m.set("age_ms", static_cast<long long>((now - w->started) * 1000));
    m.fds.push_back(dup(w->channel.get()));
    ok = m.fds[0].valid() && send(m);
    workers++;
  }
  if (ok) {
    std::vector<ConfSource> files;
    files.push_back(ConfSource{current_->conf.path, current_->conf.text});
    for (const ConfSource& f : current_->conf.included) files.push_back(f);
    for (const ConfSource& f : current_->http->files_read) files.push_back(f);
    std::string bytes = encode_conf_snapshot(files);
    Fd mem(memfd_create("baton-conf", MFD_CLOEXEC));
    ok = mem && ::write(mem.get(), bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
    if (ok) {
      Message m(MsgType::kSnapshot);
      m.set("size", static_cast<long long>(bytes.size()));
      m.fds.push_back(std::move(mem));
      ok = send(m);
    }
  }
  if (ok) {
    Message done(MsgType::kAck);
    done.set("handed", "1");
    done.set("listeners", listeners);
    done.set("workers", workers);
    ok = send(done);
  }
  if (!ok) return old_master_refused();
  handed_ = true;
  ev_timer_stop(loop_->raw(), &ping_timer_);
  for (auto& w : workers_) ev_io_stop(loop_->raw(), &w->io);
  log_notice("upgrade: this generation (%d) is handed to the master: %lld listener(s), %lld worker(s)", generation_,
             listeners, workers);
  // The master re-executes and loads the configuration again; it has as long as this process had.
  double wait = std::max(kHandoverStepSeconds, seconds(current_->main.upgrade_timeout_ms));
  ev_io_set(&old_master_io_, fd, EV_READ);
  ev_io_start(loop_->raw(), &old_master_io_);
  ev_timer_set(&old_master_timer_, wait, 0.);
  ev_timer_start(loop_->raw(), &old_master_timer_);
}

// The master did not adopt this generation (its new code failed, or it is gone): rather than
// leave the workers without a master, this process carries on as the master, with its own PID.
void Master::not_adopted(const std::string& why) {
  handed_ = false;
  log_alert("upgrade: %s; this process (%d) carries on as the master", why.c_str(), static_cast<int>(getpid()));
  for (auto& w : workers_) ev_io_start(loop_->raw(), &w->io);
  ev_timer_start(loop_->raw(), &ping_timer_);
  reap();
  take_over();
  // Slots whose worker exited meanwhile get one, as after a crash.
  for (size_t i = 0; i < slots_.size(); i++) {
    bool held = false;
    for (const auto& w : workers_) held = held || (w->generation == generation_ && w->slot == static_cast<int>(i));
    if (!held && !ev_is_active(&slots_[i]->restart)) schedule_restart(i);
  }
  // What was asked of the service meanwhile (a Ctrl-C, a stop) applies to it now.
  std::vector<int> held;
  held.swap(held_signals_);
  for (int sig : held) on_signal(sig);
}

void Master::old_master_refused() {
  ev_io_stop(loop_->raw(), &old_master_io_);
  ev_timer_stop(loop_->raw(), &old_master_timer_);
  old_master_.reset();
  // The master rolled back (or is gone): this generation must not take over.
  log_alert("upgrade: the master did not accept this candidate; exiting");
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
  Message done(MsgType::kAck);
  done.set("took_over", "1");
  send_message(old_master_.get(), done);
  old_master_.reset();
  sd_notify("MAINPID=" + std::to_string(getpid()) + "\nREADY=1\n");
  log_notice("upgrade: this master (generation %d) has taken over", generation_);
  // The new binary serves, with this process as its master (the master did not re-execute).
  count(&StatEvents::upgrades_succeeded);
}

}  // namespace master

int upgraded_master_main(const Options& opts) {
  master::set_master_title(opts);
  std::string encoded = getenv("BATON_CONTROL_SOCKET") ? getenv("BATON_CONTROL_SOCKET") : "";
  unsetenv("BATON_UPGRADE");
  unsetenv("BATON_CONTROL_SOCKET");
  // The binary's descriptor, which the master let through exec for a script's interpreter.
  if (const char* e = getenv("BATON_EXE_FD")) {
    int fd = atoi(e);
    if (fd > STDERR_FILENO) ::close(fd);
    unsetenv("BATON_EXE_FD");
  }
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
    return fail("the master did not accept the registration");
  int generation = static_cast<int>(ack.get_int("generation", 0)) + 1;
  // The old master's ticket secret: tickets its workers sealed open here too.
  if (!tls_set_ticket_secret_hex(ack.get("ticket_secret"))) {
    log_notice("upgrade: the master handed over no session ticket secret, making a new one");
    tls_make_ticket_secret();
  }

  // The listeners, on a connection of their own.
  std::map<std::string, Fd> adopt;
  {
    Fd fdc = connect_control(old_addr, &err);
    if (!fdc) return fail(err);
    Message start;
    if (send_message(fdc.get(), Message(MsgType::kFdRequest)) < 0 ||
        recv_message_timeout(fdc.get(), &start, master::kHandoverStepMs) != 1 || start.type != MsgType::kFdTransferStart)
      return fail("the master did not start the listener transfer");
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
  size_t zones = 0;
  for (const auto& [key, fd] : adopt) zones += is_zone_key(key);
  if (zones) log_notice("upgrade: received %zu listener(s) and %zu shared memory zone(s) from the master", adopt.size() - zones, zones);
  else log_notice("upgrade: received %zu listener(s) from the master", adopt.size());

  err = cycle->open_listeners(&adopt);
  if (err.empty()) err = cycle->http->open_logs();
  if (!err.empty()) return fail(err);
  size_t unused = 0;
  for (const auto& [key, fd] : adopt) unused += !is_zone_key(key);
  if (unused) log_notice("upgrade: %zu listener(s) no longer configured are left to the master", unused);
  adopt.clear();
  raise_nofile_limit(static_cast<rlim_t>(cycle->main.worker_connections) * 2 + 128 + master::kHandOverDescriptors);
  log_notice("baton/%s started by an upgrade, candidate process %d, generation %d", BATON_VERSION,
             static_cast<int>(getpid()), generation);
  std::shared_ptr<Cycle> shared(std::move(cycle));
  master::Master master(std::move(shared), generation);
  return master.run(std::move(conn));
}

}  // namespace baton

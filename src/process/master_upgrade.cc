// A live upgrade, on the side of the master: starting the new binary as a candidate, handing it the
// listeners, and either adopting its generation once it serves (master_reexec.cc) or rolling back to
// serving alone.
#include "process/master_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "os/unix/process.h"
#include "os/unix/sd_notify.h"

namespace baton::master {

void Master::start_upgrade(ControlConn* waiter) {
  auto refuse = [&](const std::string& why) {
    log_error("upgrade refused: %s", why.c_str());
    count(&StatEvents::upgrades_failed);
    reply(waiter, false, why);
  };
  if (upgrade_.active) return refuse("an upgrade is already in progress");
  if (replaced_) return refuse("this master is already being replaced");
  if (stopping_) return refuse("the master is stopping");
  if (reload_.active) return refuse("a reload is in progress");

  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC | O_NONBLOCK) < 0) return refuse(std::string("pipe2() failed (") + strerror(errno) + ")");
  const std::string& exe = current_->opts.exe_path;
  // The file is opened once: the candidate runs it, and once the candidate has proven itself this
  // master re-executes into the same file, whatever has been put at the path in between. (A file
  // that cannot be opened is left to exec, which says why.)
  Fd exe_fd(::open(exe.c_str(), O_PATH | O_CLOEXEC));
  sd_notify(sd_reloading_state());
  std::string env_sock = "BATON_CONTROL_SOCKET=" + base64_encode(control_addr_.text);
  std::string env_exe = "BATON_EXE_FD=" + std::to_string(exe_fd ? exe_fd.get() : -1);
  std::vector<std::string> args = saved_argv();
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) {
    ::close(errpipe[0]);
    ::close(errpipe[1]);
    sd_notify("READY=1\n");
    return refuse(std::string("fork() failed (") + strerror(errno) + ")");
  }
  if (pid == 0) {
    // Nothing of the old master crosses exec: the listeners come over the control socket. (The
    // binary's descriptor does, for a script, whose interpreter opens it by /dev/fd.)
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    if (starter_) detach_stderr();  // (an upgrade before the start is done)
    reset_signals();
    putenv(const_cast<char*>("BATON_UPGRADE=1"));
    putenv(env_sock.data());
    putenv(env_exe.data());
    if (exe_fd && fcntl(exe_fd.get(), F_SETFD, 0) == 0) execveat(exe_fd.get(), "", argv.data(), environ, AT_EMPTY_PATH);
    else execv(exe.c_str(), argv.data());
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
  upgrade_.exe = std::move(exe_fd);
  upgrade_.exited = false;
  upgrade_.handed.clear();
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
  log_notice("upgrade: started candidate %d from %s", static_cast<int>(upgrade_.pid), exe.c_str());
}

// Step 1: on the connection the candidate asked on, announce how many listeners follow.
void Master::start_handover(ControlConn* c) {
  std::vector<Message> listeners;
  // The listening sockets, and the shared memory zones, whose state the new binary takes over.
  for (const auto& [key, fd] : current_->handover_fds()) {
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      rollback("cannot hand over " + key + ": fcntl(F_DUPFD_CLOEXEC) failed (" + strerror(errno) + ")");
      return;
    }
    Message m(MsgType::kFd);
    m.set("key", key);
    m.fds.emplace_back(dup);
    listeners.push_back(std::move(m));
  }
  Message start(MsgType::kFdTransferStart);
  start.set("count", static_cast<long long>(listeners.size()));
  start.set("generation", static_cast<long long>(generation_));
  if (send_message(c->fd.get(), start) < 0) {
    rollback(std::string("cannot announce the listeners to the candidate (") + strerror(errno) + ")");
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

// Steps 2 and 4: the candidate acknowledges the announcement, then confirms what it received.
void Master::on_handover_message(ControlConn*, const Message& m) {
  if (m.type != MsgType::kAck || handover_.step == Handover::Step::kSending) {
    rollback(std::string("the candidate sent an unexpected ") + msg_type_name(m.type) + " during the listener transfer");
    return;
  }
  if (handover_.step == Handover::Step::kAwaitStartAck) {
    next_handover_step(Handover::Step::kSending);
    send_handover_listeners();
    return;
  }
  long long got = m.get_int("count", -1);
  if (got != static_cast<long long>(handover_.sent)) {
    rollback("the candidate confirmed " + std::to_string(got) + " of " + std::to_string(handover_.sent) + " listener(s)");
    return;
  }
  log_notice("upgrade: %zu listener(s) handed to the candidate", handover_.sent);
  ControlConn* c = handover_.conn;
  reset_handover();
  handover_.step = Handover::Step::kDone;
  close_conn(c);
}

// Step 3: one descriptor per message with its key, as fast as the candidate's queue takes them.
void Master::send_handover_listeners() {
  ControlConn* c = handover_.conn;
  if (!c || handover_.step != Handover::Step::kSending) return;
  while (handover_.sent < handover_.listeners.size()) {
    Message& m = handover_.listeners[handover_.sent];
    if (send_message(c->fd.get(), m) < 0) {
      if (errno == EAGAIN) {
        // The queue is full: go on when the candidate has read some of it.
        ev_io_stop(loop_->raw(), &c->io);
        ev_io_set(&c->io, c->fd.get(), EV_READ | EV_WRITE);
        ev_io_start(loop_->raw(), &c->io);
        return;
      }
      rollback("sending " + m.get("key") + " to the candidate failed (" + strerror(errno) + ")");
      return;
    }
    m.fds.clear();  // the candidate has its own copy now
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
  self->rollback(std::string("the candidate did not ") + what + " within " + std::to_string(kHandoverStepMs) + "ms");
}

// A candidate that took over by itself, as the binaries before the stable PID did (or as a candidate
// does when this master could not adopt its generation): it is the master now, with its own PID.
void Master::upgrade_succeeded(ControlConn*, const Message&) {
  ev_timer_stop(loop_->raw(), &upgrade_.timer);
  pid_t new_pid = upgrade_.pid;
  long long new_generation = upgrade_.new_generation;
  upgrade_.active = false;
  upgrade_.ready = false;
  upgrade_.pid = 0;
  upgrade_.exe.reset();
  upgrade_.handed.clear();
  replaced_ = true;
  log_notice("upgrade: candidate %d (generation %lld) is serving; draining the old workers", static_cast<int>(new_pid),
             new_generation);
  Message extra;
  extra.set("pid", static_cast<long long>(new_pid));
  extra.set("generation", new_generation);
  std::vector<ControlConn*> waiters;
  waiters.swap(upgrade_.waiters);
  for (ControlConn* w : waiters) reply(w, true, "upgrade succeeded", &extra);
  for (auto& s : slots_) ev_timer_stop(loop_->raw(), &s->restart);
  // New -s clients find the candidate from now on.
  ev_io_stop(loop_->raw(), &control_io_);
  control_fd_.reset();
  drain_workers(0);
  maybe_exit();
}

void Master::rollback(const std::string& reason) {
  if (!upgrade_.active) return;
  // A candidate of an older binary, told it may go ahead, takes the control socket's path.
  bool took_over = upgrade_.ready && !control_path_is_ours();
  upgrade_.active = false;
  upgrade_.ready = false;
  ev_timer_stop(loop_->raw(), &upgrade_.timer);
  ev_io_stop(loop_->raw(), &upgrade_.exec_io);
  upgrade_.exec_result.reset();
  upgrade_.exe.reset();
  // Copies of the candidate's workers' channels: once the candidate is gone, they must see the end.
  upgrade_.handed.clear();
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
  // A candidate of an older binary may have put its control socket at the path; this one takes it back.
  if (took_over && control_addr_.text[0] != '@') {
    ev_io_stop(loop_->raw(), &control_io_);
    std::string err = open_control_socket();
    if (!err.empty()) log_alert("%s", err.c_str());
  }
  sd_notify("READY=1\n");
  log_error("upgrade failed: %s; rolled back, the master keeps serving with its workers", reason.c_str());
  count(&StatEvents::upgrades_rolled_back);
  std::vector<ControlConn*> waiters;
  waiters.swap(upgrade_.waiters);
  for (ControlConn* w : waiters) reply(w, false, reason);
  maybe_exit();
}

void Master::on_upgrade_timer_cb(struct ev_loop*, ev_timer* w, int) {
  auto* self = static_cast<Master*>(w->data);
  self->rollback("the candidate was not ready within upgrade_timeout (" +
                 std::to_string(self->current_->main.upgrade_timeout_ms) + "ms)");
}

}  // namespace baton::master

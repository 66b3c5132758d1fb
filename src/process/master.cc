#include "process/master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "core/log.h"
#include "event/tls.h"
#include "os/unix/process.h"
#include "process/master_internal.h"

namespace baton {
namespace master {

namespace {
constexpr std::initializer_list<int> kMasterSignals = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD};
}  // namespace

void detach_stderr() {
  if (ErrorLog::path() != "stderr") ::dup2(ErrorLog::fd(), STDERR_FILENO);
}

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

// ---- the loop ----------------------------------------------------------------------------------

int Master::run(Fd upgrade_conn, ResumeState* resume_state) {
  EventLoop loop;
  loop_ = &loop;
  old_master_ = std::move(upgrade_conn);
  Fd sfd = open_signalfd(kMasterSignals);
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
  ev_init(&answers_.timer, on_answers_timer_cb);
  answers_.timer.data = this;
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

  if (resume_state) {
    resume(*resume_state);
  } else {
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
  }
  // A resumed master may have nothing left to do already (its candidate took over, with no old
  // worker left to see out): a break asked for before the loop runs would be lost.
  if (!leaving_) loop.run();

  for (auto& s : slots_) ev_timer_stop(loop.raw(), &s->restart);
  ev_timer_stop(loop.raw(), &kill_timer_);
  ev_timer_stop(loop.raw(), &ping_timer_);
  ev_timer_stop(loop.raw(), &status_.timer);
  ev_timer_stop(loop.raw(), &reload_.timer);
  ev_timer_stop(loop.raw(), &answers_.timer);
  ev_timer_stop(loop.raw(), &upgrade_.timer);
  ev_io_stop(loop.raw(), &upgrade_.exec_io);
  ev_timer_stop(loop.raw(), &handover_.timer);
  ev_io_stop(loop.raw(), &old_master_io_);
  ev_timer_stop(loop.raw(), &old_master_timer_);
  ev_io_stop(loop.raw(), &sig_watcher);
  if (control_fd_) ev_io_stop(loop.raw(), &control_io_);
  for (ControlConn* c : std::vector<ControlConn*>(conns_.begin(), conns_.end())) close_conn(c);
  std::string pid_path = current_->pid_path();
  if (adopted_) {
    // A candidate whose generation the master adopted: the workers, the pid file, the control
    // socket and the listeners are the master's; this process only leaves.
    log_notice("upgrade: the master adopted this generation; the candidate process %d leaves", static_cast<int>(getpid()));
  } else if (replaced_) {
    // Another master process owns the pid file, the control socket and the unix listeners now.
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

void hold_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : kMasterSignals) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);
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
  // Session tickets of every generation this master starts are sealed with keys from this secret.
  // Made before the listeners open: the first use of OpenSSL's random generator takes a moment, and
  // a signal that comes once clients can connect must find the master ready for it.
  tls_make_ticket_secret();
  if (another_master_running(*c)) {
    log_emerg("another master process answers on the control socket %s",
              resolve_path(c->opts.prefix, c->main.control_socket).c_str());
    return 1;
  }
  master::hold_signals();
  // The workers of an upgrade's candidate become this master's children when the candidate leaves
  // (master_reexec.cc). The setting survives exec, so every later binary of the master has it too.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
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
  raise_nofile_limit(static_cast<rlim_t>(c->main.worker_connections) * 2 + 128 + master::kHandOverDescriptors);
  // A daemon's starter waits until the workers serve (or the start fails), so that its exit status
  // is the start's outcome and what stops the start is said on its stderr.
  Fd starter;
  if (c->main.daemon) {
    err = daemonize(&starter, static_cast<int>(c->main.upgrade_timeout_ms));
    if (!err.empty()) {
      log_emerg("%s", err.c_str());
      return 1;
    }
    ErrorLog::echo_emerg_to_stderr(true);  // the daemon's own pid, until it is started
  }
  if (!master::write_pid_file(c->pid_path())) return 1;
  log_notice("baton/%s started, master process %d, %d worker(s)", BATON_VERSION, static_cast<int>(getpid()),
             c->main.worker_processes);
  std::shared_ptr<Cycle> shared(std::move(cycle));
  master::Master master(std::move(shared), 1);
  master.set_starter(std::move(starter));
  return master.run();
}

}  // namespace baton

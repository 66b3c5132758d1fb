#include "core/master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <deque>

#include "config.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/worker.h"
#include "event/loop.h"
#include "os/unix/process.h"

namespace baton {

namespace {

// A worker that ran this long counts as stable: its slot's backoff starts over.
constexpr double kStableSeconds = 60.0;
// How long TERM waits for workers before it kills them.
constexpr double kFastStopSeconds = 5.0;

struct WorkerSlot {
  pid_t pid = 0;
  double started = 0;
  double backoff = 0;  // seconds before the next restart
  ev_timer restart;
};

class Master {
 public:
  explicit Master(std::unique_ptr<Cycle> cycle) : cycle_(std::move(cycle)) {}

  int run() {
    EventLoop loop;
    loop_ = &loop;
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

    set_proc_title(master_title());
    slots_.resize(static_cast<size_t>(cycle_->main.worker_processes));
    for (size_t i = 0; i < slots_.size(); i++) {
      ev_init(&slots_[i].restart, on_restart_cb);
      slots_[i].restart.data = this;
      slots_[i].backoff = ms(cycle_->main.restart_initial_backoff_ms);
      spawn(i);
    }
    loop.run();

    for (auto& s : slots_) ev_timer_stop(loop.raw(), &s.restart);
    ev_timer_stop(loop.raw(), &kill_timer_);
    ev_io_stop(loop.raw(), &sig_watcher);
    ::unlink(cycle_->pid_path().c_str());
    for (auto& ls : cycle_->listening) {
      if (ls->addr.family() == AF_UNIX) {
        auto* un = reinterpret_cast<const sockaddr_un*>(&ls->addr.storage);
        if (un->sun_path[0]) ::unlink(un->sun_path);
      }
    }
    log_notice("exit");
    return exit_code_;
  }

 private:
  static double ms(int64_t v) { return static_cast<double>(v) / 1000.0; }

  std::string master_title() const {
    std::string t = "baton: master process";
    for (const std::string& a : saved_argv()) {
      t.push_back(' ');
      t.append(a == saved_argv()[0] ? cycle_->opts.exe_path : a);
    }
    return t;
  }

  void spawn(size_t slot) {
    pid_t pid = fork();
    if (pid < 0) {
      log_alert("fork() failed (%s)", strerror(errno));
      schedule_restart(slot);
      return;
    }
    if (pid == 0) {
      ::close(sfd_);
      // The master's loop belongs to the master (its epoll set is shared after fork): the child lets
      // its copy go without touching it and builds its own.
      ev_loop_destroy(loop_->raw());
      worker_process_main(cycle_.get(), static_cast<int>(slot));
    }
    slots_[slot].pid = pid;
    slots_[slot].started = loop_->now();
    log_notice("start worker process %d", static_cast<int>(pid));
  }

  void schedule_restart(size_t slot) {
    WorkerSlot& s = slots_[slot];
    ev_timer_set(&s.restart, s.backoff, 0.);
    ev_timer_start(loop_->raw(), &s.restart);
    s.backoff = std::min(s.backoff * 2, ms(cycle_->main.restart_max_backoff_ms));
  }

  static void on_restart_cb(struct ev_loop*, ev_timer* w, int) {
    auto* self = static_cast<Master*>(w->data);
    for (size_t i = 0; i < self->slots_.size(); i++) {
      if (&self->slots_[i].restart == w && !self->stopping_) self->spawn(i);
    }
  }

  static void on_signal_cb(struct ev_loop*, ev_io* w, int) { static_cast<Master*>(w->data)->on_signals(); }

  void on_signals() {
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
          log_notice("signal %d (HUP) received: reloading is not available in this build yet", sig);
          break;
        case SIGUSR2:
          log_notice("signal %d (USR2) received: live upgrade is not available in this build yet", sig);
          break;
        case SIGWINCH:
          log_notice("signal %d (WINCH) received: ignored in this build", sig);
          break;
      }
    }
  }

  void stop(int how) {
    if (stopping_ && how == SIGQUIT) return;
    stopping_ = true;
    for (auto& s : slots_) ev_timer_stop(loop_->raw(), &s.restart);
    if (how == SIGQUIT) {
      // Refuse new connections now; workers let their copies go and finish what they have.
      for (auto& ls : cycle_->listening) ls->fd.reset();
    }
    signal_workers(how);
    double wait = how == SIGQUIT ? ms(cycle_->main.quit_timeout_ms) + 1.0 : kFastStopSeconds;
    ev_timer_stop(loop_->raw(), &kill_timer_);
    ev_timer_set(&kill_timer_, wait, 0.);
    ev_timer_start(loop_->raw(), &kill_timer_);
    if (live_workers() == 0) loop_->stop();
  }

  static void on_kill_timer_cb(struct ev_loop*, ev_timer* w, int) {
    auto* self = static_cast<Master*>(w->data);
    for (auto& s : self->slots_) {
      if (s.pid > 0) {
        log_alert("worker process %d did not exit in time, killing it", static_cast<int>(s.pid));
        ::kill(s.pid, SIGKILL);
      }
    }
  }

  void signal_workers(int sig) {
    for (auto& s : slots_)
      if (s.pid > 0) ::kill(s.pid, sig);
  }

  size_t live_workers() const {
    size_t n = 0;
    for (const auto& s : slots_) n += s.pid > 0;
    return n;
  }

  void reap() {
    for (;;) {
      int status;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      size_t slot = slots_.size();
      for (size_t i = 0; i < slots_.size(); i++)
        if (slots_[i].pid == pid) slot = i;
      if (slot == slots_.size()) continue;
      WorkerSlot& s = slots_[slot];
      s.pid = 0;
      bool crashed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      if (WIFSIGNALED(status))
        log_notice("worker process %d exited on signal %d%s", static_cast<int>(pid), WTERMSIG(status),
                   WCOREDUMP(status) ? " (core dumped)" : "");
      else
        log_notice("worker process %d exited with code %d", static_cast<int>(pid), WEXITSTATUS(status));
      if (stopping_) continue;
      if (!crashed) crashed = true;  // a worker never leaves on its own while the master runs
      on_worker_crash(slot);
    }
    if (stopping_ && live_workers() == 0) loop_->stop();
  }

  void on_worker_crash(size_t slot) {
    WorkerSlot& s = slots_[slot];
    double now = loop_->now();
    if (now - s.started >= kStableSeconds) s.backoff = ms(cycle_->main.restart_initial_backoff_ms);
    while (!restarts_.empty() && now - restarts_.front() > 60.0) restarts_.pop_front();
    restarts_.push_back(now);
    if (static_cast<int>(restarts_.size()) > cycle_->main.restart_max_per_minute) {
      log_alert("workers crashed %zu times in the last minute (restart_max_per_minute = %d): giving up",
                restarts_.size(), cycle_->main.restart_max_per_minute);
      exit_code_ = 2;
      stop(SIGTERM);
      return;
    }
    log_notice("restarting worker in slot %zu in %.3fs", slot, s.backoff);
    schedule_restart(slot);
  }

  void reopen_logs() {
    std::string err = ErrorLog::reopen();
    if (!err.empty()) log_alert("%s", err.c_str());
    err = cycle_->http->open_logs();
    if (!err.empty()) log_alert("%s", err.c_str());
    chown_logs();
    signal_workers(SIGUSR1);
  }

 public:
  // Workers may run as another user and reopen the files themselves on USR1.
  void chown_logs() {
    if (geteuid() != 0) return;
    uid_t uid;
    gid_t gid;
    std::string user = cycle_->main.user.empty() ? "nobody" : cycle_->main.user;
    if (!lookup_user(user, &uid, &gid).empty()) return;
    for (auto& [path, log] : cycle_->http->access_logs)
      if (chown(path.c_str(), uid, static_cast<gid_t>(-1)) < 0) log_warn("chown(\"%s\") failed (%s)", path.c_str(), strerror(errno));
    if (ErrorLog::path() != "stderr" && chown(ErrorLog::path().c_str(), uid, static_cast<gid_t>(-1)) < 0)
      log_warn("chown(\"%s\") failed (%s)", ErrorLog::path().c_str(), strerror(errno));
  }

 private:
  std::unique_ptr<Cycle> cycle_;
  EventLoop* loop_ = nullptr;
  int sfd_ = -1;
  std::vector<WorkerSlot> slots_;
  std::deque<double> restarts_;
  ev_timer kill_timer_;
  bool stopping_ = false;
  int exit_code_ = 0;
};

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

}  // namespace

int master_process_main(std::unique_ptr<Cycle> cycle) {
  Cycle* c = cycle.get();
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
  }
  if (!write_pid_file(c->pid_path())) return 1;
  log_notice("baton/%s started, master process %d, %d worker(s)", BATON_VERSION, static_cast<int>(getpid()),
             c->main.worker_processes);
  Master master(std::move(cycle));
  master.chown_logs();
  return master.run();
}

}  // namespace baton

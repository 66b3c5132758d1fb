#include "core/worker.h"

#include <signal.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "event/connection.h"
#include "event/listener.h"
#include "event/loop.h"
#include "http/http_worker.h"
#include "os/unix/process.h"

namespace baton {

namespace {

class Worker {
 public:
  Worker(Cycle* cycle, int slot) : cycle_(cycle), slot_(slot) {}

  int run() {
    Fd sfd = open_signalfd({SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGHUP, SIGUSR2, SIGWINCH});
    signal(SIGPIPE, SIG_IGN);
    EventLoop loop;
    loop_ = &loop;
    ConnectionList conns;
    conns_ = &conns;
    http::HttpWorker http(&loop, &conns, cycle_->http.get());
    http_ = &http;
    Acceptor acceptor(&loop, &conns, static_cast<size_t>(cycle_->main.worker_connections),
                      http::HttpWorker::on_accept, &http);
    acceptor_ = &acceptor;
    conns.on_change = [](void* arg) { static_cast<Worker*>(arg)->on_connections_changed(); };
    conns.on_change_arg = this;
    for (auto& ls : cycle_->listening) acceptor.add(ls.get());

    ev_io sig_watcher;
    ev_io_init(&sig_watcher, on_signal_cb, sfd.get(), EV_READ);
    sig_watcher.data = this;
    ev_io_start(loop.raw(), &sig_watcher);
    sfd_ = sfd.get();

    ev_init(&quit_timer_, on_quit_timeout_cb);
    quit_timer_.data = this;

    loop.run();

    ev_timer_stop(loop.raw(), &quit_timer_);
    ev_io_stop(loop.raw(), &sig_watcher);
    conns.on_change = nullptr;
    conns.close_all();
    return 0;
  }

 private:
  static void on_signal_cb(struct ev_loop*, ev_io* w, int) { static_cast<Worker*>(w->data)->on_signal(); }
  static void on_quit_timeout_cb(struct ev_loop*, ev_timer* w, int) {
    auto* self = static_cast<Worker*>(w->data);
    log_notice("quit_timeout: closing %zu connection(s) still open", self->conns_->size());
    self->conns_->close_all();
    self->loop_->stop();
  }

  void on_signal() {
    pid_t sender;
    while (int sig = read_signal(sfd_, &sender)) {
      switch (sig) {
        case SIGTERM:
        case SIGINT:
          loop_->stop();
          return;
        case SIGQUIT:
          quit();
          break;
        case SIGUSR1:
          reopen_logs();
          break;
        default:
          break;  // HUP, USR2 and WINCH are for the master
      }
    }
  }

  void quit() {
    if (quitting_) return;
    quitting_ = true;
    set_proc_title("baton: worker process is shutting down");
    acceptor_->stop();
    // A shutdown (not a hand-over): new connections must be refused, so every process lets the
    // listening sockets go.
    for (auto& ls : cycle_->listening) ls->fd.reset();
    http_->drain();
    if (conns_->size() == 0) {
      loop_->stop();
      return;
    }
    double t = static_cast<double>(cycle_->main.quit_timeout_ms) / 1000.0;
    ev_timer_set(&quit_timer_, t, 0.);
    ev_timer_start(loop_->raw(), &quit_timer_);
  }

  void on_connections_changed() {
    if (quitting_) {
      if (conns_->size() == 0) loop_->stop();
      return;
    }
    acceptor_->on_connections_changed();
  }

  void reopen_logs() {
    std::string err = ErrorLog::reopen();
    if (!err.empty()) log_alert("%s", err.c_str());
    err = cycle_->http->open_logs();
    if (!err.empty()) log_alert("%s", err.c_str());
  }

  Cycle* cycle_;
  int slot_;
  EventLoop* loop_ = nullptr;
  ConnectionList* conns_ = nullptr;
  http::HttpWorker* http_ = nullptr;
  Acceptor* acceptor_ = nullptr;
  ev_timer quit_timer_;
  int sfd_ = -1;
  bool quitting_ = false;
};

}  // namespace

void worker_process_main(Cycle* cycle, int slot) {
  reset_signals();
  set_proc_title("baton: worker process");
  if (geteuid() == 0) {
    std::string user = cycle->main.user.empty() ? "nobody" : cycle->main.user;
    std::string err = switch_user(user);
    if (!err.empty()) {
      log_emerg("%s", err.c_str());
      _exit(2);
    }
  }
  Clock::update();
  int rc = Worker(cycle, slot).run();
  cycle->http->flush_logs();
  _exit(rc);
}

}  // namespace baton

#include "process/worker.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>

#include "core/clock.h"
#include "core/log.h"
#include "event/connection.h"
#include "event/listener.h"
#include "event/loop.h"
#include "http/http_worker.h"
#include "os/unix/control.h"
#include "os/unix/process.h"

namespace baton {

namespace {

class Worker {
 public:
  Worker(Cycle* cycle, Fd channel) : cycle_(cycle), channel_(std::move(channel)) {}

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

    ev_io chan_watcher;
    ev_io_init(&chan_watcher, on_channel_cb, channel_.get(), EV_READ);
    chan_watcher.data = this;
    ev_io_start(loop.raw(), &chan_watcher);
    chan_watcher_ = &chan_watcher;

    ev_init(&quit_timer_, on_quit_timeout_cb);
    quit_timer_.data = this;

    // The accept watchers are armed: from here on this worker takes connections.
    Message ready(MsgType::kReady);
    ready.set("pid", static_cast<long long>(getpid()));
    send_message(channel_.get(), ready);

    loop.run();

    if (http.handed_out > 0)
      log_notice("handed %llu connection(s) to the new generation within %.0f ms of the drain",
                 static_cast<unsigned long long>(http.handed_out), (http.last_handed - http.drain_started) * 1000);
    ev_timer_stop(loop.raw(), &quit_timer_);
    ev_io_stop(loop.raw(), &sig_watcher);
    ev_io_stop(loop.raw(), &chan_watcher);
    chan_watcher_ = nullptr;
    if (!outbox_.empty())
      log_info("%zu message(s) to the master were not sent before the worker exited", outbox_.size());
    conns.on_change = nullptr;
    conns.close_all();
    return 0;
  }

 private:
  static void on_signal_cb(struct ev_loop*, ev_io* w, int) { static_cast<Worker*>(w->data)->on_signal(); }
  static void on_channel_cb(struct ev_loop*, ev_io* w, int revents) {
    auto* self = static_cast<Worker*>(w->data);
    if (revents & EV_WRITE) self->flush_outbox();
    if (revents & EV_READ) self->on_channel(w);
  }
  static void on_quit_timeout_cb(struct ev_loop*, ev_timer* w, int) {
    auto* self = static_cast<Worker*>(w->data);
    log_notice("quit_timeout: closing %zu connection(s) still open", self->conns_->size());
    self->conns_->close_all();
    self->loop_->stop();
  }

  void on_signal() {
    while (int sig = read_signal(sfd_)) {
      switch (sig) {
        case SIGTERM:
        case SIGINT:
          loop_->stop();
          return;
        case SIGQUIT:
          // A shutdown, not a hand-over: new connections must be refused, so every process lets
          // the listening sockets go.
          stop_gracefully(true);
          break;
        case SIGUSR1:
          reopen_logs();
          break;
        default:
          break;  // HUP, USR2 and WINCH are for the master
      }
    }
  }

  void on_channel(ev_io* w) {
    for (;;) {
      Message m;
      int r = recv_message(channel_.get(), &m);
      if (r < 0 && errno == EAGAIN) return;
      if (r < 0 && errno == EPROTO) {
        // One message that could not be taken whole (a handed-over socket this worker had no room
        // for): it is dropped, with what it carried; the channel goes on.
        log_info("a message from the master was dropped (%s)", strerror(errno));
        continue;
      }
      if (r <= 0) {
        // The master is gone (killed, or a new master that was rolled back): finish what is in
        // flight and leave; the sockets remain with whoever else holds them.
        ev_io_stop(loop_->raw(), w);
        chan_watcher_ = nullptr;
        outbox_.clear();
        log_notice("master process gone, worker exits after its requests");
        stop_gracefully(false);
        return;
      }
      switch (m.type) {
        case MsgType::kShutdown:
          if (m.get("mode") == "fast") loop_->stop();
          else stop_gracefully(false, m.get("handover") == "1", m.get("tunnels") == "1");
          break;
        case MsgType::kConnection: {
          // A connection of the old generation, handed to this worker by the master.
          http::HandedConnection hc;
          std::string why;
          // (A worker that began to drain meanwhile still takes it, and drains it with the rest.)
          if (!http::decode_handover(std::move(m), &hc, &why)) {
            log_info("%s", why.c_str());  // a client that reset meanwhile is "not connected"
          } else if (std::string err = http_->adopt(std::move(hc), cycle_->listening); !err.empty()) {
            log_info("a handed-over connection is closed: %s", err.c_str());
          }
          break;
        }
        case MsgType::kStatus: {
          Message reply(MsgType::kResult);
          reply.set("pid", static_cast<long long>(getpid()));
          reply.set("connections", static_cast<long long>(conns_->size()));
          reply.set("received", static_cast<long long>(http_->handed_in));
          reply.set("state", quitting_ ? "draining" : "active");
          send_queued(std::move(reply));
          break;
        }
        default:
          break;
      }
    }
  }

  // Stops accepting at once, lets the requests in flight finish (idle connections close, or with
  // hand_over go to the new generation through the master), and exits when the last connection is
  // gone or at quit_timeout.
  // tunnels: the master's generation takes tunnels too (a master of an older binary does not say so).
  void stop_gracefully(bool close_listeners, bool hand_over = false, bool tunnels = false) {
    if (!quitting_) {
      quitting_ = true;
      set_proc_title(close_listeners ? "baton: worker process is shutting down" : "baton: worker process (draining)");
      acceptor_->stop();
      if (hand_over) http_->drain(send_connection, this, tunnels);
    }
    // A drain without hand-over (a stop after a reload, say) ends any hand-over begun before.
    if (!hand_over) http_->drain();
    if (quitting_ && !quit_timer_armed_) {
      quit_timer_armed_ = true;
      double t = static_cast<double>(cycle_->main.quit_timeout_ms) / 1000.0;
      ev_timer_set(&quit_timer_, t, 0.);
      ev_timer_start(loop_->raw(), &quit_timer_);
    }
    if (close_listeners)
      for (auto& ls : cycle_->listening) ls->fd.reset();
    stop_if_done();
  }

  // Draining: the worker leaves once its last connection is gone and every connection it handed
  // over has left through the channel.
  void stop_if_done() {
    if (conns_->size() == 0 && outbox_.empty()) loop_->stop();
  }

  // Hands a connection to the master, which passes it to a worker of the new generation. What the
  // channel does not take at once waits in the outbox, in order.
  static bool send_connection(void* arg, http::HandedConnection&& c) {
    auto* self = static_cast<Worker*>(arg);
    Message m;
    std::string why;
    if (!self->chan_watcher_ || !http::encode_handover(std::move(c), &m, &why)) return false;
    return self->send_queued(std::move(m));
  }

  bool send_queued(Message&& m) {
    if (!chan_watcher_) return false;
    if (outbox_.send(channel_.get(), std::move(m)) < 0) return false;
    watch_channel();
    return true;
  }

  void flush_outbox() {
    size_t before = outbox_.size();
    if (outbox_.flush(channel_.get()) < 0)
      log_info("%zu message(s) to the master were dropped (%s)", before, strerror(errno));
    // A connection is handed over once it has left through the channel.
    if (outbox_.empty() && http_->handed_out > 0) http_->last_handed = loop_->now();
    watch_channel();
    if (quitting_) stop_if_done();
  }

  // The channel is watched for room while the outbox holds anything.
  void watch_channel() {
    if (!chan_watcher_) return;
    int want = EV_READ | (outbox_.empty() ? 0 : EV_WRITE);
    if ((chan_watcher_->events & (EV_READ | EV_WRITE)) == want) return;
    ev_io_stop(loop_->raw(), chan_watcher_);
    ev_io_modify(chan_watcher_, want);
    ev_io_start(loop_->raw(), chan_watcher_);
  }

  void on_connections_changed() {
    if (quitting_) {
      stop_if_done();
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
  Fd channel_;
  ev_io* chan_watcher_ = nullptr;  // null once the master is gone
  Outbox outbox_;
  EventLoop* loop_ = nullptr;
  ConnectionList* conns_ = nullptr;
  http::HttpWorker* http_ = nullptr;
  Acceptor* acceptor_ = nullptr;
  ev_timer quit_timer_;
  int sfd_ = -1;
  bool quitting_ = false;
  bool quit_timer_armed_ = false;
};

// A forked worker inherits every descriptor of the master: the master's loop, the control socket,
// other workers' channels, the listeners of other generations. Keeping any of them would hold a
// removed port open or hide a channel's end from its owner, so everything not on the list goes.
void close_inherited(const std::vector<int>& keep) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return;
  int self = dirfd(d);
  std::vector<int> close_list;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd <= STDERR_FILENO || fd == self) continue;
    if (std::find(keep.begin(), keep.end(), fd) != keep.end()) continue;
    close_list.push_back(fd);
  }
  closedir(d);
  for (int fd : close_list) ::close(fd);
}

}  // namespace

void worker_process_main(Cycle* cycle, Fd channel) {
  set_proc_title("baton: worker process");
  std::vector<int> keep = cycle->own_descriptors();
  keep.push_back(channel.get());
  keep.push_back(ErrorLog::fd());
  close_inherited(keep);
  reset_signals();
  if (geteuid() == 0) {
    std::string user = cycle->main.user.empty() ? "nobody" : cycle->main.user;
    std::string err = switch_user(user);
    if (!err.empty()) {
      log_emerg("%s", err.c_str());
      _exit(2);
    }
  }
  Clock::update();
  int rc = Worker(cycle, std::move(channel)).run();
  cycle->http->flush_logs();
  _exit(rc);
}

}  // namespace baton

// The inside of the master process: its constants, the records it keeps of workers, restart slots
// and control connections, and the Master class, shared by the files that make up the master:
// master.cc (the loop and the entry points), master_workers.cc (forking and supervising workers),
// master_signals.cc (signals and stopping), master_control.cc (the control socket and status),
// master_reload.cc, master_upgrade.cc (a live upgrade, as the old master) and master_takeover.cc
// (as the new one). Nothing outside the master includes it.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "event/loop.h"
#include "os/unix/control.h"
#include "os/unix/fd.h"
#include "process/cycle.h"

namespace baton::master {

// A worker that ran this long counts as stable: its slot's backoff starts over.
constexpr double kStableSeconds = 60.0;
// How long TERM waits for workers before it kills them.
constexpr double kFastStopSeconds = 5.0;
// The master pings every worker this often (a status request, which the worker answers with its
// counts), and shows a worker that leaves a ping unanswered this long as not responding.
constexpr double kPingIntervalSeconds = 1.0;
constexpr double kPingTimeoutSeconds = 1.0;
// How long `-s reload` waits, once the new workers are ready, for the old ones to say they no
// longer accept (a worker reads its drain within a loop iteration; one that cannot is stopped or
// stuck, and is not waited for longer).
constexpr double kStopAcceptingSeconds = 1.0;
// How long a status request waits for the workers' answers: as long as a ping may take.
constexpr double kStatusWaitSeconds = kPingTimeoutSeconds;
// Each step of the listener hand-over between two masters, which are both alive and local: an
// answer that takes longer means the other master is stuck.
constexpr int kHandoverStepMs = 5000;
constexpr double kHandoverStepSeconds = kHandoverStepMs / 1000.0;

inline double seconds(int64_t ms) { return static_cast<double>(ms) / 1000.0; }

class Master;

// Connections on their way from an old worker to a new one that the master holds at most (each with
// up to three descriptors): beyond it, the old workers' channels are not read and their hand-overs
// wait on their side. The master's descriptor limit makes room for them.
constexpr size_t kMaxQueuedHandOvers = 2048;
constexpr rlim_t kHandOverDescriptors = 3 * kMaxQueuedHandOvers + 64;

struct WorkerProc {
  Master* master = nullptr;
  pid_t pid = 0;
  int generation = 0;
  int slot = -1;  // in the current generation; -1 once draining
  std::shared_ptr<Cycle> cycle;
  Fd channel;
  ev_io io;        // reads the channel; watches it for room too while the outbox holds anything
  Outbox outbox;   // messages for it that its channel has not taken yet, in order
  bool reading_paused = false;  // its hand-overs wait in its own outbox: the master holds enough
  bool channel_closed = false;  // the worker is gone
  bool ready = false;
  bool draining = false;
  // It may still accept new connections: false once it has answered a status as draining (it
  // reads its drain before a status sent after it, and stops accepting as it reads the drain).
  bool accepting = true;
  double started = 0;
  long long connections = 0;
  long long received = 0;   // connections handed to it from an older generation (its own count)
  bool status_answered = true;
  double ping_sent = 0;     // when the oldest unanswered ping was sent; 0 when none is
  double last_answer = 0;   // when the worker last said anything
  bool silent = false;      // logged as not responding, until it answers again

  // It has left a ping unanswered for kPingTimeoutSeconds (stopped, or stuck in a long task).
  bool not_responding(double now) const { return ping_sent > 0 && now - ping_sent >= kPingTimeoutSeconds; }
};

struct Slot {
  Master* master = nullptr;
  size_t index = 0;
  double backoff = 0;
  ev_timer restart;
};

// A connection to the control socket: `baton -s`, or a new master during an upgrade.
struct ControlConn : Deletable {
  Master* master = nullptr;
  Fd fd;
  ev_io io;
  pid_t peer_pid = 0;
  bool dead = false;
};

// What the master hands to itself across the exec of an upgrade (master_reexec.cc): everything it
// supervises, with the descriptors that carry it.
struct ResumeState {
  struct Worker {
    pid_t pid = 0;
    int generation = 0;
    int slot = -1;
    bool ready = false;
    bool draining = false;
    int64_t age_ms = 0;
    bool from_candidate = false;  // the candidate's worker, not one of the master's own
    Fd channel;
  };
  int generation = 0;  // the candidate's, which becomes the master's
  std::string exe;
  std::string error_log;
  int log_level = 0;
  std::string ticket_secret;
  Fd control;
  std::string control_text;
  pid_t candidate = 0;
  Fd candidate_conn;
  std::vector<Fd> waiters;                 // `baton -s upgrade` clients waiting for the outcome
  std::map<std::string, Fd> listeners;     // the candidate's, by key
  std::vector<Worker> workers;             // the old generations' and the candidate's
  std::vector<pid_t> abandoned;
  std::vector<ConfSource> snapshot;
};

struct StatusQuery {
  std::vector<ControlConn*> waiters;
  ev_timer timer;
  bool active = false;
};

class Master {
 public:
  Master(std::shared_ptr<Cycle> cycle, int generation) : current_(std::move(cycle)), generation_(generation) {}
  // The process that started this daemon, waiting to hear that it serves (daemonize()).
  void set_starter(Fd starter) { starter_ = std::move(starter); }

  // conn: for an upgraded master, its connection to the old master, which is told "ready" once all
  // workers accept.
  // resume: for a master re-executed into the new binary of an upgrade, what it supervised.
  int run(Fd upgrade_conn = Fd(), ResumeState* resume = nullptr);

 private:
  friend struct WorkerProc;

  // --- workers
  WorkerProc* spawn(const std::shared_ptr<Cycle>& cycle, int generation, int slot);
  void make_slots();
  void schedule_restart(size_t slot);
  static void on_restart_cb(struct ev_loop*, ev_timer* w, int);
  static void on_channel_cb(struct ev_loop*, ev_io* w, int);
  void on_channel(WorkerProc* w);
  bool ping(WorkerProc* w);
  static void on_ping_timer_cb(struct ev_loop*, ev_timer* w, int);
  void on_worker_ready(WorkerProc* w);
  void reap();
  void on_worker_exit(WorkerProc* w, int status);
  void on_worker_crash(size_t slot, double started);
  // hand_over: a newer generation serves, to which the drained workers may hand their connections.
  void drain_workers(int generation_below_or_all, bool hand_over = false);
  // Tells one worker to drain, and pings it: its answer, after the drain, says it stopped accepting.
  void drain_worker(WorkerProc* w, bool hand_over);
  void pass_connection(WorkerProc* from, Message& m);
  // Watches a worker's channel for room while its outbox holds anything, and for messages unless
  // reading it is paused.
  void watch_channel(WorkerProc* w);
  size_t queued_to_workers() const;
  void send_shutdown(WorkerProc* w, const char* mode, bool hand_over = false);
  size_t live_workers() const { return workers_.size(); }
  bool generation_ready(int generation) const;
  // One more of the master's events in the status zone (reloads, upgrades, restarts).
  void count(StatCounter StatEvents::*event);

  // --- signals and stopping
  static void on_signal_cb(struct ev_loop*, ev_io* w, int) ;
  void on_signals();
  void on_signal(int sig);
  void stop(int how);
  static void on_kill_timer_cb(struct ev_loop*, ev_timer* w, int);
  void maybe_exit();
  void reopen_logs();
  void chown_logs(Cycle* c);

  // --- control socket
  std::string open_control_socket();
  void note_control_path();
  bool control_path_is_ours() const;
  static void on_control_accept_cb(struct ev_loop*, ev_io* w, int);
  static void on_control_conn_cb(struct ev_loop*, ev_io* w, int);
  void on_control_message(ControlConn* c, Message& m);
  void close_conn(ControlConn* c);
  void reply(ControlConn* c, bool ok, const std::string& text, const Message* extra = nullptr);
  // The result message reply() sends: ok, and the message or the reason.
  static Message result(bool ok, const std::string& text);
  void start_status(ControlConn* c);
  static void on_status_timer_cb(struct ev_loop*, ev_timer* w, int);
  void finish_status();
  void finish_status_if_answered();

  // --- reload
  void start_reload(ControlConn* waiter);
  // The first generation serves: the starter, systemd or the old master of an upgrade hear so.
  void announce_started();
  void commit_reload();
  // The answers of `-s reload` and `-s upgrade` that succeeded, given once no draining worker
  // accepts new connections any more (or after kStopAcceptingSeconds): from the answer on, every
  // new connection is the new generation's. To a control connection, or to a descriptor of its own
  // (a client that waited through the master's re-execution).
  struct Answer {
    ControlConn* conn = nullptr;
    Fd fd;
    Message msg;
  };
  // Gives a as soon as no draining worker accepts; send_answers gives what waits then (force: now).
  void answer_once_drained(Answer a);
  void send_answers(bool force = false);
  static void on_answers_timer_cb(struct ev_loop*, ev_timer* w, int);
  void fail_reload(const std::string& reason);
  static void on_reload_timer_cb(struct ev_loop*, ev_timer* w, int);

  // --- upgrade (this master is the old one)
  void start_upgrade(ControlConn* waiter);
  static void on_exec_result_cb(struct ev_loop*, ev_io* w, int);
  void on_exec_result();
  void start_handover(ControlConn* c);
  void on_handover_message(ControlConn* c, const Message& m);
  void send_handover_listeners();
  void reset_handover();
  static void on_handover_timer_cb(struct ev_loop*, ev_timer* w, int);
  void upgrade_succeeded(ControlConn* c, const Message& m);
  void commit_upgrade(ControlConn* c, const Message& m);
  void resume(ResumeState& st);
  bool confirm_adoption(ResumeState& st);
  void rollback(const std::string& reason);
  static void on_upgrade_timer_cb(struct ev_loop*, ev_timer* w, int);

  // --- upgrade (this master is the new one)
  void tell_old_master_ready();
  static void on_old_master_cb(struct ev_loop*, ev_io* w, int);
  static void on_old_master_timer_cb(struct ev_loop*, ev_timer* w, int);
  void take_over();
  void old_master_refused();
  void hand_over_generation();
  void not_adopted(const std::string& why);

  std::shared_ptr<Cycle> current_;
  int generation_;
  EventLoop* loop_ = nullptr;
  int sfd_ = -1;
  std::list<std::unique_ptr<WorkerProc>> workers_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::deque<double> restarts_;
  ev_timer kill_timer_;
  ev_timer ping_timer_;
  bool stopping_ = false;
  bool winched_ = false;      // WINCH: no workers until the next reload
  bool replaced_ = false;     // a new master took over: drain and leave its files alone
  bool announced_ready_ = false;
  // Until the first generation is ready, a daemon's starter waits on it, and stderr is still the
  // starter's (what stops the start is said there).
  Fd starter_;
  bool handed_ = false;       // as a candidate: the generation is handed to the master, until it adopts it
  bool adopted_ = false;      // ... and it has: this process leaves, its workers stay
  bool leaving_ = false;      // the loop was told to stop
  std::vector<int> held_signals_;  // received while handed_
  size_t next_receiver_ = 0;       // round robin over the current generation for handed connections
  int exit_code_ = 0;

  Fd control_fd_;
  ControlAddress control_addr_;
  ino_t control_ino_ = 0;
  ev_io control_io_;
  std::list<ControlConn*> conns_;
  StatusQuery status_;

  struct Reload {
    bool active = false;
    std::shared_ptr<Cycle> cycle;
    int generation = 0;
    std::vector<ControlConn*> waiters;
    ev_timer timer;
  } reload_;
  // The answers waiting for the old workers (Answer, above).
  struct Answers {
    std::vector<Answer> list;
    ev_timer timer;
  } answers_;

  struct Upgrade {
    bool active = false;
    pid_t pid = 0;
    std::string reason;  // what the new master said before failing
    std::vector<ControlConn*> waiters;
    ControlConn* registration = nullptr;
    bool exited = false;  // the candidate has exited (reaped): nothing of it is adopted any more
    Fd exe;  // the new binary, opened once: the candidate and the master's re-exec run the same file
    std::vector<Message> handed;  // what the candidate handed over: listeners, workers, its files
    bool ready = false;  // the new master reported ready and was told to take over
    long long new_generation = 0;
    ev_timer timer;
    // Until the new binary runs: the child writes execv()'s errno into it, or closes it by exec.
    Fd exec_result;
    ev_io exec_io;
  } upgrade_;
  std::vector<pid_t> abandoned_;  // new masters killed during a rollback, still to be reaped

  // The hand-over of the listeners to the new master, on the connection it asked on: a state
  // machine that the loop drives one message at a time, so that signals, worker exits and `-s`
  // requests are served while the new master takes its time. Each step has kHandoverStepMs.
  struct Handover {
    enum class Step { kIdle, kAwaitStartAck, kSending, kAwaitDoneAck, kDone };
    Step step = Step::kIdle;
    ControlConn* conn = nullptr;
    std::vector<Message> listeners;  // one message per listener, each with its own duplicate
    size_t sent = 0;
    ev_timer timer;
  } handover_;
  void next_handover_step(Handover::Step step);

  // As a new master: the connection to the old one, until the old one acknowledges "ready".
  Fd old_master_;
  ev_io old_master_io_;
  ev_timer old_master_timer_;
};

bool write_pid_file(const std::string& path);
// A daemon's stderr becomes its error log (unless that is stderr), so that no process of it holds
// the terminal or pipe of whoever started it.
void detach_stderr();
void set_master_title(const Options& opts);
// The master's signals wait (blocked, pending) until its loop reads them: called before the
// listeners open, so that a signal sent once clients can connect is never taken by its default
// action (which would end the master without its cleanup).
void hold_signals();

}  // namespace baton::master

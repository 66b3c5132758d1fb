// A live upgrade that keeps the master's PID.
//
// Process managers (supervisord, runit, s6, a container's PID 1, a terminal) watch the process they
// started; if the master of an upgrade were a new process, they would see their child exit. So the
// master stays, and its code changes under it:
//
//   1. The master opens the new binary and starts it as a candidate (master_upgrade.cc), which
//      takes the listeners, starts its workers and reports ready (master_takeover.cc). Anything that
//      goes wrong up to here (the file does not run, exits, crashes, refuses its configuration, is
//      not ready within upgrade_timeout) is rolled back: the candidate is killed, the master never
//      stopped running the old code with the old workers.
//   2. The candidate hands its generation to the master: a copy of each listener and of each
//      worker's channel, and the configuration files as it read them; then it waits.
//   3. The master re-executes itself into the same file (opened in step 1, so a file put at the path
//      meanwhile is not run unproven), keeping across exec the descriptors that carry the service:
//      its control socket, the listeners, every worker's channel, the connections of `-s upgrade`
//      waiting for the outcome. A state file (a memfd) says what each descriptor is.
//   4. The new code loads the configuration from the candidate's copy of the files (it loads what the
//      candidate proved, even if a file changed in between), takes up the workers, and tells the
//      candidate "adopted". The candidate says goodbye and exits; its workers become the master's
//      children, since the master is a child subreaper (PR_SET_CHILD_SUBREAPER survives exec).
//      Then the old workers drain, as after a reload.
//
// A failure of the new code in the master does not leave the service without a master: until the
// candidate hears "adopted" it keeps everything it needs, and if the master dies, says nothing in
// time, or cannot load the configuration, the candidate carries on as the master with its own PID
// (as the binaries before this change did), and the master and candidate agree on which of them
// supervises the workers (confirm_adoption). The process that was the master is gone then: a process
// manager that watches it sees it exit (systemd is told the candidate's MAINPID first when the
// master can still say so; others may start baton again, which finds the control socket answered
// and refuses to run a second copy). That is the price of a new binary that passed as a candidate
// and then failed in the master, and the error log says so at alert. Why not re-execute first and test the new binary in the master
// itself, as HAProxy does? A new binary that crashes while starting would take the master with it;
// here everything the new binary does at start has been done once, by the candidate, before the
// master runs it.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>

#include "config.h"
#include "core/log.h"
#include "core/strings.h"
#include "event/tls.h"
#include "os/unix/process.h"
#include "os/unix/sd_notify.h"
#include "process/master.h"
#include "process/master_internal.h"

namespace baton {
namespace master {

namespace {

constexpr std::string_view kStateMagic = "baton-resume 1";

// Whether exec keeps a descriptor.
bool set_inherited(int fd, bool inherited) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return false;
  return fcntl(fd, F_SETFD, inherited ? (flags & ~FD_CLOEXEC) : (flags | FD_CLOEXEC)) == 0;
}

bool read_all(int fd, std::string* out) {
  struct stat st {};
  if (fstat(fd, &st) < 0 || st.st_size < 0 || st.st_size > (64 << 20)) return false;
  out->resize(static_cast<size_t>(st.st_size));
  return pread_exact(fd, out->data(), out->size(), 0);
}

// The descriptors the state has named so far (and the state's own): each may be taken once.
std::vector<int> g_taken;

// A descriptor number from the state: it must be open and named once, and it becomes close-on-exec
// again.
bool take_fd(std::string_view text, Fd* out) {
  uint64_t n = 0;
  if (!parse_uint(text, &n) || n < 3 || n > 1u << 24) return false;
  int fd = static_cast<int>(n);
  if (std::find(g_taken.begin(), g_taken.end(), fd) != g_taken.end() || !set_inherited(fd, false)) return false;
  g_taken.push_back(fd);
  out->reset(fd);
  return true;
}

bool take_int(std::string_view text, long long* out) {
  bool neg = !text.empty() && text[0] == '-';
  uint64_t n = 0;
  if (!parse_uint(neg ? text.substr(1) : text, &n) || n > (uint64_t{1} << 62)) return false;
  *out = neg ? -static_cast<long long>(n) : static_cast<long long>(n);
  return true;
}

// A process id: never 0 or negative, which kill() would take for a group or every process.
bool take_pid(std::string_view text, long long* out) { return take_int(text, out) && *out > 0 && *out <= INT_MAX; }

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  while (!line.empty()) {
    size_t sp = line.find(' ');
    out.push_back(line.substr(0, sp));
    if (sp == std::string_view::npos) break;
    line.remove_prefix(sp + 1);
  }
  return out;
}

// Parses the state the old code wrote. The descriptors it names are taken as they are read; on an
// error the ones after it stay open (the process is about to exit, which closes them).
bool parse_state(const std::string& text, ResumeState* st, std::string* err) {
  std::istringstream in(text);
  std::string line;
  bool ended = false;
  int n = 0;
  auto bad = [&](const std::string& why) {
    *err = "line " + std::to_string(n) + " of the state: " + why;
    return false;
  };
  while (std::getline(in, line)) {
    n++;
    if (n == 1) {
      if (line != kStateMagic) return bad("not a state of this version");
      continue;
    }
    std::vector<std::string_view> w = words(line);
    if (w.empty()) continue;
    std::string_view k = w[0];
    long long a = 0;
    std::string s;
    auto decoded = [&](std::string_view v) { return base64_decode(v, &s); };
    if (k == "end" && w.size() == 1) {
      ended = true;
    } else if (k == "generation" && w.size() == 2 && take_int(w[1], &a) && a > 0 && a <= INT_MAX) {
      st->generation = static_cast<int>(a);
    } else if (k == "exe" && w.size() == 2 && decoded(w[1])) {
      st->exe = s;
    } else if (k == "error_log" && w.size() == 3 && decoded(w[1]) && take_int(w[2], &a)) {
      st->error_log = s;
      st->log_level = static_cast<int>(a);
    } else if (k == "ticket_secret" && w.size() == 2) {
      st->ticket_secret = std::string(w[1]);
    } else if (k == "control" && w.size() == 3 && decoded(w[2]) && take_fd(w[1], &st->control)) {
      st->control_text = s;
    } else if (k == "candidate" && w.size() == 3 && take_pid(w[1], &a) && take_fd(w[2], &st->candidate_conn)) {
      st->candidate = static_cast<pid_t>(a);
    } else if (k == "waiter" && w.size() == 2) {
      Fd fd;
      if (!take_fd(w[1], &fd)) return bad("bad descriptor");
      st->waiters.push_back(std::move(fd));
    } else if (k == "listener" && w.size() == 3 && decoded(w[2])) {
      Fd fd;
      if (!take_fd(w[1], &fd)) return bad("bad descriptor");
      st->listeners[s] = std::move(fd);
    } else if (k == "worker" && w.size() == 9) {
      ResumeState::Worker wk;
      long long gen = 0, slot = 0, ready = 0, draining = 0, age = 0, candidate = 0;
      if (!take_pid(w[1], &a) || !take_int(w[2], &gen) || gen < 1 || gen > INT_MAX || !take_int(w[3], &slot) ||
          slot < -1 || slot > INT_MAX || !take_int(w[4], &ready) || !take_int(w[5], &draining) || !take_int(w[6], &age) ||
          !take_int(w[8], &candidate) || !take_fd(w[7], &wk.channel))
        return bad("bad worker");
      wk.from_candidate = candidate != 0;
      wk.pid = static_cast<pid_t>(a);
      wk.generation = static_cast<int>(gen);
      wk.slot = static_cast<int>(slot);
      wk.ready = ready != 0;
      wk.draining = draining != 0;
      wk.age_ms = age;
      st->workers.push_back(std::move(wk));
    } else if (k == "exe_fd" && w.size() == 2) {
      // The binary the master was executed from (kept for a wrapper script): not needed any more.
      Fd fd;
      if (!take_fd(w[1], &fd)) return bad("bad descriptor");
    } else if (k == "abandoned" && w.size() == 2 && take_pid(w[1], &a)) {
      st->abandoned.push_back(static_cast<pid_t>(a));
    } else if (k == "snapshot" && w.size() == 2) {
      Fd fd;
      std::string bytes;
      if (!take_fd(w[1], &fd) || !read_all(fd.get(), &bytes) || !decode_conf_snapshot(bytes, &st->snapshot))
        return bad("bad configuration snapshot");
    } else {
      return bad("unexpected \"" + std::string(k) + "\"");
    }
  }
  if (!ended) return bad("cut short");
  if (st->generation <= 0 || !st->control || !st->candidate_conn || st->snapshot.empty())
    return bad("incomplete");
  return true;
}

}  // namespace

// The candidate has handed over its generation: write down what this master supervises, keep the
// descriptors that carry it across exec, and become the new binary. Returns only if exec failed,
// after rolling back.
void Master::commit_upgrade(ControlConn* c, const Message& done) {
  long long listeners = 0, workers = 0, snapshots = 0;
  for (const Message& m : upgrade_.handed) {
    if (m.fds.size() != 1) return rollback("the candidate handed over a message without its descriptor");
    if (m.type == MsgType::kFd) listeners++;
    else if (m.type == MsgType::kWorker) workers++;
    else snapshots++;
  }
  if (listeners != done.get_int("listeners", -1) || workers != done.get_int("workers", -1) || snapshots != 1 || workers == 0)
    return rollback("the candidate handed over " + std::to_string(listeners) + " listener(s), " + std::to_string(workers) +
                    " worker(s) and " + std::to_string(snapshots) + " configuration snapshot(s), not what it announced");

  // Connections on their way to a worker (a reload's hand-over still going on) cannot cross the
  // exec: what a channel takes now is delivered, the rest is closed, and said.
  for (auto& w : workers_) {
    w->outbox.flush(w->channel.get());
    if (!w->outbox.empty())
      log_warn("upgrade: %zu connection(s) on their way to worker %d are closed by the re-execution", w->outbox.size(),
               static_cast<int>(w->pid));
    w->outbox.clear();
  }

  std::vector<int> kept;
  std::string text(kStateMagic);
  text += "\n";
  auto keep = [&](int fd) {
    kept.push_back(fd);
    return std::to_string(fd);
  };
  const std::string& exe = current_->opts.exe_path;
  text += "generation " + std::to_string(upgrade_.new_generation) + "\n";
  text += "exe " + base64_encode(exe) + "\n";
  text += "error_log " + base64_encode(ErrorLog::path()) + " " + std::to_string(static_cast<int>(current_->main.log_level)) + "\n";
  text += "ticket_secret " + tls_ticket_secret_hex() + "\n";
  text += "control " + keep(control_fd_.get()) + " " + base64_encode(control_addr_.text) + "\n";
  text += "candidate " + std::to_string(upgrade_.pid) + " " + keep(c->fd.get()) + "\n";
  for (ControlConn* w : upgrade_.waiters)
    if (!w->dead) text += "waiter " + keep(w->fd.get()) + "\n";
  double now = loop_->now();
  for (const Message& m : upgrade_.handed) {
    if (m.type == MsgType::kFd) {
      text += "listener " + keep(m.fds[0].get()) + " " + base64_encode(m.get("key")) + "\n";
    } else if (m.type == MsgType::kWorker) {
      long long pid = m.get_int("pid", 0), generation = m.get_int("generation", 0), slot = m.get_int("slot", -1);
      long long age = std::max(0LL, m.get_int("age_ms", 0));
      if (pid <= 0 || pid > INT_MAX || generation != upgrade_.new_generation || slot < -1 || slot > INT_MAX)
        return rollback("the candidate handed over a worker described as pid " + m.get("pid") + ", generation " +
                        m.get("generation") + ", slot " + m.get("slot"));
      text += "worker " + std::to_string(pid) + " " + std::to_string(generation) + " " + std::to_string(slot) + " " +
              (m.get("ready") == "1" ? "1" : "0") + " 0 " + std::to_string(age) + " " + keep(m.fds[0].get()) + " 1\n";
    } else {
      text += "snapshot " + keep(m.fds[0].get()) + "\n";
    }
  }
  for (const auto& w : workers_) {
    text += "worker " + std::to_string(w->pid) + " " + std::to_string(w->generation) + " " + std::to_string(w->slot) + " " +
            (w->ready ? "1" : "0") + " " + (w->draining ? "1" : "0") + " " +
            std::to_string(static_cast<long long>((now - w->started) * 1000)) + " " + keep(w->channel.get()) + " 0\n";
  }
  for (pid_t p : abandoned_) text += "abandoned " + std::to_string(p) + "\n";
  if (upgrade_.exe) text += "exe_fd " + keep(upgrade_.exe.get()) + "\n";
  text += "end\n";

  Fd state(memfd_create("baton-state", MFD_CLOEXEC));
  if (!state || ::write(state.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return rollback(std::string("cannot write the master's state for the new binary (") + strerror(errno) + ")");
  kept.push_back(state.get());
  bool inherited = true;
  for (int fd : kept) inherited = set_inherited(fd, true) && inherited;

  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view v(*e);
    if (v.rfind("BATON_RESUME=", 0) == 0 || v.rfind("BATON_UPGRADE=", 0) == 0 || v.rfind("BATON_CONTROL_SOCKET=", 0) == 0 ||
        v.rfind("BATON_EXE_FD=", 0) == 0)
      continue;
    env.emplace_back(v);
  }
  env.push_back("BATON_RESUME=" + std::to_string(state.get()));
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = saved_argv();
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  log_notice("upgrade: generation %lld of candidate %d is ready; the master %d re-executes into %s",
             upgrade_.new_generation, static_cast<int>(upgrade_.pid), static_cast<int>(getpid()), exe.c_str());
  int err = EBADF;
  if (inherited) {
    if (upgrade_.exe) execveat(upgrade_.exe.get(), "", argv.data(), envp.data(), AT_EMPTY_PATH);
    else execve(exe.c_str(), argv.data(), envp.data());
    err = errno;
  }
  for (int fd : kept) set_inherited(fd, false);
  rollback("the master could not execute " + exe + " (" + strerror(err) + ")");
}

// The candidate and this master must agree on who supervises the candidate's workers: never both,
// never neither. This master says "adopted" and waits for the candidate's word: its goodbye (it
// leaves: the workers are this master's), or its own take-over (its wait ran out first: the workers
// are its). A connection that ends without a word means the candidate died, or is dying: once it has
// exited its workers are this master's children. A candidate that says nothing for longer than it
// waits itself is stuck: it is killed, and its workers adopted. Returns whether they are adopted.
bool Master::confirm_adoption(ResumeState& st) {
  int fd = st.candidate_conn.get();
  Message adopted(MsgType::kAck);
  adopted.set("adopted", "1");
  send_message(fd, adopted);  // a candidate that is gone is found below
  const double wait = std::max(kHandoverStepSeconds, seconds(current_->main.upgrade_timeout_ms)) + kHandoverStepSeconds;
  const double until = ev_time() + wait;
  bool adopt = true;
  const char* how = nullptr;
  for (;;) {
    int left = static_cast<int>((until - ev_time()) * 1000);
    Message m;
    int r = left > 0 ? recv_message_timeout(fd, &m, left) : -1;
    if (r == 1 && m.type == MsgType::kAck && m.get("bye") == "1") break;
    if (r == 1 && m.type == MsgType::kAck) {
      adopt = false;  // it has taken over
      break;
    }
    if (r == 1) continue;
    if (r == 0 || left <= 0 || (r < 0 && errno != ETIMEDOUT)) {
      how = r == 0 ? "died before it was told its generation is adopted" : "did not answer; killed";
      if (r != 0 || left <= 0) ::kill(st.candidate, SIGKILL);
      break;
    }
  }
  st.candidate_conn.reset();
  if (how) {
    // Its exit makes its workers this master's children; until then they are not.
    int status;
    double give_up = ev_time() + kHandoverStepSeconds;
    pid_t got = 0;
    while ((got = waitpid(st.candidate, &status, WNOHANG)) == 0 && ev_time() < give_up) usleep(5000);
    if (got == 0) {
      ::kill(st.candidate, SIGKILL);
      got = waitpid(st.candidate, &status, 0);
    }
    abandoned_.erase(std::remove(abandoned_.begin(), abandoned_.end(), st.candidate), abandoned_.end());
    log_alert("upgrade: the candidate %d %s; its workers stay with this master", static_cast<int>(st.candidate), how);
  }
  return adopt;
}

void Master::resume(ResumeState& st) {
  control_address_from_text(st.control_text, &control_addr_);
  control_fd_ = std::move(st.control);
  note_control_path();
  ev_io_init(&control_io_, on_control_accept_cb, control_fd_.get(), EV_READ);
  control_io_.data = this;
  ev_io_start(loop_->raw(), &control_io_);
  abandoned_ = st.abandoned;
  abandoned_.push_back(st.candidate);
  make_slots();
  double now = loop_->now();
  std::vector<pid_t> candidates;  // the candidate's workers
  for (ResumeState::Worker& r : st.workers) {
    if (r.from_candidate) candidates.push_back(r.pid);
    auto w = std::make_unique<WorkerProc>();
    w->master = this;
    w->pid = r.pid;
    w->generation = r.generation;
    bool current = r.generation == generation_;
    w->slot = current && r.slot >= 0 && static_cast<size_t>(r.slot) < slots_.size() ? r.slot : -1;
    w->ready = r.ready;
    w->draining = r.draining;
    w->started = now - static_cast<double>(r.age_ms) / 1000.0;
    w->last_answer = now;
    w->channel = std::move(r.channel);
    ev_io_init(&w->io, on_channel_cb, w->channel.get(), EV_READ);
    w->io.data = w.get();
    ev_io_start(loop_->raw(), &w->io);
    if (w->draining) ping(w.get());  // whether it still accepts, which the state does not say
    workers_.push_back(std::move(w));
  }
  std::vector<Fd> waiters = std::move(st.waiters);
  auto answer = [&](bool ok, const std::string& text, pid_t pid) {
    for (Fd& fd : waiters) {
      Message m = result(ok, text);
      m.set("pid", static_cast<long long>(pid));
      m.set("generation", static_cast<long long>(generation_));
      send_message(fd.get(), m);
    }
    waiters.clear();
  };

  if (!confirm_adoption(st)) {
    // The candidate took over (this master was too slow for it): its workers are its own. This
    // master sees its old workers out and leaves, as the old master of an upgrade once did.
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (std::find(candidates.begin(), candidates.end(), (*it)->pid) != candidates.end()) {
        ev_io_stop(loop_->raw(), &(*it)->io);
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    log_alert("upgrade: the candidate %d did not leave its generation to this master; it is the master now",
              static_cast<int>(st.candidate));
    replaced_ = true;
    ev_io_stop(loop_->raw(), &control_io_);
    control_fd_.reset();
    answer(true, "upgrade succeeded", st.candidate);
    drain_workers(0);
    maybe_exit();
    return;
  }

  // Slots whose worker is gone already get one after their backoff, as after a crash.
  for (size_t i = 0; i < slots_.size(); i++) {
    bool held = false;
    for (const auto& w : workers_) held = held || (w->generation == generation_ && w->slot == static_cast<int>(i));
    if (!held) schedule_restart(i);
  }
  announced_ready_ = true;
  drain_workers(generation_, true);
  write_pid_file(current_->pid_path());
  sd_notify("READY=1\n");
  log_notice("upgrade: master process %d now runs %s, generation %d; draining the old workers", static_cast<int>(getpid()),
             st.exe.c_str(), generation_);
  count(&StatEvents::upgrades_succeeded);
  for (Fd& fd : waiters) {
    Answer a;
    a.fd = std::move(fd);
    a.msg = result(true, "upgrade succeeded");
    a.msg.set("pid", static_cast<long long>(getpid())).set("generation", static_cast<long long>(generation_));
    answer_once_drained(std::move(a));
  }
  waiters.clear();
  // What happened while the master was being replaced: workers that exited, signals.
  reap();
}

}  // namespace master

int resumed_master_main(const Options& opts, const char* state_fd) {
  master::set_master_title(opts);
  master::hold_signals();
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  unsetenv("BATON_RESUME");
  master::ResumeState st;
  std::string text, err;
  Fd state;
  master::g_taken.clear();
  if (!master::take_fd(state_fd, &state) || !master::read_all(state.get(), &text) || !master::parse_state(text, &st, &err)) {
    // Nothing to go on: the candidate, which hears nothing, carries on as the master.
    fprintf(stderr, "baton: [alert] the master cannot read the state of the upgrade (%s)\n", err.c_str());
    return 1;
  }
  state.reset();
  if (!st.error_log.empty()) ErrorLog::open(st.error_log, static_cast<LogLevel>(st.log_level));

  std::unique_ptr<Cycle> cycle;
  set_conf_snapshot(st.snapshot);
  try {
    cycle = load_cycle(opts);
  } catch (const ConfError& e) {
    err = e.what();
  }
  clear_conf_snapshot();
  if (cycle && cycle->error_log_path() != st.error_log) {
    std::string e = ErrorLog::open(cycle->error_log_path(), cycle->main.log_level);
    if (!e.empty()) log_alert("%s", e.c_str());
  } else if (cycle) {
    ErrorLog::set_level(cycle->main.log_level);
  }
  if (cycle) err = cycle->open_listeners(&st.listeners);
  if (err.empty() && cycle) err = cycle->http->open_logs();
  if (!err.empty()) {
    // The candidate loaded this very configuration: something it reads besides its files (a
    // certificate, a log) changed in between. The candidate hears nothing and carries on.
    log_alert("upgrade: the master cannot load the configuration the candidate loaded (%s); leaving the service to "
              "the candidate %d",
              err.c_str(), static_cast<int>(st.candidate));
    // Told so, the candidate takes over (and tells systemd its pid) before this process exits: a
    // supervisor that follows the main pid sees the new one first.
    Message no(MsgType::kAck);
    no.set("adopted", "0");
    Message reply;
    if (send_message(st.candidate_conn.get(), no) == 0)
      recv_message_timeout(st.candidate_conn.get(), &reply, master::kHandoverStepMs);
    return 1;
  }
  st.listeners.clear();
  if (!tls_set_ticket_secret_hex(st.ticket_secret)) tls_make_ticket_secret();
  raise_nofile_limit(static_cast<rlim_t>(cycle->main.worker_connections) * 2 + 128 + master::kHandOverDescriptors);
  int generation = st.generation;
  std::shared_ptr<Cycle> shared(std::move(cycle));
  master::Master master(std::move(shared), generation);
  return master.run(Fd(), &st);
}

}  // namespace baton

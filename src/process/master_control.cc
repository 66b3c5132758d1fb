// The master's control socket: `baton -s` and the candidate of an upgrade connect to it; the
// commands, and the status report gathered from the workers.
#include "process/master_internal.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "core/log.h"
#include "event/tls.h"

namespace baton::master {

std::string Master::open_control_socket() {
  control_addr_ = make_control_address(resolve_path(current_->opts.prefix, current_->main.control_socket), getpid());
  if (current_->main.control_socket == "abstract") control_addr_ = make_control_address("abstract", getpid());
  std::string err;
  control_fd_ = listen_control(control_addr_, &err);
  if (!control_fd_) return err;
  note_control_path();
  ev_io_init(&control_io_, on_control_accept_cb, control_fd_.get(), EV_READ);
  control_io_.data = this;
  ev_io_start(loop_->raw(), &control_io_);
  return "";
}

// The socket file this master's control socket is bound to, so that it can tell later whether the
// path still names it.
void Master::note_control_path() {
  struct stat st {};
  control_ino_ = control_addr_.text[0] != '@' && ::stat(control_addr_.text.c_str(), &st) == 0 ? st.st_ino : 0;
}

bool Master::control_path_is_ours() const {
  if (control_addr_.text[0] == '@') return true;
  struct stat st {};
  return control_ino_ != 0 && ::stat(control_addr_.text.c_str(), &st) == 0 && st.st_ino == control_ino_;
}

void Master::on_control_accept_cb(struct ev_loop*, ev_io* w, int) {
  auto* self = static_cast<Master*>(w->data);
  for (;;) {
    int fd = ::accept4(self->control_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    auto* c = new ControlConn();
    c->master = self;
    c->fd.reset(fd);
    if (!peer_allowed(fd, &c->peer_pid)) {
      log_warn("control socket: connection from pid %d of another user refused", static_cast<int>(c->peer_pid));
      c->fd.reset();
      delete c;
      continue;
    }
    ev_io_init(&c->io, on_control_conn_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(self->loop_->raw(), &c->io);
    self->conns_.push_back(c);
  }
}

void Master::on_control_conn_cb(struct ev_loop*, ev_io* w, int revents) {
  auto* c = static_cast<ControlConn*>(w->data);
  Master* self = c->master;
  if ((revents & EV_WRITE) && c == self->handover_.conn) self->send_handover_listeners();
  while (!c->dead) {
    Message m;
    int r = recv_message(c->fd.get(), &m);
    if (r < 0 && errno == EAGAIN) return;
    if (r <= 0) {
      self->close_conn(c);
      return;
    }
    self->on_control_message(c, m);
  }
}

void Master::close_conn(ControlConn* c) {
  if (c->dead) return;
  c->dead = true;
  ev_io_stop(loop_->raw(), &c->io);
  c->fd.reset();
  auto drop = [c](std::vector<ControlConn*>& v) { v.erase(std::remove(v.begin(), v.end(), c), v.end()); };
  drop(status_.waiters);
  drop(reload_.waiters);
  std::erase_if(answers_.list, [c](const Answer& a) { return a.conn == c; });
  drop(upgrade_.waiters);
  // A new master that hangs up during the hand-over has failed; its exit, or the end of its
  // registration, brings the rollback with the reason it gave.
  if (handover_.conn == c) reset_handover();
  if (upgrade_.registration == c) {
    upgrade_.registration = nullptr;
    // The new master hung up before it was ready: it failed, or it is about to.
    if (upgrade_.active) {
      std::string why = upgrade_.reason.empty() ? "the candidate closed its connection before it was ready" : upgrade_.reason;
      rollback(why);
    }
  }
  conns_.remove(c);
  loop_->defer_delete(c);
}

Message Master::result(bool ok, const std::string& text) {
  Message m(MsgType::kResult);
  m.set("ok", ok ? "1" : "0");
  m.set(ok ? "message" : "reason", text);
  return m;
}

void Master::reply(ControlConn* c, bool ok, const std::string& text, const Message* extra) {
  if (!c || c->dead) return;
  Message m = result(ok, text);
  if (extra)
    for (const auto& [k, v] : extra->fields) m.set(k, v);
  send_message(c->fd.get(), m);
}

void Master::on_control_message(ControlConn* c, Message& m) {
  if (c == handover_.conn) return on_handover_message(c, m);
  switch (m.type) {
    case MsgType::kStatus:
      start_status(c);
      break;
    case MsgType::kReload:
      start_reload(c);
      break;
    case MsgType::kUpgrade:
      start_upgrade(c);
      break;
    case MsgType::kRegister:
      // The new master of an upgrade introduces itself on the connection it will report on.
      if (upgrade_.active && m.get("role") == "upgrade" && c->peer_pid == upgrade_.pid) {
        upgrade_.registration = c;
        Message ack(MsgType::kAck);
        ack.set("generation", static_cast<long long>(generation_));
        ack.set("ticket_secret", tls_ticket_secret_hex());
        send_message(c->fd.get(), ack);
      } else {
        reply(c, false, "no upgrade is waiting for this process");
      }
      break;
    case MsgType::kFdRequest:
      if (!upgrade_.active || c->peer_pid != upgrade_.pid)
        reply(c, false, "listeners are only handed to the candidate of an upgrade");
      else if (handover_.step != Handover::Step::kIdle)
        reply(c, false, "the listeners have already been handed over");
      else
        start_handover(c);
      break;
    case MsgType::kReady:
      // The candidate's workers all accept: this master will adopt its generation ("adopt=1"; a
      // candidate of an older binary ignores it and takes over the pid file and the control socket).
      if (c == upgrade_.registration && upgrade_.active && !upgrade_.ready) {
        upgrade_.ready = true;
        upgrade_.new_generation = m.get_int("generation", generation_ + 1);
        Message ack(MsgType::kAck);
        ack.set("adopt", "1");
        send_message(c->fd.get(), ack);
      }
      break;
    case MsgType::kFd:
    case MsgType::kWorker:
    case MsgType::kSnapshot:
      // What the candidate hands over: its listeners, its workers, the files of its configuration.
      if (c == upgrade_.registration && upgrade_.active && upgrade_.ready && upgrade_.handed.size() < 65536)
        upgrade_.handed.push_back(std::move(m));
      else
        reply(c, false, std::string("unexpected message ") + msg_type_name(m.type));
      break;
    case MsgType::kAck:
      // ... and it has handed all of it over: this master re-executes into the new binary. An ack
      // without "handed" is an older candidate that has taken over by itself.
      if (c == upgrade_.registration && upgrade_.active && upgrade_.ready && !upgrade_.exited) {
        if (m.get("handed") == "1") commit_upgrade(c, m);
        else upgrade_succeeded(c, m);
      }
      break;
    case MsgType::kResult:
      if (upgrade_.active && c->peer_pid == upgrade_.pid && m.get("ok") == "0") upgrade_.reason = m.get("reason");
      break;
    default:
      reply(c, false, std::string("unexpected message ") + msg_type_name(m.type));
      break;
  }
}

void Master::start_status(ControlConn* c) {
  status_.waiters.push_back(c);
  if (status_.active) return;
  status_.active = true;
  // A worker with a ping in flight answers that one.
  for (auto& w : workers_) w->status_answered = !ping(w.get());
  ev_timer_set(&status_.timer, kStatusWaitSeconds, 0.);
  ev_timer_start(loop_->raw(), &status_.timer);
  finish_status_if_answered();
}

void Master::on_status_timer_cb(struct ev_loop*, ev_timer* w, int) { static_cast<Master*>(w->data)->finish_status(); }

// A status request is answered once every worker has reported (or has exited meanwhile), without
// waiting for those already known not to respond.
void Master::finish_status_if_answered() {
  if (!status_.active) return;
  double now = loop_->now();
  for (const auto& w : workers_)
    if (!w->status_answered && !w->not_responding(now)) return;
  finish_status();
}

void Master::finish_status() {
  if (!status_.active) return;
  status_.active = false;
  ev_timer_stop(loop_->raw(), &status_.timer);
  std::string text = "master: pid=" + std::to_string(getpid()) + " generation=" + std::to_string(generation_) +
                     " state=" + (upgrade_.active ? "upgrading" : replaced_ ? "replaced" : reload_.active ? "reloading" : "running") + "\n";
  double now = loop_->now();
  for (const auto& w : workers_) {
    // Not answered by now: silent for kPingTimeoutSeconds at least. Its count is the last known.
    bool answered = w->status_answered;
    text += "worker: pid=" + std::to_string(w->pid) + " generation=" + std::to_string(w->generation) +
            " state=" + (!answered ? "not-responding" : w->draining ? "draining" : w->ready ? "active" : "starting") +
            " connections=" + std::to_string(w->connections) + " received=" + std::to_string(w->received);
    if (!answered) {
      char note[64];
      snprintf(note, sizeof(note), " (last answer %.1f s ago)", now - w->last_answer);
      text += note;
    }
    text += "\n";
  }
  Message extra;
  extra.set("pid", static_cast<long long>(getpid()));
  extra.set("generation", static_cast<long long>(generation_));
  std::vector<ControlConn*> waiters;
  waiters.swap(status_.waiters);
  for (ControlConn* c : waiters) {
    Message m(MsgType::kResult);
    m.set("ok", "1");
    m.set("lines", static_cast<long long>(std::count(text.begin(), text.end(), '\n')));
    // Lines travel one field each: values are single lines.
    size_t start = 0, n = 0;
    while (start < text.size()) {
      size_t nl = text.find('\n', start);
      m.set("line" + std::to_string(n++), text.substr(start, nl - start));
      start = nl + 1;
    }
    if (!c->dead) send_message(c->fd.get(), m);
  }
}

}  // namespace baton::master

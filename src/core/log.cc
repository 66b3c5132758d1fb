#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"

namespace baton {

int ErrorLog::fd_ = STDERR_FILENO;
LogLevel ErrorLog::level_ = LogLevel::kNotice;
std::string ErrorLog::path_ = "stderr";
int ErrorLog::echo_pid_ = 0;
ErrorLogFile* const* ErrorLog::context_ = nullptr;

ErrorLogFile::~ErrorLogFile() {
  if (fd > STDERR_FILENO) ::close(fd);
}

std::string ErrorLogFile::open() {
  if (path == "stderr") {
    fd = STDERR_FILENO;
    return "";
  }
  int nfd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (nfd < 0) return (where.empty() ? "" : where + ": ") + "open() \"" + path + "\" failed (" + strerror(errno) + ")";
  if (fd > STDERR_FILENO) ::close(fd);
  fd = nfd;
  return "";
}

static const char* const kLevelNames[] = {"debug", "info", "notice", "warn",
                                          "error", "crit", "alert", "emerg"};

bool parse_log_level(std::string_view name, LogLevel* out) {
  for (int i = 0; i < 8; i++) {
    if (name == kLevelNames[i]) {
      *out = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

const char* log_level_name(LogLevel level) { return kLevelNames[static_cast<int>(level)]; }

std::string ErrorLog::open(const std::string& path, LogLevel level) {
  level_ = level;
  if (path.empty() || path == "stderr") {
    if (fd_ != STDERR_FILENO && fd_ >= 0) ::close(fd_);
    fd_ = STDERR_FILENO;
    path_ = "stderr";
    return "";
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return "open() \"" + path + "\" failed (" + strerror(errno) + ")";
  if (fd_ != STDERR_FILENO && fd_ >= 0) ::close(fd_);
  fd_ = fd;
  path_ = path;
  return "";
}

void ErrorLog::echo_emerg_to_stderr(bool on) { echo_pid_ = on ? static_cast<int>(getpid()) : 0; }

std::string ErrorLog::reopen() {
  if (path_ == "stderr") return "";
  return open(path_, level_);
}

void ErrorLog::write(LogLevel level, std::string_view msg) {
  Clock::update();
  char head[96];
  int n = snprintf(head, sizeof(head), "%.*s [%s] %d#0: ", static_cast<int>(Clock::err_date().size()),
                   Clock::err_date().data(), log_level_name(level), static_cast<int>(getpid()));
  std::string line;
  line.reserve(static_cast<size_t>(n) + msg.size() + 1);
  line.append(head, static_cast<size_t>(n));
  line.append(msg);
  line.push_back('\n');
  // One write() keeps lines from different processes whole (O_APPEND).
  const ErrorLogFile* own = context_ ? *context_ : nullptr;
  int fd = own && own->fd >= 0 ? own->fd : fd_;
  ssize_t r;
  do {
    r = ::write(fd, line.data(), line.size());
  } while (r < 0 && errno == EINTR);
  if (level == LogLevel::kEmerg && echo_pid_ != 0 && fd != STDERR_FILENO && echo_pid_ == static_cast<int>(getpid())) {
    line.assign("baton: [emerg] ");
    line.append(msg);
    line.push_back('\n');
    do {
      r = ::write(STDERR_FILENO, line.data(), line.size());
    } while (r < 0 && errno == EINTR);
  }
}

void log_printf(LogLevel level, const char* fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = static_cast<size_t>(n) < sizeof(buf) ? static_cast<size_t>(n) : sizeof(buf) - 1;
  ErrorLog::write(level, std::string_view(buf, len));
}

}  // namespace baton

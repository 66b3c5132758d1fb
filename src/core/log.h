// The error log: levels as nginx names them, one file (or stderr) per process, reopened on USR1.
// A part of the work may have a file of its own (a server's error_log): while a LogContext names
// it, lines go there instead of the process's file, at the same level.
#pragma once

#include <string>
#include <string_view>

namespace baton {

enum class LogLevel { kDebug, kInfo, kNotice, kWarn, kError, kCrit, kAlert, kEmerg };

bool parse_log_level(std::string_view name, LogLevel* out);
const char* log_level_name(LogLevel level);

// An error log of its own (error_log in [http], [server] or [location]): a path (or stderr) and,
// once opened, its descriptor.
struct ErrorLogFile {
  std::string path;   // absolute, or "stderr"
  std::string where;  // the configuration's file:line that names it, for errors
  int fd = -1;
  ErrorLogFile() = default;
  ErrorLogFile(const ErrorLogFile&) = delete;
  ErrorLogFile& operator=(const ErrorLogFile&) = delete;
  ~ErrorLogFile();
  // (Re)opens the file; returns an error text ("file:line: open() ... failed") or "".
  std::string open();
};

class LogContext;

class ErrorLog {
 public:
  // path "stderr" or a file path; "" keeps stderr. Returns an error text or "".
  static std::string open(const std::string& path, LogLevel level);
  static std::string reopen();
  static void set_level(LogLevel level) { level_ = level; }
  static bool enabled(LogLevel level) { return level >= level_; }
  static int fd() { return fd_; }
  // After fork+exec or when handing the log to another program.
  static const std::string& path() { return path_; }
  static void write(LogLevel level, std::string_view msg);

  // While a start is under way, an operator watches the terminal, not the error log: every emerg is
  // also written to stderr as "baton: [emerg] message" (unless stderr is the error log). Only the
  // process that set it echoes: a daemon's detached child and forked workers no longer own the
  // terminal, so detaching needs no second switch. Set at start, cleared once the start succeeded.
  static void echo_emerg_to_stderr(bool on);

 private:
  friend class LogContext;
  // The slot of the file lines go to instead of fd_ (null, or a slot holding null: fd_). A slot
  // rather than the file, so that its owner may change the file while it is the context (a request
  // routed to a server with a log of its own).
  static ErrorLogFile* const* context_;
  static int fd_;
  static int echo_pid_;  // 0: no echo
  static LogLevel level_;
  static std::string path_;
};

// While one is alive, lines go to the file *slot holds (when it holds one); the context before it
// comes back at its end. Set where events of a connection are handled, with the connection's slot.
class LogContext {
 public:
  explicit LogContext(ErrorLogFile* const* slot) : saved_(ErrorLog::context_) { ErrorLog::context_ = slot; }
  ~LogContext() { ErrorLog::context_ = saved_; }
  LogContext(const LogContext&) = delete;
  LogContext& operator=(const LogContext&) = delete;

 private:
  ErrorLogFile* const* saved_;
};

void log_printf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define BATON_LOG(level, ...)                                            \
  do {                                                                   \
    if (::baton::ErrorLog::enabled(level)) ::baton::log_printf(level, __VA_ARGS__); \
  } while (0)

#define log_debug(...) BATON_LOG(::baton::LogLevel::kDebug, __VA_ARGS__)
#define log_info(...) BATON_LOG(::baton::LogLevel::kInfo, __VA_ARGS__)
#define log_notice(...) BATON_LOG(::baton::LogLevel::kNotice, __VA_ARGS__)
#define log_warn(...) BATON_LOG(::baton::LogLevel::kWarn, __VA_ARGS__)
#define log_error(...) BATON_LOG(::baton::LogLevel::kError, __VA_ARGS__)
#define log_crit(...) BATON_LOG(::baton::LogLevel::kCrit, __VA_ARGS__)
#define log_alert(...) BATON_LOG(::baton::LogLevel::kAlert, __VA_ARGS__)
#define log_emerg(...) BATON_LOG(::baton::LogLevel::kEmerg, __VA_ARGS__)

}  // namespace baton

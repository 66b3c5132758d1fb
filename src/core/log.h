// The error log: levels as nginx names them, one file (or stderr) per process, reopened on USR1.
#pragma once

#include <string>
#include <string_view>

namespace baton {

enum class LogLevel { kDebug, kInfo, kNotice, kWarn, kError, kCrit, kAlert, kEmerg };

bool parse_log_level(std::string_view name, LogLevel* out);
const char* log_level_name(LogLevel level);

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
  static int fd_;
  static int echo_pid_;  // 0: no echo
  static LogLevel level_;
  static std::string path_;
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

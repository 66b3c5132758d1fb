// Configuration files: reading INI through inih into sections with line numbers, value parsers for
// sizes, durations and switches, and the [main] settings. Errors are ConfError "file:line: message".
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/log.h"

namespace baton {

struct ConfError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ConfEntry {
  std::string key;
  std::string value;
  int line = 0;
};

struct ConfSection {
  std::string kind;  // "main", "http", "server", "location", "upstream", "types"
  std::string arg;   // what follows the kind: the server's name, the location's match
  int line = 0;
  std::vector<ConfEntry> entries;
};

struct ConfFile {
  std::string path;
  std::vector<ConfSection> sections;

  [[noreturn]] void fail(int line, const std::string& msg) const;
  // "file:line: " + msg, for errors found after parsing.
  std::string where(int line) const { return path + ":" + std::to_string(line); }
};

// Reads and splits an INI file. Throws ConfError for unreadable files, lines too long for the
// INI reader (never silently cut), malformed lines, keys outside sections and bad section headers.
ConfFile read_conf_file(const std::string& path);
// The same from memory (tests, -g).
ConfFile read_conf_text(const std::string& name, std::string_view text);

// Value parsers: false on a malformed value.
bool parse_size(std::string_view s, uint64_t* out);           // 512, 8k, 1m, 1g
bool parse_duration_ms(std::string_view s, int64_t* out);     // 500ms, 30s, 5m, 1h, 7d; bare = seconds
bool parse_switch(std::string_view s, bool* out);             // on/off

struct MainConf {
  int worker_processes = 1;
  int worker_connections = 1024;
  std::string pid = "logs/baton.pid";
  std::string error_log;  // empty: the compiled-in default
  LogLevel log_level = LogLevel::kNotice;
  std::string control_socket = "logs/baton.sock";
  int64_t quit_timeout_ms = 30000;
  int64_t upgrade_timeout_ms = 15000;
  int64_t restart_initial_backoff_ms = 1000;
  int64_t restart_max_backoff_ms = 32000;
  int restart_max_per_minute = 5;
  std::string user;
  bool daemon = false;
};

// Applies the entries of every [main] section of conf (and then the -g overrides) to out.
void parse_main_conf(const ConfFile& conf, const ConfFile* overrides, MainConf* out);

// Makes a relative path absolute against prefix.
std::string resolve_path(const std::string& prefix, const std::string& path);

}  // namespace baton

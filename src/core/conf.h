// Configuration files: reading INI through inih into sections with line numbers, the one table of
// keys (which section each belongs in, which may repeat, which nginx directives are not supported
// yet), value parsers for sizes, durations and switches, and the [main] settings. Errors are
// ConfError "file:line: message".
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

// A file the configuration was read from, as it was read (what -T prints).
struct ConfSource {
  std::string path;
  std::string text;
};

// A line of the configuration is kept as one number that also says which file it is in: 0 for the
// main file, i for its i-th included file (`include`). Lines of the main file are plain numbers.
constexpr int kConfFileShift = 20;  // a file may have up to a million lines
inline int conf_line(int file_index, int lineno) { return (file_index << kConfFileShift) | lineno; }
inline int conf_lineno(int line) { return line & ((1 << kConfFileShift) - 1); }
inline int conf_file_index(int line) { return line >> kConfFileShift; }

struct ConfFile {
  std::string path;
  std::string text;  // as read, for -T
  std::vector<ConfSource> included;  // the files `include` read, in the order it read them
  std::vector<ConfSection> sections;

  [[noreturn]] void fail(int line, const std::string& msg) const;
  // "file:line", for errors found after parsing.
  std::string where(int line) const;
  // "line N" for a line of the main file, "file:N" for one of an included file: for messages that
  // point at another line than their own.
  std::string at(int line) const;
};

// Reads and splits an INI file. Indentation is insignificant; a value continues on the next line
// when its line ends with "\". `include = PATH-OR-GLOB`, on any line, reads the lines of the files
// it names (a glob in sorted order; a relative path from the main file's directory) in its place.
// Throws ConfError for unreadable files, lines too long for the INI reader (never silently cut),
// malformed lines, keys outside sections, bad section headers, a continuation into nothing (or
// into what looks like a key), a value that ends with ";", a missing included file and an include
// loop.
ConfFile read_conf_file(const std::string& path);
// The same from memory (tests, -g).
ConfFile read_conf_text(const std::string& name, std::string_view text);
// What can be read of a file that may be broken, without a word about what cannot: for finding the
// running master (-s) while its configuration is being edited. An unreadable file has no sections.
ConfFile read_conf_file_lenient(const std::string& path);

// The configuration files as the candidate of a live upgrade read them. While a snapshot is set,
// read_conf_file() takes a file it holds from it instead of the disk: the master that re-executes
// into the proven binary loads exactly what the candidate loaded, even if a file changed meanwhile.
void set_conf_snapshot(std::vector<ConfSource> files);
void clear_conf_snapshot();
// A snapshot as bytes (to cross exec in a memfd), and back; false for bytes that are not one.
std::string encode_conf_snapshot(const std::vector<ConfSource>& files);
bool decode_conf_snapshot(std::string_view bytes, std::vector<ConfSource>* files);
ConfFile read_conf_text_lenient(const std::string& name, std::string_view text);
// -g 'key = value; key = value' as a [main] section named "-g".
ConfFile read_conf_globals(std::string_view globals);

// Checks the keys of a [main], [http], [server], [location] or [upstream] section against the table
// of keys: a key of another section says where it belongs, a known nginx directive that baton does
// not have says so, any other unknown key gets the nearest valid key as a suggestion, and a key that
// cannot repeat, given twice, is a duplicate. Throws ConfError at the first such line.
void check_section_keys(const ConfFile& file, const ConfSection& sec);

// Value parsers: false on a malformed value.
bool parse_size(std::string_view s, uint64_t* out);           // 512, 8k, 1m, 1g
bool parse_duration_ms(std::string_view s, int64_t* out);     // 500ms, 30s, 5m, 1h, 7d; bare = seconds
bool parse_switch(std::string_view s, bool* out);             // on/off

// The pid file path the build was configured with (configure --pid-path).
std::string default_pid_path();

struct MainConf {
  int worker_processes = 1;
  int worker_connections = 1024;
  std::string pid = default_pid_path();
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

// Applies the entries of the [main] section of conf (and then the -g overrides) to out. prefix is
// what relative paths are resolved against, for the checks that need the full path.
void parse_main_conf(const ConfFile& conf, const ConfFile* overrides, MainConf* out, const std::string& prefix = "");

// Makes a relative path absolute against prefix.
std::string resolve_path(const std::string& prefix, const std::string& path);

}  // namespace baton

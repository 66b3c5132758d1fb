#include "core/conf.h"

#include <ini.h>
#include <string.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "core/strings.h"

namespace baton {

void ConfFile::fail(int line, const std::string& msg) const { throw ConfError(where(line) + ": " + msg); }

namespace {

// inih reads through this: it counts lines, finds section headers itself (so that two sections with
// the same name stay apart and long names are not cut), and reports lines the library would cut.
struct IniReader {
  ConfFile* file;
  std::string_view data;
  size_t pos = 0;
  int lineno = 0;
  bool continuation = false;
  int first_error_line = 0;
  std::string first_error;

  void error(int line, std::string msg) {
    if (first_error_line == 0 || line < first_error_line) {
      first_error_line = line;
      first_error = std::move(msg);
    }
  }
};

constexpr size_t kIniLineMax = INI_MAX_LINE - 2;  // room for the newline and the terminating NUL

bool is_comment_or_blank(std::string_view t) { return t.empty() || t[0] == ';' || t[0] == '#'; }

void on_section_line(IniReader* r, std::string_view t) {
  size_t close = t.find(']');
  if (close == std::string_view::npos) {
    r->error(r->lineno, "section header without \"]\"");
    return;
  }
  std::string_view rest = trim(t.substr(close + 1));
  if (!rest.empty() && rest[0] != ';' && rest[0] != '#') {
    r->error(r->lineno, "unexpected text after section header");
    return;
  }
  std::string_view inner = trim(t.substr(1, close - 1));
  ConfSection sec;
  sec.line = r->lineno;
  size_t sp = inner.find_first_of(" \t");
  sec.kind = std::string(inner.substr(0, sp));
  if (sp != std::string_view::npos) sec.arg = std::string(trim(inner.substr(sp)));
  r->file->sections.push_back(std::move(sec));
}

char* ini_read_line(char* str, int num, void* stream) {
  auto* r = static_cast<IniReader*>(stream);
  if (r->pos >= r->data.size()) return nullptr;
  size_t nl = r->data.find('\n', r->pos);
  size_t end = nl == std::string_view::npos ? r->data.size() : nl;
  std::string_view line = r->data.substr(r->pos, end - r->pos);
  r->pos = nl == std::string_view::npos ? r->data.size() : nl + 1;
  r->lineno++;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (r->lineno == 1 && line.starts_with("\xEF\xBB\xBF")) line.remove_prefix(3);  // UTF-8 BOM

  std::string_view t = trim(line);
  r->continuation = false;
  if (line.size() > kIniLineMax || line.size() + 2 > static_cast<size_t>(num)) {
    r->error(r->lineno, "line is too long (" + std::to_string(line.size()) + " bytes, at most " +
                            std::to_string(kIniLineMax) + "; continue a long value on an indented line)");
    line = {};
  } else if (memchr(line.data(), '\0', line.size())) {
    r->error(r->lineno, "NUL byte in line");
    line = {};
  } else if (!is_comment_or_blank(t)) {
    if (line[0] == ' ' || line[0] == '\t') {
      r->continuation = true;
      // inih keeps an inline comment on a continuation line; cut it as on any other line.
      for (size_t i = 1; i < line.size(); i++) {
        if (line[i] == ';' && (line[i - 1] == ' ' || line[i - 1] == '\t')) {
          line = line.substr(0, i);
          break;
        }
      }
    } else if (t[0] == '[') {
      on_section_line(r, t);
    }
  }
  if (!line.empty()) memcpy(str, line.data(), line.size());
  str[line.size()] = '\n';
  str[line.size() + 1] = '\0';
  return str;
}

int ini_on_entry(void* user, const char* /*section*/, const char* name, const char* value) {
  auto* r = static_cast<IniReader*>(user);
  if (r->file->sections.empty()) {
    r->error(r->lineno, "\"" + std::string(name) + "\" is outside of any section");
    return 1;
  }
  ConfSection& sec = r->file->sections.back();
  if (r->continuation) {
    if (sec.entries.empty()) {
      r->error(r->lineno, "indented line continues no value");
      return 1;
    }
    ConfEntry& last = sec.entries.back();
    if (!last.value.empty()) last.value.push_back(' ');
    last.value.append(value);
    return 1;
  }
  sec.entries.push_back(ConfEntry{name, value, r->lineno});
  return 1;
}

ConfFile parse_ini(const std::string& name, std::string_view text) {
  ConfFile file;
  file.path = name;
  IniReader reader{&file, text, 0, 0, false, 0, {}};
  int rc = ini_parse_stream(ini_read_line, &reader, ini_on_entry, &reader);
  if (rc > 0) reader.error(rc, "invalid line (expected \"key = value\", \"[section]\" or a comment)");
  if (rc < 0) reader.error(0, "cannot parse (out of memory)");
  if (reader.first_error_line) file.fail(reader.first_error_line, reader.first_error);
  return file;
}

}  // namespace

ConfFile read_conf_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfError("cannot open configuration file \"" + path + "\" (" + strerror(errno) + ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_ini(path, ss.str());
}

ConfFile read_conf_text(const std::string& name, std::string_view text) { return parse_ini(name, text); }

bool parse_size(std::string_view s, uint64_t* out) {
  s = trim(s);
  if (s.empty()) return false;
  uint64_t mult = 1;
  switch (ascii_lower(s.back())) {
    case 'k': mult = 1024; break;
    case 'm': mult = 1024 * 1024; break;
    case 'g': mult = 1024ull * 1024 * 1024; break;
  }
  if (mult != 1) s.remove_suffix(1);
  uint64_t v;
  if (!parse_uint(s, &v) || v > UINT64_MAX / mult) return false;
  *out = v * mult;
  return true;
}

bool parse_duration_ms(std::string_view s, int64_t* out) {
  s = trim(s);
  int64_t mult = 1000;
  if (s.ends_with("ms")) {
    mult = 1;
    s.remove_suffix(2);
  } else if (!s.empty()) {
    switch (s.back()) {
      case 's': mult = 1000; s.remove_suffix(1); break;
      case 'm': mult = 60 * 1000; s.remove_suffix(1); break;
      case 'h': mult = 3600 * 1000; s.remove_suffix(1); break;
      case 'd': mult = 86400ll * 1000; s.remove_suffix(1); break;
    }
  }
  uint64_t v;
  if (!parse_uint(s, &v) || v > static_cast<uint64_t>(INT64_MAX / mult)) return false;
  *out = static_cast<int64_t>(v) * mult;
  return true;
}

bool parse_switch(std::string_view s, bool* out) {
  if (s == "on") {
    *out = true;
    return true;
  }
  if (s == "off") {
    *out = false;
    return true;
  }
  return false;
}

static void apply_main_entry(const ConfFile& conf, const ConfEntry& e, MainConf* m) {
  auto bad = [&](const char* what) { conf.fail(e.line, std::string("invalid ") + what + " \"" + e.value + "\" in \"" + e.key + "\""); };
  auto duration = [&](int64_t* dst) {
    if (!parse_duration_ms(e.value, dst)) bad("duration");
  };
  auto number = [&](int* dst, uint64_t lo, uint64_t hi) {
    uint64_t v;
    if (!parse_uint(e.value, &v) || v < lo || v > hi) bad("number");
    *dst = static_cast<int>(v);
  };
  if (e.key == "worker_processes") {
    if (e.value == "auto") {
      long n = sysconf(_SC_NPROCESSORS_ONLN);
      m->worker_processes = n > 0 ? static_cast<int>(n) : 1;
    } else {
      number(&m->worker_processes, 1, 1024);
    }
  } else if (e.key == "worker_connections") {
    number(&m->worker_connections, 1, 1 << 20);
  } else if (e.key == "pid") {
    if (e.value.empty()) bad("path");
    m->pid = e.value;
  } else if (e.key == "error_log") {
    if (e.value.empty()) bad("path");
    m->error_log = e.value;
  } else if (e.key == "log_level") {
    if (!parse_log_level(e.value, &m->log_level)) bad("level");
  } else if (e.key == "control_socket") {
    if (e.value.empty()) bad("path");
    m->control_socket = e.value;
  } else if (e.key == "quit_timeout") {
    duration(&m->quit_timeout_ms);
  } else if (e.key == "upgrade_timeout") {
    duration(&m->upgrade_timeout_ms);
  } else if (e.key == "restart_initial_backoff") {
    duration(&m->restart_initial_backoff_ms);
  } else if (e.key == "restart_max_backoff") {
    duration(&m->restart_max_backoff_ms);
  } else if (e.key == "restart_max_per_minute") {
    number(&m->restart_max_per_minute, 1, 1000000);
  } else if (e.key == "user") {
    if (e.value.empty()) bad("user");
    m->user = e.value;
  } else if (e.key == "daemon") {
    if (!parse_switch(e.value, &m->daemon)) bad("switch (on or off)");
  } else {
    conf.fail(e.line, "unknown key \"" + e.key + "\" in [main]");
  }
}

void parse_main_conf(const ConfFile& conf, const ConfFile* overrides, MainConf* out) {
  for (const ConfFile* f : {&conf, overrides}) {
    if (!f) continue;
    for (const ConfSection& sec : f->sections) {
      if (sec.kind != "main") continue;
      if (!sec.arg.empty()) f->fail(sec.line, "[main] takes no name");
      for (const ConfEntry& e : sec.entries) apply_main_entry(*f, e, out);
    }
  }
  if (out->restart_max_backoff_ms < out->restart_initial_backoff_ms)
    out->restart_max_backoff_ms = out->restart_initial_backoff_ms;
}

std::string resolve_path(const std::string& prefix, const std::string& path) {
  if (path.empty() || path[0] == '/' || path == "stderr") return path;
  if (prefix.empty()) return path;
  if (prefix.back() == '/') return prefix + path;
  return prefix + "/" + path;
}

}  // namespace baton

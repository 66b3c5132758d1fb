#include "http/http_config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "core/log.h"
#include "core/strings.h"
#include "event/tls.h"
#include "http/http1.h"
#include "http/http_mime.h"
#include "http/http_request.h"

namespace baton::http {

AccessLogFile::~AccessLogFile() {
  if (fd >= 0) ::close(fd);
}

std::string AccessLogFile::open() {
  int nfd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (nfd < 0) return "open() \"" + path + "\" failed (" + strerror(errno) + ")";
  flush();
  if (fd >= 0) ::close(fd);
  fd = nfd;
  broken_line = false;  // a part left in the old file stays there
  return "";
}

void AccessLogFile::flush() {
  if (buf.empty() || fd < 0) return;
  bool padded = broken_line;
  if (padded) buf.insert(buf.begin(), '\n');
  size_t done = 0;
  int err = 0;
  while (done < buf.size()) {
    ssize_t n = ::write(fd, buf.data() + done, buf.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (done > 0) broken_line = false;
  if (done == buf.size()) {
    buf.clear();
    if (failing) {
      failing = false;
      log_notice("access log \"%s\" is written again; %llu line(s) were lost", path.c_str(),
                 static_cast<unsigned long long>(lost_lines));
      lost_lines = 0;
    }
    return;
  }
  // The write stopped inside buf. Whole lines before that point are in the file; if part of the
  // next one is too, the following write (of any worker, once there is room) would continue it
  // into one line of two requests. The part is taken back where the file still ends with it;
  // where it cannot be (not a regular file, or another process has appended since), the next
  // write of this process starts with a line break instead, so that the part stands alone.
  size_t line_start = done;
  while (line_start > 0 && buf[line_start - 1] != '\n') line_start--;
  if (done > line_start) {
    off_t partial = static_cast<off_t>(done - line_start);
    off_t end = ::lseek(fd, 0, SEEK_CUR);
    struct stat st;
    bool cut = end >= partial && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == end &&
               ::ftruncate(fd, end - partial) == 0;
    if (!cut) broken_line = true;
  }
  uint64_t lost = static_cast<uint64_t>(std::count(buf.begin() + static_cast<ptrdiff_t>(line_start), buf.end(), '\n'));
  if (padded && done == 0) lost--;  // the line break put in front is no line
  if (!failing) {
    failing = true;
    log_alert("access log \"%s\" write failed (%s): %llu line(s) lost, and every line until a write succeeds; "
              "requests are served all the same",
              path.c_str(), strerror(err), static_cast<unsigned long long>(lost));
  }
  lost_lines += lost;
  buf.clear();
}

HttpConf::HttpConf() {
  status_shm.name = "status";
  status_shm.size = StatusZone::size();
  status_shm.kind = status::kKind;
  // One key whatever the layout: a binary that lays the counters out otherwise finds the zone handed
  // over, sees it is not its layout (StatusZone::check) and makes its own, saying so.
  status_shm.key = "zone status";
  status_shm.format = StatusZone::format;
  status_shm.check = StatusZone::check;
}

std::vector<ShmZone*> HttpConf::shm_zones() {
  std::vector<ShmZone*> zones;
  for (auto& [name, z] : limit_zones) zones.push_back(&z->shm);
  zones.push_back(&status_shm);
  return zones;
}

StatusZone HttpConf::status_zone() const {
  if (!status_shm.mem) return StatusZone();
  return StatusZone(status_shm.mem->base(), status_shm.mem->size());
}

void HttpConf::bind_status() {
  StatusZone zone = status_zone();
  if (!zone.valid()) return;
  for (auto& srv : servers) srv->status_index = zone.server_index(srv->name);
  for (auto& g : upstreams) g->status_index = zone.upstream_index(g->name);
}

std::string HttpConf::open_logs() {
  for (auto& [path, log] : access_logs) {
    std::string err = log->open();
    if (!err.empty()) return err;
  }
  for (auto& [path, log] : error_logs) {
    std::string err = log->open();
    if (!err.empty()) return err;
  }
  return "";
}

void HttpConf::flush_logs() {
  for (auto& [path, log] : access_logs) log->flush();
}

const Location* Server::find_location(std::string_view path, Captures* caps, bool* failed) const {
  if (!exact_locations.empty()) {
    auto it = exact_locations.find(std::string(path));
    if (it != exact_locations.end()) return it->second;
  }
  const Location* prefix = nullptr;
  for (const Location* loc : prefix_locations)
    if (path.starts_with(loc->match)) {
      prefix = loc;
      break;
    }
  if (prefix && prefix->kind == MatchKind::kPrefixNoRegex) return prefix;
  for (const Location* loc : regex_locations) {
    Regex::Result m = loc->regex->match(path, caps);
    if (m == Regex::Result::kMatch) return loc;
    if (m == Regex::Result::kError) {
      if (failed) *failed = true;
      break;
    }
  }
  return prefix ? prefix : fallback.get();
}

Server* ListenGroup::find_server(std::string_view host) const {
  if (servers.size() == 1) return default_server;
  if (!host.empty()) {
    if (!exact_names.empty()) {
      auto it = exact_names.find(std::string(host));
      if (it != exact_names.end()) return it->second;
    }
    for (const auto& [suffix, srv] : wildcards)
      if (host.size() > suffix.size() && host.ends_with(suffix)) return srv;
  }
  return default_server;
}

namespace {

// A character of an HTTP token (RFC 9110 §5.6.2): what a header name is made of.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

// An upstream name: what may stand as the host of http://NAME, so that a proxy_pass can name it.
bool is_upstream_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
          c == '_'))
      return false;
  return true;
}

// "host", "host:port", "[v6]" or "[v6]:port" (an upstream server, or the authority of a proxy_pass
// URL), split; the port is 0 when none is written.
struct HostPort {
  std::string host;  // without the brackets
  bool bracketed = false;
  uint16_t port = 0;
};

std::string split_host_port(std::string_view text, HostPort* out) {
  std::string_view host = text, port;
  bool has_port = false;
  if (text.starts_with("[")) {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return "invalid IPv6 address \"" + std::string(text) + "\" (no \"]\")";
    host = text.substr(1, close - 1);
    std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return "invalid address \"" + std::string(text) + "\"";
      port = after.substr(1);
      has_port = true;
    }
    out->bracketed = true;
  } else if (size_t colon = text.find(':'); colon != std::string_view::npos) {
    if (text.find(':', colon + 1) != std::string_view::npos)
      return "invalid address \"" + std::string(text) + "\" (an IPv6 address is written in brackets: [::1]:8080)";
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    has_port = true;
  }
  if (host.empty()) return "no host in \"" + std::string(text) + "\"";
  // A name is letters, digits, "-", "." and "_"; what is in brackets the resolver checks as a
  // numeric address.
  if (!out->bracketed && !is_upstream_name(host)) return "invalid host in \"" + std::string(text) + "\"";
  if (has_port) {
    uint64_t p;
    if (!parse_uint(port, &p) || p == 0 || p > 65535) return "invalid port in \"" + std::string(text) + "\"";
    out->port = static_cast<uint16_t>(p);
  }
  out->host = std::string(host);
  return "";
}

// Resolves a host name or a numeric address, as nginx does when it reads its configuration: every
// address the name has, in the resolver's order, each once. "" or the reason it failed.
std::string resolve_host(const HostPort& hp, uint16_t port, std::vector<SockAddr>* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = hp.bracketed ? AI_NUMERICHOST : 0;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(hp.host.c_str(), nullptr, &hints, &res);
  if (rc != 0) return rc == EAI_NONAME || rc == EAI_NODATA ? "" : gai_strerror(rc);
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    SockAddr a;
    if (ai->ai_family == AF_INET) {
      memcpy(&a.storage, ai->ai_addr, sizeof(sockaddr_in));
      reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(port);
      a.len = sizeof(sockaddr_in);
    } else if (ai->ai_family == AF_INET6) {
      memcpy(&a.storage, ai->ai_addr, sizeof(sockaddr_in6));
      reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(port);
      a.len = sizeof(sockaddr_in6);
    } else {
      continue;
    }
    if (std::find(out->begin(), out->end(), a) == out->end()) out->push_back(a);
  }
  freeaddrinfo(res);
  return "";
}

// The words of a `rewrite` value: REGEX REPLACEMENT [FLAG], each plain or in quotes ("..." or
// '...', where \" \' and \\ stand for the character and any other escape is kept for the regex).
std::vector<std::string> rewrite_words(const ConfFile& conf, const ConfEntry& e) {
  std::vector<std::string> words;
  std::string_view v = e.value;
  size_t i = 0;
  while (true) {
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t')) i++;
    if (i == v.size()) break;
    std::string w;
    if (v[i] == '"' || v[i] == '\'') {
      char q = v[i++];
      bool closed = false;
      for (; i < v.size(); i++) {
        if (v[i] == q) {
          closed = true;
          i++;
          break;
        }
        if (v[i] == '\\' && i + 1 < v.size() && (v[i + 1] == '"' || v[i + 1] == '\'' || v[i + 1] == '\\')) i++;
        w.push_back(v[i]);
      }
      if (!closed) conf.fail(e.line, std::string("unterminated quoted text in \"rewrite\" (no closing ") + q + ")");
      if (i < v.size() && v[i] != ' ' && v[i] != '\t')
        conf.fail(e.line, "a space must follow the quoted text in \"rewrite\"");
    } else {
      while (i < v.size() && v[i] != ' ' && v[i] != '\t') w.push_back(v[i++]);
    }
    words.push_back(std::move(w));
  }
  if (words.size() < 2 || words.size() > 3)
    conf.fail(e.line, "\"rewrite\" takes a regular expression, a replacement and an optional flag "
                      "(last, break, redirect or permanent)");
  if (words[0].empty() || words[1].empty()) conf.fail(e.line, "empty regular expression or replacement in \"rewrite\"");
  return words;
}

// The named groups of every regex of the configuration (locations and rewrites): each is a variable
// wherever a value takes variables. The regexes are compiled here first, so a bad one is reported
// before any value that names its groups.
std::vector<std::string> named_captures(const ConfFile& conf) {
  std::vector<std::string> names;
  auto add = [&](const std::string& pattern, bool caseless, int line) {
    Regex re;
    std::string err = re.compile(pattern, caseless);
    if (!err.empty()) conf.fail(line, err);
    for (const std::string& n : re.names()) {
      if (is_variable_name(n))
        conf.fail(line, "the group \"" + n + "\" of a regular expression has the name of a variable ($" + n + ")");
      if (re.number_of(n) >= static_cast<int>(Captures::kMaxGroups))
        conf.fail(line, "the group \"" + n + "\" is beyond the first " + std::to_string(Captures::kMaxGroups - 1) +
                            " groups of its regular expression, which are the ones kept");
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
  };
  for (const ConfSection& sec : conf.sections) {
    if (sec.kind == "location") {
      auto words = split_ws(sec.arg);
      if (words.size() >= 2 && (words[0] == "~" || words[0] == "~*"))
        add(std::string(trim(std::string_view(sec.arg).substr(words[0].size()))), words[0] == "~*", sec.line);
    }
    for (const ConfEntry& e : sec.entries)
      if (e.key == "rewrite" && (sec.kind == "server" || sec.kind == "location")) add(rewrite_words(conf, e)[0], false, e.line);
  }
  return names;
}

struct Parser {
  const ConfFile& conf;
  HttpConf* http;
  std::string prefix;
  const ConfSection* level_ = nullptr;  // the section whose keys are being read (begin_level)
  // [upstream] groups by lower-cased name (the first section of each name), made before any
  // section is read so that a proxy_pass may name a section further down the file.
  std::unordered_map<std::string, UpstreamGroup*> named_upstreams;
  std::unordered_map<size_t, UpstreamGroup*> section_upstreams;  // by section index
  // Implicit groups by lower-cased "host:port": one per address, whichever locations name it.
  std::unordered_map<std::string, UpstreamGroup*> implicit_upstreams;
  // auth_basic_user_file: each file read once, by absolute path.
  std::map<std::string, std::shared_ptr<const UserFile>> user_files_;

  [[noreturn]] void bad(const ConfEntry& e, const char* what) {
    conf.fail(e.line, std::string("invalid ") + what + " \"" + e.value + "\" in \"" + e.key + "\"");
  }

  void duration(const ConfEntry& e, int64_t* dst) {
    if (!parse_duration_ms(e.value, dst)) bad(e, "duration");
  }
  void size(const ConfEntry& e, uint64_t* dst) {
    if (!parse_size(e.value, dst)) bad(e, "size");
  }
  // A timeout of 0 would fail every attempt at once: refused rather than read as "none".
  void timeout(const ConfEntry& e, int64_t* dst) {
    duration(e, dst);
    if (*dst == 0) conf.fail(e.line, "\"" + e.key + "\" must be more than 0");
  }
  template <typename T>
  void number(const ConfEntry& e, T* dst, uint64_t lo, uint64_t hi) {
    uint64_t v;
    if (!parse_uint(e.value, &v)) bad(e, "number");
    if (v < lo || v > hi)
      conf.fail(e.line, "\"" + e.key + "\" must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    *dst = static_cast<T>(v);
  }
  void on_off(const ConfEntry& e, bool* dst) {
    if (!parse_switch(e.value, dst)) bad(e, "switch (on or off)");
  }

  // A value in quotes ("..." or '...') is the text without them, with \" \' \\ \n \r \t inside
  // standing for the character; unquoted, it is taken as it is.
  std::string unquote(const ConfEntry& e, std::string_view rest) {
    if (rest.empty() || (rest[0] != '"' && rest[0] != '\'')) return std::string(rest);
    std::string text;
    char q = rest[0];
    size_t i = 1;
    bool closed = false;
    for (; i < rest.size(); i++) {
      char c = rest[i];
      if (c == q) {
        closed = true;
        break;
      }
      if (c == '\\' && i + 1 < rest.size()) {
        char n = rest[++i];
        switch (n) {
          case 'n': text.push_back('\n'); break;
          case 'r': text.push_back('\r'); break;
          case 't': text.push_back('\t'); break;
          case '"': case '\'': case '\\': text.push_back(n); break;
          default: text.push_back('\\'); text.push_back(n); break;
        }
        continue;
      }
      text.push_back(c);
    }
    if (!closed) conf.fail(e.line, "unterminated quoted text in \"" + e.key + "\" (no closing " + q + ")");
    if (i + 1 < rest.size())
      conf.fail(e.line, "unexpected \"" + std::string(rest.substr(i + 1)) + "\" after the quoted text in \"" + e.key + "\"");
    return text;
  }

  // The lists a level sets replace the inherited ones as a whole (nginx's rule for proxy_set_header,
  // proxy_hide_header, proxy_pass_header and error_page): a level that sets one header (or page) does
  // not add it to those of the level above, it starts a list of its own.
  void begin_level(const ConfSection& sec, Settings* s) {
    level_ = &sec;
    for (const ConfEntry& e : sec.entries) {
      if (e.key == "proxy_set_header") s->proxy.set_headers.clear();
      else if (e.key == "proxy_hide_header") s->proxy.hide_headers.clear();
      else if (e.key == "proxy_pass_header") s->proxy.pass_headers.clear();
      else if (e.key == "error_page") s->error_pages.clear();
      else if (e.key == "add_header") s->add_headers.clear();
      else if (e.key == "access_log") s->access_logs.clear();
      else if (e.key == "allow" || e.key == "deny") s->access.clear();
      else if (e.key == "set_real_ip_from") s->real_ip.from.clear();
      else if (e.key == "limit_req") s->limits.reqs.clear();
      else if (e.key == "limit_conn") s->limits.conns.clear();
      else if (e.key == "ssl_certificate") s->tls.certificates.clear(), s->tls.certificate_lines.clear();
      else if (e.key == "ssl_certificate_key") s->tls.keys.clear(), s->tls.key_lines.clear();
      else if (e.key == "ssl_conf_command") s->tls.conf_commands.clear();
      else if (e.key == "ssl_session_ticket_key") s->tls.ticket_key_files.clear(), s->tls.ticket_key_lines.clear();
    }
  }

  // access_log = PATH [combined | json | NAME] [if=CONDITION], or `off`. Several may stand at one
  // level: a request is written to each.
  void parse_access_log(const ConfEntry& e, Settings* s) {
    auto words = split_ws(e.value);
    if (words.empty()) bad(e, "access_log");
    if (words[0] == "off") {
      if (words.size() != 1) conf.fail(e.line, "\"access_log = off\" takes nothing after it");
      // Either the level logs or it does not: an `off` beside a log would silently win or lose.
      for (const ConfEntry& other : level_->entries)
        if (&other != &e && other.key == "access_log")
          conf.fail(e.line, "\"access_log = off\" and another \"access_log\" (" + conf.at(other.line) + ") at one level");
      s->access_logs.clear();
      return;
    }
    AccessLog log;
    for (size_t i = 1; i < words.size(); i++) {
      std::string_view w = words[i];
      if (w.starts_with("if=")) {
        if (log.condition) conf.fail(e.line, "\"if=\" is given twice in \"access_log\"");
        auto t = std::make_shared<Template>();
        std::string err = t->compile(w.substr(3));
        if (err.empty() && !t->has_variables()) err = "the condition \"" + std::string(w.substr(3)) + "\" holds no variable";
        if (!err.empty()) conf.fail(e.line, err + " in \"access_log\"");
        log.condition = std::move(t);
      } else if (i == 1) {
        if (w == "combined") {
          log.format = LogFormat::kCombined;
        } else if (w == "json") {
          log.format = LogFormat::kJson;
        } else {
          auto it = http->log_formats.find(std::string(w));
          if (it == http->log_formats.end())
            conf.fail(e.line, "unknown log format \"" + std::string(w) + "\" (combined, json or a log_format of [http])");
          log.format = LogFormat::kCustom;
          log.custom = it->second;
        }
      } else {
        conf.fail(e.line, "unexpected \"" + std::string(w) + "\" in \"access_log\" (PATH [FORMAT] [if=CONDITION])");
      }
    }
    std::string path = resolve_path(prefix, std::string(words[0]));
    auto& slot = http->access_logs[path];
    if (!slot) {
      slot = std::make_shared<AccessLogFile>();
      slot->path = path;
      slot->line = e.line;
    }
    for (const AccessLog& other : s->access_logs)
      if (other.file == slot)
        conf.fail(e.line, "\"" + std::string(words[0]) + "\" is named twice at this level of \"access_log\"");
    log.file = slot;
    s->access_logs.push_back(std::move(log));
  }

  // limit_req_zone = NAME KEY rate=Nr/s|Nr/m [size=S] and limit_conn_zone = NAME KEY [size=S], in
  // [http]. nginx's own order is read too: KEY zone=NAME:SIZE [rate=...].
  void parse_limit_zone(const ConfEntry& e, LimitKind kind) {
    const bool req = kind == LimitKind::kReq;
    const char* usage = req ? "limit_req_zone = NAME KEY rate=10r/s [size=10m]" : "limit_conn_zone = NAME KEY [size=10m]";
    auto words = split_ws(e.value);
    auto z = std::make_unique<LimitZone>();
    z->kind = kind;
    z->line = e.line;
    uint64_t size = 10 * 1024 * 1024;
    bool has_rate = false;
    for (size_t i = 0; i < words.size(); i++) {
      std::string_view w = words[i];
      if (req && w.starts_with("rate=")) {
        if (!parse_limit_rate(w.substr(5), &z->rate))
          conf.fail(e.line, "invalid rate \"" + std::string(w.substr(5)) + "\" in \"" + e.key + "\" (10r/s or 30r/m)");
        has_rate = true;
      } else if (w.starts_with("size=")) {
        if (!parse_size(w.substr(5), &size)) conf.fail(e.line, "invalid size \"" + std::string(w.substr(5)) + "\" in \"" + e.key + "\"");
      } else if (w.starts_with("zone=")) {
        std::string_view nz = w.substr(5);
        size_t colon = nz.find(':');
        if (!z->name.empty() || colon == std::string_view::npos || !parse_size(nz.substr(colon + 1), &size))
          conf.fail(e.line, "invalid \"" + std::string(w) + "\" in \"" + e.key + "\" (zone=NAME:SIZE, or " + usage + ")");
        z->name = nz.substr(0, colon);
      } else if (z->name.empty() && !w.starts_with("$") && i == 0) {
        z->name = w;
      } else if (z->key_text.empty() && w.find('=') == std::string_view::npos) {
        z->key_text = w;
      } else {
        conf.fail(e.line, "unexpected \"" + std::string(w) + "\" in \"" + e.key + "\" (" + usage + ")");
      }
    }
    if (z->name.empty() || z->key_text.empty()) conf.fail(e.line, std::string("\"") + e.key + "\" needs a name and a key (" + usage + ")");
    if (req && !has_rate) conf.fail(e.line, std::string("\"") + e.key + "\" needs a rate (" + usage + ")");
    for (char c : z->name)
      if (!isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
        conf.fail(e.line, "invalid zone name \"" + z->name + "\" in \"" + e.key + "\" (letters, digits, _ - .)");
    if (size < 32 * 1024 || size > (uint64_t{1} << 36))
      conf.fail(e.line, "the size of zone \"" + z->name + "\" must be between 32k and 64g");
    std::string err = z->key.compile(z->key_text);
    if (!err.empty()) conf.fail(e.line, err + " in \"" + e.key + "\"");
    if (!z->key.has_variables())
      conf.fail(e.line, "the key \"" + z->key_text + "\" of \"" + e.key + "\" holds no variable: every client would share one limit");
    z->shm.name = z->name;
    z->shm.size = size;
    z->shm.kind = static_cast<uint32_t>(kind);
    // The same name, kind, size and key find the same memory after a reload or an upgrade; a zone
    // that changed any of them starts empty (its records would mean something else).
    z->shm.key = std::string("zone ") + (req ? "limit_req " : "limit_conn ") + z->name + " " + std::to_string(size) +
                 " " + z->key_text;
    auto [it, fresh] = http->limit_zones.emplace(z->name, nullptr);
    if (!fresh)
      conf.fail(e.line, "duplicate zone \"" + z->name + "\" (first at " + conf.at(it->second->line) + ")");
    it->second = std::move(z);
  }

  const LimitZone* limit_zone(const ConfEntry& e, std::string_view name, LimitKind kind) {
    auto it = http->limit_zones.find(std::string(name));
    if (it == http->limit_zones.end() || it->second->kind != kind)
      conf.fail(e.line, "unknown " + std::string(kind == LimitKind::kReq ? "limit_req_zone" : "limit_conn_zone") + " \"" +
                            std::string(name) + "\" in \"" + e.key + "\"");
    return it->second.get();
  }

  // limit_req = NAME [burst=N] [nodelay | delay=N] (or nginx's zone=NAME)
  void parse_limit_req(const ConfEntry& e, Settings* s) {
    auto words = split_ws(e.value);
    LimitReq l;
    bool nodelay = false, has_delay = false;
    for (size_t i = 0; i < words.size(); i++) {
      std::string_view w = words[i];
      uint64_t n = 0;
      if (w.starts_with("burst=")) {
        if (!parse_uint(w.substr(6), &n) || n > 1000000) conf.fail(e.line, "invalid burst \"" + std::string(w.substr(6)) + "\" in \"limit_req\"");
        l.burst = n * 1000;
      } else if (w.starts_with("delay=")) {
        if (!parse_uint(w.substr(6), &n) || n > 1000000) conf.fail(e.line, "invalid delay \"" + std::string(w.substr(6)) + "\" in \"limit_req\"");
        l.delay = n * 1000;
        has_delay = true;
      } else if (w == "nodelay") {
        nodelay = true;
      } else if (w.starts_with("zone=") && !l.zone) {
        l.zone = limit_zone(e, w.substr(5), LimitKind::kReq);
      } else if (i == 0) {
        l.zone = limit_zone(e, w, LimitKind::kReq);
      } else {
        conf.fail(e.line, "unexpected \"" + std::string(w) + "\" in \"limit_req\" (limit_req = NAME [burst=N] [nodelay | delay=N])");
      }
    }
    if (!l.zone) conf.fail(e.line, "\"limit_req\" needs a zone (limit_req = NAME [burst=N] [nodelay | delay=N])");
    if (nodelay && has_delay) conf.fail(e.line, "\"nodelay\" and \"delay=\" together in \"limit_req\"");
    if (nodelay) l.delay = UINT64_MAX;
    for (const LimitReq& other : s->limits.reqs)
      if (other.zone == l.zone) conf.fail(e.line, "zone \"" + l.zone->name + "\" is named twice at this level of \"limit_req\"");
    if (s->limits.reqs.size() == 8) conf.fail(e.line, "more than 8 \"limit_req\" at one level");
    s->limits.reqs.push_back(l);
  }

  // limit_conn = NAME N
  void parse_limit_conn(const ConfEntry& e, Settings* s) {
    auto words = split_ws(e.value);
    uint64_t n = 0;
    if (words.size() != 2 || !parse_uint(words[1], &n) || n == 0 || n > 65535)
      conf.fail(e.line, "\"limit_conn\" takes a zone and a number from 1 to 65535 (limit_conn = NAME N)");
    LimitConn l;
    l.zone = limit_zone(e, words[0], LimitKind::kConn);
    l.max = static_cast<uint32_t>(n);
    for (const LimitConn& other : s->limits.conns)
      if (other.zone == l.zone) conf.fail(e.line, "zone \"" + l.zone->name + "\" is named twice at this level of \"limit_conn\"");
    s->limits.conns.push_back(l);
  }

  // error_log = PATH (or stderr) in [http], [server] or [location]: the lines about the requests of
  // that level go there. As in [main], a path only: the level is [main]'s log_level.
  void parse_error_log(const ConfEntry& e, Settings* s) {
    std::string_view v = trim(std::string_view(e.value));
    if (v.empty()) bad(e, "path");
    size_t sp = v.find_last_of(" \t");
    LogLevel level;
    if (sp != std::string_view::npos && parse_log_level(trim(v.substr(sp + 1)), &level))
      conf.fail(e.line, "\"error_log\" takes a path only; the level is set with \"log_level = " +
                            std::string(trim(v.substr(sp + 1))) + "\" in [main]");
    if (v.find('$') != std::string_view::npos) conf.fail(e.line, "variables are not supported in \"error_log\"");
    std::string path = resolve_path(prefix, std::string(v));
    auto& slot = http->error_logs[path];
    if (!slot) {
      slot = std::make_unique<ErrorLogFile>();
      slot->path = path;
      slot->where = conf.where(e.line);
    }
    s->error_log = slot.get();
  }

  // log_format = NAME [escape=default|json|none] FORMAT, in [http]: FORMAT is the rest of the value,
  // quoted or not, with variables.
  void parse_log_format(const ConfEntry& e) {
    std::string_view v = trim(std::string_view(e.value));
    size_t sp = v.find_first_of(" \t");
    std::string name(v.substr(0, sp));
    if (name.empty() || sp == std::string_view::npos)
      conf.fail(e.line, "\"log_format\" needs a name and a format (log_format = main \"$remote_addr $request\")");
    if (name == "combined" || name == "json" || name == "off")
      conf.fail(e.line, "\"" + name + "\" is a built-in log format and cannot be defined again");
    for (char c : name)
      if (!is_tchar(static_cast<unsigned char>(c))) bad(e, "log format name");
    auto f = std::make_shared<CustomLogFormat>();
    f->name = name;
    f->line = e.line;
    std::string_view rest = trim(v.substr(sp));
    if (rest.starts_with("escape=")) {
      size_t end = rest.find_first_of(" \t");
      std::string_view how = rest.substr(7, end == std::string_view::npos ? std::string_view::npos : end - 7);
      if (how == "default") f->escape = Escape::kLog;
      else if (how == "json") f->escape = Escape::kJson;
      else if (how == "none") f->escape = Escape::kLogRaw;
      else conf.fail(e.line, "unknown escape \"" + std::string(how) + "\" in \"log_format\" (default, json or none)");
      rest = end == std::string_view::npos ? std::string_view() : trim(rest.substr(end));
    }
    std::string text = unquote(e, rest);
    if (text.empty()) conf.fail(e.line, "\"log_format\" needs a format after its name");
    for (unsigned char c : text)
      if (c == '\n' || c == '\r') conf.fail(e.line, "a line break in \"log_format\" would split the log's lines");
    std::string err = f->format.compile(text);
    if (!err.empty()) conf.fail(e.line, err + " in \"log_format\"");
    auto [it, fresh] = http->log_formats.emplace(name, f);
    if (!fresh) conf.fail(e.line, "duplicate log_format \"" + name + "\" (first at " + conf.at(it->second->line) + ")");
  }

  // add_header = NAME VALUE [always]. The value may be quoted and may hold variables; a header the
  // server writes itself, or one that frames the body, cannot be added.
  void parse_add_header(const ConfEntry& e, Settings* s) {
    std::string_view v = trim(std::string_view(e.value));
    size_t sp = v.find_first_of(" \t");
    std::string_view name = v.substr(0, sp);
    if (name.empty() || sp == std::string_view::npos)
      conf.fail(e.line, "\"add_header\" needs a name and a value (add_header = X-Frame-Options DENY)");
    for (char c : name)
      if (!is_tchar(static_cast<unsigned char>(c))) conf.fail(e.line, "invalid header name \"" + std::string(name) + "\" in \"add_header\"");
    for (const char* own : {"content-length", "transfer-encoding", "connection", "date", "server", "keep-alive", "upgrade"})
      if (iequals(name, own))
        conf.fail(e.line, "\"" + std::string(name) + "\" is written by baton itself and cannot be added with \"add_header\"");
    std::string_view rest = trim(v.substr(sp));
    AddedHeader a;
    a.name = std::string(name);
    // "always" as the last word, after the value (a quoted value may hold the word itself).
    if (rest.size() > 6 && rest.substr(rest.size() - 6) == "always" &&
        (rest[rest.size() - 7] == ' ' || rest[rest.size() - 7] == '\t')) {
      a.always = true;
      rest = trim(rest.substr(0, rest.size() - 7));
    }
    std::string text = unquote(e, rest);
    for (unsigned char c : text)
      if ((c < 0x20 && c != '\t') || c == 0x7f) conf.fail(e.line, "control character in the value of \"add_header\"");
    if (std::string err = a.value.compile(text); !err.empty()) conf.fail(e.line, err);
    s->add_headers.push_back(std::move(a));
  }

  // allow / deny / set_real_ip_from = ADDR, ADDR/BITS or unix: (and `all` for allow and deny).
  // Bits past the prefix are cleared with a warning, as nginx does.
  AddrRange addr_range(const ConfEntry& e) {
    std::string_view v = trim(std::string_view(e.value));
    AddrRange r;
    bool host_bits = false;
    std::string err = parse_addr_range(v, e.key, e.key != "set_real_ip_from", &r, &host_bits);
    if (!err.empty()) conf.fail(e.line, err);
    if (host_bits)
      log_warn("%s: low address bits of %s are meaningless", conf.where(e.line).c_str(), std::string(v).c_str());
    return r;
  }

  // auth_basic = REALM | off. The realm may be quoted and may hold variables; it is sent as a
  // quoted-string, so a control character cannot be part of it.
  void parse_auth_basic(const ConfEntry& e, AuthBasic* a) {
    std::string text = unquote(e, trim(std::string_view(e.value)));
    a->line = e.line;
    if (text == "off") {
      a->on = false;
      return;
    }
    for (unsigned char c : text)
      if ((c < 0x20 && c != '\t') || c == 0x7f) conf.fail(e.line, "control character in the realm of \"auth_basic\"");
    if (std::string err = a->realm.compile(text); !err.empty()) conf.fail(e.line, err + " in \"auth_basic\"");
    a->on = true;
  }

  // auth_basic_user_file = PATH: read now, once per path for the whole configuration; an error in
  // it stops the configuration at this line.
  std::shared_ptr<const UserFile> user_file(const ConfEntry& e) {
    std::string_view v = trim(std::string_view(e.value));
    if (v.empty()) bad(e, "path");
    if (v.find('$') != std::string_view::npos)
      conf.fail(e.line, "variables are not supported in \"auth_basic_user_file\"");
    std::string path = resolve_path(prefix, std::string(v));
    auto& slot = user_files_[path];
    if (!slot) {
      auto f = std::make_shared<UserFile>();
      if (std::string err = f->load(path); !err.empty()) conf.fail(e.line, "\"auth_basic_user_file\": " + err);
      slot = std::move(f);
    }
    return slot;
  }

  // auth_basic with no user file would let everyone in (nginx then skips the check silently).
  void check_auth(const Settings& s) {
    if (s.auth_basic.on && !s.auth_basic.users)
      conf.fail(s.auth_basic.line, "\"auth_basic\" needs an \"auth_basic_user_file\" at its level or above");
  }

  // real_ip_header = X-Real-IP | X-Forwarded-For | proxy_protocol | another field's name.
  void parse_real_ip_header(const ConfEntry& e, RealIpSettings* r) {
    std::string_view v = trim(std::string_view(e.value));
    if (v == "proxy_protocol") {
      r->source = RealIpSource::kProxyProtocol;
      r->header.clear();
      return;
    }
    if (!is_token(v)) bad(e, "header name");
    r->source = iequals(v, "X-Real-IP")         ? RealIpSource::kXRealIp
                : iequals(v, "X-Forwarded-For") ? RealIpSource::kXForwardedFor
                                                : RealIpSource::kHeader;
    r->header = std::string(v);
  }

  // error_page = CODE [CODE...] [=[RESPONSE]] URI. The URI is a local page (a path, looked up as a
  // location of the server when the error happens) or an http(s) URL the client is redirected to.
  void parse_error_page(const ConfEntry& e, Settings* s) {
    auto words = split_ws(e.value);
    if (words.size() < 2)
      conf.fail(e.line, "\"error_page\" needs one or more status codes and a page (error_page = 404 /404.html)");
    std::string_view uri = words.back();
    size_t codes_end = words.size() - 1;
    ErrorPage proto;
    proto.line = e.line;
    proto.uri = std::string(uri);
    if (words[codes_end - 1].starts_with("=")) {
      std::string_view r = words[codes_end - 1].substr(1);
      codes_end--;
      if (codes_end == 0) conf.fail(e.line, "\"error_page\" needs a status code before \"=" + std::string(r) + "\"");
      if (r.empty()) {
        proto.response = 0;
      } else {
        uint64_t code;
        // A page is a body: a status that has none (1xx, 204, 304) cannot carry it.
        if (!parse_uint(r, &code) || code < 200 || code > 599 || code == 204 || code == 304)
          conf.fail(e.line, "invalid response code \"=" + std::string(r) +
                                "\" in \"error_page\" (200 to 599, not 204 or 304)");
        proto.response = static_cast<int>(code);
      }
    }
    for (unsigned char c : uri)
      if (c < 0x20 || c == 0x7f) conf.fail(e.line, "control character in the page of \"error_page\"");
    if (uri.find('$') != std::string_view::npos)
      conf.fail(e.line, "variables in \"error_page\" are not supported yet: \"" + proto.uri + "\"");
    if (uri.starts_with("/")) {
      std::string_view args;
      if (!normalize_path(uri, &proto.path, &args) || uri.find('#') != std::string_view::npos)
        conf.fail(e.line, "invalid page \"" + proto.uri + "\" in \"error_page\"");
      proto.args = std::string(args);
    } else if (istarts_with(uri, "http://") || istarts_with(uri, "https://")) {
      proto.redirect = true;
      int r = proto.response;
      if (r == 0 || (r > 0 && r != 301 && r != 302 && r != 303 && r != 307 && r != 308))
        conf.fail(e.line, "\"error_page\" to a URL redirects: its response code is 301, 302, 303, 307 or 308 "
                          "(302 when none is given)");
    } else if (uri.starts_with("@")) {
      conf.fail(e.line, "named locations are not supported: \"error_page\" takes a path or an http(s) URL");
    } else {
      conf.fail(e.line, "invalid page \"" + proto.uri + "\" in \"error_page\" (a path starting with \"/\" or an "
                        "http(s) URL)");
    }
    for (size_t i = 0; i < codes_end; i++) {
      uint64_t code;
      if (!parse_uint(words[i], &code) || code < 300 || code > 599)
        conf.fail(e.line, "invalid status code \"" + std::string(words[i]) + "\" in \"error_page\" (300 to 599)");
      // A 304 answers a conditional request; it is no error and has no body to replace.
      if (code == 304) conf.fail(e.line, "\"error_page\" cannot replace 304 (it is not an error and has no body)");
      for (const ErrorPage& other : s->error_pages)
        if (other.status == static_cast<int>(code) && other.line != e.line)
          conf.fail(e.line, "the error page for " + std::to_string(code) + " is already set at " + conf.at(other.line));
        else if (other.status == static_cast<int>(code))
          conf.fail(e.line, "status code " + std::to_string(code) + " is given twice in \"error_page\"");
      ErrorPage p = proto;
      p.status = static_cast<int>(code);
      s->error_pages.push_back(std::move(p));
    }
  }

  // A local error page is served by the location its path falls in: one that proxies cannot serve
  // it (an error page is a file or a `return`), and this is said now rather than found out when an
  // upstream fails.
  void check_error_pages(const Server& srv, const Settings& s) {
    for (const ErrorPage& p : s.error_pages) {
      if (p.redirect) continue;
      const Location* loc = srv.find_location(p.path);
      if (!loc->proxy_pass) continue;
      const char* kind = loc->kind == MatchKind::kExact            ? "= "
                         : loc->kind == MatchKind::kPrefixNoRegex ? "^~ "
                         : loc->kind == MatchKind::kRegex         ? (loc->regex->caseless() ? "~* " : "~ ")
                                                                  : "";
      conf.fail(p.line, "the error page \"" + p.uri + "\" falls in [location " + kind + loc->match + "] (" +
                            conf.at(loc->line) + ") of [server " + srv.name + "], which has \"proxy_pass\": an error page is served from a file or a \"return\" "
                            "(add a [location = " + p.path + "] with a root)");
    }
  }

  void parse_set_header(const ConfEntry& e, ProxySettings* p) {
    std::string_view v = trim(e.value);
    size_t sp = v.find_first_of(" \t");
    if (sp == std::string_view::npos)
      conf.fail(e.line, "\"proxy_set_header\" needs a header name and a value (\"\" for an empty value, which "
                        "removes the header)");
    ProxySetHeader h;
    h.name = std::string(v.substr(0, sp));
    if (!is_token(h.name)) conf.fail(e.line, "invalid header name \"" + h.name + "\" in \"proxy_set_header\"");
    h.lower = lower(h.name);
    // The proxy frames the request body itself: a second framing header would let the upstream
    // read the body otherwise than the proxy sends it.
    if (h.lower == "content-length" || h.lower == "transfer-encoding")
      conf.fail(e.line, "\"proxy_set_header\" cannot set \"" + h.name + "\" (the proxy frames the request body itself)");
    std::string text = unquote(e, trim(v.substr(sp)));
    for (unsigned char c : text)
      if ((c < 0x20 && c != '\t') || c == 0x7f) conf.fail(e.line, "control character in the value of \"proxy_set_header\"");
    std::string err = h.value.compile(text);
    if (!err.empty()) conf.fail(e.line, err + " in \"proxy_set_header\"");
    p->set_headers.push_back(std::move(h));
  }

  void header_name(const ConfEntry& e, std::vector<std::string>* list) {
    std::string_view v = trim(e.value);
    if (!is_token(v)) conf.fail(e.line, "invalid header name \"" + e.value + "\" in \"" + e.key + "\" (one name per line)");
    list->push_back(lower(v));
  }

  void parse_next_upstream(const ConfEntry& e, ProxySettings* p) {
    static const struct {
      const char* word;
      uint32_t bit;
    } kWords[] = {
        {"error", kNextError},       {"timeout", kNextTimeout},   {"invalid_header", kNextError},
        {"http_500", kNextHttp500},  {"http_502", kNextHttp502},  {"http_503", kNextHttp503},
        {"http_504", kNextHttp504},  {"http_403", kNextHttp403},  {"http_404", kNextHttp404},
        {"http_429", kNextHttp429},  {"non_idempotent", kNextNonIdempotent},
    };
    auto words = split_ws(e.value);
    if (words.empty()) bad(e, "value");
    uint32_t bits = 0;
    for (std::string_view w : words) {
      if (w == "off") {
        if (words.size() != 1) conf.fail(e.line, "\"off\" in \"proxy_next_upstream\" stands alone");
        break;
      }
      bool found = false;
      for (const auto& k : kWords)
        if (w == k.word) {
          bits |= k.bit;
          found = true;
        }
      if (!found)
        conf.fail(e.line, "invalid value \"" + std::string(w) +
                              "\" in \"proxy_next_upstream\" (error, timeout, invalid_header, http_500, http_502, "
                              "http_503, http_504, http_403, http_404, http_429, non_idempotent or off)");
    }
    p->next_upstream = bits;
  }

  // Returns false when the key is not a proxy_* one.
  bool apply_proxy_setting(const ConfEntry& e, ProxySettings* p) {
    const std::string& k = e.key;
    if (k == "proxy_set_header") {
      parse_set_header(e, p);
    } else if (k == "proxy_hide_header") {
      header_name(e, &p->hide_headers);
    } else if (k == "proxy_pass_header") {
      header_name(e, &p->pass_headers);
    } else if (k == "proxy_next_upstream") {
      parse_next_upstream(e, p);
    } else if (k == "proxy_next_upstream_tries") {
      number(e, &p->next_upstream_tries, 0, 1000);
    } else if (k == "proxy_next_upstream_timeout") {
      duration(e, &p->next_upstream_timeout_ms);
    } else if (k == "proxy_buffering") {
      on_off(e, &p->buffering);
    } else if (k == "proxy_request_buffering") {
      on_off(e, &p->request_buffering);
    } else if (k == "client_body_buffer_size") {
      size(e, &p->client_body_buffer_size);
    } else if (k == "proxy_buffer_size") {
      size(e, &p->buffer_size);
      if (p->buffer_size < 1024 || p->buffer_size > 1024 * 1024)
        conf.fail(e.line, "\"proxy_buffer_size\" must be between 1k and 1m");
    } else if (k == "proxy_buffers") {
      auto words = split_ws(e.value);
      uint64_t n, one;
      if (words.size() != 2 || !parse_uint(words[0], &n) || !parse_size(words[1], &one))
        conf.fail(e.line, "invalid value \"" + e.value + "\" in \"proxy_buffers\" (expected NUMBER SIZE, as 8 8k)");
      if (n < 2) conf.fail(e.line, "there must be at least 2 \"proxy_buffers\"");
      if (one == 0 || n > (uint64_t{1} << 40) / one) conf.fail(e.line, "invalid size in \"proxy_buffers\"");
      p->buffers_size = n * one;
    } else if (k == "proxy_redirect") {
      if (e.value == "default") p->redirect_default = true;
      else if (e.value == "off") p->redirect_default = false;
      else conf.fail(e.line, "\"proxy_redirect = " + e.value + "\" is not supported yet (only default or off)");
    } else if (k == "proxy_http_version") {
      // nginx speaks HTTP/1.0 to upstreams unless told otherwise; baton always speaks 1.1 (its
      // pools need it), so the usual `proxy_http_version 1.1` is accepted and changes nothing.
      if (e.value != "1.1")
        conf.fail(e.line, "\"proxy_http_version = " + e.value + "\" is not supported: baton speaks HTTP/1.1 to upstreams");
    } else if (k == "proxy_connect_timeout") {
      timeout(e, &p->connect_timeout_ms);
    } else if (k == "proxy_read_timeout") {
      timeout(e, &p->read_timeout_ms);
    } else if (k == "proxy_send_timeout") {
      timeout(e, &p->send_timeout_ms);
    } else {
      return false;
    }
    return true;
  }

  std::string existing_dir(const ConfEntry& e) {
    if (e.value.empty()) bad(e, "path");
    std::string path = resolve_path(prefix, e.value);
    struct stat st;
    if (::stat(path.c_str(), &st) < 0)
      conf.fail(e.line, "\"" + e.key + "\" directory \"" + path + "\" does not exist (" + strerror(errno) + ")");
    if (!S_ISDIR(st.st_mode)) conf.fail(e.line, "\"" + e.key + "\" path \"" + path + "\" is not a directory");
    return path;
  }

  // Returns false when the key is not an inheritable one.
  // ssl_protocols / proxy_ssl_protocols: a range of versions, as OpenSSL's minimum and maximum.
  void protocols(const ConfEntry& e, int* min, int* max) {
    static const struct {
      const char* name;
      int version;
    } kVersions[] = {{"TLSv1", 0x0301}, {"TLSv1.1", 0x0302}, {"TLSv1.2", 0x0303}, {"TLSv1.3", 0x0304}};
    int lo = 0, hi = 0;
    auto words = split_ws(e.value);
    if (words.empty()) bad(e, "protocol list");
    for (std::string_view w : words) {
      int v = 0;
      for (const auto& kv : kVersions)
        if (w == kv.name) v = kv.version;
      if (!v)
        conf.fail(e.line, "unknown protocol \"" + std::string(w) + "\" in \"" + e.key + "\" (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)");
      if (!lo || v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (static_cast<size_t>(hi - lo + 1) != words.size())
      conf.fail(e.line, "\"" + e.key + "\" must name a range of versions without a gap (\"" + e.value + "\")");
    *min = lo;
    *max = hi;
  }

  bool apply_setting(const ConfEntry& e, Settings* s) {
    const std::string& k = e.key;
    if (k == "root") {
      s->root = existing_dir(e);
    } else if (k == "index") {
      auto names = split_ws(e.value);
      if (names.empty()) bad(e, "index");
      s->index.assign(names.begin(), names.end());
      for (const std::string& n : s->index)
        if (n.find('/') != std::string::npos) bad(e, "index file name");
    } else if (k == "default_type") {
      if (e.value.empty() || e.value.find('/') == std::string::npos) bad(e, "MIME type");
      s->default_type = e.value;
    } else if (k == "keepalive_timeout") {
      duration(e, &s->keepalive_timeout_ms);
    } else if (k == "keepalive_requests") {
      if (!parse_uint(e.value, &s->keepalive_requests) || s->keepalive_requests == 0) bad(e, "number");
    } else if (k == "client_header_timeout") {
      duration(e, &s->client_header_timeout_ms);
      if (s->client_header_timeout_ms == 0) bad(e, "duration");
    } else if (k == "client_body_timeout") {
      duration(e, &s->client_body_timeout_ms);
      if (s->client_body_timeout_ms == 0) bad(e, "duration");
    } else if (k == "send_timeout") {
      duration(e, &s->send_timeout_ms);
      if (s->send_timeout_ms == 0) bad(e, "duration");
    } else if (k == "ssl_certificate" || k == "ssl_certificate_key") {
      if (e.value.empty() || e.value.find('$') != std::string::npos) bad(e, "path");
      bool cert = k == "ssl_certificate";
      (cert ? s->tls.certificates : s->tls.keys).push_back(resolve_path(prefix, e.value));
      (cert ? s->tls.certificate_lines : s->tls.key_lines).push_back(e.line);
    } else if (k == "ssl_protocols") {
      protocols(e, &s->tls.min_version, &s->tls.max_version);
      s->tls.protocols_line = e.line;
    } else if (k == "ssl_ciphers") {
      if (e.value.empty()) bad(e, "cipher list");
      s->tls.ciphers = e.value;
      s->tls.ciphers_line = e.line;
    } else if (k == "ssl_prefer_server_ciphers") {
      on_off(e, &s->tls.prefer_server_ciphers);
    } else if (k == "ssl_conf_command") {
      if (split_ws(e.value).size() != 2) conf.fail(e.line, "\"ssl_conf_command\" takes a name and a value");
      s->tls.conf_commands.push_back(e.value);
      s->tls.conf_commands_line = e.line;
    } else if (k == "proxy_ssl_verify") {
      on_off(e, &s->proxy.ssl_verify);
      s->proxy.ssl_verify_line = e.line;
    } else if (k == "proxy_ssl_trusted_certificate") {
      if (e.value.empty()) bad(e, "path");
      s->proxy.ssl_trusted_certificate = resolve_path(prefix, e.value);
      s->proxy.ssl_trusted_certificate_line = e.line;
    } else if (k == "proxy_ssl_verify_depth") {
      uint64_t n;
      if (!parse_uint(e.value, &n) || n == 0 || n > 100) bad(e, "depth (1 to 100)");
      s->proxy.ssl_verify_depth = static_cast<int>(n);
    } else if (k == "proxy_ssl_server_name") {
      on_off(e, &s->proxy.ssl_server_name);
    } else if (k == "proxy_ssl_name") {
      std::string_view v = trim(e.value);
      if (v.empty() || v.find_first_of(" \t$") != std::string_view::npos) bad(e, "name (a host name, without variables)");
      s->proxy.ssl_name = std::string(v);
    } else if (k == "proxy_ssl_certificate" || k == "proxy_ssl_certificate_key") {
      if (e.value.empty()) bad(e, "path");
      bool cert = k == "proxy_ssl_certificate";
      (cert ? s->proxy.ssl_certificate : s->proxy.ssl_certificate_key) = resolve_path(prefix, e.value);
      (cert ? s->proxy.ssl_certificate_line : s->proxy.ssl_certificate_key_line) = e.line;
    } else if (k == "proxy_ssl_protocols") {
      protocols(e, &s->proxy.ssl_min_version, &s->proxy.ssl_max_version);
    } else if (k == "proxy_ssl_ciphers") {
      if (e.value.empty()) bad(e, "cipher list");
      s->proxy.ssl_ciphers = e.value;
      s->proxy.ssl_ciphers_line = e.line;
    } else if (k == "proxy_ssl_session_reuse") {
      on_off(e, &s->proxy.ssl_session_reuse);
    } else if (k == "ssl_verify_client") {
      if (e.value == "off") s->tls.verify_client = kVerifyOff;
      else if (e.value == "on") s->tls.verify_client = kVerifyOn;
      else if (e.value == "optional") s->tls.verify_client = kVerifyOptional;
      else if (e.value == "optional_no_ca") s->tls.verify_client = kVerifyOptionalNoCa;
      else bad(e, "value (off, on, optional or optional_no_ca)");
      s->tls.verify_client_line = e.line;
    } else if (k == "ssl_client_certificate" || k == "ssl_trusted_certificate") {
      if (e.value.empty()) bad(e, "path");
      bool client = k == "ssl_client_certificate";
      (client ? s->tls.client_certificate : s->tls.trusted_certificate) = resolve_path(prefix, e.value);
      (client ? s->tls.client_certificate_line : s->tls.trusted_certificate_line) = e.line;
    } else if (k == "ssl_verify_depth") {
      uint64_t n;
      if (!parse_uint(e.value, &n) || n == 0 || n > 100) bad(e, "depth (1 to 100)");
      s->tls.verify_depth = static_cast<int>(n);
    } else if (k == "ssl_stapling") {
      on_off(e, &s->tls.stapling);
      s->tls.stapling_line = e.line;
    } else if (k == "ssl_stapling_file") {
      if (e.value.empty()) bad(e, "path");
      s->tls.stapling_file = resolve_path(prefix, e.value);
      s->tls.stapling_file_line = e.line;
    } else if (k == "ssl_buffer_size") {
      size(e, &s->tls.buffer_size);
      if (s->tls.buffer_size < 512 || s->tls.buffer_size > 16384)
        conf.fail(e.line, "\"ssl_buffer_size\" must be between 512 and 16k (the largest TLS record)");
    } else if (k == "ssl_session_tickets") {
      on_off(e, &s->tls.session_tickets);
    } else if (k == "ssl_session_ticket_key") {
      if (e.value.empty()) bad(e, "path");
      s->tls.ticket_key_files.push_back(resolve_path(prefix, e.value));
      s->tls.ticket_key_lines.push_back(e.line);
    } else if (k == "ssl_session_timeout") {
      duration(e, &s->tls.session_timeout_ms);
      if (s->tls.session_timeout_ms < 1000) conf.fail(e.line, "\"ssl_session_timeout\" must be at least 1s");
    } else if (k == "ssl_session_cache") {
      std::string_view v = trim(e.value);
      uint64_t n = 0;
      if (v == "off" || v == "none") {
        s->tls.session_cache = 0;
      } else if (v == "builtin") {
        s->tls.session_cache = -1;
      } else if (v.starts_with("builtin:") && parse_uint(v.substr(8), &n) && n > 0 && n < (1u << 30)) {
        s->tls.session_cache = static_cast<int64_t>(n);
      } else if (v.starts_with("shared:")) {
        conf.fail(e.line, "\"ssl_session_cache = shared:...\" is not supported yet: sessions resume across workers "
                          "with tickets (ssl_session_tickets, on by default); \"builtin[:N]\" gives each worker a cache");
      } else {
        bad(e, "value (off, none, builtin or builtin:N)");
      }
    } else if (k == "limit_rate") {
      size(e, &s->limit_rate);
    } else if (k == "limit_rate_after") {
      size(e, &s->limit_rate_after);
    } else if (k == "client_max_body_size") {
      size(e, &s->client_max_body_size);
    } else if (k == "client_header_buffer_size") {
      size(e, &s->client_header_buffer_size);
      if (s->client_header_buffer_size < 256 || s->client_header_buffer_size > 1024 * 1024)
        conf.fail(e.line, "\"client_header_buffer_size\" must be between 256 and 1m");
    } else if (k == "expires") {
      if (e.value == "off") s->expires_ms = -1;
      else duration(e, &s->expires_ms);
    } else if (k == "disable_symlinks") {
      if (e.value == "off") s->disable_symlinks = Symlinks::kOff;
      else if (e.value == "on") s->disable_symlinks = Symlinks::kOn;
      else if (e.value == "outside_root") s->disable_symlinks = Symlinks::kOutsideRoot;
      else bad(e, "value (off, on or outside_root)");
    } else if (k == "access_log") {
      parse_access_log(e, s);
    } else if (k == "error_log") {
      parse_error_log(e, s);
    } else if (k == "error_page") {
      parse_error_page(e, s);
    } else if (k == "add_header") {
      parse_add_header(e, s);
    } else if (k == "gzip") {
      on_off(e, &s->gzip);
    } else if (k == "gzip_types") {
      // text/html always, as nginx; "*" every type.
      s->gzip_types = {"text/html"};
      auto words = split_ws(e.value);
      if (words.empty()) bad(e, "MIME type list");
      for (std::string_view t : words) {
        if (t != "*" && t.find('/') == std::string_view::npos)
          conf.fail(e.line, "invalid MIME type \"" + std::string(t) + "\" in \"gzip_types\" (type/subtype or *)");
        s->gzip_types.emplace_back(t);
      }
    } else if (k == "gzip_min_length") {
      size(e, &s->gzip_min_length);
    } else if (k == "gzip_comp_level") {
      number(e, &s->gzip_comp_level, 1, 9);
    } else if (k == "gzip_vary") {
      on_off(e, &s->gzip_vary);
    } else if (k == "gzip_proxied") {
      // nginx's other values are about a proxied response's own headers: there are none to weigh
      // for a file.
      if (e.value == "off") s->gzip_proxied = false;
      else if (e.value == "any") s->gzip_proxied = true;
      else conf.fail(e.line, "\"gzip_proxied = " + e.value + "\" is not supported (off or any)");
    } else if (k == "gzip_static") {
      on_off(e, &s->gzip_static);
    } else if (k == "autoindex") {
      on_off(e, &s->autoindex);
    } else if (k == "autoindex_format") {
      if (e.value == "html") s->autoindex_json = false;
      else if (e.value == "json") s->autoindex_json = true;
      else bad(e, "format (html or json)");
    } else if (k == "autoindex_exact_size") {
      on_off(e, &s->autoindex_exact_size);
    } else if (k == "autoindex_localtime") {
      on_off(e, &s->autoindex_localtime);
    } else if (k == "server_tokens") {
      on_off(e, &s->server_tokens);
    } else if (k == "limit_req") {
      parse_limit_req(e, s);
    } else if (k == "limit_conn") {
      parse_limit_conn(e, s);
    } else if (k == "limit_req_status") {
      number(e, &s->limits.req_status, 400, 599);
    } else if (k == "limit_conn_status") {
      number(e, &s->limits.conn_status, 400, 599);
    } else if (k == "limit_req_log_level" || k == "limit_conn_log_level") {
      LogLevel level;
      if (!parse_log_level(e.value, &level) || level < LogLevel::kInfo || level > LogLevel::kError)
        bad(e, "level (info, notice, warn or error)");
      (k == "limit_req_log_level" ? s->limits.req_log_level : s->limits.conn_log_level) = level;
    } else if (k == "limit_req_dry_run") {
      on_off(e, &s->limits.req_dry_run);
    } else if (k == "limit_conn_dry_run") {
      on_off(e, &s->limits.conn_dry_run);
    } else if (k == "allow" || k == "deny") {
      s->access.push_back(AccessRule{addr_range(e), k == "allow"});
    } else if (k == "set_real_ip_from") {
      s->real_ip.from.push_back(addr_range(e));
    } else if (k == "real_ip_header") {
      parse_real_ip_header(e, &s->real_ip);
    } else if (k == "real_ip_recursive") {
      on_off(e, &s->real_ip.recursive);
    } else if (k == "auth_basic") {
      parse_auth_basic(e, &s->auth_basic);
    } else if (k == "auth_basic_user_file") {
      s->auth_basic.users = user_file(e);
    } else if (k == "satisfy") {
      if (e.value == "all") s->satisfy = Satisfy::kAll;
      else if (e.value == "any") s->satisfy = Satisfy::kAny;
      else bad(e, "value (all or any)");
    } else if (k == "charset") {
      if (e.value == "off") {
        s->charset.clear();
      } else {
        if (e.value.empty()) bad(e, "charset");
        for (char c : e.value)
          if (!is_tchar(static_cast<unsigned char>(c))) bad(e, "charset");
        s->charset = e.value;
      }
    } else {
      return apply_proxy_setting(e, &s->proxy);
    }
    return true;
  }

  // return = CODE [text or URL], the text quoted or not (unquote). Variables are compiled here, so
  // an unknown one stops the configuration with its line.
  void parse_return(const ConfEntry& e, Location* loc) {
    auto v = std::string_view(e.value);
    size_t sp = v.find_first_of(" \t");
    uint64_t code;
    if (!parse_uint(v.substr(0, sp), &code) || code < 100 || code > 599) bad(e, "return code");
    loc->return_code = static_cast<int>(code);
    std::string_view rest = sp == std::string_view::npos ? std::string_view() : trim(v.substr(sp));
    std::string text = unquote(e, rest);
    bool redirect = code == 301 || code == 302 || code == 303 || code == 307 || code == 308;
    if (redirect && text.empty()) conf.fail(e.line, "\"return\" with a redirect code needs a URL");
    for (unsigned char c : text) {
      // A URL goes into the Location header: no control character can be part of it. A body may
      // hold line breaks and tabs.
      bool allowed = !redirect && (c == '\n' || c == '\r' || c == '\t');
      if ((c < 0x20 || c == 0x7f) && !allowed)
        conf.fail(e.line, std::string("control character in the ") + (redirect ? "URL" : "text") + " of \"return\"");
    }
    std::string err = loc->return_value.compile(text);
    if (!err.empty()) conf.fail(e.line, err + " in \"return\"");
    loc->return_text = std::move(text);
  }

  // rewrite = REGEX REPLACEMENT [FLAG]: the regex and the replacement may be quoted (a regex with a
  // space must be).
  void parse_rewrite(const ConfEntry& e, std::vector<Rewrite>* out) {
    std::vector<std::string> words = rewrite_words(conf, e);
    Rewrite rw;
    rw.line = e.line;
    rw.re = std::make_unique<Regex>();
    std::string err = rw.re->compile(words[0], false);
    if (!err.empty()) conf.fail(e.line, err);
    const std::string& text = words[1];
    if (words.size() == 3) {
      const std::string& f = words[2];
      if (f == "last") rw.flag = RewriteFlag::kLast;
      else if (f == "break") rw.flag = RewriteFlag::kBreak;
      else if (f == "redirect") rw.flag = RewriteFlag::kRedirect;
      else if (f == "permanent") rw.flag = RewriteFlag::kPermanent;
      else conf.fail(e.line, "invalid flag \"" + f + "\" of \"rewrite\" (last, break, redirect or permanent)");
    }
    rw.to_url = text.starts_with("http://") || text.starts_with("https://") || text.starts_with("$scheme");
    if (!rw.to_url && text[0] != '/' && text[0] != '$')
      conf.fail(e.line, "the replacement \"" + text + "\" of \"rewrite\" must start with \"/\", \"http://\", "
                        "\"https://\" or a variable");
    for (unsigned char c : text) {
      if (c < 0x20 || c == 0x7f) conf.fail(e.line, "control character in the replacement of \"rewrite\"");
      if (c == ' ') conf.fail(e.line, "a space in the replacement of \"rewrite\" (write it %20)");
    }
    // The arguments begin at the first '?' written in the replacement (not one a variable brings);
    // a '?' at the very end only says that the request's arguments are not to follow.
    std::string_view uri = text, args;
    size_t q = text.find('?');
    if (q != std::string::npos) {
      uri = std::string_view(text).substr(0, q);
      args = std::string_view(text).substr(q + 1);
      rw.keep_args = false;
      rw.has_args = !args.empty();
      if (rw.has_args) rw.keep_args = args.back() != '?';
      if (!rw.keep_args && rw.has_args) args.remove_suffix(1);
    }
    err = rw.uri.compile(uri);
    if (err.empty() && rw.has_args) err = rw.args.compile(args);
    if (!err.empty()) conf.fail(e.line, err + " in \"rewrite\"");
    if (rw.to_url && rw.flag != RewriteFlag::kNone && rw.flag != RewriteFlag::kRedirect &&
        rw.flag != RewriteFlag::kPermanent)
      conf.fail(e.line, "a \"rewrite\" to a URL redirects the client: \"" + words[2] + "\" cannot apply");
    out->push_back(std::move(rw));
  }

  // ---- [upstream NAME] ----

  // Every address of host:port, as servers of the group that read the line (a name with several
  // addresses gives one server per address, as nginx does).
  std::vector<SockAddr> resolve(const ConfEntry& e, const HostPort& hp, uint16_t port, std::string_view as_written,
                                std::string_view hint = "") {
    std::vector<SockAddr> addrs;
    std::string why = resolve_host(hp, port, &addrs);
    if (addrs.empty())
      conf.fail(e.line, "host not found in upstream \"" + std::string(as_written) + "\"" +
                            (why.empty() ? "" : " (" + why + ")") + std::string(hint));
    return addrs;
  }

  // server = HOST[:PORT] [weight=N] [max_fails=N] [fail_timeout=TIME] [backup] [down]; a missing
  // port is 80, as in nginx. unix:/path is a local socket.
  void parse_upstream_server(const ConfEntry& e, UpstreamGroup* g) {
    auto words = split_ws(e.value);
    if (words.empty()) bad(e, "server");
    UpstreamServer proto;
    proto.line = e.line;
    for (size_t i = 1; i < words.size(); i++) {
      std::string_view w = words[i];
      size_t eq = w.find('=');
      std::string_view name = w.substr(0, eq);
      for (size_t j = 1; j < i; j++)
        if (words[j].substr(0, words[j].find('=')) == name)
          conf.fail(e.line, "parameter \"" + std::string(name) + "\" is given twice");
      std::string_view arg = eq == std::string_view::npos ? std::string_view() : w.substr(eq + 1);
      uint64_t n;
      if (name == "weight" && eq != std::string_view::npos) {
        if (!parse_uint(arg, &n) || n == 0 || n > 1000)
          conf.fail(e.line, "invalid parameter \"" + std::string(w) + "\" (a weight is from 1 to 1000)");
        proto.weight = static_cast<int>(n);
      } else if (name == "max_fails" && eq != std::string_view::npos) {
        if (!parse_uint(arg, &n) || n > 1000000) conf.fail(e.line, "invalid parameter \"" + std::string(w) + "\"");
        proto.max_fails = static_cast<int>(n);
      } else if (name == "fail_timeout" && eq != std::string_view::npos) {
        if (!parse_duration_ms(arg, &proto.fail_timeout_ms))
          conf.fail(e.line, "invalid parameter \"" + std::string(w) + "\"");
        if (proto.fail_timeout_ms == 0)
          conf.fail(e.line, "invalid parameter \"" + std::string(w) +
                                "\" (a server that should never be taken out has max_fails=0)");
      } else if (w == "backup") {
        proto.backup = true;
      } else if (w == "down") {
        proto.down = true;
      } else if (name == "max_conns" || name == "slow_start" || name == "resolve" || name == "service" ||
                 name == "route" || name == "drain") {
        conf.fail(e.line, "parameter \"" + std::string(name) + "\" of \"server\" is not supported yet");
      } else {
        conf.fail(e.line, "invalid parameter \"" + std::string(w) +
                              "\" (weight=N, max_fails=N, fail_timeout=TIME, backup or down)");
      }
    }
    std::string_view addr = words[0];
    if (addr.starts_with("unix:")) {
      UpstreamServer srv = proto;
      std::string err = parse_sockaddr(addr, &srv.addr);
      if (!err.empty()) conf.fail(e.line, err);
      srv.text = std::string(addr);
      g->servers.push_back(std::move(srv));
      return;
    }
    if (addr.find("://") != std::string_view::npos)
      conf.fail(e.line, "invalid address \"" + std::string(addr) + "\" (a server is HOST:PORT, without a scheme)");
    HostPort hp;
    std::string err = split_host_port(addr, &hp);
    if (!err.empty()) conf.fail(e.line, err);
    uint16_t port = hp.port ? hp.port : 80;
    std::string as_written = std::string(addr) + (hp.port ? "" : ":80");
    for (const SockAddr& a : resolve(e, hp, port, as_written)) {
      UpstreamServer srv = proto;
      srv.addr = a;
      srv.text = a.to_string();  // $upstream_addr: the address connected to, as nginx logs it
      g->servers.push_back(std::move(srv));
    }
  }

  // balance = round_robin | least_conn | ip_hash | hash KEY [consistent]
  void parse_balance(const ConfEntry& e, UpstreamGroup* g) {
    auto words = split_ws(e.value);
    if (words.empty()) bad(e, "balance");
    std::string_view m = words[0];
    if (m == "hash") {
      // Hashing is always consistent (servers added or removed move few keys); the word nginx
      // needs for it is accepted.
      if (words.size() == 3 && words[2] == "consistent") words.pop_back();
      if (words.size() != 2)
        conf.fail(e.line, "\"balance = hash\" takes one key (balance = hash $request_uri [consistent])");
      g->balance = Balance::kHash;
      std::string err = g->hash_key.compile(words[1]);
      if (!err.empty()) conf.fail(e.line, err + " in \"balance\"");
      return;
    }
    if (words.size() != 1) conf.fail(e.line, "unexpected \"" + std::string(words[1]) + "\" in \"balance\"");
    if (m == "round_robin") g->balance = Balance::kRoundRobin;
    else if (m == "least_conn") g->balance = Balance::kLeastConn;
    else if (m == "ip_hash") g->balance = Balance::kIpHash;
    else if (m == "random" || m == "least_time") conf.fail(e.line, "\"balance = " + std::string(m) + "\" is not supported yet");
    else conf.fail(e.line, "invalid value \"" + e.value + "\" in \"balance\" (round_robin, least_conn, ip_hash or hash KEY)");
  }

  void parse_upstream(size_t index) {
    const ConfSection& sec = conf.sections[index];
    if (sec.arg.empty()) conf.fail(sec.line, "[upstream] needs a name: [upstream NAME]");
    if (!is_upstream_name(sec.arg))
      conf.fail(sec.line, "invalid upstream name \"" + sec.arg + "\" (letters, digits, \"-\", \".\" and \"_\")");
    UpstreamGroup* g = section_upstreams.at(index);
    UpstreamGroup* first = named_upstreams.at(lower(sec.arg));
    if (first != g)
      conf.fail(sec.line, "duplicate upstream \"" + sec.arg + "\" (first at " + conf.at(first->line) + ")");
    check_section_keys(conf, sec);
    int balance_line = 0;
    for (const ConfEntry& e : sec.entries) {
      if (e.key == "server") {
        parse_upstream_server(e, g);
      } else if (e.key == "balance") {
        parse_balance(e, g);
        balance_line = e.line;
      } else if (e.key == "keepalive") {
        number(e, &g->keepalive, 0, 65536);
      } else if (e.key == "keepalive_timeout") {
        duration(e, &g->keepalive_timeout_ms);
      } else if (e.key == "keepalive_requests") {
        number(e, &g->keepalive_requests, 1, UINT32_MAX);
      } else if (e.key == "connect_timeout") {
        timeout(e, &g->connect_timeout_ms);
      } else if (e.key == "read_timeout") {
        timeout(e, &g->read_timeout_ms);
      } else if (e.key == "send_timeout") {
        timeout(e, &g->send_timeout_ms);
      } else {
        conf.fail(e.line, "unknown key \"" + e.key + "\" in [upstream]");  // check_section_keys let it through
      }
    }
    if (g->servers.empty()) conf.fail(sec.line, "no servers are inside upstream \"" + g->name + "\"");
    // A hash (of the client address or of a key) picks one server per key: a backup server would
    // move keys between servers whenever the primaries come and go. nginx refuses it too.
    if (g->balance == Balance::kIpHash || g->balance == Balance::kHash)
      for (const UpstreamServer& srv : g->servers)
        if (srv.backup)
          conf.fail(srv.line, std::string("balancing method \"") + (g->balance == Balance::kIpHash ? "ip_hash" : "hash") +
                                  "\" (" + conf.at(balance_line) + ") does not support parameter \"backup\"");
  }

  // Makes a group for every [upstream] section before any section is read: a proxy_pass may name
  // one that comes later in the file.
  void declare_upstreams() {
    for (size_t i = 0; i < conf.sections.size(); i++) {
      const ConfSection& sec = conf.sections[i];
      if (sec.kind != "upstream") continue;
      auto g = std::make_unique<UpstreamGroup>();
      g->name = sec.arg;
      g->line = sec.line;
      section_upstreams[i] = g.get();
      named_upstreams.emplace(lower(sec.arg), g.get());  // a duplicate is reported where it stands
      http->upstreams.push_back(std::move(g));
    }
  }

  // proxy_pass = http://NAME-OR-HOST[:PORT][/URI]
  void parse_proxy_pass(const ConfEntry& e, Location* loc) {
    std::string_view v = trim(e.value);
    if (v.empty()) bad(e, "URL");
    if (v.find_first_of(" \t") != std::string_view::npos) conf.fail(e.line, "\"proxy_pass\" takes one URL");
    if (v.find('$') != std::string_view::npos) conf.fail(e.line, "variables in \"proxy_pass\" are not supported yet");
    bool https = istarts_with(v, "https://");
    if (!https && !istarts_with(v, "http://"))
      conf.fail(e.line, "invalid URL prefix in \"" + std::string(v) + "\" (proxy_pass = http[s]://HOST[:PORT][/URI])");
    const std::string scheme = https ? "https://" : "http://";
    const uint16_t default_port = https ? 443 : 80;
    std::string_view rest = v.substr(scheme.size());
    size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    if (authority.empty()) conf.fail(e.line, "no host in \"" + std::string(v) + "\"");
    if (authority.starts_with("unix:"))
      conf.fail(e.line, "\"proxy_pass\" to a unix socket is not supported yet: name it in an [upstream] section");
    if (authority.find('@') != std::string_view::npos)
      conf.fail(e.line, "user info in \"proxy_pass\" is not supported: \"" + std::string(v) + "\"");
    HostPort hp;
    std::string err = split_host_port(authority, &hp);
    if (!err.empty()) conf.fail(e.line, err + " in \"proxy_pass\"");

    auto pp = std::make_unique<ProxyPass>();
    pp->line = e.line;
    pp->https = https;
    pp->host = hp.host;
    if (slash != std::string_view::npos) {
      pp->has_uri = true;
      pp->uri = std::string(rest.substr(slash));
      for (unsigned char c : pp->uri)
        if (c <= 0x20 || c >= 0x7f || c == '#') conf.fail(e.line, "invalid URI in \"proxy_pass\": \"" + pp->uri + "\"");
    }
    std::string key = lower(hp.bracketed ? "[" + hp.host + "]" : hp.host);
    if (!hp.bracketed) {
      auto it = named_upstreams.find(key);
      if (it != named_upstreams.end()) {
        // nginx's rule: the servers of a section have their own ports.
        if (hp.port)
          conf.fail(e.line, "upstream \"" + it->second->name + "\" may not have port " + std::to_string(hp.port) +
                                " (its servers have their own; [upstream " + it->second->name + "] is at " +
                                conf.at(it->second->line) + ")");
        pp->group = it->second;
        pp->proxy_host = it->second->name;
        pp->redirect_from = scheme + pp->proxy_host + (pp->has_uri ? pp->uri : std::string("/"));
        loc->proxy_pass = std::move(pp);
        return;
      }
    }
    uint16_t port = hp.port ? hp.port : default_port;
    key += ":" + std::to_string(port);
    // $proxy_host: what was written, without a port that is the scheme's default one.
    pp->proxy_host = port == default_port ? std::string(hp.bracketed ? "[" + hp.host + "]" : hp.host) : std::string(authority);
    auto it = implicit_upstreams.find(key);
    if (it == implicit_upstreams.end()) {
      auto g = std::make_unique<UpstreamGroup>();
      g->name = key;
      g->line = e.line;
      g->implicit = true;
      std::string hint = hp.port || hp.bracketed ? "" : " (and there is no [upstream " + hp.host + "] section)";
      for (const SockAddr& a : resolve(e, hp, port, authority, hint)) {
        UpstreamServer srv;
        srv.addr = a;
        srv.text = a.to_string();
        srv.line = e.line;
        g->servers.push_back(std::move(srv));
      }
      it = implicit_upstreams.emplace(key, g.get()).first;
      http->upstreams.push_back(std::move(g));
    }
    pp->group = it->second;
    pp->redirect_from = scheme + pp->proxy_host + (pp->has_uri ? pp->uri : std::string("/"));
    loc->proxy_pass = std::move(pp);
  }

  // The TLS client side of a proxy_pass = https://, from the location's proxy_ssl_* settings.
  void client_tls(ProxyPass* pp, const ProxySettings& p) {
    TlsClientOptions o;
    o.min_version = p.ssl_min_version;
    o.max_version = p.ssl_max_version;
    o.ciphers = p.ssl_ciphers;
    o.verify = p.ssl_verify;
    o.verify_depth = p.ssl_verify_depth;
    o.trusted_certificate = p.ssl_trusted_certificate;
    o.certificate = p.ssl_certificate;
    o.key = p.ssl_certificate_key;
    if (o.verify && o.trusted_certificate.empty())
      conf.fail(p.ssl_verify_line ? p.ssl_verify_line : pp->line,
                "\"proxy_ssl_verify\" needs the CAs to check the upstream against: \"proxy_ssl_trusted_certificate\"");
    if (o.certificate.empty() != o.key.empty())
      conf.fail(o.certificate.empty() ? p.ssl_certificate_key_line : p.ssl_certificate_line,
                "\"proxy_ssl_certificate\" and \"proxy_ssl_certificate_key\" go together");
    std::string err;
    std::unique_ptr<TlsContext> ctx = TlsContext::create_client(o, &err);
    if (!ctx) {
      int line = pp->line;
      if (err.starts_with("invalid proxy_ssl_ciphers")) line = p.ssl_ciphers_line;
      else if (err.starts_with("cannot load CA")) line = p.ssl_trusted_certificate_line;
      else if (err.starts_with("cannot load certificate \"")) line = p.ssl_certificate_line;
      else if (err.starts_with("cannot load certificate key") || err.starts_with("certificate key")) line = p.ssl_certificate_key_line;
      conf.fail(line ? line : pp->line, err);
    }
    pp->tls = std::move(ctx);
    pp->tls_name = p.ssl_name.empty() ? pp->host : p.ssl_name;
    pp->tls_sni = p.ssl_server_name;
    pp->tls_session_reuse = p.ssl_session_reuse;
  }

  void parse_location(const ConfSection& sec, Server* srv) {
    auto loc = std::make_unique<Location>();
    loc->line = sec.line;
    loc->s = srv->s;
    auto words = split_ws(sec.arg);
    bool modifier_alone = words.size() == 1 && (words[0] == "=" || words[0] == "^~" || words[0] == "~" || words[0] == "~*");
    if (words.size() == 1 && !modifier_alone) {
      loc->kind = MatchKind::kPrefix;
      loc->match = std::string(words[0]);
    } else if (words.size() == 2 && words[0] == "=") {
      loc->kind = MatchKind::kExact;
      loc->match = std::string(words[1]);
    } else if (words.size() == 2 && words[0] == "^~") {
      loc->kind = MatchKind::kPrefixNoRegex;
      loc->match = std::string(words[1]);
    } else if (words.size() >= 2 && (words[0] == "~" || words[0] == "~*")) {
      // The pattern is the rest of the header as written, spaces included.
      loc->kind = MatchKind::kRegex;
      loc->match = std::string(trim(std::string_view(sec.arg).substr(words[0].size())));
      loc->regex = std::make_unique<Regex>();
      std::string err = loc->regex->compile(loc->match, words[0] == "~*");
      if (!err.empty()) conf.fail(sec.line, err);
    } else {
      conf.fail(sec.line, "invalid location \"" + sec.arg +
                              "\" (expected /prefix, = /exact, ^~ /prefix, ~ REGEX or ~* REGEX)");
    }
    if (loc->kind != MatchKind::kRegex) {
      if (loc->match.empty() || loc->match[0] != '/')
        conf.fail(sec.line, "location \"" + loc->match + "\" must start with \"/\"");
      for (const auto& other : srv->locations)
        if (other->kind != MatchKind::kRegex && other->match == loc->match &&
            (other->kind == MatchKind::kExact) == (loc->kind == MatchKind::kExact))
          conf.fail(sec.line, "duplicate location \"" + loc->match + "\" (first at " + conf.at(other->line) + ")");
    }

    check_section_keys(conf, sec);
    begin_level(sec, &loc->s);
    for (const ConfEntry& e : sec.entries) {
      if (e.key == "proxy_pass") {
        parse_proxy_pass(e, loc.get());
      } else if (e.key == "alias") {
        if (e.value.empty()) bad(e, "path");
        if (loc->kind == MatchKind::kRegex)
          conf.fail(e.line, "\"alias\" in a regular expression location is not supported (use \"root\": the "
                            "whole URI is looked for under it)");
        loc->has_alias = true;
        loc->alias = resolve_path(prefix, e.value);
      } else if (e.key == "try_files") {
        auto items = split_ws(e.value);
        if (items.size() < 2) conf.fail(e.line, "\"try_files\" needs at least two items (files to try, then a fallback)");
        loc->try_files.assign(items.begin(), items.end());
        const std::string& last = loc->try_files.back();
        if (last[0] == '=') {
          uint64_t code;
          if (!parse_uint(std::string_view(last).substr(1), &code) || code < 200 || code > 599) bad(e, "try_files fallback code");
        } else if (last[0] != '/' && last[0] != '$') {
          bad(e, "try_files fallback (a URI or =CODE)");
        }
      } else if (e.key == "return") {
        parse_return(e, loc.get());
        loc->rewrites_before_return = loc->rewrites.size();
      } else if (e.key == "rewrite") {
        parse_rewrite(e, &loc->rewrites);
      } else if (e.key == "stub_status" || e.key == "metrics") {
        on_off(e, e.key == "metrics" ? &loc->metrics : &loc->stub_status);
        if (loc->stub_status && loc->metrics)
          conf.fail(e.line, "\"stub_status\" and \"metrics\" cannot be combined in one location");
      } else if (!apply_setting(e, &loc->s)) {
        conf.fail(e.line, "unknown key \"" + e.key + "\" in [location]");
      }
    }
    check_auth(loc->s);
    if (loc->proxy_pass) {
      // Each of these would answer the request before the proxy or instead of it: one of the
      // two would silently do nothing.
      const char* other = nullptr;
      if (loc->has_alias) other = "alias";
      else if (!loc->try_files.empty()) other = "try_files";
      else if (loc->return_code) other = "return";
      else if (loc->stub_status) other = "stub_status";
      else if (loc->metrics) other = "metrics";
      if (other)
        conf.fail(loc->proxy_pass->line, std::string("\"proxy_pass\" and \"") + other +
                                             "\" cannot be combined in one location");
    }
    if (loc->proxy_pass && loc->proxy_pass->has_uri && loc->kind == MatchKind::kRegex)
      conf.fail(loc->proxy_pass->line, "\"proxy_pass\" cannot have a URI part in a regular expression location "
                                       "(there is no prefix to replace; the request URI is passed as it is)");
    if (loc->proxy_pass && loc->proxy_pass->https) client_tls(loc->proxy_pass.get(), loc->s.proxy);
    if (loc->has_alias && loc->kind != MatchKind::kExact && !loc->alias.empty() &&
        loc->match.back() == '/' && loc->alias.back() != '/')
      loc->alias.push_back('/');
    if (loc->has_alias && !loc->alias.empty()) {
      size_t slash = loc->alias.rfind('/');
      loc->alias_dir = slash == std::string::npos ? "." : loc->alias.substr(0, slash + 1);
      loc->alias_name = slash == std::string::npos ? loc->alias : loc->alias.substr(slash + 1);
      if (!loc->alias_name.empty()) loc->alias_name_dir = loc->alias_name + "/";
    }
    srv->locations.push_back(std::move(loc));
  }

  struct PendingListen {
    SockAddr addr;
    ListenOptions opts;
    bool default_server = false;
    std::string text;
    int line;
  };

  void parse_listen(const ConfEntry& e, std::vector<PendingListen>* out) {
    auto words = split_ws(e.value);
    if (words.empty()) bad(e, "listen");
    PendingListen pl;
    pl.line = e.line;
    pl.text = std::string(words[0]);
    std::string err = parse_sockaddr(words[0], &pl.addr);
    if (!err.empty()) conf.fail(e.line, err);
    for (size_t i = 1; i < words.size(); i++) {
      std::string_view w = words[i];
      for (size_t j = 1; j < i; j++)
        if (words[j] == w) conf.fail(e.line, "listen option \"" + std::string(w) + "\" is given twice");
      if (w == "default_server") {
        pl.default_server = true;
      } else if (w == "reuseport") {
        pl.opts.reuseport = true;
      } else if (w.starts_with("backlog=")) {
        uint64_t b;
        if (!parse_uint(w.substr(8), &b) || b == 0 || b > 65535) conf.fail(e.line, "invalid backlog \"" + std::string(w) + "\"");
        pl.opts.backlog = static_cast<int>(b);
      } else if (w == "proxy_protocol") {
        pl.opts.proxy_protocol = true;
      } else if (w == "ssl") {
        pl.opts.ssl = true;
      } else {
        conf.fail(e.line, "unknown listen option \"" + std::string(w) + "\"");
      }
    }
    for (const PendingListen& other : *out)
      if (other.addr == pl.addr) conf.fail(e.line, "duplicate listen " + pl.addr.to_string() + " in the same server");
    out->push_back(std::move(pl));
  }

  void add_listen(Server* srv, const PendingListen& pl) {
    ListenGroup* group = nullptr;
    for (auto& g : http->listens)
      if (g->addr == pl.addr) group = g.get();
    if (!group) {
      auto g = std::make_unique<ListenGroup>();
      g->addr = pl.addr;
      g->opts = pl.opts;
      g->text = pl.text;
      g->line = pl.line;
      group = g.get();
      http->listens.push_back(std::move(g));
    } else if (pl.opts.backlog != 511 || pl.opts.reuseport || pl.opts.proxy_protocol || group->opts.proxy_protocol ||
               pl.opts.ssl || group->opts.ssl) {
      if (group->opts.backlog != pl.opts.backlog || group->opts.reuseport != pl.opts.reuseport ||
          group->opts.proxy_protocol != pl.opts.proxy_protocol || group->opts.ssl != pl.opts.ssl)
        conf.fail(pl.line, "listen options for " + pl.addr.to_string() + " conflict with " + conf.at(group->line));
    }
    if (pl.default_server) {
      if (group->explicit_default)
        conf.fail(pl.line, "a default server for " + pl.addr.to_string() + " is already set at " + conf.at(group->default_line));
      group->default_server = srv;
      group->explicit_default = true;
      group->default_line = pl.line;
    } else if (!group->default_server) {
      group->default_server = srv;
    }
    // Two servers on one address answering to the same name (or both to none) leave one unreachable.
    std::vector<std::string> names = srv->exact_names;
    if (names.empty() && srv->wildcard_suffixes.empty()) names.push_back("");
    for (const std::string& n : names) {
      auto [it, inserted] = group->exact_names.emplace(n, srv);
      if (!inserted && it->second != srv)
        conf.fail(pl.line, "duplicate listen " + pl.addr.to_string() + " for server name \"" + n +
                               "\" (also in the server at " + conf.at(it->second->line) + ")");
    }
    for (const std::string& w : srv->wildcard_suffixes) {
      for (const auto& [suffix, other] : group->wildcards)
        if (suffix == w && other != srv)
          conf.fail(pl.line, "duplicate listen " + pl.addr.to_string() + " for server name \"*" + w + "\"");
      group->wildcards.emplace_back(w, srv);
    }
    group->servers.push_back(srv);
  }
  void parse_server(size_t index) {
    const ConfSection& sec = conf.sections[index];
    auto srv = std::make_unique<Server>();
    srv->name = sec.arg;
    srv->line = sec.line;
    srv->s = http->base;
    std::vector<PendingListen> listens;
    check_section_keys(conf, sec);
    begin_level(sec, &srv->s);
    for (const ConfEntry& e : sec.entries) {
      if (e.key == "listen") {
        parse_listen(e, &listens);
      } else if (e.key == "server_name") {
        for (std::string_view n : split_ws(e.value)) {
          std::string name;
          for (char c : n) name.push_back(ascii_lower(c));
          if (srv->primary_name.empty()) srv->primary_name = name;
          if (name.starts_with("*.")) srv->wildcard_suffixes.push_back(name.substr(1));
          else if (name.find('*') != std::string::npos) conf.fail(e.line, "invalid server name \"" + name + "\" (only *.suffix wildcards)");
          else srv->exact_names.push_back(name);
        }
      } else if (e.key == "rewrite") {
        parse_rewrite(e, &srv->rewrites);
      } else if (e.key == "return") {
        srv->server_return = std::make_unique<Location>();
        srv->server_return->line = e.line;
        srv->server_return->match = "/";
        parse_return(e, srv->server_return.get());
        srv->server_return->rewrites_before_return = srv->rewrites.size();
      } else if (!apply_setting(e, &srv->s)) {
        conf.fail(e.line, "unknown key \"" + e.key + "\" in [server]");
      }
    }
    check_auth(srv->s);
    // The server's own settings, whatever their order relative to the return.
    if (srv->server_return) srv->server_return->s = srv->s;
    if (listens.empty()) {
      PendingListen pl;
      pl.line = sec.line;
      pl.text = "0.0.0.0:80";
      parse_sockaddr(pl.text, &pl.addr);
      listens.push_back(pl);
    }
    for (size_t i = index + 1; i < conf.sections.size() && conf.sections[i].kind == "location"; i++)
      parse_location(conf.sections[i], srv.get());

    for (auto& loc : srv->locations) {
      if (loc->kind == MatchKind::kExact) srv->exact_locations[loc->match] = loc.get();
      else if (loc->kind == MatchKind::kRegex) srv->regex_locations.push_back(loc.get());
      else srv->prefix_locations.push_back(loc.get());
    }
    std::stable_sort(srv->prefix_locations.begin(), srv->prefix_locations.end(),
                     [](const Location* a, const Location* b) { return a->match.size() > b->match.size(); });
    srv->fallback = std::make_unique<Location>();
    srv->fallback->match = "/";
    srv->fallback->s = srv->s;
    srv->fallback->implicit = true;
    srv->fallback->line = sec.line;
    for (const auto& loc : srv->locations) check_error_pages(*srv, loc->s);
    check_error_pages(*srv, srv->fallback->s);
    if (srv->server_return) check_error_pages(*srv, srv->server_return->s);
    for (const PendingListen& pl : listens) add_listen(srv.get(), pl);
    http->servers.push_back(std::move(srv));
  }
};

}  // namespace

std::unique_ptr<HttpConf> parse_http_conf(const ConfFile& conf, const std::string& prefix) {
  auto http = std::make_unique<HttpConf>();
  http->prefix = prefix;
  http->base.root = resolve_path(prefix, "html");
  // Named regex groups are variables in every value compiled below; none outlive this reading.
  set_capture_names(named_captures(conf));
  struct ForgetNames {
    ~ForgetNames() { set_capture_names({}); }
  } forget_names;
  Parser p{conf, http.get(), prefix, nullptr, {}, {}, {}, {}};
  p.declare_upstreams();
  // Log formats first: an access_log anywhere may name one, wherever it stands in [http].
  // The limit zones too: a limit_req or limit_conn anywhere names one.
  for (const ConfSection& sec : conf.sections) {
    if (sec.kind != "http") continue;
    for (const ConfEntry& e : sec.entries) {
      if (e.key == "log_format") p.parse_log_format(e);
      else if (e.key == "limit_req_zone") p.parse_limit_zone(e, LimitKind::kReq);
      else if (e.key == "limit_conn_zone") p.parse_limit_zone(e, LimitKind::kConn);
    }
  }
  std::string types_path;
  int types_line = 0;
  int http_line = 0;
  for (const ConfSection& sec : conf.sections) {
    if (sec.kind != "http") continue;
    if (http_line) conf.fail(sec.line, "duplicate [http] section (first at " + conf.at(http_line) + ")");
    http_line = sec.line;
    if (!sec.arg.empty()) conf.fail(sec.line, "[http] takes no name");
    check_section_keys(conf, sec);
    p.begin_level(sec, &http->base);
    for (const ConfEntry& e : sec.entries) {
      if (e.key == "log_format" || e.key == "limit_req_zone" || e.key == "limit_conn_zone") {
        continue;  // read above
      } else if (e.key == "types") {
        if (e.value.empty()) p.bad(e, "path");
        types_path = resolve_path(prefix, e.value);
        types_line = e.line;
      } else if (!p.apply_setting(e, &http->base)) {
        conf.fail(e.line, "unknown key \"" + e.key + "\" in [http]");
      }
    }
  }
  http->types = std::make_shared<MimeTypes>();
  if (!types_path.empty()) {
    try {
      ConfFile types = read_conf_file(types_path);
      if (!types.included.empty()) throw ConfError(types.path + ": \"include\" is not allowed in the types file");
      http->files_read.push_back(ConfSource{types.path, types.text});
      http->types->load(types);
    } catch (const ConfError& err) {
      std::string what = err.what();
      if (what.starts_with("cannot open")) conf.fail(types_line, what);
      throw;
    }
  } else {
    http->types->add("html", "text/html");
    http->types->add("htm", "text/html");
    http->types->add("txt", "text/plain");
    http->types->add("css", "text/css");
    http->types->add("js", "application/javascript");
  }

  bool in_server = false;
  for (size_t i = 0; i < conf.sections.size(); i++) {
    const ConfSection& sec = conf.sections[i];
    if (sec.kind == "server") {
      in_server = true;
      p.parse_server(i);
    } else if (sec.kind == "location") {
      if (!in_server) conf.fail(sec.line, "[location] must follow a [server] section");
    } else if (sec.kind == "main" || sec.kind == "http") {
      in_server = false;
    } else if (sec.kind == "upstream") {
      in_server = false;  // a [location] after it belongs to no server
      p.parse_upstream(i);
    } else {
      conf.fail(sec.line, "unknown section [" + sec.kind + (sec.arg.empty() ? "" : " " + sec.arg) + "]");
    }
  }
  for (auto& srv : http->servers) {
    http->max_header_buffer = std::max(http->max_header_buffer, srv->s.client_header_buffer_size);
  }
  for (auto& g : http->listens) {
    std::stable_sort(g->wildcards.begin(), g->wildcards.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }
  for (auto& g : http->listens) {
    if (!g->opts.ssl) continue;
    for (Server* srv : g->servers) {
      if (srv->tls) continue;
      const TlsSettings& t = srv->s.tls;
      if (t.certificates.empty())
        conf.fail(srv->line, "no \"ssl_certificate\" for [server " + srv->name + "], which listens on " + g->text +
                                 " with ssl (" + conf.at(g->line) + ")");
      if (t.certificates.size() != t.keys.size())
        conf.fail(t.keys.size() < t.certificates.size() ? t.certificate_lines[t.keys.size()] : t.key_lines[t.certificates.size()],
                  "each \"ssl_certificate\" needs its \"ssl_certificate_key\" (" + std::to_string(t.certificates.size()) +
                      " certificates, " + std::to_string(t.keys.size()) + " keys)");
      TlsServerOptions o;
      for (size_t i = 0; i < t.certificates.size(); i++) o.certificates.push_back({t.certificates[i], t.keys[i]});
      o.min_version = t.min_version;
      o.max_version = t.max_version;
      o.ciphers = t.ciphers;
      o.conf_commands = t.conf_commands;
      o.prefer_server_ciphers = t.prefer_server_ciphers;
      o.tickets = t.session_tickets;
      o.verify_client = t.verify_client;
      o.client_certificate = t.client_certificate;
      o.trusted_certificate = t.trusted_certificate;
      o.verify_depth = t.verify_depth;
      o.record_size = t.buffer_size;
      if (t.stapling && t.stapling_file.empty())
        conf.fail(t.stapling_line, "\"ssl_stapling\" needs \"ssl_stapling_file\" (a DER OCSP response; baton does not "
                                   "query OCSP responders)");
      if (!t.stapling && !t.stapling_file.empty())
        conf.fail(t.stapling_file_line, "\"ssl_stapling_file\" is used with \"ssl_stapling = on\"");
      if (t.stapling) o.stapling_file = t.stapling_file;
      if ((t.verify_client == kVerifyOn || t.verify_client == kVerifyOptional) && t.client_certificate.empty() &&
          t.trusted_certificate.empty())
        conf.fail(t.verify_client_line, "\"ssl_verify_client\" needs the CAs to check against: \"ssl_client_certificate\" "
                                        "(or \"ssl_trusted_certificate\")");
      o.session_timeout = static_cast<long>(t.session_timeout_ms / 1000);
      o.session_cache = static_cast<long>(t.session_cache);
      for (size_t i = 0; i < t.ticket_key_files.size(); i++) {
        TlsTicketKey key;
        std::string kerr = tls_read_ticket_key(t.ticket_key_files[i], &key);
        if (!kerr.empty()) conf.fail(t.ticket_key_lines[i], kerr);
        o.ticket_keys.push_back(key);
      }
      std::string err;
      int bad_index = -1;
      std::unique_ptr<TlsContext> ctx = TlsContext::create_server(o, &err, &bad_index);
      if (!ctx) {
        int line = srv->line;
        if (bad_index >= 0) {
          size_t i = static_cast<size_t>(bad_index);
          line = err.starts_with("cannot load certificate \"") ? t.certificate_lines[i] : t.key_lines[i];
        } else if (err.starts_with("invalid ssl_ciphers")) {
          line = t.ciphers_line;
        } else if (err.starts_with("ssl_conf_command")) {
          line = t.conf_commands_line;
        } else if (err.find("OCSP response") != std::string::npos) {
          line = t.stapling_file_line;
        } else if (err.starts_with("cannot load CA certificates")) {
          bool client = !t.client_certificate.empty() && err.find("\"" + t.client_certificate + "\"") != std::string::npos;
          line = client ? t.client_certificate_line : t.trusted_certificate_line;
        }
        conf.fail(line, err);
      }
      srv->tls = std::move(ctx);
    }
  }
  return http;
}

}  // namespace baton::http

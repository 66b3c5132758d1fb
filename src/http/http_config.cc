#include "http/http_config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "core/log.h"
#include "core/strings.h"
#include "http/http_mime.h"

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

std::string HttpConf::open_logs() {
  for (auto& [path, log] : access_logs) {
    std::string err = log->open();
    if (!err.empty()) return err;
  }
  return "";
}

void HttpConf::flush_logs() {
  for (auto& [path, log] : access_logs) log->flush();
}

const Location* Server::find_location(std::string_view path) const {
  if (!exact_locations.empty()) {
    auto it = exact_locations.find(std::string(path));
    if (it != exact_locations.end()) return it->second;
  }
  for (const Location* loc : prefix_locations)
    if (path.starts_with(loc->match)) return loc;
  return fallback.get();
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

struct Parser {
  const ConfFile& conf;
  HttpConf* http;
  std::string prefix;

  [[noreturn]] void bad(const ConfEntry& e, const char* what) {
    conf.fail(e.line, std::string("invalid ") + what + " \"" + e.value + "\" in \"" + e.key + "\"");
  }

  void duration(const ConfEntry& e, int64_t* dst) {
    if (!parse_duration_ms(e.value, dst)) bad(e, "duration");
  }
  void size(const ConfEntry& e, uint64_t* dst) {
    if (!parse_size(e.value, dst)) bad(e, "size");
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
      auto words = split_ws(e.value);
      if (words.empty()) bad(e, "access_log");
      if (words[0] == "off") {
        if (words.size() != 1) bad(e, "access_log");
        s->access_log.reset();
        return true;
      }
      if (words.size() > 2) bad(e, "access_log");
      LogFormat fmt = LogFormat::kCombined;
      if (words.size() == 2) {
        if (words[1] == "combined") fmt = LogFormat::kCombined;
        else if (words[1] == "json") fmt = LogFormat::kJson;
        else conf.fail(e.line, "unknown access_log format \"" + std::string(words[1]) + "\" (combined or json)");
      }
      std::string path = resolve_path(prefix, std::string(words[0]));
      auto& slot = http->access_logs[path];
      if (!slot) {
        slot = std::make_shared<AccessLogFile>();
        slot->path = path;
        slot->line = e.line;
      }
      s->access_log = slot;
      s->access_log_format = fmt;
    } else {
      return false;
    }
    return true;
  }

  // return = CODE [text or URL]. A text in quotes ("..." or '...') is the text without them, with
  // \" \' \\ \n \r \t inside standing for the character; unquoted, it is taken as it is. Variables
  // are compiled here, so an unknown one stops the configuration with its line.
  void parse_return(const ConfEntry& e, Location* loc) {
    auto v = std::string_view(e.value);
    size_t sp = v.find_first_of(" \t");
    uint64_t code;
    if (!parse_uint(v.substr(0, sp), &code) || code < 100 || code > 599) bad(e, "return code");
    loc->return_code = static_cast<int>(code);
    std::string_view rest = sp == std::string_view::npos ? std::string_view() : trim(v.substr(sp));
    std::string text;
    if (!rest.empty() && (rest[0] == '"' || rest[0] == '\'')) {
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
      if (!closed) conf.fail(e.line, std::string("unterminated quoted text in \"return\" (no closing ") + q + ")");
      if (i + 1 < rest.size())
        conf.fail(e.line, "unexpected \"" + std::string(rest.substr(i + 1)) + "\" after the quoted text in \"return\"");
    } else {
      text = std::string(rest);
    }
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

  void parse_location(const ConfSection& sec, Server* srv) {
    auto loc = std::make_unique<Location>();
    loc->line = sec.line;
    loc->s = srv->s;
    auto words = split_ws(sec.arg);
    if (words.size() == 1) {
      loc->kind = MatchKind::kPrefix;
      loc->match = std::string(words[0]);
    } else if (words.size() == 2 && words[0] == "=") {
      loc->kind = MatchKind::kExact;
      loc->match = std::string(words[1]);
    } else if (words.size() == 2 && words[0] == "^~") {
      loc->kind = MatchKind::kPrefixNoRegex;
      loc->match = std::string(words[1]);
    } else if (words.size() == 2 && (words[0] == "~" || words[0] == "~*")) {
      conf.fail(sec.line, "regular expression locations are not supported yet");
    } else {
      conf.fail(sec.line, "invalid location \"" + sec.arg + "\" (expected /prefix, = /exact or ^~ /prefix)");
    }
    if (loc->match.empty() || loc->match[0] != '/')
      conf.fail(sec.line, "location \"" + loc->match + "\" must start with \"/\"");
    for (const auto& other : srv->locations)
      if (other->match == loc->match && (other->kind == MatchKind::kExact) == (loc->kind == MatchKind::kExact))
        conf.fail(sec.line, "duplicate location \"" + loc->match + "\" (first at line " + std::to_string(other->line) + ")");

    check_section_keys(conf, sec);
    for (const ConfEntry& e : sec.entries) {
      if (e.key == "alias") {
        if (e.value.empty()) bad(e, "path");
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
      } else if (!apply_setting(e, &loc->s)) {
        conf.fail(e.line, "unknown key \"" + e.key + "\" in [location]");
      }
    }
    if (loc->has_alias && loc->kind != MatchKind::kExact && !loc->alias.empty() &&
        loc->match.back() == '/' && loc->alias.back() != '/')
      loc->alias.push_back('/');
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
        conf.fail(e.line, "listen option \"" + std::string(w) + "\" is not supported by this build yet");
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
    } else if (pl.opts.backlog != 511 || pl.opts.reuseport || pl.opts.proxy_protocol || group->opts.proxy_protocol) {
      if (group->opts.backlog != pl.opts.backlog || group->opts.reuseport != pl.opts.reuseport ||
          group->opts.proxy_protocol != pl.opts.proxy_protocol)
        conf.fail(pl.line, "listen options for " + pl.addr.to_string() + " conflict with line " + std::to_string(group->line));
    }
    if (pl.default_server) {
      if (group->explicit_default)
        conf.fail(pl.line, "a default server for " + pl.addr.to_string() + " is already set at line " +
                               std::to_string(group->default_line));
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
                               "\" (also in the server at line " + std::to_string(it->second->line) + ")");
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
      } else if (e.key == "return") {
        srv->server_return = std::make_unique<Location>();
        srv->server_return->line = e.line;
        srv->server_return->match = "/";
        parse_return(e, srv->server_return.get());
      } else if (!apply_setting(e, &srv->s)) {
        conf.fail(e.line, "unknown key \"" + e.key + "\" in [server]");
      }
    }
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
      else srv->prefix_locations.push_back(loc.get());
    }
    std::stable_sort(srv->prefix_locations.begin(), srv->prefix_locations.end(),
                     [](const Location* a, const Location* b) { return a->match.size() > b->match.size(); });
    srv->fallback = std::make_unique<Location>();
    srv->fallback->match = "/";
    srv->fallback->s = srv->s;
    srv->fallback->implicit = true;
    srv->fallback->line = sec.line;
    for (const PendingListen& pl : listens) add_listen(srv.get(), pl);
    http->servers.push_back(std::move(srv));
  }
};

}  // namespace

std::unique_ptr<HttpConf> parse_http_conf(const ConfFile& conf, const std::string& prefix) {
  auto http = std::make_unique<HttpConf>();
  http->prefix = prefix;
  http->base.root = resolve_path(prefix, "html");
  Parser p{conf, http.get(), prefix};
  std::string types_path;
  int types_line = 0;
  int http_line = 0;
  for (const ConfSection& sec : conf.sections) {
    if (sec.kind != "http") continue;
    if (http_line) conf.fail(sec.line, "duplicate [http] section (first at line " + std::to_string(http_line) + ")");
    http_line = sec.line;
    if (!sec.arg.empty()) conf.fail(sec.line, "[http] takes no name");
    check_section_keys(conf, sec);
    for (const ConfEntry& e : sec.entries) {
      if (e.key == "types") {
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
      conf.fail(sec.line, "[upstream] is not supported by this build yet");
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
  return http;
}

}  // namespace baton::http

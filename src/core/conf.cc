#include "core/conf.h"

#include <fnmatch.h>
#include <glob.h>
#include <ini.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/un.h>

#include <algorithm>
#include <deque>
#include <fstream>
#include <sstream>

#include "config.h"
#include "core/strings.h"

namespace baton {

void ConfFile::fail(int line, const std::string& msg) const { throw ConfError(where(line) + ": " + msg); }

std::string ConfFile::where(int line) const {
  size_t i = static_cast<size_t>(conf_file_index(line));
  const std::string& name = i == 0 || i > included.size() ? path : included[i - 1].path;
  return name + ":" + std::to_string(conf_lineno(line));
}

std::string ConfFile::at(int line) const {
  // With included files, "line N" alone could be read as a line of another file.
  if (conf_file_index(line) == 0 && included.empty()) return "line " + std::to_string(line);
  return where(line);
}

namespace {

// ---------------------------------------------------------------------------------------------
// The table of keys

enum : unsigned { kMain = 1, kHttp = 2, kServer = 4, kLocation = 8, kUpstream = 16 };
constexpr unsigned kInherited = kHttp | kServer | kLocation;  // the Settings keys

struct KeyInfo {
  const char* name;
  unsigned sections;
  bool repeats;
  // Added to "belongs in [...]" where a key of one section reads like one of another.
  const char* hint = nullptr;
};

// Every key baton reads: the section parsers (parse_main_conf, http_config.cc) apply the values,
// this table alone decides where a key may stand and whether it may be given twice.
constexpr KeyInfo kKeys[] = {
    {"worker_processes", kMain, false},
    {"worker_connections", kMain, false},
    // Read by the reader itself, anywhere (it never reaches a section): here so that it is known.
    {"include", kMain | kHttp | kServer | kLocation | kUpstream, true},
    {"pid", kMain, false},
    // In [main] the process's error log; in [http], [server] or [location] that level's own.
    {"error_log", kMain | kInherited, false},
    {"log_level", kMain, false},
    {"control_socket", kMain, false},
    {"quit_timeout", kMain, false},
    {"upgrade_timeout", kMain, false},
    {"restart_initial_backoff", kMain, false},
    {"restart_max_backoff", kMain, false},
    {"restart_max_per_minute", kMain, false},
    {"user", kMain, false},
    {"daemon", kMain, false},

    {"root", kInherited, false},
    {"index", kInherited, false},  // several names in one value
    {"default_type", kInherited, false},
    // In [upstream] these three are about the upstream connections, elsewhere about the clients'.
    {"keepalive_timeout", kInherited | kUpstream, false},
    {"keepalive_requests", kInherited | kUpstream, false},
    {"client_header_timeout", kInherited, false},
    {"client_body_timeout", kInherited, false},
    {"send_timeout", kInherited | kUpstream, false},
    {"client_max_body_size", kInherited, false},
    {"client_header_buffer_size", kInherited, false},
    {"expires", kInherited, false},
    {"disable_symlinks", kInherited, false},
    {"limit_rate", kInherited, false},
    {"limit_rate_after", kInherited, false},
    {"access_log", kInherited, true},  // a level with any replaces the inherited ones
    {"log_format", kHttp, true},
    {"proxy_set_header", kInherited, true},
    {"proxy_hide_header", kInherited, true},
    {"proxy_pass_header", kInherited, true},
    {"proxy_next_upstream", kInherited, false},
    {"proxy_next_upstream_tries", kInherited, false},
    {"proxy_next_upstream_timeout", kInherited, false},
    {"proxy_buffering", kInherited, false},
    {"proxy_request_buffering", kInherited, false},
    {"client_body_buffer_size", kInherited, false},
    {"proxy_buffer_size", kInherited, false},
    {"proxy_buffers", kInherited, false},
    {"proxy_redirect", kInherited, false},
    {"proxy_http_version", kInherited, false},  // accepted for nginx configurations: always 1.1
    {"proxy_connect_timeout", kInherited, false},
    {"proxy_read_timeout", kInherited, false},
    {"proxy_send_timeout", kInherited, false},
    {"proxy_ssl_verify", kInherited, false},
    {"proxy_ssl_trusted_certificate", kInherited, false},
    {"proxy_ssl_verify_depth", kInherited, false},
    {"proxy_ssl_server_name", kInherited, false},
    {"proxy_ssl_name", kInherited, false},
    {"proxy_ssl_certificate", kInherited, false},
    {"proxy_ssl_certificate_key", kInherited, false},
    {"proxy_ssl_protocols", kInherited, false},
    {"proxy_ssl_ciphers", kInherited, false},
    {"proxy_ssl_session_reuse", kInherited, false},
    {"error_page", kInherited, true},  // a level with any replaces the inherited ones
    {"add_header", kInherited, true},  // the same
    {"server_tokens", kInherited, false},
    {"gzip", kInherited, false},
    {"gzip_types", kInherited, false},
    {"gzip_min_length", kInherited, false},
    {"gzip_comp_level", kInherited, false},
    {"gzip_vary", kInherited, false},
    {"gzip_static", kInherited, false},
    {"gzip_proxied", kInherited, false},
    {"autoindex", kInherited, false},
    {"autoindex_format", kInherited, false},
    {"autoindex_exact_size", kInherited, false},
    {"autoindex_localtime", kInherited, false},
    {"charset", kInherited, false},
    {"allow", kInherited, true},  // allow and deny make one list, in the order written
    {"deny", kInherited, true},
    {"set_real_ip_from", kInherited, true},
    {"real_ip_header", kInherited, false},
    {"real_ip_recursive", kInherited, false},
    {"auth_basic", kInherited, false},
    {"auth_basic_user_file", kInherited, false},
    {"satisfy", kInherited, false},
    {"limit_req_zone", kHttp, true},
    {"limit_conn_zone", kHttp, true},
    {"limit_req", kInherited, true},  // a level with any replaces the inherited ones
    {"limit_req_status", kInherited, false},
    {"limit_req_log_level", kInherited, false},
    {"limit_req_dry_run", kInherited, false},
    {"limit_conn", kInherited, true},  // the same
    {"limit_conn_status", kInherited, false},
    {"limit_conn_log_level", kInherited, false},
    {"limit_conn_dry_run", kInherited, false},
    {"types", kHttp, false},

    // TLS: in [http] (for every server) or in a [server]; a level with its own certificates
    // replaces the inherited ones.
    {"ssl_certificate", kHttp | kServer, true},
    {"ssl_certificate_key", kHttp | kServer, true},
    {"ssl_protocols", kHttp | kServer, false},
    {"ssl_ciphers", kHttp | kServer, false},
    {"ssl_prefer_server_ciphers", kHttp | kServer, false},
    {"ssl_conf_command", kHttp | kServer, true},
    {"ssl_session_tickets", kHttp | kServer, false},
    {"ssl_session_ticket_key", kHttp | kServer, true},
    {"ssl_session_timeout", kHttp | kServer, false},
    {"ssl_session_cache", kHttp | kServer, false},
    {"ssl_verify_client", kHttp | kServer, false},
    {"ssl_client_certificate", kHttp | kServer, false},
    {"ssl_trusted_certificate", kHttp | kServer, false},
    {"ssl_verify_depth", kHttp | kServer, false},
    {"ssl_stapling", kHttp | kServer, false},
    {"ssl_stapling_file", kHttp | kServer, false},
    {"ssl_buffer_size", kHttp | kServer, false},

    {"listen", kServer, true},
    {"server_name", kServer, false},  // several names in one value

    {"alias", kLocation, false},
    {"try_files", kLocation, false},
    {"return", kServer | kLocation, false},
    {"rewrite", kServer | kLocation, true},
    {"proxy_pass", kLocation, false},
    {"stub_status", kLocation, false},
    {"metrics", kLocation, false},

    {"server", kUpstream, true, "; a virtual server is a section: [server NAME]"},
    {"balance", kUpstream, false},
    {"keepalive", kUpstream, false, "; for client connections it is \"keepalive_timeout\""},
    {"connect_timeout", kUpstream, false, "; in a location it is \"proxy_connect_timeout\""},
    {"read_timeout", kUpstream, false, "; in a location it is \"proxy_read_timeout\""},
};

struct NginxDirective {
  const char* name;
  const char* note;  // replaces "is not supported yet" where baton has it another way
};

// nginx directives an nginx configuration commonly carries (core, events, http core, rewrite,
// auth, headers, gzip, log, limits, charset, proxy, fastcgi and friends, ssl, http2, ...) that
// baton does not read: said plainly rather than called a typo.
constexpr NginxDirective kNginxDirectives[] = {
    // main and events
    {"worker_rlimit_nofile", nullptr}, {"worker_cpu_affinity", nullptr}, {"worker_priority", nullptr},
    {"worker_shutdown_timeout", "is not supported (baton's \"quit_timeout\" in [main] does this)"},
    {"pcre_jit", nullptr}, {"env", nullptr}, {"load_module", nullptr}, {"lock_file", nullptr},
    {"master_process", nullptr}, {"thread_pool", nullptr}, {"timer_resolution", nullptr},
    {"working_directory", nullptr}, {"multi_accept", nullptr}, {"accept_mutex", nullptr},
    {"accept_mutex_delay", nullptr}, {"use", nullptr}, {"ssl_engine", nullptr},
    // sections written as keys
    {"events", "is not a section here (\"worker_connections\" belongs in [main])"},
    {"http", "is a section here: write it as [http]"},
    {"location", "is a section here: write it as [location /path]"},
    {"upstream", "is a section here: write it as [upstream NAME]"},
    // upstream balancing methods, keys of their own in nginx
    {"least_conn", "is written \"balance = least_conn\" in [upstream] here"},
    {"ip_hash", "is written \"balance = ip_hash\" in [upstream] here"},
    {"hash", "is written \"balance = hash KEY\" in [upstream] here"},
    {"random", nullptr}, {"zone", nullptr}, {"ntlm", nullptr}, {"sticky", nullptr},
    // http core
    {"sendfile", "is not needed: baton always sends files with sendfile()"},
    {"tcp_nodelay", "is not needed: baton sets TCP_NODELAY on kept-alive connections"},
    {"tcp_nopush", nullptr}, {"aio", nullptr}, {"directio", nullptr}, {"output_buffers", nullptr},
    {"sendfile_max_chunk", nullptr}, {"absolute_redirect", nullptr}, {"port_in_redirect", nullptr},
    {"server_name_in_redirect", nullptr}, {"chunked_transfer_encoding", nullptr},
    {"client_body_temp_path", nullptr}, {"client_body_in_file_only", nullptr},
    {"large_client_header_buffers", "is not supported (baton's \"client_header_buffer_size\" is the largest request head)"},
    {"keepalive_time", nullptr}, {"keepalive_disable", nullptr}, {"lingering_close", nullptr},
    {"lingering_time", nullptr}, {"lingering_timeout", nullptr}, {"reset_timedout_connection", nullptr},
    {"recursive_error_pages", nullptr}, {"internal", nullptr}, {"limit_except", nullptr},
    {"log_not_found", nullptr}, {"log_subrequest", nullptr},
    {"etag", nullptr}, {"if_modified_since", nullptr}, {"max_ranges", nullptr}, {"merge_slashes", nullptr},
    {"open_file_cache", nullptr}, {"open_file_cache_valid", nullptr}, {"open_file_cache_min_uses", nullptr},
    {"open_file_cache_errors", nullptr}, {"resolver", nullptr}, {"resolver_timeout", nullptr},
    {"server_names_hash_bucket_size", nullptr}, {"server_names_hash_max_size", nullptr},
    {"types_hash_max_size", nullptr}, {"types_hash_bucket_size", nullptr}, {"variables_hash_max_size", nullptr},
    {"variables_hash_bucket_size", nullptr}, {"underscores_in_headers", nullptr}, {"ignore_invalid_headers", nullptr},
    {"default_server", "is an option of \"listen\" here: listen = ADDRESS default_server"},
    // rewrite, access, auth, index, headers
    {"rewrite_log", nullptr}, {"set", nullptr}, {"if", nullptr}, {"break", nullptr},
    {"auth_request", nullptr}, {"auth_request_set", nullptr},
    {"add_trailer", nullptr}, {"charset_types", nullptr},
    {"source_charset", nullptr}, {"override_charset", nullptr}, {"ssi", nullptr}, {"sub_filter", nullptr},
    {"sub_filter_once", nullptr}, {"sub_filter_types", nullptr}, {"map", nullptr},
    {"geo", nullptr}, {"split_clients", nullptr}, {"mirror", nullptr},
    // gzip
    {"gzip_disable", nullptr},
    {"gzip_buffers", nullptr}, {"gzip_http_version", nullptr},
    // logs
    {"open_log_file_cache", nullptr},
    // proxy and the other upstream modules
    {"proxy_busy_buffers_size", nullptr}, {"proxy_ignore_headers", nullptr},
    {"proxy_intercept_errors", nullptr}, {"proxy_cache", nullptr}, {"proxy_cache_path", nullptr},
    {"proxy_cache_key", nullptr}, {"proxy_cache_valid", nullptr}, {"proxy_cache_bypass", nullptr},
    {"proxy_no_cache", nullptr}, {"proxy_cookie_domain", nullptr}, {"proxy_cookie_path", nullptr},
    {"proxy_max_temp_file_size", nullptr}, {"proxy_temp_path", nullptr}, {"proxy_bind", nullptr},
    {"proxy_method", nullptr}, {"proxy_pass_request_body", nullptr}, {"proxy_pass_request_headers", nullptr},
    {"proxy_set_body", nullptr}, {"proxy_socket_keepalive", nullptr},
    
    
    {"fastcgi_pass", nullptr},
    {"fastcgi_param", nullptr}, {"fastcgi_index", nullptr}, {"uwsgi_pass", nullptr}, {"scgi_pass", nullptr},
    {"grpc_pass", nullptr}, {"memcached_pass", nullptr},
    // ssl and http2
    {"ssl", "is not supported (an address speaks TLS with \"listen = ADDR:PORT ssl\")"},
    
    
    {"ssl_dhparam", nullptr}, {"ssl_ecdh_curve", nullptr}, {"ssl_stapling_verify", nullptr},
    
    {"ssl_password_file", nullptr},
    {"ssl_early_data", nullptr}, {"ssl_crl", nullptr},
    {"ssl_reject_handshake", nullptr}, {"http2", nullptr}, {"http2_max_concurrent_streams", nullptr},
    {"http3", nullptr}, {"quic_retry", nullptr},
};

unsigned section_bit(std::string_view kind) {
  if (kind == "main") return kMain;
  if (kind == "http") return kHttp;
  if (kind == "server") return kServer;
  if (kind == "location") return kLocation;
  if (kind == "upstream") return kUpstream;
  return 0;
}

// "[http], [server] or [location]"
std::string section_names(unsigned sections) {
  static const char* const kNames[] = {"[main]", "[http]", "[server]", "[location]", "[upstream]"};
  std::vector<const char*> names;
  for (unsigned i = 0; i < 5; i++)
    if (sections & (1u << i)) names.push_back(kNames[i]);
  std::string out;
  for (size_t i = 0; i < names.size(); i++) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

const KeyInfo* find_key(std::string_view name) {
  for (const KeyInfo& k : kKeys)
    if (name == k.name) return &k;
  return nullptr;
}

const NginxDirective* find_nginx_directive(std::string_view name) {
  for (const NginxDirective& d : kNginxDirectives)
    if (name == d.name) return &d;
  return nullptr;
}

// Edit distance with adjacent transpositions (optimal string alignment): a typo is mostly one
// wrong, missing, extra or swapped letter.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); j++) prev[j] = j;
  for (size_t i = 1; i <= a.size(); i++) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); j++) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) cur[j] = std::min(cur[j], prev2[j - 2] + 1);
    }
    prev2.swap(prev);
    prev.swap(cur);
  }
  return prev[b.size()];
}

// The valid key nearest to name, among those of the sections given; null when none is close enough
// to be a likely typo.
const KeyInfo* nearest_key(std::string_view name, unsigned sections) {
  size_t limit = name.size() <= 4 ? 1 : name.size() <= 8 ? 2 : 3;
  const KeyInfo* best = nullptr;
  size_t best_d = limit + 1;
  for (const KeyInfo& k : kKeys) {
    if (!(k.sections & sections)) continue;
    size_t d = edit_distance(name, k.name);
    if (d < best_d) {
      best = &k;
      best_d = d;
    }
  }
  return best;
}

// Whether a continuation line reads like a key line of its own: "name = ..." with a name baton or
// nginx knows. A value that merely contains "=" ("=404", "a=b") is not one.
std::string_view key_of_key_line(std::string_view t) {
  size_t i = 0;
  while (i < t.size() && ((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= '0' && t[i] <= '9') ||
                          t[i] == '_'))
    i++;
  std::string_view name = t.substr(0, i);
  std::string_view rest = trim(t.substr(i));
  if (name.empty() || rest.empty() || rest[0] != '=') return {};
  if (!find_key(name) && !find_nginx_directive(name)) return {};
  return name;
}

// ---------------------------------------------------------------------------------------------
// The reader

// inih reads through this: it counts lines, finds section headers itself (so that two sections with
// the same name stay apart and long names are not cut), hands inih every line without its
// indentation (inih would join an indented line to the value above: indentation means nothing
// here), joins lines that end with "\" itself, and reports lines the library would cut.
struct IniReader {
  ConfFile* file = nullptr;
  // The files being read: the main one at the bottom, the one an `include` is reading on top.
  struct Source {
    std::string_view data;
    size_t pos = 0;
    int lineno = 0;             // in this file
    int index = 0;              // in file->included (1-based), 0 for the main file
    std::vector<std::string> chain;  // this file and those that included it, for loops
  };
  std::vector<Source> stack;
  std::deque<std::string> texts;  // what the sources' data point into
  int lineno = 0;            // the line being read, as conf_line() encodes it
  std::vector<int> order;    // the lines in the order inih saw them: its line n is order[n - 1]
  bool continues = false;  // the key line inih is given now ends with "\"
  int cont_line = 0;       // while a value is being continued: the line of its key; else 0
  std::string cont_key;
  ConfEntry* cont_entry = nullptr;  // null when its key line was refused
  int first_error_line = 0;
  std::string first_error;

  // The error on the line read first is the one reported.
  void error(int line, std::string msg) {
    if (first_error_line == 0 || seq(line) < seq(first_error_line)) {
      first_error_line = line;
      first_error = std::move(msg);
    }
  }
  size_t seq(int line) const {
    for (size_t i = 0; i < order.size(); i++)
      if (order[i] == line) return i;
    return order.size();
  }
};

constexpr size_t kIncludeDepth = 16;

constexpr size_t kIniLineMax = INI_MAX_LINE - 2;  // room for the newline and the terminating NUL

bool is_comment_or_blank(std::string_view t) { return t.empty() || t[0] == ';' || t[0] == '#'; }

// Cuts an inline comment (";" after a space or tab) and the blanks before it.
std::string_view cut_inline_comment(std::string_view t) {
  for (size_t i = 1; i < t.size(); i++)
    if (t[i] == ';' && (t[i - 1] == ' ' || t[i - 1] == '\t')) return trim(t.substr(0, i));
  return t;
}

// Removes a trailing "\" (and the blanks before it); true when there was one.
bool cut_continuation(std::string_view* t) {
  if (t->empty() || t->back() != '\\') return false;
  t->remove_suffix(1);
  *t = trim(*t);
  return true;
}

void on_section_line(IniReader* r, std::string_view t) {
  size_t close = t.find(']');
  // A regex location's pattern may hold ']' ("[location ~ ^/[a-z]+$]"): its header ends at the
  // last one on the line.
  std::string_view head = trim(t.substr(1));
  if (head.starts_with("location") && trim(head.substr(8)).starts_with("~")) close = t.rfind(']');
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

// A line after one that ends with "\": its text belongs to the value being continued.
void on_continuation_line(IniReader* r, std::string_view line) {
  std::string_view t = trim(line);
  int key_line = r->cont_line;
  r->cont_line = 0;
  std::string of = "the value of \"" + r->cont_key + "\" (" + r->file->at(key_line) + " ends with \"\\\")";
  if (is_comment_or_blank(t)) {
    r->error(r->lineno, of + " continues into an empty line or a comment");
    return;
  }
  t = cut_inline_comment(t);
  bool more = cut_continuation(&t);
  if (std::string_view key = key_of_key_line(t); !key.empty()) {
    r->error(r->lineno, "\"" + std::string(key) + "\" would become part of " + of +
                            "; remove the \"\\\" to make it a key of its own");
    return;
  }
  if (r->cont_entry) {
    if (!r->cont_entry->value.empty() && !t.empty()) r->cont_entry->value.push_back(' ');
    r->cont_entry->value.append(t);
  }
  if (more) r->cont_line = key_line;
}

std::vector<ConfSource> g_snapshot;

// Reads a configuration file: from the snapshot while one is set, else from the disk.
bool read_source(const std::string& path, std::string* out);

// The files an `include` names: the path itself, or what a glob matches, sorted (while a snapshot
// is set, what it matches among the snapshot's files: the files read then, not those there now).
// "" or the reason it cannot.
std::string expand_include(const std::string& pattern, bool is_glob, std::vector<std::string>* paths) {
  paths->clear();
  if (!is_glob) {
    paths->push_back(pattern);
    return "";
  }
  if (!g_snapshot.empty()) {
    for (const ConfSource& f : g_snapshot)
      if (fnmatch(pattern.c_str(), f.path.c_str(), FNM_PATHNAME | FNM_PERIOD) == 0) paths->push_back(f.path);
    std::sort(paths->begin(), paths->end());
    // (A file included at two places is in the snapshot twice.)
    paths->erase(std::unique(paths->begin(), paths->end()), paths->end());
    return "";
  }
  // A directory that does not exist holds nothing; one that cannot be read is an error.
  static thread_local std::string unreadable;
  unreadable.clear();
  auto on_error = [](const char* path, int err) {
    if (err == ENOENT || err == ENOTDIR) return 0;
    unreadable = std::string(path) + "\" (" + strerror(err) + ")";
    return 1;
  };
  glob_t g{};
  int rc = glob(pattern.c_str(), 0, on_error, &g);
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; i++) paths->push_back(g.gl_pathv[i]);
  globfree(&g);
  if (rc == 0 || rc == GLOB_NOMATCH) return "";  // a glob that matches nothing includes nothing (as in nginx)
  if (!unreadable.empty()) return "cannot read the directory \"" + unreadable;
  return "cannot expand \"" + pattern + "\"";
}

// `include = PATH-OR-GLOB`: the files it names are read next, in order, before the rest of this one.
void on_include(IniReader* r, std::string_view value) {
  if (!value.empty() && value.back() == ';') {
    r->error(r->lineno, "\"include\" value ends with \";\" (baton's configuration needs no \";\" at the end of a line)");
    return;
  }
  if (value.size() >= 2 && (value[0] == '"' || value[0] == '\'') && value.back() == value[0])
    value = value.substr(1, value.size() - 2);
  if (value.empty()) {
    r->error(r->lineno, "\"include\" needs a file or a glob");
    return;
  }
  if (value.find_first_of(" \t") != std::string_view::npos) {
    r->error(r->lineno, "\"include\" takes one file or glob (quote a path with blanks in it)");
    return;
  }
  // Whether it is a glob is decided by what was written; the directory put in front of a relative
  // path is taken literally.
  const bool is_glob = value.find_first_of("*?[") != std::string_view::npos;
  std::string pattern(value);
  if (pattern[0] != '/') {
    size_t slash = r->file->path.rfind('/');
    std::string dir = slash == std::string::npos ? std::string() : r->file->path.substr(0, slash + 1);
    if (is_glob) {
      std::string escaped;
      for (char c : dir) {
        if (c == '*' || c == '?' || c == '[' || c == '\\') escaped.push_back('\\');
        escaped.push_back(c);
      }
      dir = escaped;
    }
    pattern = dir + pattern;
  }
  std::vector<std::string> paths;
  if (std::string err = expand_include(pattern, is_glob, &paths); !err.empty()) {
    r->error(r->lineno, err);
    return;
  }
  const IniReader::Source& from = r->stack.back();
  if (!paths.empty() && from.chain.size() >= kIncludeDepth) {
    r->error(r->lineno, "includes nest more than " + std::to_string(kIncludeDepth) + " deep");
    return;
  }
  std::vector<IniReader::Source> next;
  for (const std::string& path : paths) {
    std::string text;
    if (!read_source(path, &text)) {
      r->error(r->lineno, "cannot open included file \"" + path + "\" (" + strerror(errno) + ")");
      return;
    }
    char real[PATH_MAX];
    std::string id = realpath(path.c_str(), real) ? std::string(real) : path;
    for (const std::string& up : from.chain)
      if (up == id) {
        std::string loop;
        for (const std::string& c : from.chain) loop += "\"" + c + "\" includes ";
        r->error(r->lineno, "include loop: " + loop + "\"" + id + "\"");
        return;
      }
    if (r->file->included.size() + 1 >= (size_t{1} << (31 - kConfFileShift))) {
      r->error(r->lineno, "too many included files");
      return;
    }
    r->file->included.push_back(ConfSource{path, text});
    r->texts.push_back(std::move(text));
    IniReader::Source src;
    src.data = r->texts.back();
    src.index = static_cast<int>(r->file->included.size());
    src.chain = from.chain;
    src.chain.push_back(id);
    next.push_back(std::move(src));
  }
  // The first file named is read first: it goes on top.
  for (auto it = next.rbegin(); it != next.rend(); ++it) r->stack.push_back(std::move(*it));
}

char* ini_read_line(char* str, int num, void* stream) {
  auto* r = static_cast<IniReader*>(stream);
  while (!r->stack.empty() && r->stack.back().pos >= r->stack.back().data.size()) {
    if (r->stack.size() == 1) return nullptr;
    // The end of an included file: a value cannot continue across it.
    if (r->cont_line) {
      r->error(r->cont_line, "the value of \"" + r->cont_key + "\" ends with \"\\\" at the end of the file");
      r->cont_line = 0;
    }
    r->stack.pop_back();
  }
  if (r->stack.empty()) return nullptr;
  IniReader::Source& src = r->stack.back();
  size_t nl = src.data.find('\n', src.pos);
  size_t end = nl == std::string_view::npos ? src.data.size() : nl;
  std::string_view line = src.data.substr(src.pos, end - src.pos);
  src.pos = nl == std::string_view::npos ? src.data.size() : nl + 1;
  src.lineno++;
  if (src.lineno >= (1 << kConfFileShift)) {
    r->error(r->order.empty() ? 1 : r->order.back(), "the file is too long (more than a million lines)");
    return nullptr;
  }
  r->lineno = conf_line(src.index, src.lineno);
  r->order.push_back(r->lineno);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (src.lineno == 1 && line.starts_with("\xEF\xBB\xBF")) line.remove_prefix(3);  // UTF-8 BOM

  std::string_view out;  // what inih sees: never indented, no inline comment, no trailing "\"
  r->continues = false;
  if (line.size() > kIniLineMax || line.size() + 2 > static_cast<size_t>(num)) {
    r->error(r->lineno, "line is too long (" + std::to_string(line.size()) + " bytes, at most " +
                            std::to_string(kIniLineMax) +
                            "; end the line with \"\\\" and continue the value on the next line)");
    r->cont_line = 0;
  } else if (memchr(line.data(), '\0', line.size())) {
    r->error(r->lineno, "NUL byte in line");
    r->cont_line = 0;
  } else if (r->cont_line) {
    on_continuation_line(r, line);
  } else if (std::string_view t = trim(line); is_comment_or_blank(t)) {
    // nothing for inih
  } else if (t[0] == '[') {
    // The section is read here; inih is given a stand-in it cannot misread (a pattern may hold
    // ';' or ']').
    on_section_line(r, t);
    out = "[s]";
  } else if (key_of_key_line(t) == "include") {
    // Read here, not by inih: the included lines take its place.
    std::string_view value = cut_inline_comment(t);
    value = trim(value.substr(value.find('=') + 1));
    if (!value.empty() && value.back() == '\\')
      r->error(r->lineno, "\"include\" cannot continue on the next line");
    else
      on_include(r, value);
  } else {
    out = cut_inline_comment(t);
    r->continues = cut_continuation(&out);
    if (r->continues && out.empty()) r->error(r->lineno, "a line with nothing but \"\\\" continues nothing");
  }
  if (!out.empty()) memcpy(str, out.data(), out.size());
  str[out.size()] = '\n';
  str[out.size() + 1] = '\0';
  return str;
}

int ini_on_entry(void* user, const char* /*section*/, const char* name, const char* value) {
  auto* r = static_cast<IniReader*>(user);
  if (r->continues) {
    // The lines that follow continue this value, or are dropped with it if it is refused below.
    r->cont_line = r->lineno;
    r->cont_key = name;
    r->cont_entry = nullptr;
  }
  std::string_view key = name;
  if (key.empty() || key.find_first_of(" \t") != std::string_view::npos) {
    r->error(r->lineno, "invalid line (expected \"key = value\", \"[section]\" or a comment)");
    return 1;
  }
  if (key == "include") {
    // Only "include = ..." is read as one (another separator would leave it unread).
    r->error(r->lineno, "write \"include = PATH\"");
    return 1;
  }
  if (r->file->sections.empty()) {
    r->error(r->lineno, "\"" + std::string(name) + "\" is outside of any section");
    return 1;
  }
  ConfSection& sec = r->file->sections.back();
  sec.entries.push_back(ConfEntry{name, value, r->lineno});
  // No section or entry is added before the continuation lines are read: the pointer stays valid.
  if (r->continues) r->cont_entry = &sec.entries.back();
  return 1;
}

ConfFile parse_ini(const std::string& name, std::string_view text, bool lenient) {
  ConfFile file;
  file.path = name;
  file.text = std::string(text);
  IniReader reader;
  reader.file = &file;
  IniReader::Source main_source;
  main_source.data = file.text;
  char real[PATH_MAX];
  main_source.chain.push_back(realpath(name.c_str(), real) ? std::string(real) : name);
  reader.stack.push_back(std::move(main_source));
  int rc = ini_parse_stream(ini_read_line, &reader, ini_on_entry, &reader);
  if (lenient) return file;
  if (rc > 0)
    reader.error(static_cast<size_t>(rc) <= reader.order.size() ? reader.order[static_cast<size_t>(rc) - 1] : rc,
                 "invalid line (expected \"key = value\", \"[section]\" or a comment)");
  if (rc < 0) reader.error(0, "cannot parse (out of memory)");
  if (reader.cont_line)
    reader.error(reader.cont_line, "the value of \"" + reader.cont_key + "\" ends with \"\\\" at the end of the file");
  // An nginx habit: "root = /srv/a;" would make the ";" part of the path.
  for (const ConfSection& sec : file.sections)
    for (const ConfEntry& e : sec.entries)
      if (!e.value.empty() && e.value.back() == ';')
        reader.error(e.line, "\"" + e.key + "\" value ends with \";\" (baton's configuration needs no \";\" at the end of a line)");
  if (reader.first_error_line) file.fail(reader.first_error_line, reader.first_error);
  return file;
}

bool slurp(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

namespace {
constexpr std::string_view kSnapshotMagic = "baton-conf-snapshot 1\n";

bool read_source(const std::string& path, std::string* out) {
  for (const ConfSource& f : g_snapshot)
    if (f.path == path) {
      *out = f.text;
      return true;
    }
  return slurp(path, out);
}
}  // namespace

void set_conf_snapshot(std::vector<ConfSource> files) { g_snapshot = std::move(files); }
void clear_conf_snapshot() { g_snapshot.clear(); }

// "baton-conf-snapshot 1\n", then per file "<path length> <text length>\n<path><text>".
std::string encode_conf_snapshot(const std::vector<ConfSource>& files) {
  std::string out(kSnapshotMagic);
  for (const ConfSource& f : files) {
    out += std::to_string(f.path.size()) + " " + std::to_string(f.text.size()) + "\n";
    out += f.path;
    out += f.text;
  }
  return out;
}

bool decode_conf_snapshot(std::string_view in, std::vector<ConfSource>* files) {
  files->clear();
  if (in.substr(0, kSnapshotMagic.size()) != kSnapshotMagic) return false;
  in.remove_prefix(kSnapshotMagic.size());
  while (!in.empty()) {
    size_t nl = in.find('\n');
    if (nl == std::string_view::npos) return false;
    std::string_view head = in.substr(0, nl);
    size_t sp = head.find(' ');
    if (sp == std::string_view::npos) return false;
    uint64_t plen = 0, tlen = 0;
    if (!parse_uint(head.substr(0, sp), &plen) || !parse_uint(head.substr(sp + 1), &tlen)) return false;
    in.remove_prefix(nl + 1);
    if (plen == 0 || plen > in.size() || tlen > in.size() - plen) return false;
    files->push_back(ConfSource{std::string(in.substr(0, plen)), std::string(in.substr(plen, tlen))});
    in.remove_prefix(plen + tlen);
  }
  return true;
}

ConfFile read_conf_file(const std::string& path) {
  std::string text;
  if (!read_source(path, &text)) throw ConfError("cannot open configuration file \"" + path + "\" (" + strerror(errno) + ")");
  return parse_ini(path, text, false);
}

ConfFile read_conf_text(const std::string& name, std::string_view text) { return parse_ini(name, text, false); }

ConfFile read_conf_file_lenient(const std::string& path) {
  std::string text;
  if (!slurp(path, &text)) {
    ConfFile f;
    f.path = path;
    return f;
  }
  return parse_ini(path, text, true);
}

ConfFile read_conf_text_lenient(const std::string& name, std::string_view text) { return parse_ini(name, text, true); }

ConfFile read_conf_globals(std::string_view g) {
  // -g 'key = value; key = value' is a [main] section given on the command line.
  std::string text = "[main]\n";
  while (!g.empty()) {
    size_t semi = g.find(';');
    std::string_view item = trim(g.substr(0, semi));
    if (!item.empty()) text.append(item).push_back('\n');
    if (semi == std::string_view::npos) break;
    g.remove_prefix(semi + 1);
  }
  return read_conf_text("-g", text);
}

void check_section_keys(const ConfFile& file, const ConfSection& sec) {
  unsigned here = section_bit(sec.kind);
  if (!here) return;  // an unknown section is reported as such
  std::string where = "[" + sec.kind + "]";
  for (size_t i = 0; i < sec.entries.size(); i++) {
    const ConfEntry& e = sec.entries[i];
    const KeyInfo* k = find_key(e.key);
    if (k && (k->sections & here)) {
      if (k->repeats) continue;
      for (size_t j = 0; j < i; j++)
        if (sec.entries[j].key == e.key)
          file.fail(e.line, "\"" + e.key + "\" is duplicate (first at " + file.at(sec.entries[j].line) + ")");
      continue;
    }
    if (k) file.fail(e.line, "\"" + e.key + "\" belongs in " + section_names(k->sections) + (k->hint ? k->hint : ""));
    if (const NginxDirective* d = find_nginx_directive(e.key))
      file.fail(e.line, "\"" + e.key + "\" " + (d->note ? d->note : "is not supported yet"));
    std::string msg = "unknown key \"" + e.key + "\" in " + where;
    if (const KeyInfo* near = nearest_key(e.key, here)) {
      msg += "; did you mean \"" + std::string(near->name) + "\"?";
    } else if (const KeyInfo* other = nearest_key(e.key, ~here)) {
      msg += "; did you mean \"" + std::string(other->name) + "\" (in " + section_names(other->sections) + ")?";
    }
    file.fail(e.line, msg);
  }
}

std::string default_pid_path() { return BATON_PID_PATH; }

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

namespace {

// Where a [main] key was set: for the checks that compare two keys after all are read.
struct MainOrigin {
  const ConfFile* file = nullptr;
  int line = 0;
  std::string text;  // the value as written
  int order = 0;     // later settings have a higher order
};

constexpr size_t kSunPathMax = sizeof(sockaddr_un::sun_path) - 1;  // the terminating NUL

void apply_main_entry(const ConfFile& conf, const ConfEntry& e, MainConf* m, const std::string& prefix) {
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
    // nginx's "error_log logs/error.log info" would name a file "error.log info" here.
    size_t sp = e.value.find_last_of(" \t");
    LogLevel level;
    if (sp != std::string::npos && parse_log_level(trim(std::string_view(e.value).substr(sp + 1)), &level))
      conf.fail(e.line, "\"error_log\" takes a path only; the level is set with \"log_level = " +
                            std::string(trim(std::string_view(e.value).substr(sp + 1))) + "\" in [main]");
    m->error_log = e.value;
  } else if (e.key == "log_level") {
    if (!parse_log_level(e.value, &m->log_level)) bad("level");
  } else if (e.key == "control_socket") {
    if (e.value.empty()) bad("path");
    if (e.value != "abstract") {
      std::string path = resolve_path(prefix, e.value);
      if (path.size() > kSunPathMax)
        conf.fail(e.line, "\"control_socket\" path \"" + path + "\" is too long for a Unix socket (" +
                              std::to_string(path.size()) + " bytes, at most " + std::to_string(kSunPathMax) + ")");
    }
    m->control_socket = e.value;
  } else if (e.key == "quit_timeout") {
    duration(&m->quit_timeout_ms);
    // 0 could mean "wait for ever" as well as "cut at once": neither is said by a 0.
    if (m->quit_timeout_ms == 0)
      conf.fail(e.line, "\"quit_timeout\" must be more than 0 (a fast stop is \"baton -s stop\")");
  } else if (e.key == "upgrade_timeout") {
    duration(&m->upgrade_timeout_ms);
    if (m->upgrade_timeout_ms == 0)
      conf.fail(e.line, "\"upgrade_timeout\" must be more than 0 (every upgrade would be rolled back)");
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
    conf.fail(e.line, "unknown key \"" + e.key + "\" in [main]");  // check_section_keys let it through
  }
}

}  // namespace

void parse_main_conf(const ConfFile& conf, const ConfFile* overrides, MainConf* out, const std::string& prefix) {
  MainOrigin initial{nullptr, 0, "1s", 0}, max{nullptr, 0, "32s", 0};
  bool socket_set = false;
  int order = 0;
  for (const ConfFile* f : {&conf, overrides}) {
    if (!f) continue;
    int main_line = 0;
    for (const ConfSection& sec : f->sections) {
      if (sec.kind != "main") continue;
      if (main_line) f->fail(sec.line, "duplicate [main] section (first at " + f->at(main_line) + ")");
      main_line = sec.line;
      if (!sec.arg.empty()) f->fail(sec.line, "[main] takes no name");
      check_section_keys(*f, sec);
      for (const ConfEntry& e : sec.entries) {
        apply_main_entry(*f, e, out, prefix);
        order++;
        if (e.key == "restart_initial_backoff") initial = MainOrigin{f, e.line, e.value, order};
        if (e.key == "restart_max_backoff") max = MainOrigin{f, e.line, e.value, order};
        if (e.key == "control_socket") socket_set = true;
      }
    }
  }
  if (out->restart_max_backoff_ms < out->restart_initial_backoff_ms) {
    // Blame the one set last: the other is a default, or was there first.
    const MainOrigin& at = max.order > initial.order ? max : initial;
    at.file->fail(at.line, "\"restart_max_backoff\" (" + max.text + ") is below \"restart_initial_backoff\" (" +
                               initial.text + ")");
  }
  if (!socket_set && out->control_socket != "abstract") {
    std::string path = resolve_path(prefix, out->control_socket);
    if (path.size() > kSunPathMax)
      throw ConfError(conf.path + ": the default control socket \"" + path + "\" is too long for a Unix socket (" +
                      std::to_string(path.size()) + " bytes, at most " + std::to_string(kSunPathMax) +
                      "): set a shorter \"control_socket\" in [main]");
  }
}

std::string resolve_path(const std::string& prefix, const std::string& path) {
  if (path.empty() || path[0] == '/' || path == "stderr") return path;
  if (prefix.empty()) return path;
  if (prefix.back() == '/') return prefix + path;
  return prefix + "/" + path;
}

}  // namespace baton

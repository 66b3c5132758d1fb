// The [http], [server], [location] and [upstream] sections turned into the objects requests are
// routed by: settings inherited http -> server -> location, listen addresses grouped with their
// servers, upstream groups with their servers resolved, and each location's proxy_pass.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/conf.h"
#include "core/status_zone.h"
#include "http/http_access.h"
#include "http/http_auth.h"
#include "http/http_limit.h"
#include "http/http_regex.h"
#include "http/http_response.h"
#include "http/http_upstream.h"
#include "http/http_variables.h"
#include "os/unix/socket.h"

namespace baton {
class TlsContext;
}

namespace baton::http {

class MimeTypes;
struct AccessLogFile;

enum class Symlinks { kOff, kOn, kOutsideRoot };
enum class LogFormat { kCombined, kJson, kCustom };

// log_format = NAME [escape=default|json|none] FORMAT, in [http].
struct CustomLogFormat {
  std::string name;
  Template format;
  Escape escape = Escape::kLog;  // kLog, kLogRaw (escape=none) or kJson
  int line = 0;
};

// access_log = PATH [FORMAT] [if=CONDITION]: one of the logs a request is written to.
struct AccessLog {
  std::shared_ptr<AccessLogFile> file;
  LogFormat format = LogFormat::kCombined;
  std::shared_ptr<const CustomLogFormat> custom;  // kCustom
  // if=: a line is written only when this is neither empty nor "0"; null: always.
  std::shared_ptr<const Template> condition;
};

// error_page = CODE [CODE...] [=[RESPONSE]] URI: what a client gets instead of the built-in page for
// one status. A line with several codes is one ErrorPage per code.
struct ErrorPage {
  int status = 0;     // the error it replaces (300..599)
  int response = -1;  // =RESPONSE: -1 none (the error's own status), 0 `=` alone (the page's status)
  bool redirect = false;  // uri is a URL: the client is sent there (302, or RESPONSE when given)
  std::string uri;        // as written
  std::string path;       // a local page: its path, decoded and normalised (looked up as a location)
  std::string args;       // a local page: what follows '?' ($args of a `return` that serves it)
  int line = 0;
};

// Every key that may stand in [http], [server] or [location] and is inherited downwards.
// The ssl_* keys of a level. Certificates and keys pair up in the order given.
struct TlsSettings {
  std::vector<std::string> certificates, keys;  // absolute paths
  std::vector<int> certificate_lines, key_lines;
  int min_version = 0x0303;  // TLS 1.2
  int max_version = 0x0304;  // TLS 1.3
  int protocols_line = 0;
  std::string ciphers;
  int ciphers_line = 0;
  bool prefer_server_ciphers = false;
  std::vector<std::string> conf_commands;
  int conf_commands_line = 0;
  bool session_tickets = true;
  std::vector<std::string> ticket_key_files;  // absolute paths
  std::vector<int> ticket_key_lines;
  int64_t session_timeout_ms = 300000;
  int64_t session_cache = -1;  // -1: OpenSSL's default size, 0: off
  int verify_client = 0;       // TlsVerify: off, on, optional, optional_no_ca
  int verify_client_line = 0;
  std::string client_certificate, trusted_certificate;  // absolute paths
  int client_certificate_line = 0, trusted_certificate_line = 0;
  int verify_depth = 1;
  bool stapling = false;
  int stapling_line = 0;
  std::string stapling_file;  // absolute path
  int stapling_file_line = 0;
  uint64_t buffer_size = 16384;  // ssl_buffer_size
};

struct Settings {
  std::string root;  // absolute; empty = the prefix's html/
  std::vector<std::string> index = {"index.html"};
  std::string default_type = "application/octet-stream";
  int64_t keepalive_timeout_ms = 75000;
  uint64_t keepalive_requests = 1000;
  int64_t client_header_timeout_ms = 60000;
  int64_t client_body_timeout_ms = 60000;
  int64_t send_timeout_ms = 60000;
  uint64_t client_max_body_size = 1024 * 1024;
  uint64_t client_header_buffer_size = 8192;
  int64_t expires_ms = -1;  // -1: off
  // limit_rate: a response goes out at no more than this many bytes a second (0: no limit), once
  // its first limit_rate_after bytes are out.
  uint64_t limit_rate = 0;
  uint64_t limit_rate_after = 0;
  Symlinks disable_symlinks = Symlinks::kOutsideRoot;
  // access_log lines; a level that has any replaces the inherited ones (`off`: none), as nginx.
  std::vector<AccessLog> access_logs;
  // error_log: where the lines about this level's requests go (one of HttpConf::error_logs); null:
  // the process's error log.
  ErrorLogFile* error_log = nullptr;
  ProxySettings proxy;  // the proxy_* keys and client_body_buffer_size
  TlsSettings tls;
  // error_page lines; a level that has any replaces the inherited ones (nginx's rule).
  std::vector<ErrorPage> error_pages;
  // add_header lines, the same way: a level with any has only its own.
  std::vector<AddedHeader> add_headers;
  bool server_tokens = true;
  std::string charset;  // charset = NAME; empty: off
  // autoindex: a directory without an index file is listed (HTML or JSON) instead of a 403.
  bool autoindex = false;
  bool autoindex_json = false;
  bool autoindex_exact_size = true;
  bool autoindex_localtime = false;
  // gzip: static files compressed for the clients that accept it; gzip_static: FILE.gz served.
  bool gzip = false;
  std::vector<std::string> gzip_types = {"text/html"};
  uint64_t gzip_min_length = 20;
  int gzip_comp_level = 1;
  bool gzip_vary = false;
  bool gzip_proxied = false;  // any: also for requests that came through a proxy (Via)
  bool gzip_static = false;
  // allow / deny lines in the order written (the first that matches decides); a level with any has
  // only its own.
  std::vector<AccessRule> access;
  // set_real_ip_from (a level with any has only its own), real_ip_header, real_ip_recursive.
  RealIpSettings real_ip;
  // auth_basic and auth_basic_user_file (one file per path, shared by the levels that name it), and
  // satisfy: how allow/deny and basic authentication combine.
  AuthBasic auth_basic;
  Satisfy satisfy = Satisfy::kAll;
  // limit_req and limit_conn (each a level with any has only its own), their statuses and logging.
  LimitSettings limits;
  const ErrorPage* error_page_for(int status) const {
    for (const ErrorPage& p : error_pages)
      if (p.status == status) return &p;
    return nullptr;
  }
};

enum class MatchKind { kExact, kPrefix, kPrefixNoRegex, kRegex };

enum class RewriteFlag : uint8_t { kNone, kLast, kBreak, kRedirect, kPermanent };

// rewrite = REGEX REPLACEMENT [last | break | redirect | permanent], in [server] (before the location
// is looked for) or [location] (after).
struct Rewrite {
  std::unique_ptr<Regex> re;
  Template uri;             // the replacement up to its first '?'
  Template args;           // after it, when has_args
  bool has_args = false;
  bool keep_args = true;   // the request's own arguments follow (not when the replacement ends with '?')
  bool to_url = false;     // http://, https:// or $scheme: the client is redirected whatever the flag
  RewriteFlag flag = RewriteFlag::kNone;
  int line = 0;
};

struct Location {
  MatchKind kind = MatchKind::kPrefix;
  std::string match;  // the path, or the pattern of a regex location
  std::unique_ptr<Regex> regex;  // kRegex
  int line = 0;
  Settings s;
  bool has_alias = false;
  std::string alias;
  // The alias split after its last '/': the directory above it and its last name, for a URI that is
  // the location's path itself (an alias may name a file: "location = /favicon.ico"). alias_name is
  // empty when the alias ends with '/'; alias_name_dir is it with a '/'.
  std::string alias_dir;
  std::string alias_name;
  std::string alias_name_dir;
  std::vector<std::string> try_files;
  std::vector<Rewrite> rewrites;  // in the order read
  int return_code = 0;  // 0: no return
  // The rewrites read before the return (nginx's order: a rewrite after the return never runs).
  size_t rewrites_before_return = 0;
  std::string return_text;  // as configured, quotes removed
  Template return_value;    // return_text compiled: literal text and variables
  bool implicit = false;  // made up for a server without a matching location
  // proxy_pass of this location (never inherited); null when there is none. Its group belongs to
  // HttpConf::upstreams.
  std::unique_ptr<ProxyPass> proxy_pass;
  // stub_status = on / metrics = on: the location answers with the service's counters (never
  // inherited, as nginx's stub_status).
  bool stub_status = false;
  bool metrics = false;
};

struct Server {
  std::string name;  // the section's own name, for logs
  int line = 0;
  Settings s;
  std::string primary_name;  // the first server_name, lower-cased: $server_name
  std::vector<std::string> exact_names;
  std::vector<std::string> wildcard_suffixes;  // "*.example.com" kept as ".example.com"
  std::vector<std::unique_ptr<Location>> locations;
  std::unordered_map<std::string, Location*> exact_locations;
  std::vector<Location*> prefix_locations;  // longest first
  std::vector<Location*> regex_locations;   // in the order written
  std::vector<Rewrite> rewrites;            // the [server]'s own, run before a location is chosen
  std::unique_ptr<Location> fallback;       // serves what no location matches
  // A `return` in [server] answers every request of the server before any location is looked at
  // (nginx's habit for a plain-HTTP server that only redirects to HTTPS); null when there is none.
  std::unique_ptr<Location> server_return;
  // Its TLS context, when it listens on a TLS address (shared: the type stays out of this header).
  std::shared_ptr<TlsContext> tls;
  // Where its requests are counted in the status zone (by its name; HttpConf::bind_status).
  uint32_t status_index = 0;

  // nginx's order: an exact match; else the longest prefix, unless it is `^~`, gives way to the
  // first regex location that matches. A regex match keeps its groups in *caps when not null.
  // A regex that cannot be matched (Regex::Result::kError) sets *failed when it is not null; the
  // request is then an error (500), whatever the location returned.
  const Location* find_location(std::string_view path, Captures* caps = nullptr, bool* failed = nullptr) const;
};

// One listening address and the servers that share it.
struct ListenGroup {
  SockAddr addr;
  ListenOptions opts;
  std::string text;
  int line = 0;
  Server* default_server = nullptr;
  bool explicit_default = false;
  int default_line = 0;
  std::vector<Server*> servers;
  std::unordered_map<std::string, Server*> exact_names;
  std::vector<std::pair<std::string, Server*>> wildcards;  // longest suffix first

  // host: the Host header without port, lower-cased.
  Server* find_server(std::string_view host) const;
};

struct AccessLogFile {
  std::string path;
  int line = 0;  // where the configuration first names it
  int fd = -1;
  std::string buf;  // this process's pending lines
  // A write failed (a full disk): lines are lost until one succeeds. Said once when it starts, and
  // once when it ends, with the count.
  bool failing = false;
  uint64_t lost_lines = 0;
  // Part of a line is in the file and could not be taken back: the next write starts with a line
  // break, so that no line continues it.
  bool broken_line = false;
  ~AccessLogFile();
  std::string open();  // (re)opens; returns an error text or ""
  // Writes the pending lines; a line that cannot be written is lost, never the request.
  void flush();
};

struct HttpConf {
  std::string prefix;
  Settings base;
  std::shared_ptr<MimeTypes> types;
  // Every upstream group of this configuration: the [upstream] sections in file order, then one
  // implicit group per distinct host:port named by a proxy_pass. Declared before the servers so
  // that they outlive every location that points at them.
  std::vector<std::unique_ptr<UpstreamGroup>> upstreams;
  std::vector<std::unique_ptr<Server>> servers;
  std::vector<std::unique_ptr<ListenGroup>> listens;
  std::map<std::string, std::shared_ptr<AccessLogFile>> access_logs;
  // The error_log files of [http], [server] and [location] (not [main]'s), one per path.
  std::map<std::string, std::unique_ptr<ErrorLogFile>> error_logs;
  std::map<std::string, std::shared_ptr<const CustomLogFormat>> log_formats;  // by name
  uint64_t max_header_buffer = 8192;
  // limit_req_zone and limit_conn_zone, by name; their memory is made or taken over with the
  // generation's listeners.
  std::map<std::string, std::unique_ptr<LimitZone>> limit_zones;
  std::vector<ConfSource> files_read;  // besides the main file: the types file (for -T)
  // The service's counters (core/status_zone.h): always there, whether or not a location shows them,
  // so that they count from the start of the service.
  ShmZone status_shm;

  HttpConf();
  // The shared memory zones this configuration uses.
  std::vector<ShmZone*> shm_zones();
  // The status zone, once the generation's zones are open (invalid before).
  StatusZone status_zone() const;
  // Gives every server and upstream group its index in the status zone (by name), before the
  // workers are forked.
  void bind_status();
  // Opens (or reopens) every access log and error log of the levels; returns the first error or "".
  std::string open_logs();
  void flush_logs();
};

// Builds the HTTP configuration; throws ConfError with file:line.
std::unique_ptr<HttpConf> parse_http_conf(const ConfFile& conf, const std::string& prefix);

}  // namespace baton::http

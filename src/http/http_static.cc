#include "http/http_static.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <limits.h>
#include <unistd.h>

#include <unordered_map>

#include "core/clock.h"
#include "core/log.h"
#include "core/strings.h"
#include "http/http_access.h"
#include "http/http_auth.h"
#include "http/http_autoindex.h"
#include "http/http_file_cache.h"
#include "http/http_gzip.h"
#include "http/http_log.h"
#include "http/http_mime.h"
#include "http/http_response.h"

namespace baton::http {

namespace {

// Files up to this size go out in the same write as the response head; larger ones by sendfile.
constexpr uint64_t kInlineFileMax = 32 * 1024;
// Multipart range answers are assembled in memory up to this size; past it the whole file is sent.
constexpr uint64_t kMultipartMax = 4 * 1024 * 1024;

char* put_hex(char* p, unsigned long long v) {
  char tmp[16];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

// "mtime-size" in hex, as nginx forms it (so a file moved between the two keeps its tag).
std::string_view etag_of(const struct stat& st, char* buf) {
  char* p = buf;
  *p++ = '"';
  p = put_hex(p, static_cast<unsigned long long>(st.st_mtime));
  *p++ = '-';
  p = put_hex(p, static_cast<unsigned long long>(st.st_size));
  *p++ = '"';
  return {buf, static_cast<size_t>(p - buf)};
}

// If-None-Match: a list of entity tags or "*"; compared weakly (RFC 9110 13.1.2).
bool etag_list_matches(std::string_view list, std::string_view etag) {
  list = trim(list);
  if (list == "*") return true;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = trim(list.substr(0, comma));
    if (item.starts_with("W/")) item.remove_prefix(2);
    if (item == etag) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

void append_header(std::string* out, std::string_view name, std::string_view value) {
  out->append(name);
  out->append(": ");
  out->append(value);
  out->append("\r\n");
}

// Where a request's files live: the location's root (path appended) or alias (prefix replaced).
// rel points into a NUL-terminated std::string, so it can be handed to the kernel as it is.
// missing: the path names nothing that may be served (404).
struct Target {
  const std::string* base;  // directory
  const char* rel;          // path below it, without the leading '/'; "" for the directory itself
  bool missing = false;
};

Target map_path(const Location* loc, const std::string& path) {
  const char* rest = path.c_str();
  if (loc->has_alias && path.starts_with(loc->match)) {
    rest += loc->match.size();
    if (*rest == '\0' && !loc->alias_name.empty()) {
      // The location's path itself: the alias's last name, which may be a file, opened in the
      // directory above it.
      bool dir = !path.empty() && path.back() == '/';
      return {&loc->alias_dir, dir ? loc->alias_name_dir.c_str() : loc->alias_name.c_str()};
    }
    if (*rest != '/') {
      // The URI goes on past the location's path within a name ("/robots.txtx", "/img.."): nginx
      // appends it to the alias's last name, and over an alias that ends with '/' a ".." there
      // climbs out of it. Neither names a file of the alias.
      if (!loc->alias_name.empty() || (rest[0] == '.' && rest[1] == '.' && (rest[2] == '/' || rest[2] == '\0')))
        return {&loc->alias, "", true};
    }
  }
  while (*rest == '/') rest++;
  return {loc->has_alias ? &loc->alias : &loc->s.root, rest};
}

// Descriptors of the root directories, reopened at most once a second so that a root reached
// through a link (a deploy's "current" symlink) follows the link soon after it changes.
// The generation changes whenever the directory the root names is another one than before: the
// file cache's entries under it are then stale.
struct RootDir {
  Fd fd;
  time_t opened = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t generation = 0;
};
std::unordered_map<const std::string*, RootDir>& root_dirs() {
  static std::unordered_map<const std::string*, RootDir> dirs;
  return dirs;
}

RootDir* root_dir(const std::string& base, int* err) {
  RootDir& d = root_dirs()[&base];
  if (!d.fd.valid() || d.opened != Clock::now()) {
    int fd = ::open(base.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      *err = errno;
      d.fd.reset();
      d.generation++;
      return nullptr;
    }
    d.fd.reset(fd);
    d.opened = Clock::now();
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_dev != d.dev || st.st_ino != d.ino || d.generation == 0) {
      d.dev = st.st_dev;
      d.ino = st.st_ino;
      d.generation++;
    }
  }
  return &d;
}

int root_fd(const std::string& base, int* err) {
  RootDir* d = root_dir(base, err);
  return d ? d->fd.get() : -1;
}

// Opens base/rel so that the result cannot leave base through ".." or, unless allowed, through a
// symbolic link: the kernel checks every step (openat2 RESOLVE_BENEATH / RESOLVE_NO_SYMLINKS).
int open_beneath(const std::string& base, const char* rel, Symlinks policy, int* err) {
  static bool have_openat2 = true;
  constexpr int kFlags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  int dir = root_fd(base, err);
  if (dir < 0) return -1;
  const char* r = *rel ? rel : ".";
  if (policy == Symlinks::kOff) {
    int fd = ::openat(dir, r, kFlags);
    if (fd < 0) *err = errno;
    return fd;
  }
  if (have_openat2) {
    struct open_how how {};
    how.flags = kFlags;
    how.resolve = RESOLVE_BENEATH | (policy == Symlinks::kOn ? RESOLVE_NO_SYMLINKS : 0);
    int fd = static_cast<int>(syscall(SYS_openat2, dir, r, &how, sizeof(how)));
    if (fd >= 0) return fd;
    if (errno == ELOOP || (errno == EXDEV && policy == Symlinks::kOn)) {
      *err = EACCES;
      return -1;
    }
    if (errno == ENOSYS) {
      have_openat2 = false;
    } else if (errno != EXDEV) {
      *err = errno;
      return -1;
    }
    // EXDEV: a link is absolute or climbs out; where it really ends up is checked below.
  }
  // Open, then check where the file really is (kernels without openat2, and absolute links that
  // may still point inside the root).
  int fd = ::openat(dir, r, kFlags | (policy == Symlinks::kOn ? O_NOFOLLOW : 0));
  if (fd < 0) {
    *err = errno == ELOOP ? EACCES : errno;
    return -1;
  }
  char real[PATH_MAX], root[PATH_MAX], proc[64];
  snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(proc, real, sizeof(real) - 1);
  if (n < 0 || !realpath(base.c_str(), root)) {
    ::close(fd);
    *err = EACCES;
    return -1;
  }
  real[n] = '\0';
  size_t rl = strlen(root);
  if (strncmp(real, root, rl) != 0 || (real[rl] != '/' && real[rl] != '\0')) {
    ::close(fd);
    *err = EACCES;
    return -1;
  }
  return fd;
}

int status_for_errno(int e) {
  switch (e) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
      return 404;
    case EACCES:
    case EPERM:
      return 403;
    case EMFILE:
    case ENFILE:
      return 503;
  }
  return 500;
}

bool tokens(const Reply* r) { return !r->policy || r->policy->server_tokens; }

void reply_simple(Reply* r, int status, std::string_view type, std::string_view body,
                  std::string_view extra_headers = {}) {
  ResponseHead h;
  h.policy = r->policy;
  h.status = status;
  h.keep_alive = r->keep_alive;
  h.http10 = r->http10;
  if (status_has_body(status)) {
    h.content_type = type;
    h.content_length = static_cast<int64_t>(body.size());
  }
  begin_head(r->out, h);
  r->out->append(extra_headers);
  end_head(r->out, h);
  r->status = status;
  if (!r->head_only && status_has_body(status)) {
    r->out->append(body);
    r->body_bytes = body.size();
  }
}

}  // namespace

void reply_redirect(Reply* r, int status, std::string_view location, const Settings& s) {
  std::string& hdr = *r->out;
  (void)s;
  std::string_view body = error_page(status, tokens(r));
  ResponseHead h;
  h.policy = r->policy;
  h.status = status;
  h.keep_alive = r->keep_alive;
  h.http10 = r->http10;
  h.content_type = "text/html";
  h.content_length = static_cast<int64_t>(body.size());
  begin_head(&hdr, h);
  append_header(&hdr, "Location", location);
  end_head(&hdr, h);
  r->status = status;
  if (!r->head_only) {
    hdr.append(body);
    r->body_bytes = body.size();
  }
}

namespace {

// Header fields of an error reply that go with its status, kept when a page replaces its body and the
// status stays: Allow (405), Location (3xx), Content-Range (416), WWW-Authenticate (401).
constexpr std::string_view kStatusFields[] = {"Allow", "Location", "Content-Range", "WWW-Authenticate"};
// Fields that describe a file served as itself; under an error status they would give a cache a
// validator or a freshness for the error (nginx drops them too).
constexpr std::string_view kFileFields[] = {"Last-Modified", "ETag", "Accept-Ranges", "Expires", "Cache-Control"};

// line is "Name: value" (without its CRLF).
template <size_t N>
bool field_in(std::string_view line, const std::string_view (&names)[N]) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view name = line.substr(0, colon);
  for (std::string_view n : names)
    if (iequals(name, n)) return true;
  return false;
}

// Calls f for each header line of the head that starts at from (each without its CRLF).
template <typename F>
void for_each_field(std::string_view text, size_t from, F f) {
  size_t end = text.find("\r\n\r\n", from);
  if (end == std::string_view::npos) return;
  size_t line = text.find("\r\n", from) + 2;  // after the status line
  while (line <= end) {
    size_t eol = text.find("\r\n", line);
    f(text.substr(line, eol - line));
    line = eol + 2;
  }
}

bool file_exists(const std::string& base, const char* rel, Symlinks policy, bool want_dir) {
  int err = 0;
  int fd = open_beneath(base, rel, policy, &err);
  if (fd < 0) return false;
  struct stat st;
  bool ok = fstat(fd, &st) == 0 && (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
  ::close(fd);
  return ok;
}

// Sends an open regular file, with conditional and range handling.
// content: the file's bytes from the cache (fd is then -1).
// The file compressed at level: from the worker's cache, or read (content when the file cache
// has it, else from fd) and compressed once for this version of the file.
const std::string* gzip_of(HttpWorker* w, int fd, const struct stat& st, const std::string* content, int level) {
  if (const std::string* kept = w->gzip_cache.find(st, level)) return kept;
  std::string read_buf;
  if (!content) {
    read_buf.resize(static_cast<size_t>(st.st_size));
    if (!pread_exact(fd, read_buf.data(), read_buf.size(), 0)) {
      log_error("pread() of a file to compress failed (%s)", errno ? strerror(errno) : "it shrank");
      return nullptr;
    }
    content = &read_buf;
  }
  std::string gz;
  if (!gzip_compress(*content, level, &gz)) {
    log_error("gzip compression failed");
    return nullptr;
  }
  return w->gzip_cache.put(st, level, std::move(gz));
}

// precompressed: the file is the .gz of the one asked for (gzip_static).
void send_file(HttpWorker* w, const Location* loc, const Request& req, Reply* r, int fd,
               const struct stat& st, std::string_view name_for_type, const std::string* content = nullptr,
               bool precompressed = false) {
  const Settings& s = loc->s;
  Fd file(fd);
  char etag_buf[48];
  std::string_view etag = etag_of(st, etag_buf);
  uint64_t size = static_cast<uint64_t>(st.st_size);

  std::string_view type = s.default_type;
  if (const std::string* t = w->conf->types->lookup(name_for_type)) type = *t;

  // gzip: decided before the conditionals, as the answer's ETag is then weak (the compressed bytes
  // are another representation). Never for a range request; Vary for every answer that could have
  // been compressed, so that a cache keeps the two apart.
  bool gzip_eligible = s.gzip && !precompressed && size >= s.gzip_min_length && size <= GzipCache::kMaxFileSize &&
                       gzip_type_matches(s.gzip_types, type);
  bool compress = gzip_eligible && req.range.empty() && gzip_client_ok(req, s.gzip_proxied);
  bool vary = s.gzip_vary && (gzip_eligible || precompressed);
  char weak_buf[56];
  std::string_view etag_shown = etag;
  if (compress) {
    weak_buf[0] = 'W';
    weak_buf[1] = '/';
    memcpy(weak_buf + 2, etag.data(), etag.size());
    etag_shown = std::string_view(weak_buf, etag.size() + 2);
  }

  // Conditionals (RFC 9110 13.2.2): If-None-Match wins over If-Modified-Since.
  bool not_modified = false;
  if (!req.if_none_match.empty()) {
    not_modified = etag_list_matches(req.if_none_match, etag);
  } else if (!req.if_modified_since.empty()) {
    time_t ims = parse_http_date(trim(req.if_modified_since));
    not_modified = ims >= 0 && st.st_mtime <= ims;
  }

  char lm[32];
  format_http_date(st.st_mtime, lm);

  auto common_headers = [&](std::string* out) {
    append_header(out, "Last-Modified", std::string_view(lm, 29));
    append_header(out, "ETag", etag_shown);
    if (precompressed) append_header(out, "Content-Encoding", "gzip");
    if (vary) append_header(out, "Vary", "Accept-Encoding");
    if (s.expires_ms >= 0) {
      char exp[32];
      int64_t secs = s.expires_ms / 1000;
      format_http_date(Clock::now() + secs, exp);
      append_header(out, "Expires", std::string_view(exp, 29));
      out->append("Cache-Control: max-age=");
      append_uint(out, static_cast<uint64_t>(secs));
      out->append("\r\n");
    }
  };

  ResponseHead h;
  h.policy = r->policy;
  h.keep_alive = r->keep_alive;
  h.http10 = r->http10;

  if (not_modified) {
    h.status = 304;
    begin_head(r->out, h);
    common_headers(r->out);
    end_head(r->out, h);
    r->status = 304;
    return;
  }

  // Ranges, unless If-Range names another version of the file.
  std::vector<ByteRange>& ranges = w->ranges;
  RangeResult rr = RangeResult::kIgnore;
  if (!req.range.empty() && req.method_id == HTTP_GET) {
    bool use = true;
    if (!req.if_range.empty()) {
      std::string_view ir = trim(req.if_range);
      if (ir.starts_with("\"")) use = ir == etag;
      else use = parse_http_date(ir) == st.st_mtime;
    }
    if (use) rr = parse_range(req.range, size, &ranges);
  }

  if (rr == RangeResult::kUnsatisfiable) {
    std::string_view body = error_page(416, tokens(r));
    h.status = 416;
    h.content_type = "text/html";
    h.content_length = static_cast<int64_t>(body.size());
    begin_head(r->out, h);
    r->out->append("Content-Range: bytes */");
    append_uint(r->out, size);
    r->out->append("\r\n");
    end_head(r->out, h);
    r->status = 416;
    if (!r->head_only) {
      r->out->append(body);
      r->body_bytes = body.size();
    }
    return;
  }

  if (rr == RangeResult::kOk && ranges.size() > 1) {
    uint64_t total_data = 0;
    for (const ByteRange& br : ranges) total_data += br.length();
    if (total_data > kMultipartMax) rr = RangeResult::kIgnore;
  }

  if (rr == RangeResult::kOk && ranges.size() == 1) {
    const ByteRange& br = ranges[0];
    h.status = 206;
    h.content_type = type;
    h.content_length = static_cast<int64_t>(br.length());
    begin_head(r->out, h);
    r->out->append("Content-Range: bytes ");
    append_uint(r->out, br.first);
    r->out->push_back('-');
    append_uint(r->out, br.last);
    r->out->push_back('/');
    append_uint(r->out, size);
    r->out->append("\r\n");
    r->out->append("Accept-Ranges: bytes\r\n");
    common_headers(r->out);
    end_head(r->out, h);
    r->status = 206;
    r->body_bytes = br.length();
    if (content) {
      if (!r->head_only) r->out->append(*content, br.first, br.length());
    } else {
      r->file = std::move(file);
      r->file_offset = static_cast<off_t>(br.first);
      r->file_bytes = br.length();
    }
  } else if (rr == RangeResult::kOk) {
    // multipart/byteranges, assembled in memory.
    char boundary[40];
    static uint64_t counter = 0;
    snprintf(boundary, sizeof(boundary), "%016llx%08llx", static_cast<unsigned long long>(Clock::now()) * 2654435761ull,
             static_cast<unsigned long long>(++counter));
    std::string& body = w->scratch;
    body.clear();
    for (const ByteRange& br : ranges) {
      body.append("\r\n--").append(boundary).append("\r\n");
      body.append("Content-Type: ").append(type).append("\r\n");
      body.append("Content-Range: bytes ");
      append_uint(&body, br.first);
      body.push_back('-');
      append_uint(&body, br.last);
      body.push_back('/');
      append_uint(&body, size);
      body.append("\r\n\r\n");
      size_t at = body.size();
      if (content) {
        body.append(*content, br.first, br.length());
        continue;
      }
      body.resize(at + br.length());
      ssize_t got = pread(file.get(), body.data() + at, br.length(), static_cast<off_t>(br.first));
      if (got != static_cast<ssize_t>(br.length())) {
        body.clear();
        reply_error(r, 500, s);
        return;
      }
    }
    body.append("\r\n--").append(boundary).append("--\r\n");
    h.status = 206;
    std::string ctype = std::string("multipart/byteranges; boundary=") + boundary;
    h.content_type = ctype;
    h.content_length = static_cast<int64_t>(body.size());
    begin_head(r->out, h);
    r->out->append("Accept-Ranges: bytes\r\n");
    common_headers(r->out);
    end_head(r->out, h);
    r->status = 206;
    r->body_bytes = body.size();
    if (!r->head_only) r->out->append(body);
    if (body.capacity() > kMultipartMax) std::string().swap(body);
  } else if (const std::string* gz = compress ? gzip_of(w, file.get(), st, content, s.gzip_comp_level) : nullptr) {
    h.status = 200;
    h.content_type = type;
    h.content_length = static_cast<int64_t>(gz->size());
    begin_head(r->out, h);
    append_header(r->out, "Content-Encoding", "gzip");
    common_headers(r->out);
    end_head(r->out, h);
    r->status = 200;
    r->body_bytes = r->head_only ? 0 : gz->size();
    if (!r->head_only) r->out->append(*gz);
  } else {
    h.status = 200;
    h.content_type = type;
    h.content_length = static_cast<int64_t>(size);
    begin_head(r->out, h);
    r->out->append("Accept-Ranges: bytes\r\n");
    common_headers(r->out);
    end_head(r->out, h);
    r->status = 200;
    r->body_bytes = size;
    if (r->head_only || size == 0) {
      r->body_bytes = r->head_only ? 0 : size;
    } else if (content) {
      r->out->append(*content);
    } else if (size <= kInlineFileMax) {
      size_t at = r->out->size();
      r->out->resize(at + size);
      ssize_t got = pread(file.get(), r->out->data() + at, size, 0);
      if (got != static_cast<ssize_t>(size)) {
        // The file changed under us; the head already promised its size.
        r->out->resize(at);
        r->keep_alive = false;
        log_error("read of a file shorter than its size, closing the connection");
        r->file = std::move(file);
        r->file_offset = got > 0 ? got : 0;
        r->file_bytes = size - static_cast<uint64_t>(got > 0 ? got : 0);
      }
    } else {
      r->file = std::move(file);
      r->file_offset = 0;
      r->file_bytes = size;
    }
  }
  if (r->head_only) {
    r->file.reset();
    r->file_bytes = 0;
    r->body_bytes = 0;
  }
}

void serve_path(HttpWorker* w, const Server* srv, const Location* loc, const Request& req, Reply* r,
                const std::string& path, int depth, const VarContext& vars);

// The cache key: the symlink policy (the same path may be allowed under one and not another), the
// root and the path below it.
const std::string& cache_key(HttpWorker* w, const Location* loc, const std::string& base, std::string_view rel) {
  std::string& key = w->cache_key;
  key.clear();
  key.push_back(static_cast<char>('0' + static_cast<int>(loc->s.disable_symlinks)));
  key.append(base);
  key.push_back('\0');
  key.append(rel);
  return key;
}

// A hit: the file (or, for a directory's path with its slash, the first index file) served from
// memory with no system call. The root is looked at first, so that it is reopened once a second
// as on the uncached path and a changed root invalidates what was cached under it.
bool serve_cached(HttpWorker* w, const Location* loc, const Request& req, Reply* r, const Target& t,
                  const std::string& path) {
  FileCache& cache = w->file_cache;
  if (!cache.enabled() || cache.size() == 0) return false;
  int err = 0;
  RootDir* root = root_dir(*t.base, &err);
  if (!root) return false;
  std::string_view rel = t.rel;
  std::string_view name = path;
  std::string& with_index = w->scratch;
  if (!path.empty() && path.back() == '/') {
    // Only the first index file: a hit on a later one would need to know the earlier ones are
    // still missing.
    if (loc->s.index.empty()) return false;
    with_index.assign(rel);
    with_index.append(loc->s.index.front());
    rel = with_index;
    name = loc->s.index.front();
  }
  const CachedFile* f = cache.find(cache_key(w, loc, *t.base, rel), root->generation);
  if (!f) return false;
  send_file(w, loc, req, r, -1, f->st, name, &f->content);
  return true;
}

// A miss on a small regular file: watches go in place, then the file is opened and read again,
// so that any change after what was read is reported.
const CachedFile* cache_file(HttpWorker* w, const Location* loc, const std::string* base, const char* rel) {
  FileCache& cache = w->file_cache;
  if (!cache.enabled()) return nullptr;
  int err = 0;
  RootDir* root = root_dir(*base, &err);
  if (!root || !cache.begin(*base, rel)) return nullptr;
  uint64_t generation = root->generation;
  // Only a path without a symbolic link below the root is cached: the watches cover the path's
  // own directories, not those a link's target passes through. A link is served uncached.
  int fd = open_beneath(*base, rel, Symlinks::kOn, &err);
  struct stat st;
  std::string content;
  bool ok = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            static_cast<uint64_t>(st.st_size) <= FileCache::kMaxFileSize;
  if (ok) {
    content.resize(static_cast<size_t>(st.st_size));
    ok = pread(fd, content.data(), content.size(), 0) == static_cast<ssize_t>(content.size());
  }
  if (fd >= 0) ::close(fd);
  if (!ok) {
    cache.abandon();
    return nullptr;
  }
  return cache.commit(cache_key(w, loc, *base, rel), generation, std::move(content), st);
}

// try_files: the first item that exists is served; the last one is the fallback (=CODE or a URI).
void serve_try_files(HttpWorker* w, const Server* srv, const Location* loc, const Request& req, Reply* r, int depth,
                     const VarContext& vars) {
  const auto& items = loc->try_files;
  std::string candidate;
  for (size_t i = 0; i + 1 < items.size(); i++) {
    candidate.clear();
    std::string_view item = items[i];
    size_t at;
    while ((at = item.find("$uri")) != std::string_view::npos) {
      candidate.append(item.substr(0, at));
      candidate.append(req.path);
      item.remove_prefix(at + 4);
    }
    candidate.append(item);
    bool want_dir = !candidate.empty() && candidate.back() == '/';
    Target t = map_path(loc, candidate);
    if (!t.missing && file_exists(*t.base, t.rel, loc->s.disable_symlinks, want_dir)) {
      serve_path(w, srv, loc, req, r, candidate, depth, vars);
      return;
    }
  }
  const std::string& last = items.back();
  if (last[0] == '=') {
    int code = atoi(last.c_str() + 1);
    reply_error(r, code, loc->s);
    return;
  }
  if (r->redirects) {
    r->internal_redirect = last;
    return;
  }
  if (depth >= kMaxInternalRedirects) {
    log_error("rewrite or internal redirection cycle while processing \"%s\"", last.c_str());
    reply_error(r, 500, loc->s);
    return;
  }
  // An internal redirect: the fallback URI is served by the location it falls in, if that
  // location's allow/deny and basic authentication let the client in (as nginx checks them again
  // after a redirect).
  const std::string& uri = last;
  const Location* next = srv->find_location(uri);
  if (int refused = check_access(next->s, req, *srv)) {
    size_t mark = r->out->size();
    reply_error(r, refused, next->s);
    if (refused == 401) add_www_authenticate(r->out, mark, next->s, vars);
    return;
  }
  serve_path(w, srv, next, req, r, uri, depth + 1, vars);
}

// autoindex: the listing of the directory dirfd, base/rel, requested as path. An entry that is a
// symbolic link is listed only when a request for it would be served (disable_symlinks).
void reply_listing(Reply* r, int dirfd, const Target& t, const std::string& path, const Settings& s) {
  std::vector<ListedEntry> entries;
  std::string rel;
  auto follow = [&](const char* name, struct stat* st) {
    if (s.disable_symlinks == Symlinks::kOff) return ::fstatat(dirfd, name, st, 0) == 0;
    rel.assign(t.rel);
    if (!rel.empty() && rel.back() != '/') rel.push_back('/');
    rel.append(name);
    int err = 0;
    int fd = open_beneath(*t.base, rel.c_str(), s.disable_symlinks, &err);
    if (fd < 0) return false;
    bool ok = ::fstat(fd, st) == 0;
    ::close(fd);
    return ok;
  };
  if (!list_directory(dirfd, follow, &entries)) {
    int err = errno;
    std::string shown;
    append_escaped(&shown, t.rel);
    log_error("opendir() \"%s/%s\" failed (%s)", t.base->c_str(), shown.c_str(), strerror(err));
    reply_error(r, status_for_errno(err), s);
    return;
  }
  if (s.autoindex_json) {
    reply_simple(r, 200, "application/json", autoindex_json(entries));
  } else {
    reply_simple(r, 200, "text/html", autoindex_html(path, entries, s.autoindex_exact_size, s.autoindex_localtime));
  }
}

void serve_path(HttpWorker* w, const Server*, const Location* loc, const Request& req, Reply* r,
                const std::string& path, int depth, const VarContext& vars) {
  const Settings& s = loc->s;
  // The request's own location has had its say on `return` (a `break` before it skips it); a
  // location reached by an internal redirect answers with its return.
  if (loc->return_code && depth > 0) {
    // After an internal redirect, $uri is where the request was sent.
    VarContext here = vars;
    here.uri = path;
    reply_return(r, loc, here);
    return;
  }
  Target t = map_path(loc, path);
  if (t.missing) {
    reply_error(r, 404, s);
    return;
  }
  int err = 0;
  if (s.gzip_static && !path.empty() && path.back() != '/' && *t.rel && gzip_client_ok(req, s.gzip_proxied)) {
    // gzip_static: FILE.gz, when it is there, under the same rules as FILE.
    std::string& gz_rel = w->scratch;
    gz_rel.assign(t.rel);
    gz_rel.append(".gz");
    int gz = open_beneath(*t.base, gz_rel.c_str(), s.disable_symlinks, &err);
    struct stat gst;
    if (gz >= 0 && fstat(gz, &gst) == 0 && S_ISREG(gst.st_mode)) {
      send_file(w, loc, req, r, gz, gst, path, nullptr, true);
      return;
    }
    if (gz >= 0) ::close(gz);
    err = 0;
  }
  if (serve_cached(w, loc, req, r, t, path)) return;
  int fd = open_beneath(*t.base, t.rel, s.disable_symlinks, &err);
  if (fd < 0) {
    int status = status_for_errno(err);
    if (status >= 500) log_error("open() \"%s/%s\" failed (%s)", t.base->c_str(), t.rel, strerror(err));
    reply_error(r, status, s);
    return;
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    ::close(fd);
    reply_error(r, 500, s);
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    Fd dir(fd);  // kept for a listing
    if (path.empty() || path.back() != '/') {
      // A directory is addressed with its slash, so that relative links in its index resolve.
      std::string loc_hdr(path);
      loc_hdr.push_back('/');
      if (!req.query.empty()) {
        loc_hdr.push_back('?');
        loc_hdr.append(req.query);
      }
      reply_redirect(r, 301, loc_hdr, s);
      return;
    }
    for (const std::string& index : s.index) {
      std::string& rel = w->scratch;
      rel.assign(t.rel);
      rel.append(index);
      int ifd = open_beneath(*t.base, rel.c_str(), s.disable_symlinks, &err);
      if (ifd < 0) {
        if (err == ENOENT) continue;
        reply_error(r, status_for_errno(err), s);
        return;
      }
      struct stat ist;
      if (fstat(ifd, &ist) < 0 || !S_ISREG(ist.st_mode)) {
        ::close(ifd);
        continue;
      }
      if (&index == &s.index.front() && static_cast<uint64_t>(ist.st_size) <= FileCache::kMaxFileSize) {
        std::string index_rel(rel);
        if (const CachedFile* f = cache_file(w, loc, t.base, index_rel.c_str())) {
          ::close(ifd);
          send_file(w, loc, req, r, -1, f->st, index, &f->content);
          return;
        }
      }
      send_file(w, loc, req, r, ifd, ist, index);
      return;
    }
    if (s.autoindex) {
      reply_listing(r, dir.get(), t, path, s);
      return;
    }
    reply_error(r, 403, s);
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    reply_error(r, 403, s);
    return;
  }
  if (static_cast<uint64_t>(st.st_size) <= FileCache::kMaxFileSize) {
    if (const CachedFile* f = cache_file(w, loc, t.base, t.rel)) {
      ::close(fd);
      send_file(w, loc, req, r, -1, f->st, path, &f->content);
      return;
    }
  }
  send_file(w, loc, req, r, fd, st, path);
}

}  // namespace

void reply_error(Reply* r, int status, const Settings& s) {
  (void)s;
  std::string_view body = error_page(status, tokens(r));
  if (body.empty() && status >= 300) body = error_page(500, tokens(r));
  reply_simple(r, status, "text/html", body);
}

void reply_return(Reply* r, const Location* loc, const VarContext& vars) {
  int code = loc->return_code;
  bool redirect = code == 301 || code == 302 || code == 303 || code == 307 || code == 308;
  std::string_view text = loc->return_value.literal();
  if (loc->return_value.has_variables()) {
    // Reused across requests: a worker answers one at a time, and the text is copied into the
    // response before the next one.
    static std::string value;
    value.clear();
    loc->return_value.evaluate(vars, &value, redirect ? Escape::kUrl : Escape::kNone);
    text = value;
  }
  if (redirect) {
    reply_redirect(r, code, text, loc->s);
    return;
  }
  if (text.empty() && code >= 300) {
    reply_error(r, code, loc->s);
    return;
  }
  reply_simple(r, code, "text/plain", text);
}

void serve_static(HttpWorker* w, const Server* srv, const Location* loc, const Request& req, Reply* r,
                  const VarContext& vars) {
  if (!loc->try_files.empty()) {
    serve_try_files(w, srv, loc, req, r, 0, vars);
    return;
  }
  serve_path(w, srv, loc, req, r, req.path, 0, vars);
}

bool reply_error_page(HttpWorker* w, const Server* srv, const Request& req, Reply* r, size_t mark, const Settings& s,
                      const VarContext& vars) {
  const int status = r->status;
  const ErrorPage* page = s.error_page_for(status);
  if (!page) return false;
  std::string& out = *r->out;
  // The reply as it stands is kept aside: it is the answer again if the page cannot be served.
  std::string original = out.substr(mark);
  Fd original_file = std::move(r->file);
  const off_t original_offset = r->file_offset;
  const uint64_t original_file_bytes = r->file_bytes, original_body = r->body_bytes;
  out.resize(mark);
  r->file_offset = 0;
  r->file_bytes = 0;
  r->body_bytes = 0;

  if (page->redirect) {
    reply_redirect(r, page->response > 0 ? page->response : 302, page->uri, s);
    return true;
  }

  // The page is served without the added headers: they are added once its final status is known
  // (and after the page's own file fields are dropped, so that an added Cache-Control stays).
  const HeadPolicy* policy = r->policy;
  HeadPolicy page_policy;
  if (policy) {
    page_policy = *policy;
    page_policy.add = nullptr;
    r->policy = &page_policy;
  }
  // A try_files fallback of the page's location is followed here, not by the connection.
  struct Restore {
    Reply* r;
    const HeadPolicy* p;
    bool redirects;
    ~Restore() {
      r->policy = p;
      r->redirects = redirects;
    }
  } restore{r, policy, r->redirects};
  r->redirects = false;

  // The internal redirect: the same request for the page's path, as a plain GET (HEAD stays HEAD:
  // no body). Conditions and ranges were about the resource asked for, not the page.
  Request sub = req;
  sub.method_id = req.method_id == HTTP_HEAD ? HTTP_HEAD : HTTP_GET;
  sub.method = req.method_id == HTTP_HEAD ? "HEAD" : "GET";
  sub.path = page->path;
  sub.query = page->args;
  sub.if_none_match = sub.if_modified_since = sub.range = sub.if_range = {};
  VarContext here = vars;
  here.req = &sub;
  const Location* loc = srv->find_location(sub.path);
  int got = 500;
  // A page in a proxied location is refused when the configuration is read; were one to get here,
  // it gets the built-in page. So does a page whose location's allow/deny or basic authentication
  // refuse the client, as in nginx, where the redirect to the page is checked like any request (a
  // page for 401 belongs in a location with `auth_basic = off`).
  if (int refused = check_access(loc->s, sub, *srv)) {
    got = refused;
  } else if (loc->return_code) {
    reply_return(r, loc, here);
    got = r->status;
  } else if (!loc->proxy_pass) {
    serve_static(w, srv, loc, sub, r, here);
    got = r->status;
  }
  // `=` alone sends the page's own answer, whatever it is short of an error; otherwise the page
  // must be a success to be sent under another status.
  bool served = page->response == 0 ? got < 400 : got >= 200 && got < 300;
  if (!served) {
    log_error("error page \"%s\" for status %d could not be served (%d), sending the built-in page", page->uri.c_str(),
              status, got);
    out.resize(mark);
    out.append(original);
    r->file = std::move(original_file);
    r->file_offset = original_offset;
    r->file_bytes = original_file_bytes;
    r->body_bytes = original_body;
    r->status = status;
    return false;
  }
  int final_status = page->response > 0 ? page->response : page->response == 0 ? got : status;
  if (final_status == got) {
    if (policy) {
      std::string added;
      append_added_headers(&added, *policy, final_status);
      out.insert(out.find("\r\n\r\n", mark) + 2, added);
    }
    return true;
  }

  // The status line becomes the error's; the page's fields follow, less those that describe the
  // file as a resource of its own, and the error's own fields are kept with its status.
  std::string head;
  head.append("HTTP/1.1 ");
  append_uint(&head, static_cast<uint64_t>(final_status));
  head.push_back(' ');
  head.append(status_reason(final_status));
  head.append("\r\n");
  for_each_field(out, mark, [&](std::string_view f) {
    if (final_status >= 300 && field_in(f, kFileFields)) return;
    head.append(f).append("\r\n");
  });
  if (final_status == status) {
    for_each_field(original, 0, [&](std::string_view f) {
      if (field_in(f, kStatusFields)) head.append(f).append("\r\n");
    });
  }
  if (policy) append_added_headers(&head, *policy, final_status);
  head.append("\r\n");
  size_t head_end = out.find("\r\n\r\n", mark) + 4;
  out.replace(mark, head_end - mark, head);
  r->status = final_status;
  return true;
}

}  // namespace baton::http

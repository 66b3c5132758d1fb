#include "http/http_autoindex.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "core/clock.h"
#include "core/strings.h"
#include "http/http_log.h"

namespace baton::http {

namespace {

// Names longer than this many characters are cut, as nginx does ("..>" at the end).
constexpr size_t kNameColumns = 50;

void append_html(std::string* out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '&': out->append("&amp;"); break;
      case '<': out->append("&lt;"); break;
      case '>': out->append("&gt;"); break;
      case '"': out->append("&quot;"); break;
      case '\'': out->append("&#39;"); break;
      default: out->push_back(c);
    }
  }
}

// A name as one path segment of a URL: everything but the unreserved characters is escaped, so
// that no name can close the attribute, start a query or a fragment, or climb a level.
void append_href(std::string* out, std::string_view name) {
  static const char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : name) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '.' || c == '_' || c == '~';
    if (plain) {
      out->push_back(static_cast<char>(c));
    } else {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    }
  }
}

// Characters, not bytes, of UTF-8 text (what the columns are counted in).
size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) n++;
  return n;
}

// The first `chars` characters of UTF-8 text.
std::string_view utf8_prefix(std::string_view s, size_t chars) {
  size_t i = 0;
  for (size_t n = 0; i < s.size(); i++) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (n == chars) break;
      n++;
    }
  }
  return s.substr(0, i);
}

// nginx's columns: 19 wide in bytes; otherwise 7 wide, in K above 9,999 bytes, M and G above their
// unit, rounded to the nearest.
void append_size(std::string* out, const ListedEntry& e, bool exact) {
  char buf[32];
  int n;
  if (e.dir) {
    n = snprintf(buf, sizeof(buf), exact ? "%19s" : "%7s", "-");
  } else if (exact) {
    n = snprintf(buf, sizeof(buf), "%19lld", static_cast<long long>(e.size));
  } else {
    long long v = e.size, unit = 1;
    char scale = 0;
    if (v > 1024LL * 1024 * 1024 - 1) unit = 1024LL * 1024 * 1024, scale = 'G';
    else if (v > 1024LL * 1024 - 1) unit = 1024LL * 1024, scale = 'M';
    else if (v > 9999) unit = 1024, scale = 'K';
    long long shown = v / unit + (scale && v % unit > unit / 2 - 1 ? 1 : 0);
    if (scale) n = snprintf(buf, sizeof(buf), "%6lld%c", shown, scale);
    else n = snprintf(buf, sizeof(buf), " %6lld", shown);
  }
  out->append(buf, static_cast<size_t>(n));
}

}  // namespace

bool list_directory(int dirfd, const std::function<bool(const char* name, struct stat* st)>& follow,
                    std::vector<ListedEntry>* out) {
  int fd = ::dup(dirfd);
  if (fd < 0) return false;
  DIR* d = ::fdopendir(fd);
  if (!d) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    return false;
  }
  ::rewinddir(d);
  while (true) {
    errno = 0;  // readdir() says "the end" and "an error" apart only by errno
    struct dirent* de = ::readdir(d);
    if (!de) break;
    const char* name = de->d_name;
    if (name[0] == '.') continue;  // ".", "..", and hidden files, as nginx
    struct stat st;
    if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    if (S_ISLNK(st.st_mode) && !follow(name, &st)) continue;
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) continue;  // sockets, devices: nothing to serve
    ListedEntry e;
    e.name = name;
    e.dir = S_ISDIR(st.st_mode);
    e.size = st.st_size;
    e.mtime = st.st_mtime;
    out->push_back(std::move(e));
  }
  int saved = errno;
  ::closedir(d);
  if (saved != 0) {
    errno = saved;
    return false;
  }
  std::sort(out->begin(), out->end(), [](const ListedEntry& a, const ListedEntry& b) {
    if (a.dir != b.dir) return a.dir;
    return a.name < b.name;
  });
  return true;
}

std::string autoindex_html(std::string_view uri, const std::vector<ListedEntry>& entries, bool exact_size,
                           bool localtime) {
  std::string b;
  b.reserve(256 + entries.size() * 120);
  b.append("<html>\r\n<head><title>Index of ");
  append_html(&b, uri);
  b.append("</title></head>\r\n<body>\r\n<h1>Index of ");
  append_html(&b, uri);
  b.append("</h1><hr><pre><a href=\"../\">../</a>\r\n");
  for (const ListedEntry& e : entries) {
    b.append("<a href=\"");
    append_href(&b, e.name);
    if (e.dir) b.push_back('/');
    b.append("\">");
    std::string shown = e.name + (e.dir ? "/" : "");
    size_t chars = utf8_length(shown);
    if (chars > kNameColumns) {
      append_html(&b, utf8_prefix(shown, kNameColumns - 3));
      b.append("..&gt;</a>");
      chars = kNameColumns;
    } else {
      append_html(&b, shown);
      b.append("</a>");
    }
    b.append(kNameColumns + 1 - chars, ' ');
    struct tm tm {};
    if (localtime) localtime_r(&e.mtime, &tm);
    else gmtime_r(&e.mtime, &tm);
    char date[32];
    size_t n = strftime(date, sizeof(date), "%d-%b-%Y %H:%M", &tm);
    b.append(date, n);
    b.push_back(' ');
    append_size(&b, e, exact_size);
    b.append("\r\n");
  }
  b.append("</pre><hr></body>\r\n</html>\r\n");
  return b;
}

std::string autoindex_json(const std::vector<ListedEntry>& entries) {
  std::string b = "[\n";
  for (size_t i = 0; i < entries.size(); i++) {
    const ListedEntry& e = entries[i];
    b.append("{ \"name\":\"");
    append_json_escaped(&b, e.name);
    b.append(e.dir ? "\", \"type\":\"directory\", \"mtime\":\"" : "\", \"type\":\"file\", \"mtime\":\"");
    char date[32];
    size_t n = format_http_date(e.mtime, date);
    b.append(date, n);
    b.push_back('"');
    if (!e.dir) {
      b.append(", \"size\":");
      append_uint(&b, static_cast<uint64_t>(e.size));
    }
    b.append(i + 1 < entries.size() ? " },\n" : " }\n");
  }
  b.append("]\n");
  return b;
}

}  // namespace baton::http

#include "http/http_request.h"

#include "core/strings.h"

namespace baton::http {

std::string_view Request::header(std::string_view name) const {
  for (size_t i = 0; i < header_count; i++)
    if (iequals(headers[i].name, name)) return headers[i].value;
  return {};
}

void Request::own(const char* begin, const char* end) {
  if (begin >= end || (!owned.empty() && begin == owned.data())) return;
  owned.assign(begin, end);
  const char* base = owned.data();
  // Only addresses are compared here: the bytes at begin are not read again.
  auto move = [&](std::string_view& v) {
    if (v.data() >= begin && v.data() <= end) v = std::string_view(base + (v.data() - begin), v.size());
  };
  move(method);
  move(target);
  move(uri);
  move(query);
  for (size_t i = 0; i < header_count; i++) {
    move(headers[i].name);
    move(headers[i].value);
  }
  for (std::string_view* v : {&host, &connection, &user_agent, &referer, &if_none_match, &if_modified_since,
                              &range, &if_range, &expect, &transfer_encoding, &upgrade})
    move(*v);
  // Owned once: a second call for the same head finds it here and copies nothing.
  if (msg_start == begin) msg_start = base;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool normalize_path(std::string_view target, std::string* out, std::string_view* query) {
  out->clear();
  *query = {};
  if (target.empty() || target[0] != '/') return false;
  size_t q = target.find('?');
  std::string_view raw = target;
  if (q != std::string_view::npos) {
    *query = target.substr(q + 1);
    raw = target.substr(0, q);
  }
  size_t hash = raw.find('#');
  if (hash != std::string_view::npos) raw = raw.substr(0, hash);
  // Most paths need no work: no escape, no "." segment, no empty segment.
  bool plain = true;
  for (size_t i = 0; i < raw.size() && plain; i++) {
    char c = raw[i];
    if (c == '%') plain = false;
    else if (c == '/' && i + 1 < raw.size() && (raw[i + 1] == '/' || raw[i + 1] == '.')) plain = false;
  }
  if (plain) {
    out->assign(raw);
    return true;
  }
  out->reserve(raw.size());
  // Decode first, then resolve segments on the decoded form, so that "%2e%2e" and "%2f" are
  // treated exactly like what they stand for.
  for (size_t i = 0; i < raw.size(); i++) {
    char c = raw[i];
    if (c == '%') {
      if (i + 2 >= raw.size()) return false;
      int hi = hex_value(raw[i + 1]);
      int lo = hex_value(raw[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      if (c == '\0') return false;
      i += 2;
    }
    out->push_back(c);
  }
  return resolve_segments(out);
}

bool resolve_segments(std::string* out) {
  if (out->empty() || (*out)[0] != '/') return false;
  // Resolve "//", "/./" and "/../" in place.
  std::string& p = *out;
  size_t w = 0;
  size_t i = 0;
  const size_t n = p.size();
  while (i < n) {
    // p[i] == '/' here: start of a segment.
    size_t j = i + 1;
    while (j < n && p[j] != '/') j++;
    std::string_view seg(p.data() + i + 1, j - i - 1);
    bool trailing = j == n;
    if (seg.empty() || seg == ".") {
      if (trailing) p[w++] = '/';
    } else if (seg == "..") {
      if (w == 0) return false;  // above the root
      while (w > 0 && p[w - 1] != '/') w--;
      if (w > 0) w--;  // drop the slash before the removed segment
      if (trailing) p[w++] = '/';
    } else {
      p[w++] = '/';
      for (size_t k = i + 1; k < j; k++) p[w++] = p[k];
    }
    i = j;
  }
  if (w == 0) p[w++] = '/';
  p.resize(w);
  return true;
}

}  // namespace baton::http

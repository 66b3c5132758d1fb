#include "http/http_mime.h"

#include "core/strings.h"

namespace baton::http {

void MimeTypes::add(std::string_view ext, std::string_view type) {
  std::string key;
  key.reserve(ext.size());
  for (char c : ext) key.push_back(ascii_lower(c));
  map_[key] = std::string(type);
}

void MimeTypes::load(const ConfFile& file) {
  for (const ConfSection& sec : file.sections) {
    if (sec.kind != "types") file.fail(sec.line, "unknown section [" + sec.kind + "] in a types file (expected [types])");
    for (const ConfEntry& e : sec.entries) {
      if (e.key.find('/') == std::string::npos) file.fail(e.line, "invalid MIME type \"" + e.key + "\"");
      auto exts = split_ws(e.value);
      if (exts.empty()) file.fail(e.line, "no extensions for \"" + e.key + "\"");
      for (std::string_view ext : exts) add(ext, e.key);
    }
  }
}

const std::string* MimeTypes::lookup(std::string_view path) const {
  size_t slash = path.rfind('/');
  size_t dot = path.rfind('.');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) return nullptr;
  std::string_view ext = path.substr(dot + 1);
  if (ext.empty() || ext.size() > 16) return nullptr;
  char buf[16];
  for (size_t i = 0; i < ext.size(); i++) buf[i] = ascii_lower(ext[i]);
  auto it = map_.find(std::string(buf, ext.size()));
  return it == map_.end() ? nullptr : &it->second;
}

}  // namespace baton::http

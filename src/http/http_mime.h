// MIME types by file extension, read from the INI-form mime.types ("[types]", "type = ext ext").
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

#include "core/conf.h"

namespace baton::http {

class MimeTypes {
 public:
  // Throws ConfError naming file:line for a malformed file. An extension listed again takes the
  // later type, so that a local addition at the end of the file overrides the stock one.
  void load(const ConfFile& file);
  void add(std::string_view ext, std::string_view type);
  // The type for the extension of path, or nullptr when there is none.
  const std::string* lookup(std::string_view path) const;
  size_t size() const { return map_.size(); }

 private:
  std::unordered_map<std::string, std::string> map_;
};

}  // namespace baton::http

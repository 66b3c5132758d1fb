// autoindex: the listing of a directory that has no index file, as nginx writes it (HTML or JSON).
#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace baton::http {

struct ListedEntry {
  std::string name;
  bool dir = false;
  off_t size = 0;
  time_t mtime = 0;
};

// Reads the directory dirfd (which stays open) into *out, directories first, then by name, without
// the names that begin with '.'. A symbolic link is listed as what it points to only when
// follow(name, &st) says so (and fills st): the same rule as serving the file, so that a listing
// never shows what a request for the entry could not be given. False, with errno, when the
// directory cannot be read.
bool list_directory(int dirfd, const std::function<bool(const char* name, struct stat* st)>& follow,
                    std::vector<ListedEntry>* out);

// The page for uri (the directory's path as requested, ending in '/'). exact_size: sizes in bytes,
// else rounded to K, M, G; localtime: times in the server's zone, else in GMT.
std::string autoindex_html(std::string_view uri, const std::vector<ListedEntry>& entries, bool exact_size,
                           bool localtime);
std::string autoindex_json(const std::vector<ListedEntry>& entries);

}  // namespace baton::http

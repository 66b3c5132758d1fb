// Basic authentication (auth_basic, auth_basic_user_file) and the access phase that weighs it
// against allow/deny (satisfy): the htpasswd file, read when the configuration is read; the hash
// formats it may hold and their checks; the Authorization header; and the 401's WWW-Authenticate.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "http/http_variables.h"

namespace baton::http {

struct Request;
struct Server;
struct Settings;

// The users of one auth_basic_user_file: `user:hash[:comment]` lines, `#` comments and blank
// lines. Read once, when the configuration is read (start, reload, -t): a changed file is seen at
// the next reload, never between two (a half-written file is never read by a request).
class UserFile {
 public:
  // Reads path. Returns "" or what is wrong: the file cannot be read, or "PATH:N: ..." for a
  // malformed entry of line N (no user, no hash, a hash baton cannot check).
  std::string load(const std::string& path);
  const std::string& path() const { return path_; }
  // The stored hash of user, or null. A user named twice is the first line's (nginx's reading).
  const std::string* find(std::string_view user) const;

 private:
  std::string path_;
  std::unordered_map<std::string, std::string> users_;
};

// auth_basic = REALM | off, and the auth_basic_user_file of the same level or one above.
struct AuthBasic {
  bool on = false;
  Template realm;  // may hold variables, as nginx's
  int line = 0;    // the auth_basic line
  std::shared_ptr<const UserFile> users;
};

enum class Satisfy : uint8_t { kAll, kAny };

// "" when stored is a hash baton can check ($2y$/$2b$/$2a$ bcrypt, $5$/$6$ SHA crypt and the other
// methods libcrypt knows, $apr1$, {SHA}, {PLAIN}); else what is wrong with it.
std::string check_hash_format(std::string_view stored);

// Whether password hashes to stored (a hash check_hash_format accepts). The computed hash is
// compared with the stored one in constant time.
bool password_matches(std::string_view password, std::string_view stored);

// $apr1$ (Apache's MD5-based crypt): "$apr1$SALT$HASH" for password and salt (its first 8
// characters count, up to a '$').
std::string apr1_hash(std::string_view password, std::string_view salt);
// {SHA}: "{SHA}" and the base64 of the password's SHA-1.
std::string sha1_hash(std::string_view password);

// The user and password of an Authorization field value "Basic BASE64(user:password)" (the
// scheme in any case, the padding optional). False, with nothing set, for another scheme, bad
// base64, no ':' or an empty user.
bool parse_basic_credentials(std::string_view value, std::string* user, std::string* password);

// $remote_user: the user of req's Basic credentials, checked or not (nginx's meaning); false and
// *user untouched when there are none.
bool remote_user(const Request& req, std::string* user);

// The access phase of a request answered with the settings s (of server srv): allow/deny, then
// auth_basic, combined as satisfy says. 0 lets the request in; else 403 or 401. Refusals are
// written to the error log as nginx writes them.
int check_access(const Settings& s, const Request& req, const Server& srv);

// Adds `WWW-Authenticate: Basic realm="REALM"` to the head that begins at out[mark] (a 401 of s).
void add_www_authenticate(std::string* out, size_t mark, const Settings& s, const VarContext& vars);

}  // namespace baton::http

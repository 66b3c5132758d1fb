#include "http/http_auth.h"

#include <crypt.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <fstream>

#include "core/clock.h"
#include "core/log.h"
#include "core/strings.h"
#include "http/http_access.h"
#include "http/http_config.h"
#include "http/http_log.h"
#include "http/http_request.h"

namespace baton::http {

namespace {

constexpr char kCryptAlphabet[] = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr char kBase64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Wipes a string that held a password before its memory is given back.
void wipe(std::string* s) {
  if (!s->empty()) OPENSSL_cleanse(s->data(), s->size());
  s->clear();
}

bool equal_in_constant_time(std::string_view a, std::string_view b) {
  // The lengths of the hashes are no secret (the stored one's is in the file's format); only the
  // bytes are compared in constant time.
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// Standard base64 (RFC 4648), the padding optional, nothing after it.
bool decode_base64(std::string_view in, std::string* out) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const char* p = c ? strchr(kBase64Alphabet, c) : nullptr;
    if (!p) return false;
    acc = (acc << 6) | static_cast<uint32_t>(p - kBase64Alphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

bool is_crypt_method(std::string_view stored) {
  return stored.starts_with("$") && !stored.starts_with("$apr1$");
}

// A hash of one of libcrypt's methods, checked with crypt_rn: bcrypt, SHA-crypt, yescrypt...
bool crypt_matches(std::string_view password, std::string_view stored) {
  // One per worker: 32 KiB is too much for the stack of a handler, and a worker answers one
  // request at a time.
  static struct crypt_data data;
  std::string phrase(password), setting(stored);
  const char* got = crypt_rn(phrase.c_str(), setting.c_str(), &data, sizeof(data));
  bool ok = got != nullptr && equal_in_constant_time(got, stored);
  wipe(&phrase);
  OPENSSL_cleanse(&data, sizeof(data));
  return ok;
}

// Slow hashes (bcrypt costs tens of milliseconds, and runs in the worker's event loop) are checked
// once per client that keeps sending the same right password: a success is remembered for a
// minute, per worker, under a keyed digest of the user, the stored hash and the password given.
// The stored hash is part of the key, so a password changed in the file (seen at a reload) never
// matches an old entry; the password itself is never kept; failures are never remembered.
class VerifiedCache {
 public:
  bool has(std::string_view user, std::string_view stored, std::string_view password) {
    unsigned char k[32];
    if (!key(user, stored, password, k)) return false;
    const double now = Clock::now_precise();
    for (const Slot& s : slots_)
      if (s.expires > now && CRYPTO_memcmp(s.key, k, sizeof(k)) == 0) return true;
    return false;
  }
  void add(std::string_view user, std::string_view stored, std::string_view password) {
    unsigned char k[32];
    if (!key(user, stored, password, k)) return;
    // The slot that expires first gives way.
    Slot* victim = &slots_[0];
    for (Slot& s : slots_)
      if (s.expires < victim->expires) victim = &s;
    memcpy(victim->key, k, sizeof(k));
    victim->expires = Clock::now_precise() + kLifetime;
  }

 private:
  static constexpr double kLifetime = 60;
  struct Slot {
    unsigned char key[32] = {};
    double expires = 0;
  };

  bool key(std::string_view user, std::string_view stored, std::string_view password, unsigned char* out) {
    if (!seeded_) {
      // Made in the worker, on first use: each worker has its own.
      if (RAND_bytes(secret_, sizeof(secret_)) != 1) return false;
      seeded_ = true;
    }
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (!ctx) return false;
    bool ok = EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
              EVP_DigestUpdate(ctx, secret_, sizeof(secret_)) == 1;
    // Each part with its length first, so that no two triples make the same input.
    for (std::string_view part : {user, stored, password}) {
      uint64_t n = part.size();
      ok = ok && EVP_DigestUpdate(ctx, &n, sizeof(n)) == 1 && EVP_DigestUpdate(ctx, part.data(), part.size()) == 1;
    }
    unsigned len = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == 32;
    EVP_MD_CTX_free(ctx);
    return ok;
  }

  Slot slots_[64];
  unsigned char secret_[32] = {};
  bool seeded_ = false;
};

VerifiedCache& verified_cache() {
  static VerifiedCache cache;
  return cache;
}

// The Authorization field of req; false when there is none or more than one (which of two would be
// meant is not for the server to guess: nginx refuses such a request).
bool authorization(const Request& req, std::string_view* value) {
  int found = 0;
  for (size_t i = 0; i < req.header_count; i++) {
    if (!iequals(req.headers[i].name, "authorization")) continue;
    *value = req.headers[i].value;
    found++;
  }
  return found == 1;
}

// What basic authentication says of a request.
enum class AuthVerdict { kOff, kOk, kRefused };

AuthVerdict check_basic(const AuthBasic& a, const Request& req, const Server& srv) {
  if (!a.on || !a.users) return AuthVerdict::kOff;
  std::string_view value;
  std::string user, password;
  if (!authorization(req, &value) || !parse_basic_credentials(value, &user, &password)) {
    log_refused(LogLevel::kInfo, req, srv, "no user/password was provided for basic authentication");
    return AuthVerdict::kRefused;
  }
  // The user comes from the client: escaped in the log like any of its bytes.
  std::string shown;
  append_escaped(&shown, user);
  const std::string* stored = a.users->find(user);
  if (!stored) {
    wipe(&password);
    log_refused(LogLevel::kError, req, srv,
                "user \"" + shown + "\" was not found in \"" + a.users->path() + "\"");
    return AuthVerdict::kRefused;
  }
  bool ok;
  if (is_crypt_method(*stored)) {
    VerifiedCache& cache = verified_cache();
    ok = cache.has(user, *stored, password);
    if (!ok) {
      ok = password_matches(password, *stored);
      if (ok) cache.add(user, *stored, password);
    }
  } else {
    ok = password_matches(password, *stored);
  }
  wipe(&password);
  if (!ok) {
    log_refused(LogLevel::kError, req, srv, "user \"" + shown + "\": password mismatch");
    return AuthVerdict::kRefused;
  }
  return AuthVerdict::kOk;
}

}  // namespace

// ---- the user file --------------------------------------------------------------------------

std::string UserFile::load(const std::string& path) {
  path_ = path;
  users_.clear();
  std::ifstream in(path, std::ios::binary);
  if (!in) return "cannot read \"" + path + "\" (" + strerror(errno) + ")";
  // A directory opens like a file and reads as nothing: it would be a file without users.
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) return "\"" + path + "\" is not a file";
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    n++;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string_view l = trim(std::string_view(line));
    if (l.empty() || l[0] == '#') continue;
    auto malformed = [&](const std::string& what) { return path + ":" + std::to_string(n) + ": " + what; };
    size_t colon = l.find(':');
    if (colon == std::string_view::npos) return malformed("no \":\" between the user and the password hash");
    std::string_view user = l.substr(0, colon);
    // As nginx reads it: the hash ends at the next ':', and what follows is a comment.
    std::string_view hash = l.substr(colon + 1);
    hash = hash.substr(0, hash.find(':'));
    if (user.empty()) return malformed("an entry without a user name");
    if (hash.empty()) return malformed("user \"" + std::string(user) + "\" has no password hash");
    if (std::string err = check_hash_format(hash); !err.empty())
      return malformed("user \"" + std::string(user) + "\": " + err);
    users_.emplace(std::string(user), std::string(hash));
  }
  if (in.bad()) return "cannot read \"" + path + "\" (" + strerror(errno) + ")";
  return "";
}

const std::string* UserFile::find(std::string_view user) const {
  auto it = users_.find(std::string(user));
  return it == users_.end() ? nullptr : &it->second;
}

// ---- hashes ---------------------------------------------------------------------------------

std::string check_hash_format(std::string_view stored) {
  if (stored.starts_with("{PLAIN}")) return "";
  if (stored.starts_with("{SHA}")) {
    std::string raw;
    if (!decode_base64(stored.substr(5), &raw) || raw.size() != 20)
      return "a {SHA} hash is the base64 of 20 bytes";
    return "";
  }
  if (stored.starts_with("$apr1$")) {
    std::string_view rest = stored.substr(6);
    size_t d = rest.find('$');
    if (d == std::string_view::npos || d == 0 || d > 8 || rest.size() - d - 1 != 22)
      return "malformed $apr1$ hash ($apr1$SALT$ and 22 characters)";
    return "";
  }
  if (stored.starts_with("$")) {
    std::string setting(stored);
    int r = crypt_checksalt(setting.c_str());
    // libcrypt calls some methods legacy ($5$, $1$) or too cheap (a low bcrypt cost): they still
    // check a password, and whether they are strong enough is the file owner's choice.
    if (r == CRYPT_SALT_OK || r == CRYPT_SALT_METHOD_LEGACY || r == CRYPT_SALT_TOO_CHEAP) return "";
    if (r == CRYPT_SALT_METHOD_DISABLED) return "its hash method is disabled in this system's libcrypt";
    return "malformed or unknown hash \"" + std::string(stored.substr(0, std::min<size_t>(stored.size(), 7))) + "...\"";
  }
  return "unknown password hash (bcrypt $2y$, $5$, $6$, $apr1$, {SHA} or {PLAIN})";
}

bool password_matches(std::string_view password, std::string_view stored) {
  if (stored.starts_with("{PLAIN}")) return equal_in_constant_time(password, stored.substr(7));
  std::string computed;
  if (stored.starts_with("{SHA}")) {
    computed = sha1_hash(password);
  } else if (stored.starts_with("$apr1$")) {
    std::string_view rest = stored.substr(6);
    computed = apr1_hash(password, rest.substr(0, rest.find('$')));
  } else if (stored.starts_with("$")) {
    return crypt_matches(password, stored);
  } else {
    return false;
  }
  bool ok = equal_in_constant_time(computed, stored);
  wipe(&computed);
  return ok;
}

std::string sha1_hash(std::string_view password) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_Digest(password.data(), password.size(), md, &len, EVP_sha1(), nullptr) != 1) return "";
  unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  int n = EVP_EncodeBlock(b64, md, static_cast<int>(len));
  return "{SHA}" + std::string(reinterpret_cast<const char*>(b64), static_cast<size_t>(n));
}

// Apache's $apr1$ is the MD5-based crypt of FreeBSD (Poul-Henning Kamp's), with its own magic
// string: a digest of the password, magic and salt, mixed with a second digest; 1000 rounds that
// stir the password, the salt and the previous digest in an order that depends on the round; the
// 16 bytes written in crypt's base64 in a fixed shuffle.
std::string apr1_hash(std::string_view password, std::string_view salt) {
  static constexpr std::string_view kMagic = "$apr1$";
  salt = salt.substr(0, salt.find('$')).substr(0, 8);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return "";
  unsigned char final[16];
  unsigned len = 0;
  auto add = [&](const void* p, size_t n) { EVP_DigestUpdate(ctx, p, n); };
  auto add_sv = [&](std::string_view s) { add(s.data(), s.size()); };

  // The alternate digest: password, salt, password.
  EVP_DigestInit_ex(ctx, EVP_md5(), nullptr);
  add_sv(password), add_sv(salt), add_sv(password);
  EVP_DigestFinal_ex(ctx, final, &len);

  EVP_DigestInit_ex(ctx, EVP_md5(), nullptr);
  add_sv(password), add_sv(kMagic), add_sv(salt);
  // As many bytes of the alternate digest as the password is long.
  for (size_t i = password.size(); i > 0; i -= std::min<size_t>(i, 16)) add(final, std::min<size_t>(i, 16));
  // Then, for each bit of the length, a zero byte or the password's first byte.
  memset(final, 0, sizeof(final));
  for (size_t i = password.size(); i; i >>= 1) {
    if (i & 1) add(final, 1);
    else add(password.data(), 1);
  }
  EVP_DigestFinal_ex(ctx, final, &len);

  // The rounds, meant to make guessing slow (in 1996).
  for (int i = 0; i < 1000; i++) {
    EVP_DigestInit_ex(ctx, EVP_md5(), nullptr);
    if (i & 1) add_sv(password);
    else add(final, 16);
    if (i % 3) add_sv(salt);
    if (i % 7) add_sv(password);
    if (i & 1) add(final, 16);
    else add_sv(password);
    EVP_DigestFinal_ex(ctx, final, &len);
  }
  EVP_MD_CTX_free(ctx);

  std::string out(kMagic);
  out.append(salt);
  out.push_back('$');
  // Three bytes at a time, in crypt's shuffle, written low six bits first.
  auto put = [&](unsigned v, int chars) {
    while (chars-- > 0) {
      out.push_back(kCryptAlphabet[v & 0x3f]);
      v >>= 6;
    }
  };
  static constexpr int kOrder[5][3] = {{0, 6, 12}, {1, 7, 13}, {2, 8, 14}, {3, 9, 15}, {4, 10, 5}};
  for (const auto& o : kOrder) put((unsigned(final[o[0]]) << 16) | (unsigned(final[o[1]]) << 8) | final[o[2]], 4);
  put(final[11], 2);
  OPENSSL_cleanse(final, sizeof(final));
  return out;
}

// ---- the request ----------------------------------------------------------------------------

bool parse_basic_credentials(std::string_view value, std::string* user, std::string* password) {
  value = trim(value);
  if (value.size() < 6 || !iequals(value.substr(0, 6), "basic ")) return false;
  std::string_view encoded = trim(value.substr(6));
  std::string decoded;
  if (encoded.empty() || !decode_base64(encoded, &decoded)) {
    wipe(&decoded);
    return false;
  }
  size_t colon = decoded.find(':');
  if (colon == std::string::npos || colon == 0) {
    wipe(&decoded);
    return false;
  }
  user->assign(decoded, 0, colon);
  password->assign(decoded, colon + 1);
  wipe(&decoded);
  return true;
}

bool remote_user(const Request& req, std::string* user) {
  std::string_view value;
  std::string name, password;
  if (!authorization(req, &value) || !parse_basic_credentials(value, &name, &password)) return false;
  wipe(&password);
  *user = std::move(name);
  return true;
}

int check_access(const Settings& s, const Request& req, const Server& srv) {
  const AccessVerdict access = access_verdict(s.access, req.client);
  if (s.satisfy == Satisfy::kAll) {
    if (access == AccessVerdict::kDeny) {
      log_forbidden(req, srv);
      return 403;
    }
    return check_basic(s.auth_basic, req, srv) == AuthVerdict::kRefused ? 401 : 0;
  }
  // satisfy = any, as nginx's access phase: an allow or good credentials let the request in; when
  // neither does, a refusal by basic authentication (401) wins over one by a deny rule (403), so
  // that the client is asked for credentials. A deny is not logged then (nginx logs it only with
  // satisfy all).
  if (access == AccessVerdict::kAllow) return 0;
  AuthVerdict auth = check_basic(s.auth_basic, req, srv);
  if (auth == AuthVerdict::kOk) return 0;
  if (auth == AuthVerdict::kRefused) return 401;
  return access == AccessVerdict::kDeny ? 403 : 0;
}

void add_www_authenticate(std::string* out, size_t mark, const Settings& s, const VarContext& vars) {
  size_t end = out->find("\r\n\r\n", mark);
  if (end == std::string::npos) return;
  std::string realm;
  s.auth_basic.realm.evaluate(vars, &realm);
  // The realm as an RFC 9110 quoted-string: '"' and '\' escaped; a control character (which only a
  // variable could bring) left out, so that the field stays one line.
  std::string field = "WWW-Authenticate: Basic realm=\"";
  for (char c : realm) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) continue;
    if (c == '"' || c == '\\') field.push_back('\\');
    field.push_back(c);
  }
  field.append("\"\r\n");
  out->insert(end + 2, field);
}

}  // namespace baton::http

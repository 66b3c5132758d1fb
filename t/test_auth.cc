// Basic authentication: auth_basic and auth_basic_user_file (each hash format with a right and a
// wrong password, the 401 and its WWW-Authenticate, malformed credentials, nginx's error-log lines),
// $remote_user in a return and in the combined access log, auth_basic off below, satisfy any/all
// with allow/deny, error_page for 401, the configuration's errors, and a changed file at a reload.
#include <stdio.h>

#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

std::string base64(std::string_view in) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i + 1 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16;
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], '='};
  }
  return out;
}

// The Authorization line (with its CRLF) of user:password.
std::string basic(std::string_view user, std::string_view password) {
  return "Authorization: Basic " + base64(std::string(user) + ":" + std::string(password)) + "\r\n";
}

// The first line a shell command prints, without its line break ("" when it fails).
std::string command_line(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[512];
  if (fgets(buf, sizeof(buf), p)) out = buf;
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// A bcrypt hash of "bcrypt-pass" at cost 10, made once with Python's crypt module (libxcrypt):
// crypt.crypt("bcrypt-pass", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2**10)), its $2b$ written
// $2y$ as Apache's htpasswd writes it (the same computation for an ASCII password).
constexpr char kBcrypt[] = "$2y$10$AcQMgDbiWBq9jdUivWGbf.shkFLNi5PTtbk30Q3rUv/d98F3.BOHS";

// conf/htpasswd with alice (apr1), plain ({PLAIN}) and bcrypt; the other formats are added by the
// test that needs openssl.
const char kUsers[] =
    "# users of the tests\n"
    "\n"
    "alice:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/\n"  // openssl passwd -apr1 -salt saltsalt password
    "plain:{PLAIN}plain-pass\n";

void write_users(BatonServer& s, const std::string& extra = "") {
  s.write_file("conf/htpasswd", std::string(kUsers) + "bcrypt:" + kBcrypt + "\n" + extra);
}

// One server on 127.0.0.1:PORT serving html/, its own keys `server_extra`, then `locations`.
std::string site(const std::string& server_extra, const std::string& locations = "",
                 const std::string& http_extra = "") {
  return make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n" + server_extra + locations,
                     http_extra, 1);
}

const char kProtected[] = "auth_basic = \"Team \\\"area\\\"\"\nauth_basic_user_file = conf/htpasswd\n";

void write_files(BatonServer& s) {
  for (const char* dir : {"", "open/", "a/", "b/", "c/", "d/", "e/", "f/"})
    s.write_file(std::string("html/") + dir + "a.txt", "file\n");
}

std::string where(const BatonServer& s, std::string_view text) {
  return "baton.ini:" + std::to_string(line_of(s.config_text(), text)) + ": ";
}

// The access log line of the request with User-Agent `agent` ("" if none appears within 2 s).
std::string log_line(BatonServer& s, std::string_view agent) {
  std::string needle = "\"" + std::string(agent) + "\"";
  std::string found;
  wait_for(
      [&] {
        std::string log = s.access_log();
        size_t pos = log.find(needle);
        if (pos == std::string::npos) return false;
        size_t start = log.rfind('\n', pos);
        start = start == std::string::npos ? 0 : start + 1;
        found = log.substr(start, log.find('\n', pos) - start);
        return true;
      },
      2000ms);
  return found;
}

}  // namespace

// ---- the 401 and the credentials --------------------------------------------------------------

TEST(Auth, NoCredentialsGets401WithTheRealm) {
  BatonServer s;
  write_files(s);
  write_users(s);
  s.set_config(site(kProtected));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/a.txt");
  EXPECT_TRUE(is_error_page(r, 401, "Unauthorized")) << r;
  // The realm as a quoted-string (its quotes escaped); nginx sends no charset parameter.
  EXPECT_EQ(r.header("WWW-Authenticate"), "Basic realm=\"Team \\\"area\\\"\"") << r;
  EXPECT_EQ(r.count("WWW-Authenticate"), 1u);
  Response h = head(s.port(), "/a.txt");
  EXPECT_EQ(h.status, 401);
  EXPECT_TRUE(h.has("WWW-Authenticate")) << h;
  // With the right credentials: the file, and no challenge.
  Response ok = get(s.port(), "/a.txt", basic("alice", "password"));
  EXPECT_EQ(ok.status, 200) << ok;
  EXPECT_EQ(ok.body, "file\n");
  EXPECT_FALSE(ok.has("WWW-Authenticate"));
}

TEST(Auth, EachHashFormatWithARightAndAWrongPassword) {
  if (tool_path("openssl").empty()) GTEST_SKIP() << "openssl is not installed";
  BatonServer s;
  write_files(s);
  std::string sha512 = command_line("openssl passwd -6 sha512-pass");
  std::string sha256 = command_line("openssl passwd -5 sha256-pass");
  std::string apr1 = command_line("openssl passwd -apr1 apr1-pass");
  std::string sha1 = command_line("printf %s sha1-pass | openssl dgst -sha1 -binary | base64");
  ASSERT_TRUE(sha512.starts_with("$6$")) << sha512;
  ASSERT_TRUE(sha256.starts_with("$5$")) << sha256;
  ASSERT_TRUE(apr1.starts_with("$apr1$")) << apr1;
  ASSERT_EQ(sha1.size(), 28u) << sha1;
  std::string b = kBcrypt;
  write_users(s, "sha512:" + sha512 + "\nsha256:" + sha256 + "\napr1:" + apr1 + "\nsha1:{SHA}" + sha1 +
                     "\nbcrypt2b:$2b$" + b.substr(4) + "\nbcrypt2a:$2a$" + b.substr(4) + "\n");
  s.set_config(site(kProtected));
  ASSERT_TRUE(s.start());
  const std::pair<const char*, const char*> kUsersAndPasswords[] = {
      {"sha512", "sha512-pass"}, {"sha256", "sha256-pass"}, {"apr1", "apr1-pass"},
      {"sha1", "sha1-pass"},     {"bcrypt", "bcrypt-pass"}, {"bcrypt2b", "bcrypt-pass"},
      {"bcrypt2a", "bcrypt-pass"}, {"plain", "plain-pass"}, {"alice", "password"},
  };
  for (const auto& [user, password] : kUsersAndPasswords) {
    EXPECT_EQ(get(s.port(), "/a.txt", basic(user, password)).status, 200) << user;
    Response r = get(s.port(), "/a.txt", basic(user, std::string(password) + "x"));
    EXPECT_TRUE(is_error_page(r, 401, "Unauthorized")) << user << "\n" << r;
    EXPECT_TRUE(r.has("WWW-Authenticate")) << user;
    EXPECT_EQ(get(s.port(), "/a.txt", basic(user, "")).status, 401) << user;
  }
  // A right password is right again (bcrypt's success may be remembered: the same answer).
  EXPECT_EQ(get(s.port(), "/a.txt", basic("bcrypt", "bcrypt-pass")).status, 200);
  EXPECT_EQ(get(s.port(), "/a.txt", basic("bcrypt", "bcrypt-pasS")).status, 401);
}

TEST(Auth, MalformedCredentialsGet401) {
  BatonServer s;
  write_files(s);
  write_users(s);
  s.set_config(site(kProtected));
  ASSERT_TRUE(s.start());
  const std::string kBad[] = {
      "Authorization: Bearer " + base64("alice:password") + "\r\n",
      "Authorization: Basic\r\n",
      "Authorization: Basic !!!!\r\n",
      "Authorization: Basic " + base64("alice") + "\r\n",         // no ':'
      "Authorization: Basic " + base64(":password") + "\r\n",     // no user
      "Authorization: Basic " + std::string(6000, 'A') + "\r\n",  // huge, zeros, no ':'
      "Authorization: Basic " + base64("alice:" + std::string(4000, 'p')) + "\r\n",
      // Two fields: which one is meant is not for the server to guess.
      basic("alice", "password") + basic("alice", "password"),
  };
  for (const std::string& h : kBad) {
    Response r = get(s.port(), "/a.txt", h);
    EXPECT_EQ(r.status, 401) << h.substr(0, 80) << "\n" << r;
    EXPECT_TRUE(r.has("WWW-Authenticate")) << h.substr(0, 80);
  }
  // The scheme in any case, the padding left out: accepted as nginx accepts them.
  std::string b = base64("alice:password");
  while (b.back() == '=') b.pop_back();
  EXPECT_EQ(get(s.port(), "/a.txt", "Authorization: bAsIc " + b + "\r\n").status, 200);
}

TEST(Auth, RefusalsAreLoggedAsNginxLogsThem) {
  BatonServer s;
  write_files(s);
  write_users(s);
  s.set_config(site(kProtected));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a.txt", basic("alice", "wrong")).status, 401);
  EXPECT_EQ(get(s.port(), "/a.txt", basic("nobody", "x")).status, 401);
  // A name from the client is escaped: no quote or control byte of its own reaches the log.
  EXPECT_EQ(get(s.port(), "/a.txt", basic("ev\"il\x01", "x")).status, 401);
  std::string file = s.path("conf/htpasswd");
  EXPECT_TRUE(wait_for(
      [&] {
        std::string log = s.error_log();
        return contains(log, "[error]") &&
               contains(log, "user \"alice\": password mismatch, client: 127.0.0.1, server: main, "
                             "request: \"GET /a.txt HTTP/1.1\", host: \"localhost\"") &&
               contains(log, "user \"nobody\" was not found in \"" + file + "\", client: 127.0.0.1") &&
               contains(log, "user \"ev\\x22il\\x01\" was not found in");
      },
      2000ms))
      << s.error_log();
  EXPECT_FALSE(contains(s.error_log(), "ev\"il")) << s.error_log();
  // The password never is.
  EXPECT_FALSE(contains(s.error_log(), "wrong")) << s.error_log();
}

// ---- $remote_user -----------------------------------------------------------------------------

TEST(Auth, RemoteUserInReturnAndCombinedLog) {
  BatonServer s;
  write_files(s);
  write_users(s);
  s.set_config(site(kProtected + std::string("access_log = logs/access.log\n"),
                    "[location = /who]\nreturn = 200 \"user=$remote_user\"\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/who", basic("alice", "password"));
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, "user=alice");
  EXPECT_EQ(get(s.port(), "/a.txt", basic("plain", "plain-pass") + "User-Agent: ok-agent\r\n").status, 200);
  EXPECT_TRUE(log_line(s, "ok-agent").starts_with("127.0.0.1 - plain [")) << log_line(s, "ok-agent");
  // Without credentials the field is a dash, as before; a refused user is written as nginx writes
  // $remote_user (the name sent, checked or not), escaped.
  EXPECT_EQ(get(s.port(), "/a.txt", "User-Agent: no-agent\r\n").status, 401);
  EXPECT_TRUE(log_line(s, "no-agent").starts_with("127.0.0.1 - - [")) << log_line(s, "no-agent");
  EXPECT_EQ(get(s.port(), "/a.txt", basic("m\"allory", "x") + "User-Agent: bad-agent\r\n").status, 401);
  EXPECT_TRUE(log_line(s, "bad-agent").starts_with("127.0.0.1 - m\\x22allory [")) << log_line(s, "bad-agent");
}

// Credentials of one request are nothing to the next one on the same connection.
TEST(Auth, CredentialsDoNotCarryOverOnAKeptAliveConnection) {
  BatonServer s;
  write_files(s);
  write_users(s);
  s.set_config(site(kProtected, "[location = /who]\nreturn = 200 \"user=$remote_user\"\n"));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  Response a = c.exchange(req("GET", "/who", basic("alice", "password")));
  EXPECT_EQ(a.body, "user=alice");
  Response b = c.exchange(req("GET", "/who"));
  EXPECT_EQ(b.status, 401) << b;
  Response d = c.exchange(req("GET", "/a.txt"));
  EXPECT_EQ(d.status, 401) << d;
}

// ---- levels and satisfy -----------------------------------------------------------------------

TEST(Auth, InheritedAndTurnedOffBelow) {
  BatonServer s;
  write_files(s);
  write_users(s);
  s.write_file("conf/other", "zed:{PLAIN}zed-pass\n");
  s.set_config(site("", "[location /open/]\nauth_basic = off\n"
                        "[location /a/]\nauth_basic_user_file = conf/other\n"
                        "[location /b/]\nauth_basic = \"Only B\"\n",
                    kProtected));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a.txt").status, 401);
  EXPECT_EQ(get(s.port(), "/open/a.txt").status, 200);
  // Another file below: its users, not the outer file's.
  EXPECT_EQ(get(s.port(), "/a/a.txt", basic("zed", "zed-pass")).status, 200);
  EXPECT_EQ(get(s.port(), "/a/a.txt", basic("alice", "password")).status, 401);
  // Another realm below, with the inherited file.
  Response r = get(s.port(), "/b/a.txt");
  EXPECT_EQ(r.header("WWW-Authenticate"), "Basic realm=\"Only B\"") << r;
  EXPECT_EQ(get(s.port(), "/b/a.txt", basic("alice", "password")).status, 200);
}

// nginx's access phase: with `any`, an allow rule or good credentials let the client in, and when
// neither does, the 401 wins over the 403; with `all` (the default), a deny is a 403 whatever the
// credentials, and allowed clients still need them. A client no rule matches is not let in by
// allow/deny under `any`.
TEST(Auth, SatisfyAnyAndAll) {
  BatonServer s;
  write_files(s);
  write_users(s);
  s.set_config(site(kProtected,
                    "[location /a/]\nsatisfy = any\nallow = 127.0.0.1\ndeny = all\n"
                    "[location /b/]\nsatisfy = any\ndeny = all\n"
                    "[location /c/]\nallow = 127.0.0.1\ndeny = all\n"
                    "[location /d/]\nsatisfy = all\ndeny = all\n"
                    "[location /e/]\nsatisfy = any\nallow = 10.0.0.0/8\n"
                    "[location /f/]\nsatisfy = any\ndeny = all\nauth_basic = off\n"));
  ASSERT_TRUE(s.start());
  const std::string good = basic("alice", "password"), bad = basic("alice", "nope");
  EXPECT_EQ(get(s.port(), "/a/a.txt").status, 200);
  EXPECT_EQ(get(s.port(), "/a/a.txt", bad).status, 200);  // allowed: the credentials are not looked at
  Response r = get(s.port(), "/b/a.txt");
  EXPECT_EQ(r.status, 401) << r;
  EXPECT_TRUE(r.has("WWW-Authenticate"));
  EXPECT_EQ(get(s.port(), "/b/a.txt", bad).status, 401);
  EXPECT_EQ(get(s.port(), "/b/a.txt", good).status, 200);
  EXPECT_EQ(get(s.port(), "/c/a.txt").status, 401);
  EXPECT_EQ(get(s.port(), "/c/a.txt", good).status, 200);
  EXPECT_EQ(get(s.port(), "/d/a.txt", good).status, 403);
  EXPECT_FALSE(get(s.port(), "/d/a.txt").has("WWW-Authenticate"));
  EXPECT_EQ(get(s.port(), "/e/a.txt").status, 401);
  EXPECT_EQ(get(s.port(), "/e/a.txt", good).status, 200);
  EXPECT_EQ(get(s.port(), "/f/a.txt").status, 403);
  // satisfy is inherited.
  s.stop();
  s.set_config(site(kProtected + std::string("satisfy = any\nallow = 127.0.0.1\n")));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a.txt").status, 200);
}

// ---- error_page -------------------------------------------------------------------------------

TEST(Auth, ErrorPageFor401KeepsTheChallenge) {
  BatonServer s;
  write_files(s);
  write_users(s);
  s.write_file("html/401.html", "please log in\n");
  s.set_config(site(kProtected + std::string("error_page = 401 /401.html\n"),
                    "[location = /401.html]\nauth_basic = off\n"
                    "[location /a/]\nerror_page = 401 /a.txt\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/b/a.txt");
  EXPECT_EQ(r.status, 401) << r;
  EXPECT_EQ(r.body, "please log in\n");
  EXPECT_EQ(r.header("WWW-Authenticate"), "Basic realm=\"Team \\\"area\\\"\"") << r;
  // A page under the same protection is refused like the request: the built-in page is sent.
  Response b = get(s.port(), "/a/x");
  EXPECT_TRUE(is_error_page(b, 401, "Unauthorized")) << b;
  EXPECT_TRUE(b.has("WWW-Authenticate"));
}

// ---- configuration ----------------------------------------------------------------------------

TEST(Auth, ConfigurationErrorsNameTheirLine) {
  BatonServer s;
  s.set_config(site("auth_basic = x\nauth_basic_user_file = conf/missing\n"));
  RunResult r = s.test_config();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, where(s, "auth_basic_user_file") + "\"auth_basic_user_file\": cannot read \"" +
                                  s.path("conf/missing") + "\" (No such file or directory)"))
      << describe(r);

  s.write_file("conf/htpasswd", "# fine\nalice:{PLAIN}a\nbob\n");
  s.set_config(site("auth_basic = x\nauth_basic_user_file = conf/htpasswd\n"));
  r = s.test_config();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, where(s, "auth_basic_user_file") + "\"auth_basic_user_file\": " +
                                  s.path("conf/htpasswd") + ":3: no \":\" between the user and the password hash"))
      << describe(r);

  s.write_file("conf/htpasswd", "carol:cleartext\n");
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, s.path("conf/htpasswd") + ":1: user \"carol\": unknown password hash")) << describe(r);

  s.set_config(site("", "[location /]\nauth_basic = \"Secret\"\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "auth_basic =") + "\"auth_basic\" needs an \"auth_basic_user_file\""))
      << describe(r);

  s.set_config(site("satisfy = some\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, where(s, "satisfy") + "invalid value (all or any) \"some\" in \"satisfy\""))
      << describe(r);

  s.set_config(site("auth_basic = \"$no_such_variable\"\n"));
  r = s.test_config();
  EXPECT_NE(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, where(s, "auth_basic"))) << describe(r);

  s.write_file("conf/htpasswd", "alice:{PLAIN}a\n");
  s.set_config(site("auth_basic = x\nauth_basic_user_file = conf/htpasswd\n"));
  r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << describe(r);
}

// The file is read with the configuration: a change is seen at the next reload, and a reload with a
// broken file keeps the running configuration.
TEST(Auth, ReloadPicksUpAChangedFile) {
  BatonServer s;
  write_files(s);
  s.write_file("conf/htpasswd", "alice:{PLAIN}first\n");
  s.set_config(site(kProtected));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a.txt", basic("alice", "first")).status, 200);
  s.write_file("conf/htpasswd", "alice:{PLAIN}second\n");
  EXPECT_EQ(get(s.port(), "/a.txt", basic("alice", "first")).status, 200);  // not until the reload
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(wait_for([&] { return get(s.port(), "/a.txt", basic("alice", "second")).status == 200; }, 5000ms));
  EXPECT_EQ(get(s.port(), "/a.txt", basic("alice", "first")).status, 401);

  s.write_file("conf/htpasswd", "alice\n");
  r = s.ctl("reload");
  EXPECT_NE(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, s.path("conf/htpasswd") + ":1:")) << describe(r);
  EXPECT_EQ(get(s.port(), "/a.txt", basic("alice", "second")).status, 200);
}

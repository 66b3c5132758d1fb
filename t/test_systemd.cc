// systemd notifications (NOTIFY_SOCKET): READY=1 with MAINPID once the workers accept, RELOADING=1 with
// MONOTONIC_USEC then READY=1 on reload and on an upgrade (the master keeps its pid) or its rollback,
// STOPPING=1 on shutdown; a socket path or an abstract `@name`.
// The unit and the manual page make install installs: the paths filled in, systemd-analyze verify,
// groff without warnings, and a stop carried out as systemd does it lets a download finish.
#include <limits.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

constexpr const char* kFile = "notified\n";

constexpr const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n";

unsigned long long monotonic_usec() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<unsigned long long>(ts.tv_sec) * 1000000ull + static_cast<unsigned long long>(ts.tv_nsec) / 1000;
}

bool has(const NotifySocket::Message& m, std::string_view key, std::string_view value) {
  return m.field(key) == std::string(value);
}

// Whether any datagram so far from `sender` (0: anyone) has KEY=VALUE.
bool seen(const NotifySocket& n, std::string_view key, std::string_view value, pid_t sender = 0) {
  for (const auto& m : n.history())
    if (has(m, key, value) && (sender == 0 || m.sender == sender)) return true;
  return false;
}

// Starts the server with NOTIFY_SOCKET and waits for READY=1 (the start counts as done only then).
::testing::AssertionResult start_notified(BatonServer& s, NotifySocket& n) {
  s.set_env("NOTIFY_SOCKET", n.address());
  bool ready = false;
  ::testing::AssertionResult started = s.start([&] {
    if (!ready) ready = n.wait_for_field("READY", "1", 50ms).has_value();
    return ready;
  });
  if (!started) return started << "\n" << n.describe();
  return ::testing::AssertionSuccess();
}

}  // namespace

TEST(Systemd, ReadyWithMainPidOnceWorkersAccept) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 2));
  NotifySocket n(s.path("notify.sock"));
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_TRUE(start_notified(s, n));
  // READY=1 means requests are answered now, not merely that the port accepts connections.
  Client c(s.port(), {.timeout = 2000ms});
  ASSERT_TRUE(c.connected());
  Response r = c.exchange(req("GET", "/a.txt", "Connection: close\r\n"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kFile);
  const std::string pid = std::to_string(s.master_pid());
  if (!seen(n, "MAINPID", pid)) n.wait_for_field("MAINPID", pid, 1000ms);
  EXPECT_TRUE(seen(n, "MAINPID", pid)) << n.describe();
  const NotifySocket::Message* ready = nullptr;
  for (const auto& m : n.history())
    if (has(m, "READY", "1")) ready = &m;
  ASSERT_NE(ready, nullptr);
  EXPECT_EQ(ready->sender, s.master_pid()) << "READY=1 should come from the master\n" << n.describe();
}

TEST(Systemd, ReloadSendsReloadingThenReady) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 1));
  NotifySocket n(s.path("notify.sock"));
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_TRUE(start_notified(s, n));
  n.clear();

  unsigned long long before = monotonic_usec();
  RunResult r = s.ctl("reload");
  unsigned long long after = monotonic_usec();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  std::optional<NotifySocket::Message> reloading = n.wait_for_field("RELOADING", "1", 2000ms);
  ASSERT_TRUE(reloading) << n.describe();
  // systemd wants MONOTONIC_USEC in the same datagram as RELOADING=1.
  std::optional<std::string> usec = reloading->field("MONOTONIC_USEC");
  ASSERT_TRUE(usec) << "RELOADING=1 without MONOTONIC_USEC: " << n.describe();
  unsigned long long v = std::strtoull(usec->c_str(), nullptr, 10);
  EXPECT_GE(v, before);
  EXPECT_LE(v, after);
  EXPECT_TRUE(n.wait_for_field("READY", "1", 3000ms)) << "no READY=1 after RELOADING=1\n" << n.describe();
  EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
}

TEST(Systemd, UpgradeSaysReloadingThenReadyFromTheSameMainPid) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 1));
  NotifySocket n(s.path("notify.sock"));
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_TRUE(start_notified(s, n));
  pid_t old = s.master_pid();
  n.clear();

  RunResult r = s.ctl("upgrade");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  std::optional<UpgradeOutcome> up = parse_upgrade_success(r.out);
  ASSERT_TRUE(up) << describe(r);
  EXPECT_EQ(up->pid, old);
  // READY=1 from the master, running the new binary now; the main pid is the one systemd knows.
  std::optional<NotifySocket::Message> ready = n.wait_for(
      [&](const NotifySocket::Message& m) { return has(m, "READY", "1") && m.sender == old; }, 3000ms);
  EXPECT_TRUE(ready) << n.describe();
  EXPECT_TRUE(seen(n, "RELOADING", "1", old)) << "the master should announce RELOADING=1\n" << n.describe();
  bool reloading_first = false;
  for (const auto& m : n.history()) {
    if (has(m, "RELOADING", "1")) reloading_first = true;
    if (has(m, "READY", "1")) break;
  }
  EXPECT_TRUE(reloading_first) << "RELOADING=1 should come before READY=1\n" << n.describe();
  EXPECT_TRUE(s.wait_old_generations_gone(5000ms)) << s.census().describe();
  n.receive(200ms);
  for (const auto& m : n.history()) {
    std::optional<std::string> main_pid = m.field("MAINPID");
    EXPECT_TRUE(!main_pid || *main_pid == std::to_string(old)) << "another main pid announced\n" << n.describe();
  }
  // Nothing stops: no STOPPING=1.
  EXPECT_FALSE(seen(n, "STOPPING", "1")) << n.describe();
  EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
}

TEST(Systemd, RollbackSaysReadyAgain) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 1));
  std::string good = s.config_text();
  NotifySocket n(s.path("notify.sock"));
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_TRUE(start_notified(s, n));
  pid_t old = s.master_pid();
  n.clear();

  s.set_config(replace_all(good, "[main]\n", "[main]\nno_such_directive = 1\n"));
  RunResult r = s.ctl("upgrade");
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  std::optional<NotifySocket::Message> ready = n.wait_for(
      [&](const NotifySocket::Message& m) { return has(m, "READY", "1") && m.sender == old; }, 3000ms);
  EXPECT_TRUE(ready) << n.describe();
  n.receive(200ms);
  EXPECT_TRUE(seen(n, "RELOADING", "1", old)) << n.describe();
  EXPECT_FALSE(seen(n, "STOPPING", "1")) << n.describe();
}

TEST(Systemd, StoppingOnQuitAndTerm) {
  for (int sig : {SIGQUIT, SIGTERM}) {
    SCOPED_TRACE(sig == SIGQUIT ? "SIGQUIT" : "SIGTERM");
    BatonServer s;
    s.set_config(make_runtime_config(kServer, "", 1));
    NotifySocket n(s.path("notify.sock"));
    ASSERT_TRUE(n.ok()) << n.error();
    ASSERT_TRUE(start_notified(s, n));
    n.clear();
    ASSERT_TRUE(s.signal(sig));
    EXPECT_TRUE(n.wait_for_field("STOPPING", "1", 3000ms)) << n.describe();
    EXPECT_TRUE(s.wait_exit(5000ms));
  }
}

TEST(Systemd, AbstractNotifySocket) {
  BatonServer s;
  s.write_file("html/a.txt", kFile);
  s.set_config(make_runtime_config(kServer, "", 1));
  static std::atomic<int> counter{0};
  std::string name = "@baton-test-notify-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  NotifySocket n(name);
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_TRUE(start_notified(s, n));
  if (!seen(n, "MAINPID", std::to_string(s.master_pid())))
    n.wait_for_field("MAINPID", std::to_string(s.master_pid()), 1000ms);
  EXPECT_TRUE(seen(n, "MAINPID", std::to_string(s.master_pid()))) << n.describe();
  EXPECT_EQ(get(s.port(), "/a.txt").body, kFile);
  n.clear();
  ASSERT_TRUE(s.signal(SIGTERM));
  EXPECT_TRUE(n.wait_for_field("STOPPING", "1", 3000ms)) << n.describe();
}

// ---- the unit and the manual page that make install installs ----
//
// The tests run from the top of the source tree; make installs a whole tree into a temporary prefix
// (make install prefix=DIR), once for the suite, from the Makefile of the build directory this test
// binary belongs to.

namespace {

// Runs a program to completion (stdin /dev/null), as run_baton() runs baton.
RunResult run_program(const std::string& program, const std::vector<std::string>& args,
                      const std::vector<std::pair<std::string, std::string>>& env = {}, Millis timeout = 60000ms) {
  RunOptions o;
  o.binary = program;
  o.env = env;
  o.timeout = timeout;
  return run_baton_with(args, o);
}

std::string directory_of_this_binary() {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "";
  self[n] = '\0';
  std::string s = self;
  return s.substr(0, s.rfind('/'));
}

// The absolute paths in single quotes in `text` (make's echo of the install commands quotes every
// destination).
std::vector<std::string> quoted_paths(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = text.find("'/", pos)) != std::string::npos) {
    size_t end = text.find('\'', pos + 1);
    if (end == std::string::npos) break;
    out.push_back(text.substr(pos + 1, end - pos - 1));
    pos = end + 1;
  }
  return out;
}

// A unit file as systemd reads it, for what these tests need: `Key=value` lines by section, a key
// given twice keeps both values (ExecStop= may be a list), comments and blank lines skipped.
struct UnitFile {
  std::map<std::string, std::vector<std::string>> values;  // "Section.Key" -> values in order
  std::vector<std::string> all(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() ? std::vector<std::string>{} : it->second;
  }
  std::optional<std::string> one(const std::string& key) const {
    std::vector<std::string> v = all(key);
    if (v.empty()) return std::nullopt;
    return v.back();
  }
};

UnitFile parse_unit(const std::string& text) {
  UnitFile u;
  std::string section;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = trim_end(text.substr(start, end - start));
    start = end + 1;
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line[0] == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = trim_end(line.substr(0, eq));
    std::string value = line.substr(eq + 1);
    value.erase(0, value.find_first_not_of(' '));
    u.values[section + "." + key].push_back(value);
  }
  return u;
}

// A systemd time span with one unit ("40s", "40", "2min", "500ms"), nullopt for anything else.
std::optional<Millis> parse_timespan(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) i++;
  if (i == 0) return std::nullopt;
  long long n = std::stoll(s.substr(0, i));
  std::string unit = s.substr(i);
  if (unit.empty() || unit == "s" || unit == "sec") return Millis(n * 1000);
  if (unit == "ms" || unit == "msec") return Millis(n);
  if (unit == "min" || unit == "m") return Millis(n * 60000);
  return std::nullopt;
}

// A signal as KillSignal= names it (SIGQUIT, QUIT or a number); 0 when unknown.
int parse_signal(std::string s) {
  if (!s.empty() && std::isdigit(static_cast<unsigned char>(s[0]))) return std::atoi(s.c_str());
  if (s.rfind("SIG", 0) == 0) s = s.substr(3);
  static const std::map<std::string, int> kNames = {{"TERM", SIGTERM}, {"QUIT", SIGQUIT}, {"INT", SIGINT},
                                                    {"HUP", SIGHUP},   {"KILL", SIGKILL}, {"USR1", SIGUSR1},
                                                    {"USR2", SIGUSR2}, {"WINCH", SIGWINCH}};
  auto it = kNames.find(s);
  return it == kNames.end() ? 0 : it->second;
}

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') i++;
    size_t j = i;
    while (j < s.size() && s[j] != ' ') j++;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// Whether a macro line of the page (.B, .BR, .TP ...) names the option `-c` (written \-c).
bool documents_option(const std::string& page, char c) {
  std::string flag = std::string("\\-") + c;
  size_t pos = 0;
  while ((pos = page.find(flag, pos)) != std::string::npos) {
    size_t line_start = page.rfind('\n', pos);
    line_start = line_start == std::string::npos ? 0 : line_start + 1;
    size_t after = pos + flag.size();
    bool ends = after >= page.size() || !std::isalnum(static_cast<unsigned char>(page[after]));
    if (page[line_start] == '.' && ends) return true;
    pos = after;
  }
  return false;
}

// The default quit_timeout (README, [main]): how long a graceful stop may take.
constexpr Millis kDefaultQuitTimeout = 30000ms;

class SystemdUnit : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { install(); }
  static void TearDownTestSuite() {
    if (!prefix_.empty()) run_program("/bin/rm", {"-rf", prefix_});
    prefix_.clear();
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(error_.empty()) << error_;
  }

  static std::string unit_path() { return prefix_ + "/lib/systemd/system/baton.service"; }
  static std::string man_path() { return prefix_ + "/share/man/man8/baton.8"; }
  static std::string sbin_path() { return prefix_ + "/sbin/baton"; }

  static std::string prefix_;
  static std::string skip_;   // why the install cannot be tried here
  static std::string error_;  // why it failed

 private:
  static void install() {
    skip_.clear();
    error_.clear();
    std::string make = tool_path("make");
    std::string makefile = directory_of_this_binary() + "/Makefile";
    if (make.empty()) {
      skip_ = "make is not installed";
      return;
    }
    if (!file_exists("Makefile.in") || !file_exists("conf/baton.ini")) {
      skip_ = "not run from the top of the source tree (make test runs the tests from there)";
      return;
    }
    if (!file_exists(makefile)) {
      skip_ = "no " + makefile + " (the tests belong to a build directory made by configure)";
      return;
    }
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/baton-install.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) {
      error_ = "mkdtemp " + tmpl + ": " + std::strerror(errno);
      return;
    }
    prefix_ = buf.data();
    // The tests run under make test: a make started here must not take the outer one's job server.
    std::vector<std::pair<std::string, std::string>> env = {{"MAKEFLAGS", ""}, {"MFLAGS", ""}, {"MAKELEVEL", ""}};
    std::vector<std::string> args = {"-f", makefile, "install", "prefix=" + prefix_};
    // First what it would do: a build configured with an absolute path outside the prefix would
    // install into the system, which a test must not do.
    std::vector<std::string> dry = args;
    dry.insert(dry.begin(), "-n");
    RunResult plan = run_program(make, dry, env);
    if (plan.exit_code != 0) {
      error_ = "make -n install failed:\n" + plan.out + plan.err;
      return;
    }
    for (const std::string& p : quoted_paths(plan.out)) {
      if (p.rfind(prefix_ + "/", 0) != 0 && p != prefix_) {
        skip_ = "make install prefix=" + prefix_ + " would write " + p +
                " (a path configured outside the prefix); not installing that from a test";
        return;
      }
    }
    RunResult r = run_program(make, args, env, 600000ms);
    if (r.exit_code != 0) error_ = "make install failed:\n" + r.out + r.err;
  }
};

std::string SystemdUnit::prefix_;
std::string SystemdUnit::skip_;
std::string SystemdUnit::error_;

}  // namespace

TEST_F(SystemdUnit, InstalledWithTheInstalledPaths) {
  std::string text = read_file(unit_path());
  ASSERT_FALSE(text.empty()) << "make install installed no " << unit_path();
  std::regex placeholder("@[A-Z_]+@");
  EXPECT_FALSE(std::regex_search(text, placeholder)) << "a template word is left:\n" << text;
  UnitFile u = parse_unit(text);
  EXPECT_EQ(u.one("Service.Type"), "notify");
  EXPECT_EQ(u.one("Service.ExecStart"), sbin_path()) << text;
  for (const char* key : {"Service.ExecStartPre", "Service.ExecReload"}) {
    std::optional<std::string> v = u.one(key);
    ASSERT_TRUE(v) << key << " missing:\n" << text;
    EXPECT_EQ(v->rfind(sbin_path() + " ", 0), 0u) << key << "=" << *v;
  }
  std::optional<std::string> pid = u.one("Service.PIDFile");
  ASSERT_TRUE(pid) << text;
  EXPECT_EQ(*pid, prefix_ + "/logs/baton.pid");
  // What the unit runs and names is there.
  EXPECT_EQ(::access(sbin_path().c_str(), X_OK), 0) << sbin_path();
  EXPECT_TRUE(file_exists(man_path())) << man_path();
  for (const std::string& doc : u.all("Unit.Documentation")) {
    for (const std::string& url : split_words(doc)) {
      if (url.rfind("man:/", 0) == 0) {
        EXPECT_TRUE(file_exists(url.substr(4))) << url;
      }
    }
  }
}

TEST_F(SystemdUnit, VerifyPasses) {
  std::string analyze = tool_path("systemd-analyze");
  if (analyze.empty()) {
    GTEST_SKIP() << "systemd-analyze is not installed (Debian package systemd; auto/deps --test)";
  }
  std::vector<std::string> args = {"verify"};
  // systemd-analyze checks a man: page by running man; without man it could check nothing else.
  bool have_man = !tool_path("man").empty();
  if (!have_man) args.push_back("--man=no");
  args.push_back(unit_path());
  RunResult r = run_program(analyze, args);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // Warnings (an unknown key, a bad value) leave the exit status 0: none may name the unit.
  EXPECT_FALSE(contains(r.out + r.err, "baton")) << r.out << r.err;
  if (!have_man) std::cout << "[ note     ] man is not installed: the Documentation= page was not checked\n";
}

TEST_F(SystemdUnit, ManPageRendersWithoutWarnings) {
  std::string page = read_file(man_path());
  ASSERT_FALSE(page.empty()) << "make install installed no " << man_path();
  EXPECT_FALSE(std::regex_search(page, std::regex("@[A-Z_]+@"))) << "a template word is left";
  for (const char* section : {"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "CONFIGURATION", "FILES",
                              "ENVIRONMENT", "\"EXIT STATUS\"", "SEE ALSO"}) {
    bool found = contains(page, std::string("\n.SH ") + section + "\n");
    if (std::string(section) == "\"EXIT STATUS\"") found = found || contains(page, "\n.SH EXIT STATUS\n");
    EXPECT_TRUE(found) << "no section " << section;
  }
  // Every option of baton -h and every name -s takes is documented.
  RunResult help = run_baton({"-h"});
  ASSERT_EQ(help.exit_code, 0) << help.err;
  std::regex option_line("\n  -(.)(?:,-(.))?");
  int options = 0;
  for (auto it = std::sregex_iterator(help.out.begin(), help.out.end(), option_line); it != std::sregex_iterator();
       ++it) {
    for (size_t g = 1; g <= 2; g++) {
      if (!(*it)[g].matched) continue;
      options++;
      std::string letter = (*it)[g].str();
      EXPECT_TRUE(documents_option(page, letter[0])) << "baton -h lists -" << letter << ", the manual page does not";
    }
  }
  EXPECT_GE(options, 10) << help.out;
  for (const char* name : {"stop", "quit", "reopen", "reload", "upgrade", "status"})
    EXPECT_TRUE(contains(page, name)) << "-s " << name << " is not in the manual page";
  EXPECT_TRUE(contains(page, sbin_path())) << "FILES does not name the installed binary";

  std::string groff = tool_path("groff");
  if (groff.empty()) {
    GTEST_SKIP() << "groff is not installed (Debian package groff-base; auto/deps --test)";
  }
  // -ww: every warning; -z: format but print nothing; what is left on stderr is a warning.
  RunResult r = run_program(groff, {"-man", "-ww", "-z", man_path()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "") << "groff warns about " << man_path();
  EXPECT_EQ(r.out, "");
}

// systemctl stop, as systemd carries it out (systemd.service(5), systemd.kill(5)): each ExecStop=
// command runs to its end; then the main process gets KillSignal= (only it with KillMode=mixed, the
// whole group with control-group); after TimeoutStopSec everything left gets SIGKILL. A graceful
// stop must let a download in flight finish: a stop command that returns at once, followed by
// SIGTERM, cuts it.
TEST_F(SystemdUnit, StopLetsDownloadsFinish) {
  UnitFile u = parse_unit(read_file(unit_path()));
  std::optional<Millis> timeout = parse_timespan(u.one("Service.TimeoutStopSec").value_or("90s"));
  ASSERT_TRUE(timeout) << "TimeoutStopSec=" << u.one("Service.TimeoutStopSec").value_or("");
  EXPECT_GT(*timeout, kDefaultQuitTimeout) << "SIGKILL would come before quit_timeout has passed";
  int kill_signal = parse_signal(u.one("Service.KillSignal").value_or("SIGTERM"));
  ASSERT_NE(kill_signal, 0) << "KillSignal=" << u.one("Service.KillSignal").value_or("");
  std::string kill_mode = u.one("Service.KillMode").value_or("control-group");

  constexpr size_t kSize = 20 * 1024 * 1024;
  BatonServer s;
  std::string content = s.write_generated("html/big.bin", kSize, 7);
  s.set_config(make_config(kServer, "", 1));
  ASSERT_TRUE(s.start());
  Client c(s.port(), {.timeout = 5000ms, .rcvbuf = 16384});
  ASSERT_TRUE(c.send(req("GET", "/big.bin")));
  std::string data;
  size_t head_end;
  while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
    std::string chunk = c.read_some(4096);
    ASSERT_FALSE(chunk.empty()) << c.error();
    data += chunk;
  }
  ASSERT_EQ(data.rfind("HTTP/1.1 200 ", 0), 0u) << data.substr(0, head_end);
  std::string body = data.substr(head_end + 4);
  for (int i = 0; i < 10; i++) {
    body += c.read_some(8192);
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_LT(body.size(), kSize / 2) << "the download is not in flight any more";

  // ExecStop= commands: the installed binary is this server's binary with its prefix and configuration.
  for (const std::string& line : u.all("Service.ExecStop")) {
    std::vector<std::string> words = split_words(line);
    ASSERT_FALSE(words.empty());
    std::string program = words[0];
    program.erase(0, program.find_first_not_of("-+!:@"));
    std::vector<std::string> args(words.begin() + 1, words.end());
    for (std::string& a : args) {
      a = replace_all(a, "${MAINPID}", std::to_string(s.master_pid()));
      a = replace_all(a, "$MAINPID", std::to_string(s.master_pid()));
    }
    RunResult r;
    if (program == sbin_path()) {
      args.insert(args.begin(), {"-p", s.prefix(), "-c", s.config_path()});
      r = run_baton(args, *timeout);
    } else {
      r = run_program(program, args, {}, *timeout);
    }
    EXPECT_EQ(r.exit_code, 0) << "ExecStop=" << line << "\n" << r.out << r.err;
  }
  if (s.running()) {
    ASSERT_TRUE(s.signal(kill_signal));
    if (kill_mode == "control-group")
      for (pid_t w : s.worker_pids()) ::kill(w, kill_signal);
  }

  // The client goes on reading slowly for a while, then takes the rest as fast as it comes.
  for (int i = 0; i < 20; i++) {
    body += c.read_some(8192);
    std::this_thread::sleep_for(10ms);
  }
  int big = 1 << 20;
  ::setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  while (body.size() < kSize) {
    std::string chunk = c.read_some(1 << 20);
    if (chunk.empty()) break;
    body += chunk;
  }
  EXPECT_TRUE(same_bytes(body, content)) << "the stop cut the download: " << c.error();
  EXPECT_TRUE(s.wait_exit(*timeout)) << "still running after TimeoutStopSec: systemd would SIGKILL it";
}

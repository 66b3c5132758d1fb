// Unit tests of src/core/conf.h: the INI reader (sections, entries, line numbers, continuation lines,
// comments, errors), the value parsers and the [main] settings.
#include "core/conf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace baton {
namespace {

// Runs fn, which must throw ConfError; returns what() ("" if nothing was thrown).
template <typename Fn>
std::string conf_error(Fn&& fn) {
  try {
    fn();
  } catch (const ConfError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfError was thrown";
  return "";
}

std::string read_error(std::string_view text) {
  return conf_error([&] { read_conf_text("test.ini", text); });
}

// ---------------------------------------------------------------------------------------------
// read_conf_text

TEST(ReadConfText, SectionsKindsArgsAndLines) {
  ConfFile f = read_conf_text("test.ini",
                              "[main]\n"
                              "worker_processes = 2\n"
                              "\n"
                              "[server  example ]\n"
                              "listen = 8080\n"
                              "[location = /exact]\n"
                              "[location ^~ /static/]\n"
                              "[http]\n");
  EXPECT_EQ(f.path, "test.ini");
  ASSERT_EQ(f.sections.size(), 5u);
  EXPECT_EQ(f.sections[0].kind, "main");
  EXPECT_EQ(f.sections[0].arg, "");
  EXPECT_EQ(f.sections[0].line, 1);
  EXPECT_EQ(f.sections[1].kind, "server");
  EXPECT_EQ(f.sections[1].arg, "example");
  EXPECT_EQ(f.sections[1].line, 4);
  EXPECT_EQ(f.sections[2].kind, "location");
  EXPECT_EQ(f.sections[2].arg, "= /exact");
  EXPECT_EQ(f.sections[2].line, 6);
  EXPECT_EQ(f.sections[3].arg, "^~ /static/");
  EXPECT_EQ(f.sections[3].line, 7);
  EXPECT_EQ(f.sections[4].kind, "http");
  EXPECT_TRUE(f.sections[4].entries.empty());
}

TEST(ReadConfText, EntriesKeepTheirLineNumbers) {
  ConfFile f = read_conf_text("test.ini",
                              "; leading comment\n"
                              "[http]\n"
                              "keepalive_timeout = 10s\n"
                              "# another comment\n"
                              "\n"
                              "root=html\n"
                              "index   =   a.html   b.html  \n");
  ASSERT_EQ(f.sections.size(), 1u);
  const auto& e = f.sections[0].entries;
  EXPECT_EQ(f.sections[0].line, 2);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].key, "keepalive_timeout");
  EXPECT_EQ(e[0].value, "10s");
  EXPECT_EQ(e[0].line, 3);
  EXPECT_EQ(e[1].key, "root");
  EXPECT_EQ(e[1].value, "html");
  EXPECT_EQ(e[1].line, 6);
  EXPECT_EQ(e[2].key, "index");
  EXPECT_EQ(e[2].value, "a.html   b.html");
  EXPECT_EQ(e[2].line, 7);
}

TEST(ReadConfText, SameSectionTwiceStaysApart) {
  ConfFile f = read_conf_text("test.ini", "[server a]\nk = 1\n[server a]\nk = 2\n");
  ASSERT_EQ(f.sections.size(), 2u);
  EXPECT_EQ(f.sections[0].entries.at(0).value, "1");
  EXPECT_EQ(f.sections[1].entries.at(0).value, "2");
  EXPECT_EQ(f.sections[1].line, 3);
}

TEST(ReadConfText, ContinuationLinesAreAppendedWithASpace) {
  ConfFile f = read_conf_text("test.ini",
                              "[http]\n"
                              "index = a.html\n"
                              "  b.html\n"
                              "\tc.html\n"
                              "root = html\n");
  const auto& e = f.sections.at(0).entries;
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].value, "a.html b.html c.html");
  EXPECT_EQ(e[0].line, 2);  // the line of the key, not of the last continuation
  EXPECT_EQ(e[1].key, "root");
  EXPECT_EQ(e[1].line, 5);
}

TEST(ReadConfText, ContinuationOfAnEmptyValueAddsNoLeadingSpace) {
  ConfFile f = read_conf_text("test.ini", "[http]\nindex =\n  a.html\n  b.html\n");
  ASSERT_EQ(f.sections.at(0).entries.size(), 1u);
  EXPECT_EQ(f.sections[0].entries[0].value, "a.html b.html");
}

TEST(ReadConfText, IndentedCommentDoesNotContinueAValue) {
  ConfFile f = read_conf_text("test.ini", "[http]\nindex = a.html\n  ; a comment\n  # another\n");
  ASSERT_EQ(f.sections.at(0).entries.size(), 1u);
  EXPECT_EQ(f.sections[0].entries[0].value, "a.html");
}

TEST(ReadConfText, InlineComments) {
  ConfFile f = read_conf_text("test.ini",
                              "[main] ; the main section\n"
                              "a = 1 ; one\n"
                              "b = 2;two\n"       // no space before ';': part of the value
                              "c = 3 # three\n"); // '#' only starts a comment at line start
  ASSERT_EQ(f.sections.size(), 1u);
  const auto& e = f.sections[0].entries;
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].value, "1");
  EXPECT_EQ(e[1].value, "2;two");
  EXPECT_EQ(e[2].value, "3 # three");
}

// BUG: an inline comment on a continuation line is kept in the value: "index = a.html\n  b.html ; x"
// gives "a.html b.html ; x", so `index` would list the files ";" and "x".
TEST(ReadConfText, InlineCommentOnAContinuationLineIsStripped) {
  ConfFile f = read_conf_text("test.ini", "[http]\nindex = a.html ; first\n  b.html ; second\n");
  ASSERT_EQ(f.sections.at(0).entries.size(), 1u);
  EXPECT_EQ(f.sections[0].entries[0].value, "a.html b.html");
}

TEST(ReadConfText, CrLfLineEndings) {
  ConfFile f = read_conf_text("test.ini", "[http]\r\nroot = html\r\nindex = a\r\n");
  const auto& e = f.sections.at(0).entries;
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].value, "html");
  EXPECT_EQ(e[1].value, "a");
  EXPECT_EQ(e[1].line, 3);
}

TEST(ReadConfText, LastLineWithoutNewline) {
  ConfFile f = read_conf_text("test.ini", "[http]\nroot = html");
  ASSERT_EQ(f.sections.at(0).entries.size(), 1u);
  EXPECT_EQ(f.sections[0].entries[0].value, "html");
}

TEST(ReadConfText, EmptyTextHasNoSections) {
  EXPECT_TRUE(read_conf_text("test.ini", "").sections.empty());
  EXPECT_TRUE(read_conf_text("test.ini", "; only a comment\n\n").sections.empty());
}

// BUG: a UTF-8 byte order mark before the first section header (inih accepts it) hides that
// section: the first key is then reported as "outside of any section".
TEST(ReadConfText, ByteOrderMarkBeforeFirstSection) {
  ConfFile f = read_conf_text("test.ini", "\xEF\xBB\xBF[http]\nroot = html\n");
  ASSERT_EQ(f.sections.size(), 1u);
  EXPECT_EQ(f.sections[0].kind, "http");
  EXPECT_EQ(f.sections[0].entries.at(0).value, "html");
}

TEST(ReadConfTextErrors, KeyOutsideSection) {
  std::string err = read_error("; comment\nroot = html\n[http]\n");
  EXPECT_NE(err.find("test.ini:2: "), std::string::npos) << err;
  EXPECT_NE(err.find("\"root\" is outside of any section"), std::string::npos) << err;
}

TEST(ReadConfTextErrors, LineTooLong) {
  std::string text = "[http]\nroot = html\nindex = " + std::string(242, 'x') + "\n";
  ASSERT_EQ(text.find('\n', 19) - 19, 250u);  // the third line is 250 bytes
  std::string err = read_error(text);
  EXPECT_NE(err.find("test.ini:3: "), std::string::npos) << err;
  EXPECT_NE(err.find("too long"), std::string::npos) << err;
}

TEST(ReadConfTextErrors, LongCommentLineIsAnErrorToo) {
  std::string err = read_error("[http]\n; " + std::string(300, 'c') + "\n");
  EXPECT_NE(err.find("test.ini:2: "), std::string::npos) << err;
  EXPECT_NE(err.find("too long"), std::string::npos) << err;
}

TEST(ReadConfTextErrors, LongValueSplitOverContinuationLinesIsAccepted) {
  std::string a(150, 'a'), b(150, 'b');
  ConfFile f = read_conf_text("test.ini", "[http]\nindex = " + a + "\n  " + b + "\n");
  ASSERT_EQ(f.sections.at(0).entries.size(), 1u);
  EXPECT_EQ(f.sections[0].entries[0].value, a + " " + b);
}

TEST(ReadConfTextErrors, SectionHeaderWithoutClosingBracket) {
  std::string err = read_error("[http]\nroot = html\n[server a\n");
  EXPECT_NE(err.find("test.ini:3: "), std::string::npos) << err;
  EXPECT_NE(err.find("]"), std::string::npos) << err;
}

TEST(ReadConfTextErrors, TextAfterSectionHeader) {
  std::string err = read_error("[http] junk\n");
  EXPECT_NE(err.find("test.ini:1: "), std::string::npos) << err;
}

TEST(ReadConfTextErrors, LineWithoutEquals) {
  std::string err = read_error("[http]\nroot = html\n\njust some words\n");
  EXPECT_NE(err.find("test.ini:4: "), std::string::npos) << err;
  EXPECT_NE(err.find("invalid line"), std::string::npos) << err;
}

TEST(ReadConfTextErrors, IndentedLineAfterSectionHeaderContinuesNothing) {
  std::string err = read_error("[http]\n  root = html\n");
  EXPECT_NE(err.find("test.ini:2: "), std::string::npos) << err;
}

TEST(ReadConfTextErrors, NulByte) {
  std::string text("[http]\nroot = ht\0ml\n", 20);
  std::string err = read_error(text);
  EXPECT_NE(err.find("test.ini:2: "), std::string::npos) << err;
}

TEST(ReadConfTextErrors, FirstErrorIsReported) {
  std::string err = read_error("[http]\nbad line\n[server x\n");
  EXPECT_EQ(err.rfind("test.ini:2: ", 0), 0u) << err;
}

TEST(ReadConfFile, MissingFile) {
  std::string err = conf_error([] { read_conf_file("/nonexistent/dir/baton.ini"); });
  EXPECT_NE(err.find("cannot open"), std::string::npos) << err;
  EXPECT_NE(err.find("/nonexistent/dir/baton.ini"), std::string::npos) << err;
}

TEST(ReadConfFile, ReadsFromDisk) {
  char path[] = "/tmp/baton-conf-test-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string text = "[main]\nworker_processes = 3\n";
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  ConfFile f = read_conf_file(path);
  unlink(path);
  EXPECT_EQ(f.path, path);
  ASSERT_EQ(f.sections.size(), 1u);
  EXPECT_EQ(f.sections[0].entries.at(0).value, "3");
  EXPECT_EQ(f.sections[0].entries.at(0).line, 2);
}

TEST(ConfFile, FailAndWhere) {
  ConfFile f;
  f.path = "conf/x.ini";
  EXPECT_EQ(f.where(12), "conf/x.ini:12");
  std::string err = conf_error([&] { f.fail(7, "boom"); });
  EXPECT_EQ(err, "conf/x.ini:7: boom");
}

// ---------------------------------------------------------------------------------------------
// Value parsers

TEST(ParseSize, Units) {
  uint64_t v = 0;
  ASSERT_TRUE(parse_size("512", &v));
  EXPECT_EQ(v, 512u);
  ASSERT_TRUE(parse_size("8k", &v));
  EXPECT_EQ(v, 8192u);
  ASSERT_TRUE(parse_size("8K", &v));
  EXPECT_EQ(v, 8192u);
  ASSERT_TRUE(parse_size("1m", &v));
  EXPECT_EQ(v, 1024u * 1024);
  ASSERT_TRUE(parse_size("1g", &v));
  EXPECT_EQ(v, 1024ull * 1024 * 1024);
  ASSERT_TRUE(parse_size("0", &v));
  EXPECT_EQ(v, 0u);
  ASSERT_TRUE(parse_size(" 2k ", &v));
  EXPECT_EQ(v, 2048u);
}

TEST(ParseSize, Malformed) {
  uint64_t v = 77;
  EXPECT_FALSE(parse_size("", &v));
  EXPECT_FALSE(parse_size("k", &v));
  EXPECT_FALSE(parse_size("1x", &v));
  EXPECT_FALSE(parse_size("-1", &v));
  EXPECT_FALSE(parse_size("1.5m", &v));
  EXPECT_FALSE(parse_size("1 k", &v));
  EXPECT_FALSE(parse_size("1kb", &v));
  EXPECT_FALSE(parse_size("17179869184g", &v));  // 2^64 bytes
  EXPECT_FALSE(parse_size("99999999999999999999", &v));
  EXPECT_EQ(v, 77u);  // untouched on failure
}

TEST(ParseDuration, Units) {
  int64_t v = 0;
  ASSERT_TRUE(parse_duration_ms("500ms", &v));
  EXPECT_EQ(v, 500);
  ASSERT_TRUE(parse_duration_ms("30s", &v));
  EXPECT_EQ(v, 30000);
  ASSERT_TRUE(parse_duration_ms("5m", &v));
  EXPECT_EQ(v, 300000);
  ASSERT_TRUE(parse_duration_ms("1h", &v));
  EXPECT_EQ(v, 3600000);
  ASSERT_TRUE(parse_duration_ms("7d", &v));
  EXPECT_EQ(v, 7 * 86400000LL);
  ASSERT_TRUE(parse_duration_ms("75", &v));  // bare number: seconds
  EXPECT_EQ(v, 75000);
  ASSERT_TRUE(parse_duration_ms("0", &v));
  EXPECT_EQ(v, 0);
  ASSERT_TRUE(parse_duration_ms(" 2s ", &v));
  EXPECT_EQ(v, 2000);
}

TEST(ParseDuration, Malformed) {
  int64_t v = 77;
  EXPECT_FALSE(parse_duration_ms("", &v));
  EXPECT_FALSE(parse_duration_ms("s", &v));
  EXPECT_FALSE(parse_duration_ms("ms", &v));
  EXPECT_FALSE(parse_duration_ms("abc", &v));
  EXPECT_FALSE(parse_duration_ms("-1s", &v));
  EXPECT_FALSE(parse_duration_ms("1.5s", &v));
  EXPECT_FALSE(parse_duration_ms("10x", &v));
  EXPECT_FALSE(parse_duration_ms("1w", &v));
  EXPECT_FALSE(parse_duration_ms("1 s", &v));
  EXPECT_FALSE(parse_duration_ms("9223372036854775807d", &v));  // overflows int64 ms
  EXPECT_EQ(v, 77);
}

TEST(ParseSwitch, OnOff) {
  bool b = false;
  ASSERT_TRUE(parse_switch("on", &b));
  EXPECT_TRUE(b);
  ASSERT_TRUE(parse_switch("off", &b));
  EXPECT_FALSE(b);
  b = true;
  EXPECT_FALSE(parse_switch("", &b));
  EXPECT_FALSE(parse_switch("yes", &b));
  EXPECT_FALSE(parse_switch("1", &b));
  EXPECT_FALSE(parse_switch("onn", &b));
  EXPECT_TRUE(b);
}

// ---------------------------------------------------------------------------------------------
// [main]

MainConf main_conf(std::string_view text) {
  MainConf m;
  parse_main_conf(read_conf_text("main.ini", text), nullptr, &m);
  return m;
}

std::string main_error(std::string_view text) {
  return conf_error([&] { main_conf(text); });
}

TEST(ParseMainConf, Defaults) {
  MainConf m = main_conf("[http]\nroot = html\n");
  EXPECT_EQ(m.worker_processes, 1);
  EXPECT_EQ(m.worker_connections, 1024);
  EXPECT_EQ(m.log_level, LogLevel::kNotice);
  EXPECT_FALSE(m.daemon);
  EXPECT_EQ(m.quit_timeout_ms, 30000);
}

TEST(ParseMainConf, Values) {
  MainConf m = main_conf(
      "[main]\n"
      "worker_processes = 4\n"
      "worker_connections = 10240\n"
      "pid = run/b.pid\n"
      "error_log = stderr\n"
      "log_level = debug\n"
      "quit_timeout = 5s\n"
      "upgrade_timeout = 1m\n"
      "restart_initial_backoff = 500ms\n"
      "restart_max_backoff = 10s\n"
      "restart_max_per_minute = 9\n"
      "user = nobody\n"
      "daemon = on\n"
      "control_socket = run/c.sock\n");
  EXPECT_EQ(m.worker_processes, 4);
  EXPECT_EQ(m.worker_connections, 10240);
  EXPECT_EQ(m.pid, "run/b.pid");
  EXPECT_EQ(m.error_log, "stderr");
  EXPECT_EQ(m.log_level, LogLevel::kDebug);
  EXPECT_EQ(m.quit_timeout_ms, 5000);
  EXPECT_EQ(m.upgrade_timeout_ms, 60000);
  EXPECT_EQ(m.restart_initial_backoff_ms, 500);
  EXPECT_EQ(m.restart_max_backoff_ms, 10000);
  EXPECT_EQ(m.restart_max_per_minute, 9);
  EXPECT_EQ(m.user, "nobody");
  EXPECT_TRUE(m.daemon);
  EXPECT_EQ(m.control_socket, "run/c.sock");
}

TEST(ParseMainConf, WorkerProcessesAuto) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  ASSERT_GT(cpus, 0);
  EXPECT_EQ(main_conf("[main]\nworker_processes = auto\n").worker_processes, static_cast<int>(cpus));
}

TEST(ParseMainConf, BadWorkerProcesses) {
  for (const char* v : {"0", "-1", "two", "", "1025", "auto2"}) {
    std::string err = main_error(std::string("[main]\n\nworker_processes = ") + v + "\n");
    EXPECT_NE(err.find("main.ini:3: "), std::string::npos) << v << ": " << err;
  }
}

TEST(ParseMainConf, UnknownKeyNamesItsLine) {
  std::string err = main_error("[main]\nworker_processes = 2\nworker_proceses = 2\n");
  EXPECT_NE(err.find("main.ini:3: "), std::string::npos) << err;
  EXPECT_NE(err.find("unknown key \"worker_proceses\""), std::string::npos) << err;
}

TEST(ParseMainConf, BadLogLevel) {
  std::string err = main_error("[main]\nlog_level = verbose\n");
  EXPECT_NE(err.find("main.ini:2: "), std::string::npos) << err;
  EXPECT_NE(err.find("verbose"), std::string::npos) << err;
  EXPECT_EQ(main_conf("[main]\nlog_level = warn\n").log_level, LogLevel::kWarn);
  EXPECT_EQ(main_conf("[main]\nlog_level = emerg\n").log_level, LogLevel::kEmerg);
}

TEST(ParseMainConf, BadValues) {
  EXPECT_NE(main_error("[main]\ndaemon = yes\n").find("main.ini:2: "), std::string::npos);
  EXPECT_NE(main_error("[main]\nquit_timeout = soon\n").find("main.ini:2: "), std::string::npos);
  EXPECT_NE(main_error("[main]\npid =\n").find("main.ini:2: "), std::string::npos);
  EXPECT_NE(main_error("[main]\nworker_connections = 0\n").find("main.ini:2: "), std::string::npos);
}

TEST(ParseMainConf, MainTakesNoName) {
  EXPECT_NE(main_error("[main foo]\n").find("main.ini:1: "), std::string::npos);
}

TEST(ParseMainConf, MaxBackoffIsAtLeastInitial) {
  MainConf m = main_conf("[main]\nrestart_initial_backoff = 40s\nrestart_max_backoff = 5s\n");
  EXPECT_EQ(m.restart_initial_backoff_ms, 40000);
  EXPECT_EQ(m.restart_max_backoff_ms, 40000);
}

TEST(ParseMainConf, OverridesApplyAfterTheFile) {
  ConfFile conf = read_conf_text("main.ini", "[main]\nworker_processes = 2\nworker_connections = 50\n");
  ConfFile over = read_conf_text("-g", "[main]\nworker_processes = 3\n");
  MainConf m;
  parse_main_conf(conf, &over, &m);
  EXPECT_EQ(m.worker_processes, 3);
  EXPECT_EQ(m.worker_connections, 50);

  ConfFile bad = read_conf_text("-g", "[main]\nnope = 1\n");
  std::string err = conf_error([&] { parse_main_conf(conf, &bad, &m); });
  EXPECT_EQ(err.rfind("-g:2: ", 0), 0u) << err;
}

TEST(ResolvePath, RelativeAbsoluteAndSpecial) {
  EXPECT_EQ(resolve_path("/usr/local/baton", "logs/error.log"), "/usr/local/baton/logs/error.log");
  EXPECT_EQ(resolve_path("/usr/local/baton/", "logs/error.log"), "/usr/local/baton/logs/error.log");
  EXPECT_EQ(resolve_path("/usr/local/baton", "/var/log/x.log"), "/var/log/x.log");
  EXPECT_EQ(resolve_path("/usr/local/baton", "stderr"), "stderr");
  EXPECT_EQ(resolve_path("/usr/local/baton", ""), "");
  EXPECT_EQ(resolve_path("", "html"), "html");
}

}  // namespace
}  // namespace baton

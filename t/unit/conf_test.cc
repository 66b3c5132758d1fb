// Unit tests of src/core/conf.h: the INI reader (sections, entries, line numbers, indentation,
// continuation lines, comments, errors), the key checks, the value parsers and the [main] settings.
#include "core/conf.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "config.h"

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

// Indentation is insignificant: nginx users indent by habit, and an indented key line that
// silently became part of the value above it served the wrong root.
TEST(ReadConfText, IndentedKeyIsItsOwnKey) {
  ConfFile f = read_conf_text("test.ini",
                              "[server a]\n"
                              "server_name = a.test\n"
                              "    root = /srv/a\n"
                              "\tindex = x.html\n");
  const auto& e = f.sections.at(0).entries;
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].value, "a.test");
  EXPECT_EQ(e[1].key, "root");
  EXPECT_EQ(e[1].value, "/srv/a");
  EXPECT_EQ(e[1].line, 3);
  EXPECT_EQ(e[2].key, "index");
  EXPECT_EQ(e[2].line, 4);
}

TEST(ReadConfText, IndentedSectionHeaderIsAHeader) {
  ConfFile f = read_conf_text("test.ini",
                              "[server a]\n"
                              "root = html\n"
                              "  [location /x]\n"
                              "  index = x.html\n");
  ASSERT_EQ(f.sections.size(), 2u);
  EXPECT_EQ(f.sections[1].kind, "location");
  EXPECT_EQ(f.sections[1].arg, "/x");
  EXPECT_EQ(f.sections[1].line, 3);
  ASSERT_EQ(f.sections[1].entries.size(), 1u);
  EXPECT_EQ(f.sections[1].entries[0].key, "index");
  EXPECT_EQ(f.sections[0].entries.size(), 1u);
}

TEST(ReadConfText, IndentedLineAfterSectionHeaderIsAKey) {
  ConfFile f = read_conf_text("test.ini", "[http]\n  root = html\n");
  ASSERT_EQ(f.sections.at(0).entries.size(), 1u);
  EXPECT_EQ(f.sections[0].entries[0].key, "root");
  EXPECT_EQ(f.sections[0].entries[0].line, 2);
}

TEST(ReadConfText, BackslashContinuesTheValueWithASpace) {
  ConfFile f = read_conf_text("test.ini",
                              "[http]\n"
                              "index = a.html \\\n"
                              "  b.html\\\n"
                              "c.html   \n"
                              "root = html\n");
  const auto& e = f.sections.at(0).entries;
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].value, "a.html b.html c.html");
  EXPECT_EQ(e[0].line, 2);  // the line of the key, not of the last continuation
  EXPECT_EQ(e[1].key, "root");
  EXPECT_EQ(e[1].line, 5);
}

TEST(ReadConfText, ContinuationOfAnEmptyValueAddsNoLeadingSpace) {
  ConfFile f = read_conf_text("test.ini", "[http]\nindex = \\\n  a.html \\\n  b.html\n");
  ASSERT_EQ(f.sections.at(0).entries.size(), 1u);
  EXPECT_EQ(f.sections[0].entries[0].value, "a.html b.html");
}

TEST(ReadConfText, CommentsAroundAContinuation) {
  // An inline comment is cut before the backslash is looked for, on every line of the value;
  // a backslash inside a comment continues nothing.
  ConfFile f = read_conf_text("test.ini",
                              "[http]\n"
                              "index = a.html \\ ; more below\n"
                              "  b.html ; last \\\n"
                              "root = html\n"
                              "; a comment \\\n"
                              "default_type = text/plain\n");
  const auto& e = f.sections.at(0).entries;
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].value, "a.html b.html");
  EXPECT_EQ(e[1].value, "html");
  EXPECT_EQ(e[2].key, "default_type");
}

TEST(ReadConfText, IndentedCommentIsAComment) {
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

// An inline comment on a continuation line is not part of the value: "index = a.html \\\n  b.html ; x"
// must not list the files ";" and "x".
TEST(ReadConfText, InlineCommentOnAContinuationLineIsStripped) {
  ConfFile f = read_conf_text("test.ini", "[http]\nindex = a.html \\\n  b.html ; second\n");
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

TEST(ReadConfTextErrors, LineTooLongSaysHowToContinue) {
  std::string err = read_error("[http]\nindex = " + std::string(250, 'x') + "\n");
  EXPECT_NE(err.find("end the line with \"\\\""), std::string::npos) << err;
  EXPECT_EQ(err.find("indented"), std::string::npos) << err;
}

TEST(ReadConfTextErrors, LongValueSplitOverContinuationLinesIsAccepted) {
  std::string a(150, 'a'), b(150, 'b'), c(150, 'c');
  ConfFile f = read_conf_text("test.ini", "[http]\nindex = " + a + " \\\n  " + b + " \\\n" + c + "\n");
  ASSERT_EQ(f.sections.at(0).entries.size(), 1u);
  EXPECT_EQ(f.sections[0].entries[0].value, a + " " + b + " " + c);
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

TEST(ReadConfTextErrors, ContinuationIntoNothing) {
  // A backslash followed by an empty line, a comment or the end of the file continues nothing:
  // a stray backslash, not a value to guess at.
  for (const char* text : {"[http]\nindex = a.html \\\n\nroot = html\n", "[http]\nindex = a.html \\\n; note\nroot = html\n",
                           "[http]\nindex = a.html \\\n"}) {
    std::string err = read_error(text);
    EXPECT_EQ(err.rfind("test.ini:", 0), 0u) << err;
    EXPECT_NE(err.find("\"index\""), std::string::npos) << err;
    EXPECT_NE(err.find("\\"), std::string::npos) << err;
  }
  EXPECT_EQ(read_error("[http]\nindex = a.html \\\n\nroot = html\n").rfind("test.ini:3: ", 0), 0u);
}

TEST(ReadConfTextErrors, ContinuationThatLooksLikeAKey) {
  // A backslash left at the end of a line would swallow the next key: refused, never guessed.
  std::string err = read_error("[server a]\nserver_name = a.test \\\nroot = /srv/a\n");
  EXPECT_EQ(err.rfind("test.ini:3: ", 0), 0u) << err;
  EXPECT_NE(err.find("\"root\""), std::string::npos) << err;
  EXPECT_NE(err.find("server_name"), std::string::npos) << err;
  // A value that merely contains "=" continues as written.
  ConfFile f = read_conf_text("test.ini", "[location /]\ntry_files = $uri \\\n  =404\n");
  EXPECT_EQ(f.sections.at(0).entries.at(0).value, "$uri =404");
}

TEST(ReadConfTextErrors, ValueEndingInSemicolon) {
  std::string err = read_error("[server a]\n\nroot = /srv/a;\n");
  EXPECT_EQ(err, "test.ini:3: \"root\" value ends with \";\" (baton's configuration needs no \";\" at the end of a line)");
  // The last line of a continued value counts as well, at the key's line.
  err = read_error("[http]\nindex = a.html \\\n  b.html;\n");
  EXPECT_EQ(err.rfind("test.ini:2: \"index\" value ends with \";\"", 0), 0u) << err;
  // A ";" inside a value stays; " ;" starts a comment.
  ConfFile f = read_conf_text("test.ini", "[http]\ndefault_type = text/html;charset=utf-8\nroot = html ;\n");
  EXPECT_EQ(f.sections.at(0).entries.at(0).value, "text/html;charset=utf-8");
  EXPECT_EQ(f.sections.at(0).entries.at(1).value, "html");
}

TEST(ReadConfTextErrors, KeyWithSpacesIsNotAKey) {
  // nginx's "return 301 https://x" has a ":" that INI would take for the separator.
  std::string err = read_error("[location /]\nreturn 301 https://example.com/\n");
  EXPECT_EQ(err.rfind("test.ini:2: ", 0), 0u) << err;
  EXPECT_NE(err.find("invalid line"), std::string::npos) << err;
  EXPECT_NE(read_error("[http]\n = html\n").find("test.ini:2: "), std::string::npos);
}

TEST(ReadConfFileLenient, ReadsWhatItCanAndNeverThrows) {
  ConfFile f = read_conf_text_lenient("test.ini",
                                      "[main]\n"
                                      "pid = run/x.pid\n"
                                      "no_such_key = 1\n"
                                      "[server a\n"
                                      "just words\n"
                                      "[main]\n"
                                      "control_socket = run/c.sock;\n");
  ASSERT_GE(f.sections.size(), 2u);
  EXPECT_EQ(f.sections[0].entries.at(0).value, "run/x.pid");
  EXPECT_EQ(f.sections.back().entries.at(0).key, "control_socket");
  EXPECT_TRUE(read_conf_file_lenient("/nonexistent/dir/baton.ini").sections.empty());
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

TEST(ParseMainConf, ErrorLogWithALevelIsRefused) {
  // nginx's habit would otherwise name a file "error.log info".
  std::string err = main_error("[main]\nerror_log = logs/error.log info\n");
  EXPECT_NE(err.find("main.ini:2: "), std::string::npos) << err;
  EXPECT_NE(err.find("log_level = info"), std::string::npos) << err;
  EXPECT_EQ(main_conf("[main]\nerror_log = logs/my errors.log\n").error_log, "logs/my errors.log");
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

// Values that make no sense are errors at their line, never silently adjusted.
TEST(ParseMainConf, MaxBackoffBelowInitialIsAnError) {
  std::string err = main_error("[main]\nrestart_initial_backoff = 40s\nrestart_max_backoff = 5s\n");
  EXPECT_EQ(err.rfind("main.ini:3: ", 0), 0u) << err;
  EXPECT_NE(err.find("restart_max_backoff"), std::string::npos) << err;
  EXPECT_NE(err.find("restart_initial_backoff"), std::string::npos) << err;
  // Against a default: the line of the key that was set.
  err = main_error("[main]\nrestart_initial_backoff = 40s\n");
  EXPECT_EQ(err.rfind("main.ini:2: ", 0), 0u) << err;
  err = main_error("[main]\n\nrestart_max_backoff = 500ms\n");
  EXPECT_EQ(err.rfind("main.ini:3: ", 0), 0u) << err;
  // Equal is fine, and so is a restart at once.
  EXPECT_EQ(main_conf("[main]\nrestart_initial_backoff = 2s\nrestart_max_backoff = 2s\n").restart_max_backoff_ms, 2000);
  EXPECT_EQ(main_conf("[main]\nrestart_initial_backoff = 0\nrestart_max_backoff = 0\n").restart_max_backoff_ms, 0);
}

TEST(ParseMainConf, ZeroTimeoutsThatMeanNothing) {
  std::string err = main_error("[main]\nupgrade_timeout = 0\n");
  EXPECT_EQ(err.rfind("main.ini:2: ", 0), 0u) << err;
  EXPECT_NE(err.find("upgrade_timeout"), std::string::npos) << err;
  err = main_error("[main]\nquit_timeout = 0s\n");
  EXPECT_EQ(err.rfind("main.ini:2: ", 0), 0u) << err;
  EXPECT_NE(err.find("quit_timeout"), std::string::npos) << err;
}

TEST(ParseMainConf, ControlSocketLongerThanSunPath) {
  // sun_path holds 108 bytes with the terminating NUL.
  std::string ok = "/" + std::string(106, 's');
  EXPECT_EQ(main_conf("[main]\ncontrol_socket = " + ok + "\n").control_socket, ok);
  std::string err = main_error("[main]\ncontrol_socket = " + ok + "s\n");
  EXPECT_EQ(err.rfind("main.ini:2: ", 0), 0u) << err;
  EXPECT_NE(err.find("too long"), std::string::npos) << err;
  // A relative path counts with the prefix it is resolved against.
  MainConf m;
  ConfFile conf = read_conf_text("main.ini", "[main]\ncontrol_socket = " + std::string(60, 's') + "\n");
  err = conf_error([&] { parse_main_conf(conf, nullptr, &m, "/" + std::string(60, 'p')); });
  EXPECT_EQ(err.rfind("main.ini:2: ", 0), 0u) << err;
  // The default path under a long prefix: no line to name, but still refused before the start.
  err = conf_error([&] { parse_main_conf(read_conf_text("main.ini", "[main]\n"), nullptr, &m, "/" + std::string(100, 'p')); });
  EXPECT_NE(err.find("control_socket"), std::string::npos) << err;
  // "abstract" has no path.
  EXPECT_NO_THROW(parse_main_conf(read_conf_text("main.ini", "[main]\ncontrol_socket = abstract\n"), nullptr, &m,
                                  "/" + std::string(200, 'p')));
}

TEST(ParseMainConf, DuplicateKey) {
  std::string err = main_error("[main]\nworker_processes = 2\nlog_level = info\nworker_processes = 4\n");
  EXPECT_EQ(err, "main.ini:4: \"worker_processes\" is duplicate (first at line 2)");
  err = main_error("[main]\nworker_processes = 2\n[main]\nlog_level = info\n");
  EXPECT_EQ(err.rfind("main.ini:3: ", 0), 0u) << err;
  EXPECT_NE(err.find("duplicate [main]"), std::string::npos) << err;
}

TEST(ParseMainConf, KeysOfOtherSectionsSayWhereTheyBelong) {
  EXPECT_EQ(main_error("[main]\nroot = html\n"), "main.ini:2: \"root\" belongs in [http], [server] or [location]");
  EXPECT_EQ(main_error("[main]\nlisten = 80\n"), "main.ini:2: \"listen\" belongs in [server]");
  EXPECT_EQ(main_error("[main]\ntypes = conf/mime.types\n"), "main.ini:2: \"types\" belongs in [http]");
}

TEST(ParseMainConf, UnsupportedNginxDirectivesSaySo) {
  EXPECT_EQ(main_error("[main]\nworker_rlimit_nofile = 65535\n"),
            "main.ini:2: \"worker_rlimit_nofile\" is not supported yet");
  // An nginx directive that baton has under another name points to it.
  std::string err = main_error("[main]\nworker_shutdown_timeout = 10s\n");
  EXPECT_NE(err.find("quit_timeout"), std::string::npos) << err;
}

TEST(ParseMainConf, TypoGetsASuggestion) {
  EXPECT_EQ(main_error("[main]\nworker_proceses = 2\n"),
            "main.ini:2: unknown key \"worker_proceses\" in [main]; did you mean \"worker_processes\"?");
  EXPECT_EQ(main_error("[main]\nlog_levle = info\n"),
            "main.ini:2: unknown key \"log_levle\" in [main]; did you mean \"log_level\"?");
  // Nothing close: no guess.
  EXPECT_EQ(main_error("[main]\nflux_capacitor = on\n"), "main.ini:2: unknown key \"flux_capacitor\" in [main]");
  // Close to a key of another section: named with its section.
  EXPECT_EQ(main_error("[main]\nkeepalive_timout = 5s\n"),
            "main.ini:2: unknown key \"keepalive_timout\" in [main]; did you mean \"keepalive_timeout\" (in [http], "
            "[server], [location] or [upstream])?");
}

TEST(ParseMainConf, DefaultPidPathIsTheConfiguredOne) {
  // configure --pid-path: the pid file the server writes and the one "-s" reads.
  EXPECT_EQ(MainConf().pid, BATON_PID_PATH);
  EXPECT_EQ(main_conf("[main]\nworker_processes = 1\n").pid, BATON_PID_PATH);
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

// The configuration files a candidate of an upgrade hands to the master, across exec.
TEST(ConfSnapshot, RoundTripsFilesWithAnyBytes) {
  std::vector<ConfSource> files = {{"/etc/baton/baton.ini", "[main]\nworker_processes = 2\n"},
                                   {"/etc/baton/mime types", std::string("a\0b\n12 34\n", 10)},
                                   {"/empty", ""}};
  std::string bytes = encode_conf_snapshot(files);
  std::vector<ConfSource> back;
  ASSERT_TRUE(decode_conf_snapshot(bytes, &back));
  ASSERT_EQ(back.size(), files.size());
  for (size_t i = 0; i < files.size(); i++) {
    EXPECT_EQ(back[i].path, files[i].path);
    EXPECT_EQ(back[i].text, files[i].text);
  }
}

TEST(ConfSnapshot, RefusesWhatIsNotOne) {
  std::vector<ConfSource> out;
  std::string good = encode_conf_snapshot({{"/a", "text"}});
  EXPECT_FALSE(decode_conf_snapshot("", &out));
  EXPECT_FALSE(decode_conf_snapshot("baton-conf-snapshot 2\n", &out));
  EXPECT_FALSE(decode_conf_snapshot(good.substr(0, good.size() - 1), &out)) << "cut short";
  EXPECT_FALSE(decode_conf_snapshot(good + "x", &out)) << "trailing bytes";
  EXPECT_FALSE(decode_conf_snapshot("baton-conf-snapshot 1\n99999999999999999999 1\n/a", &out));
  EXPECT_FALSE(decode_conf_snapshot("baton-conf-snapshot 1\n0 4\ntext", &out)) << "a file without a path";
  EXPECT_TRUE(decode_conf_snapshot("baton-conf-snapshot 1\n", &out));
  EXPECT_TRUE(out.empty());
}

// While a snapshot is set, a file it holds is read from it, not from the disk.
TEST(ConfSnapshot, ReadConfFileTakesTheSnapshotsText) {
  char dir[] = "/tmp/baton-snapshot-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/baton.ini";
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("[main]\nworker_processes = 9\n", f);
  fclose(f);
  set_conf_snapshot({{path, "[main]\nworker_processes = 3\n"}});
  ConfFile from_snapshot = read_conf_file(path);
  clear_conf_snapshot();
  ConfFile from_disk = read_conf_file(path);
  ::unlink(path.c_str());
  ::rmdir(dir);
  ASSERT_EQ(from_snapshot.sections.size(), 1u);
  ASSERT_EQ(from_snapshot.sections[0].entries.size(), 1u);
  EXPECT_EQ(from_snapshot.sections[0].entries[0].value, "3");
  ASSERT_EQ(from_disk.sections.size(), 1u);
  EXPECT_EQ(from_disk.sections[0].entries[0].value, "9");
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

// Files that exist only in a snapshot: what a live upgrade's master reads.
struct SnapshotFiles {
  explicit SnapshotFiles(std::vector<ConfSource> files) { set_conf_snapshot(std::move(files)); }
  ~SnapshotFiles() { clear_conf_snapshot(); }
};

std::string error_of(const std::string& path) {
  try {
    read_conf_file(path);
  } catch (const ConfError& e) {
    return e.what();
  }
  return "";
}

TEST(Include, AGlobIsMatchedAgainstTheSnapshotOnceForEachFile) {
  // The snippet was included at two places when the snapshot was made: it is in it twice.
  SnapshotFiles snap({{"/nowhere/conf/baton.ini", "[http]\ninclude = conf.d/*.ini\n"},
                      {"/nowhere/conf/conf.d/b.ini", "[server b]\nlisten = 8081\n"},
                      {"/nowhere/conf/conf.d/a.ini", "[server a]\nlisten = 8080\n"},
                      {"/nowhere/conf/conf.d/a.ini", "[server a]\nlisten = 8080\n"},
                      {"/nowhere/conf/other/c.ini", "[server c]\n"}});
  ConfFile f = read_conf_file("/nowhere/conf/baton.ini");
  ASSERT_EQ(f.sections.size(), 3u);
  EXPECT_EQ(f.sections[1].arg, "a");
  EXPECT_EQ(f.sections[2].arg, "b");
  ASSERT_EQ(f.included.size(), 2u);
  EXPECT_EQ(f.where(f.sections[2].entries[0].line), "/nowhere/conf/conf.d/b.ini:2");
}

TEST(Include, ErrorsOfTheReaderNameTheIncludedFileAndLine) {
  SnapshotFiles snap({{"/nowhere/baton.ini", "[http]\n; one\n; two\ninclude = x.ini\nroot = html\n"},
                      {"/nowhere/x.ini", "root = a\njust some words\n"}});
  EXPECT_EQ(error_of("/nowhere/baton.ini"),
            "/nowhere/x.ini:2: invalid line (expected \"key = value\", \"[section]\" or a comment)");
}

TEST(Include, MalformedIncludeLines) {
  SnapshotFiles snap({{"/nowhere/a.ini", "[http]\ninclude = x.ini;\n"},
                      {"/nowhere/b.ini", "[http]\ninclude: x.ini\n"},
                      {"/nowhere/c.ini", "[http]\ninclude = x.ini y.ini\n"},
                      {"/nowhere/d.ini", "[http]\ninclude = \"x.ini\"\n"},
                      {"/nowhere/x.ini", "root = a\n"}});
  EXPECT_NE(error_of("/nowhere/a.ini").find("a.ini:2: \"include\" value ends with \";\""), std::string::npos)
      << error_of("/nowhere/a.ini");
  EXPECT_NE(error_of("/nowhere/b.ini").find("b.ini:2: write \"include = PATH\""), std::string::npos)
      << error_of("/nowhere/b.ini");
  EXPECT_NE(error_of("/nowhere/c.ini").find("c.ini:2: \"include\" takes one file or glob"), std::string::npos)
      << error_of("/nowhere/c.ini");
  EXPECT_EQ(error_of("/nowhere/d.ini"), "");
}

}  // namespace
}  // namespace baton

// `include = PATH-OR-GLOB`: the lines of the files it names are read in its place, a glob in sorted
// order, a relative path from the main file's directory; errors name the included file and line; an
// include loop is an error; -T shows every file; a reload reads them again.
#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

// The main file: [main] and [http] as the tests' usual configuration, then an include.
std::string main_with(const std::string& include_line) { return make_config(include_line + "\n", "", 1); }

// (Files other than baton.ini get no @PORT@ filled in: the port is written out.)
std::string server(BatonServer& s, const std::string& name, const std::string& body) {
  return "[server " + name + "]\nlisten = 127.0.0.1:" + std::to_string(s.port()) + "\nserver_name = " + name + ".test\nroot = html\n" +
         "[location = /who]\nreturn = 200 " + body + "\n";
}

// What /who answers for a request to `host`.
std::string who(int port, const std::string& host) {
  Client c(port);
  return c.exchange("GET /who HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n").body;
}

}  // namespace

TEST(Include, AGlobReadsItsFilesInSortedOrder) {
  BatonServer s;
  // "10-b" sorts before "2-a": its server is the first for the address, so the default one.
  s.write_file("conf/conf.d/2-a.ini", server(s, "a", "from a"));
  s.write_file("conf/conf.d/10-b.ini", server(s, "b", "from b"));
  s.write_file("conf/conf.d/notes.txt", "[server c]\nthis is not configuration\n");
  s.set_config(main_with("include = conf.d/*.ini"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(who(s.port(), "a.test"), "from a");
  EXPECT_EQ(who(s.port(), "b.test"), "from b");
  EXPECT_EQ(who(s.port(), "other.test"), "from b") << "the first file read is not 10-b.ini";
}

TEST(Include, KeysOfAnIncludedFileGoWhereTheIncludeStands) {
  BatonServer s;
  s.write_file("conf/snippets/answer.ini", "; shared by the locations that answer\nreturn = 200 snippet\n");
  s.set_config(make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n[location = /a]\n"
                           "include = snippets/answer.ini\n[location = /b]\ninclude = " +
                               s.path("conf/snippets/answer.ini") + "\n",
                           "", 1));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a").body, "snippet");
  EXPECT_EQ(get(s.port(), "/b").body, "snippet");
}

TEST(Include, AnErrorInAnIncludedFileNamesThatFileAndLine) {
  BatonServer s;
  s.write_file("conf/conf.d/a.ini", server(s, "a", "x"));
  s.write_file("conf/conf.d/b.ini", "[server b]\nlisten = 127.0.0.1:" + std::to_string(s.port()) + "\n\nkeepalive_timout = 5s\n");
  s.set_config(main_with("include = conf.d/*.ini"));
  RunResult r = s.test_config();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, s.path("conf/conf.d/b.ini") + ":4: unknown key \"keepalive_timout\"")) << r.err;
  EXPECT_TRUE(contains(r.err, "did you mean \"keepalive_timeout\"")) << r.err;
}

TEST(Include, AMissingFileIsAnErrorAndAGlobThatMatchesNothingIsNot) {
  BatonServer s;
  s.write_file("conf/conf.d/a.ini", server(s, "a", "x"));
  s.set_config(main_with("include = conf.d/missing.ini"));
  RunResult r = s.test_config();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, s.config_path() + ":11: cannot open included file \"" +
                                  s.path("conf/conf.d/missing.ini") + "\"")) << r.err;
  s.set_config(main_with("include = conf.d/*.ini\ninclude = empty.d/*.ini"));
  r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Include, AnIncludeLoopIsAnError) {
  BatonServer s;
  s.write_file("conf/a.ini", server(s, "a", "x") + "include = b.ini\n");
  s.write_file("conf/b.ini", "include = a.ini\n");
  s.set_config(main_with("include = a.ini"));
  RunResult r = s.test_config();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, s.path("conf/b.ini") + ":1: include loop")) << r.err;
  // A file that includes itself.
  s.write_file("conf/a.ini", "include = a.ini\n");
  r = s.test_config();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, s.path("conf/a.ini") + ":1: include loop")) << r.err;
}

TEST(Include, DashCapitalTShowsTheIncludedFiles) {
  BatonServer s;
  s.write_file("conf/conf.d/a.ini", server(s, "a", "x"));
  s.set_config(main_with("include = conf.d/*.ini"));
  RunResult r = s.test_config({"-T"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "# configuration file " + s.path("conf/conf.d/a.ini") + ":\n[server a]\n")) << r.out;
}

TEST(Include, AReloadReadsTheIncludedFilesAgain) {
  BatonServer s;
  s.write_file("conf/conf.d/a.ini", server(s, "a", "first"));
  s.set_config(make_runtime_config("include = conf.d/*.ini\n", "", 1));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/who").body, "first");
  s.write_file("conf/conf.d/a.ini", server(s, "a", "second"));
  RunResult r = s.ctl("reload");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(wait_for([&] { return get(s.port(), "/who").body == "second"; }, 5000ms));
  // A broken included file is refused by the reload, and the server keeps its configuration.
  s.write_file("conf/conf.d/a.ini", server(s, "a", "third") + "bogus = 1\n");
  r = s.ctl("reload");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out + r.err, s.path("conf/conf.d/a.ini") + ":7:")) << describe(r);
  EXPECT_EQ(get(s.port(), "/who").body, "second");
}

TEST(Include, ALiveUpgradeLoadsTheIncludedFiles) {
  BatonServer s;
  s.write_file("conf/conf.d/a.ini", server(s, "a", "included"));
  s.set_config(make_runtime_config("include = conf.d/*.ini\n", "", 1));
  ASSERT_TRUE(s.start());
  RunResult r = s.ctl("upgrade");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(get(s.port(), "/who").body, "included");
}

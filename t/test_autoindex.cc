// autoindex: a directory without an index file listed as nginx lists it (HTML or JSON), names
// escaped for HTML and for the link, hidden files left out, and a symbolic link listed only when a
// request for it would be served.
#include <string>

#include "harness.h"

using namespace baton_test;

namespace {

std::string site(const std::string& extra) {
  return make_config("[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\n" + extra, "", 1);
}

}  // namespace

TEST(Autoindex, ListsDirectoriesFirstWithNamesEscaped) {
  BatonServer s;
  s.write_file("html/d/b.txt", "bb");
  s.write_file("html/d/a.txt", std::string(2048, 'a'));
  s.write_file("html/d/c.txt", std::string(20000, 'c'));
  s.write_file("html/d/<img src=x onerror=alert(1)>.txt", "x");
  s.write_file("html/d/q\"&'.txt", "x");
  s.write_file("html/d/.hidden", "secret");
  s.write_file("html/d/sub/z.txt", "z");
  s.write_file("html/d/" + std::string(60, 'n') + ".txt", "long");
  s.write_file("html/withindex/index.html", "the index\n");
  s.write_file("html/closed/f.txt", "f");
  s.set_config(site("autoindex = on\n[location /closed/]\nautoindex = off\n"
                    "[location /rounded/]\nalias = html/d/\nautoindex_exact_size = off\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/d/");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Type"), "text/html");
  const std::string& b = r.body;
  EXPECT_TRUE(contains(b, "<title>Index of /d/</title>")) << b;
  EXPECT_TRUE(contains(b, "<a href=\"../\">../</a>")) << b;
  // Directories first, then the files by name.
  size_t sub = b.find("href=\"sub/\""), a = b.find("href=\"a.txt\""), bt = b.find("href=\"b.txt\"");
  ASSERT_NE(sub, std::string::npos) << b;
  ASSERT_NE(a, std::string::npos) << b;
  ASSERT_NE(bt, std::string::npos) << b;
  EXPECT_LT(sub, a);
  EXPECT_LT(a, bt);
  // A name is never markup, and its link is one path segment.
  EXPECT_FALSE(contains(b, "<img")) << b;
  EXPECT_TRUE(contains(b, "href=\"%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt\">&lt;img src=x onerror=alert(1)&gt;.txt</a>"))
      << b;
  EXPECT_TRUE(contains(b, "href=\"q%22%26%27.txt\">q&quot;&amp;&#39;.txt</a>")) << b;
  EXPECT_FALSE(contains(b, "hidden")) << b;
  // nginx's columns: the name cut at 50 characters, the date, the size in bytes.
  EXPECT_TRUE(contains(b, std::string(47, 'n') + "..&gt;</a> ")) << b;
  EXPECT_TRUE(matches_pattern(b, "%*b.txt</a>" + std::string(46, ' ') + "%d%d-%a%a%a-%d%d%d%d %d%d:%d%d" +
                                     std::string(19, ' ') + "2\r\n%*"))
      << b;
  // The listed links work.
  EXPECT_EQ(get(s.port(), "/d/q%22%26%27.txt").body, "x");
  // Sizes rounded when asked, in nginx's 7 columns: bytes up to 9,999, then K to the nearest.
  r = get(s.port(), "/rounded/");
  EXPECT_TRUE(contains(r.body, "    20K\r\n")) << r.body;
  EXPECT_TRUE(contains(r.body, "   2048\r\n")) << r.body;
  EXPECT_TRUE(contains(r.body, "      -\r\n")) << r.body;
  // An index file wins; without autoindex a directory is a 403; HEAD has no body.
  EXPECT_EQ(get(s.port(), "/withindex/").body, "the index\n");
  EXPECT_EQ(get(s.port(), "/closed/").status, 403);
  r = head(s.port(), "/d/");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body.empty());
  // Without its slash, a directory is redirected first.
  r = get(s.port(), "/d");
  EXPECT_EQ(r.status, 301);
  EXPECT_EQ(r.header("Location"), "/d/");
}

TEST(Autoindex, JsonFormat) {
  BatonServer s;
  s.write_file("html/j/file \"1\".txt", "12345");
  s.write_file("html/j/dir/x", "x");
  s.write_file("html/u/caf\xC3\xA9.txt", "x");
  s.set_config(site("autoindex = on\nautoindex_format = json\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/j/");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  EXPECT_TRUE(matches_pattern(r.body, "[\n"
                                      "{ \"name\":\"dir\", \"type\":\"directory\", \"mtime\":\"%a%a%a, %* GMT\" },\n"
                                      "{ \"name\":\"file \\\"1\\\".txt\", \"type\":\"file\", \"mtime\":\"%* GMT\", \"size\":5 }\n"
                                      "]\n"))
      << r.body;
  // A UTF-8 name reads as it was written.
  r = get(s.port(), "/u/");
  EXPECT_TRUE(contains(r.body, "\"name\":\"caf\xC3\xA9.txt\"")) << r.body;
}

TEST(Autoindex, ASymbolicLinkIsListedOnlyWhenItWouldBeServed) {
  BatonServer s;
  s.write_file("html/l/real.txt", "real");
  s.make_symlink("real.txt", "html/l/inside.txt");
  s.make_symlink("/etc/passwd", "html/l/outside.txt");
  s.make_symlink("/etc", "html/l/outdir");
  s.set_config(site("autoindex = on\n[location /l/]\n[location /nolinks/]\nalias = html/l/\ndisable_symlinks = on\n"
                    "[location /anylink/]\nalias = html/l/\ndisable_symlinks = off\n"));
  ASSERT_TRUE(s.start());
  // The default, outside_root: a link that stays under the root is listed, one that leaves is not.
  Response r = get(s.port(), "/l/");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_TRUE(contains(r.body, "href=\"inside.txt\"")) << r.body;
  EXPECT_FALSE(contains(r.body, "outside")) << r.body;
  EXPECT_FALSE(contains(r.body, "outdir")) << r.body;
  EXPECT_EQ(get(s.port(), "/l/outside.txt").status, 403);
  // on: no link at all.
  r = get(s.port(), "/nolinks/");
  EXPECT_TRUE(contains(r.body, "href=\"real.txt\"")) << r.body;
  EXPECT_FALSE(contains(r.body, "inside.txt")) << r.body;
  // off: every link, as what it points to.
  r = get(s.port(), "/anylink/");
  EXPECT_TRUE(contains(r.body, "href=\"outside.txt\"")) << r.body;
  EXPECT_TRUE(contains(r.body, "href=\"outdir/\"")) << r.body;
}

TEST(Autoindex, ConfigValuesAreChecked) {
  BatonServer s;
  s.set_config(site("autoindex = yes please\n"));
  RunResult r = s.test_config();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "baton.ini:" + std::to_string(line_of(s.config_text(), "autoindex =")) + ":")) << r.err;
  s.set_config(site("autoindex_format = xml\n"));
  r = s.test_config();
  EXPECT_TRUE(contains(r.err, "format (html or json)")) << r.err;
}

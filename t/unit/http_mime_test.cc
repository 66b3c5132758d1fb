// Unit tests of src/http/http_mime.h: loading the INI-form mime.types and looking paths up.
#include "http/http_mime.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace baton::http {
namespace {

MimeTypes load(std::string_view text) {
  MimeTypes t;
  t.load(read_conf_text("mime.types", text));
  return t;
}

std::string type_of(const MimeTypes& t, std::string_view path) {
  const std::string* type = t.lookup(path);
  return type ? *type : "(none)";
}

std::string load_error(std::string_view text) {
  try {
    load(text);
  } catch (const ConfError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfError for:\n" << text;
  return "";
}

const char kTypes[] =
    "; comment\n"
    "[types]\n"
    "text/html = html htm\n"
    "text/css = css\n"
    "image/png = png\n"
    "application/javascript = js mjs\n"
    "text/plain = txt \\\n"
    "  text log\n";  // continuation line: more extensions

TEST(MimeTypes, LoadsEveryExtension) {
  MimeTypes t = load(kTypes);
  EXPECT_EQ(t.size(), 9u);
  EXPECT_EQ(type_of(t, "/index.html"), "text/html");
  EXPECT_EQ(type_of(t, "/a/b/page.htm"), "text/html");
  EXPECT_EQ(type_of(t, "/style.css"), "text/css");
  EXPECT_EQ(type_of(t, "/app.mjs"), "application/javascript");
  EXPECT_EQ(type_of(t, "/x.log"), "text/plain");
  EXPECT_EQ(type_of(t, "/x.text"), "text/plain");
}

TEST(MimeTypes, LookupIsCaseInsensitive) {
  MimeTypes t = load(kTypes);
  EXPECT_EQ(type_of(t, "/INDEX.HTML"), "text/html");
  EXPECT_EQ(type_of(t, "/a/Image.PnG"), "image/png");
}

TEST(MimeTypes, ExtensionsInTheFileAreCaseInsensitive) {
  MimeTypes t = load("[types]\nimage/jpeg = JPG Jpeg\n");
  EXPECT_EQ(type_of(t, "/a.jpg"), "image/jpeg");
  EXPECT_EQ(type_of(t, "/a.JPEG"), "image/jpeg");
}

TEST(MimeTypes, OnlyTheLastExtensionCounts) {
  MimeTypes t = load(kTypes);
  EXPECT_EQ(type_of(t, "/archive.css.png"), "image/png");
  EXPECT_EQ(type_of(t, "/page.html.gz"), "(none)");
}

TEST(MimeTypes, NoExtension) {
  MimeTypes t = load(kTypes);
  EXPECT_EQ(type_of(t, "/README"), "(none)");
  EXPECT_EQ(type_of(t, "/"), "(none)");
  EXPECT_EQ(type_of(t, ""), "(none)");
  EXPECT_EQ(type_of(t, "/file."), "(none)");
  EXPECT_EQ(type_of(t, "/x.unknown"), "(none)");
  EXPECT_EQ(type_of(t, "/x.htmlhtmlhtmlhtmlhtml"), "(none)");  // longer than any extension
}

TEST(MimeTypes, DotInADirectoryNameIsNotAnExtension) {
  MimeTypes t = load(kTypes);
  EXPECT_EQ(type_of(t, "/a.b/c"), "(none)");
  EXPECT_EQ(type_of(t, "/dir.html/file"), "(none)");
  EXPECT_EQ(type_of(t, "/dir.html/"), "(none)");
  EXPECT_EQ(type_of(t, "/dir.png/file.css"), "text/css");
}

TEST(MimeTypes, PathWithoutSlash) {
  MimeTypes t = load(kTypes);
  EXPECT_EQ(type_of(t, "index.html"), "text/html");
}

// conf/mime.types documents that an extension listed twice takes the type of its last line.
TEST(MimeTypes, ExtensionListedTwiceTakesTheLastType) {
  MimeTypes t = load("[types]\ntext/plain = txt\ntext/x-other = txt\n");
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(type_of(t, "/a.txt"), "text/x-other");
}

TEST(MimeTypes, AddThenLookup) {
  MimeTypes t;
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(type_of(t, "/a.html"), "(none)");
  t.add("HTML", "text/html");
  EXPECT_EQ(type_of(t, "/a.html"), "text/html");
  t.add("html", "application/xhtml+xml");
  EXPECT_EQ(type_of(t, "/a.html"), "application/xhtml+xml");
  EXPECT_EQ(t.size(), 1u);
}

TEST(MimeTypes, EmptyTypesFile) {
  EXPECT_EQ(load("").size(), 0u);
  EXPECT_EQ(load("[types]\n").size(), 0u);
}

TEST(MimeTypesErrors, WrongSection) {
  std::string err = load_error("[types]\ntext/html = html\n[mime]\ntext/css = css\n");
  EXPECT_EQ(err.rfind("mime.types:3: ", 0), 0u) << err;
  EXPECT_NE(err.find("[mime]"), std::string::npos) << err;
}

TEST(MimeTypesErrors, KeyIsNotAMimeType) {
  std::string err = load_error("[types]\ntext/html = html\nhtml = text/html\n");
  EXPECT_EQ(err.rfind("mime.types:3: ", 0), 0u) << err;
  EXPECT_NE(err.find("invalid MIME type"), std::string::npos) << err;
}

TEST(MimeTypesErrors, TypeWithoutExtensions) {
  std::string err = load_error("[types]\n\ntext/html =\n");
  EXPECT_EQ(err.rfind("mime.types:3: ", 0), 0u) << err;
}

TEST(MimeTypesErrors, MalformedLine) {
  std::string err = load_error("[types]\ntext/html html\n");
  EXPECT_EQ(err.rfind("mime.types:2: ", 0), 0u) << err;
}

TEST(MimeTypes, ShippedFileLoads) {
  // The mime.types the project installs must load and know the common types. It is found next to
  // this source file (the tests are built and run from the top of the source tree).
  std::string path = __FILE__;
  path = path.substr(0, path.rfind("t/unit/")) + "conf/mime.types";
  if (access(path.c_str(), R_OK) != 0) GTEST_SKIP() << "no " << path << " from here";
  MimeTypes t;
  try {
    t.load(read_conf_file(path));
  } catch (const ConfError& e) {
    FAIL() << e.what();
  }
  EXPECT_EQ(type_of(t, "/index.html"), "text/html");
  EXPECT_EQ(type_of(t, "/a.css"), "text/css");
  EXPECT_EQ(type_of(t, "/a.txt"), "text/plain");
  EXPECT_EQ(type_of(t, "/a.png"), "image/png");
}

}  // namespace
}  // namespace baton::http

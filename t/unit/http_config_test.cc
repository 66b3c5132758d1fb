// Unit tests of src/http/http_config.h: [http]/[server]/[location] into routing objects, inheritance,
// location and virtual server selection, listen addresses, and errors that name file:line.
#include "http/http_config.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "http/http_mime.h"

namespace baton::http {
namespace {

class HttpConfTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/baton-http-conf-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    prefix_ = tmpl;
    ASSERT_EQ(mkdir((prefix_ + "/html").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((prefix_ + "/static").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((prefix_ + "/conf").c_str(), 0755), 0);
    std::ofstream(prefix_ + "/html/file.txt") << "not a directory\n";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(prefix_, ec);
  }

  std::unique_ptr<HttpConf> parse(std::string_view text) {
    conf_ = read_conf_text("t.ini", text);
    return parse_http_conf(conf_, prefix_);
  }

  // The ConfError text for text, which must not parse.
  std::string error(std::string_view text) {
    try {
      parse(text);
    } catch (const ConfError& e) {
      return e.what();
    }
    ADD_FAILURE() << "accepted:\n" << text;
    return "";
  }

  // Expects an error at line that mentions what.
  void expect_error(std::string_view text, int line, std::string_view what) {
    std::string err = error(text);
    std::string where = "t.ini:" + std::to_string(line) + ": ";
    EXPECT_EQ(err.rfind(where, 0), 0u) << "want " << where << "..., got: " << err;
    EXPECT_NE(err.find(what), std::string::npos) << "want \"" << what << "\" in: " << err;
  }

  std::string prefix_;
  ConfFile conf_;
};

const Location* loc(const Server& s, std::string_view path) {
  const Location* l = s.find_location(path);
  EXPECT_NE(l, nullptr) << path;
  return l;
}

// ---------------------------------------------------------------------------------------------
// Defaults and inheritance

TEST_F(HttpConfTest, DefaultsWithoutHttpSection) {
  auto http = parse("[server a]\n");
  EXPECT_EQ(http->prefix, prefix_);
  EXPECT_EQ(http->base.root, prefix_ + "/html");
  ASSERT_EQ(http->servers.size(), 1u);
  const Server& s = *http->servers[0];
  EXPECT_EQ(s.name, "a");
  EXPECT_EQ(s.line, 1);
  EXPECT_EQ(s.s.root, prefix_ + "/html");
  EXPECT_EQ(s.s.index, std::vector<std::string>{"index.html"});
  EXPECT_EQ(s.s.keepalive_timeout_ms, 75000);
  EXPECT_EQ(s.s.client_max_body_size, 1024u * 1024);
  EXPECT_EQ(s.s.disable_symlinks, Symlinks::kOutsideRoot);
  EXPECT_TRUE(s.s.access_logs.empty());
  // No listen: 0.0.0.0:80.
  ASSERT_EQ(http->listens.size(), 1u);
  EXPECT_EQ(http->listens[0]->addr.to_string(), "0.0.0.0:80");
  EXPECT_EQ(http->listens[0]->default_server, &s);
  // Built-in types when no types file is named.
  ASSERT_NE(http->types, nullptr);
  ASSERT_NE(http->types->lookup("/a.html"), nullptr);
  EXPECT_EQ(*http->types->lookup("/a.html"), "text/html");
}

TEST_F(HttpConfTest, NoServersIsFine) {
  auto http = parse("[http]\nkeepalive_timeout = 5s\n");
  EXPECT_TRUE(http->servers.empty());
  EXPECT_TRUE(http->listens.empty());
  EXPECT_EQ(http->base.keepalive_timeout_ms, 5000);
}

TEST_F(HttpConfTest, InheritanceHttpServerLocation) {
  auto http = parse(
      "[http]\n"
      "keepalive_timeout = 10s\n"
      "index = a.html b.html\n"
      "client_max_body_size = 2m\n"
      "default_type = text/plain\n"
      "[server one]\n"
      "listen = 127.0.0.1:8080\n"
      "keepalive_timeout = 20s\n"
      "root = static\n"
      "[location /inherits/]\n"
      "[location /overrides/]\n"
      "keepalive_timeout = 30s\n"
      "index = c.html\n"
      "root = html\n"
      "expires = 1h\n"
      "[server two]\n"
      "listen = 127.0.0.1:8081\n");
  EXPECT_EQ(http->base.keepalive_timeout_ms, 10000);
  ASSERT_EQ(http->servers.size(), 2u);
  const Server& one = *http->servers[0];
  const Server& two = *http->servers[1];

  EXPECT_EQ(one.s.keepalive_timeout_ms, 20000);
  EXPECT_EQ(one.s.root, prefix_ + "/static");
  EXPECT_EQ(one.s.index, (std::vector<std::string>{"a.html", "b.html"}));
  EXPECT_EQ(one.s.client_max_body_size, 2u * 1024 * 1024);
  EXPECT_EQ(one.s.default_type, "text/plain");

  const Location* inh = loc(one, "/inherits/x");
  ASSERT_EQ(inh->match, "/inherits/");
  EXPECT_EQ(inh->s.keepalive_timeout_ms, 20000);
  EXPECT_EQ(inh->s.root, prefix_ + "/static");
  EXPECT_EQ(inh->s.index, (std::vector<std::string>{"a.html", "b.html"}));
  EXPECT_EQ(inh->s.expires_ms, -1);

  const Location* ovr = loc(one, "/overrides/x");
  ASSERT_EQ(ovr->match, "/overrides/");
  EXPECT_EQ(ovr->s.keepalive_timeout_ms, 30000);
  EXPECT_EQ(ovr->s.index, std::vector<std::string>{"c.html"});
  EXPECT_EQ(ovr->s.root, prefix_ + "/html");
  EXPECT_EQ(ovr->s.expires_ms, 3600000);
  EXPECT_EQ(ovr->s.client_max_body_size, 2u * 1024 * 1024);

  // What no location matches is served with the server's settings.
  const Location* fb = loc(one, "/elsewhere");
  EXPECT_TRUE(fb->implicit);
  EXPECT_EQ(fb->s.keepalive_timeout_ms, 20000);
  EXPECT_EQ(fb->s.root, prefix_ + "/static");

  // The second server only has what [http] says.
  EXPECT_EQ(two.s.keepalive_timeout_ms, 10000);
  EXPECT_EQ(two.s.root, prefix_ + "/html");
  EXPECT_EQ(loc(two, "/overrides/x")->s.keepalive_timeout_ms, 10000);
}

TEST_F(HttpConfTest, AllInheritableSettings) {
  auto http = parse(
      "[http]\n"
      "keepalive_requests = 7\n"
      "client_header_timeout = 3s\n"
      "client_body_timeout = 4s\n"
      "send_timeout = 500ms\n"
      "client_header_buffer_size = 1k\n"
      "disable_symlinks = on\n"
      "expires = 7d\n"
      "[server a]\n"
      "disable_symlinks = off\n"
      "[location /x]\n"
      "expires = off\n"
      "client_header_buffer_size = 16k\n");
  const Settings& s = http->servers.at(0)->s;
  EXPECT_EQ(s.keepalive_requests, 7u);
  EXPECT_EQ(s.client_header_timeout_ms, 3000);
  EXPECT_EQ(s.client_body_timeout_ms, 4000);
  EXPECT_EQ(s.send_timeout_ms, 500);
  EXPECT_EQ(s.client_header_buffer_size, 1024u);
  EXPECT_EQ(s.disable_symlinks, Symlinks::kOff);
  EXPECT_EQ(s.expires_ms, 7 * 86400000LL);
  EXPECT_EQ(http->base.disable_symlinks, Symlinks::kOn);
  const Location* x = loc(*http->servers[0], "/x");
  EXPECT_EQ(x->s.expires_ms, -1);
  EXPECT_EQ(x->s.client_header_buffer_size, 16u * 1024);
  EXPECT_EQ(x->s.disable_symlinks, Symlinks::kOff);
}

TEST_F(HttpConfTest, MaxHeaderBufferCoversEveryServer) {
  auto http = parse(
      "[server a]\nlisten = 8080\nclient_header_buffer_size = 4k\n"
      "[server b]\nlisten = 8081\nclient_header_buffer_size = 32k\n");
  EXPECT_EQ(http->max_header_buffer, 32u * 1024);
  http = parse("[server a]\nclient_header_buffer_size = 1k\n");
  EXPECT_EQ(http->max_header_buffer, 8192u);  // never below the default
}

TEST_F(HttpConfTest, AccessLogs) {
  auto http = parse(
      "[http]\n"
      "access_log = logs/access.log\n"
      "[server a]\n"
      "listen = 8080\n"
      "[location /json]\n"
      "access_log = logs/access.log json\n"
      "[location /quiet]\n"
      "access_log = off\n"
      "[location /other]\n"
      "access_log = /var/log/other.log combined\n");
  const Server& a = *http->servers.at(0);
  ASSERT_EQ(a.s.access_logs.size(), 1u);
  const auto& main_log = a.s.access_logs[0].file;
  EXPECT_EQ(main_log->path, prefix_ + "/logs/access.log");
  EXPECT_EQ(a.s.access_logs[0].format, LogFormat::kCombined);
  const Location* json = loc(a, "/json");
  ASSERT_EQ(json->s.access_logs.size(), 1u);
  EXPECT_EQ(json->s.access_logs[0].file, main_log);  // one file object per path
  EXPECT_EQ(json->s.access_logs[0].format, LogFormat::kJson);
  EXPECT_TRUE(loc(a, "/quiet")->s.access_logs.empty());
  ASSERT_EQ(loc(a, "/other")->s.access_logs.size(), 1u);
  EXPECT_EQ(loc(a, "/other")->s.access_logs[0].file->path, "/var/log/other.log");
  EXPECT_EQ(http->access_logs.size(), 2u);
  EXPECT_EQ(main_log->fd, -1);  // opened later, not while parsing
}

TEST_F(HttpConfTest, ErrorLogsOfTheLevels) {
  auto http = parse(
      "[http]\n"
      "error_log = logs/http.error.log\n"
      "[server a]\n"
      "listen = 8080\n"
      "[location /own]\n"
      "error_log = /var/log/own.log\n"
      "[server b]\n"
      "listen = 8081\n"
      "error_log = stderr\n"
      "[server c]\n"
      "listen = 8082\n"
      "error_log = logs/http.error.log\n");
  const Server& a = *http->servers.at(0);
  ASSERT_NE(a.s.error_log, nullptr);
  EXPECT_EQ(a.s.error_log->path, prefix_ + "/logs/http.error.log");
  EXPECT_EQ(a.s.error_log->where, "t.ini:2");
  EXPECT_EQ(loc(a, "/")->s.error_log, a.s.error_log);  // inherited
  ASSERT_NE(loc(a, "/own")->s.error_log, nullptr);
  EXPECT_EQ(loc(a, "/own")->s.error_log->path, "/var/log/own.log");
  ASSERT_NE(http->servers.at(1)->s.error_log, nullptr);
  EXPECT_EQ(http->servers.at(1)->s.error_log->path, "stderr");
  EXPECT_EQ(http->servers.at(2)->s.error_log, a.s.error_log);  // one file object per path
  EXPECT_EQ(http->error_logs.size(), 3u);
  EXPECT_EQ(a.s.error_log->fd, -1);  // opened later, not while parsing
  // Without one, the process's error log.
  EXPECT_EQ(parse("[server a]\n")->servers.at(0)->s.error_log, nullptr);
}

TEST_F(HttpConfTest, ErrorLogTakesAPathOnly) {
  expect_error("[server a]\nerror_log = logs/a.log warn\n", 2, "the level is set with \"log_level = warn\" in [main]");
  expect_error("[server a]\nerror_log = logs/$host.log\n", 2, "variables are not supported in \"error_log\"");
  expect_error("[upstream u]\nserver = 127.0.0.1:9\nerror_log = logs/u.log\n", 3, "\"error_log\" belongs in [main]");
}

TEST_F(HttpConfTest, LimitRate) {
  auto http = parse(
      "[http]\n"
      "limit_rate = 100k\n"
      "[server a]\n"
      "listen = 8080\n"
      "limit_rate_after = 1m\n"
      "[location /free]\n"
      "limit_rate = 0\n"
      "[server b]\n"
      "listen = 8081\n");
  const Server& a = *http->servers.at(0);
  EXPECT_EQ(a.s.limit_rate, 100u * 1024);
  EXPECT_EQ(a.s.limit_rate_after, 1024u * 1024);
  EXPECT_EQ(loc(a, "/")->s.limit_rate, 100u * 1024);
  EXPECT_EQ(loc(a, "/free")->s.limit_rate, 0u);
  EXPECT_EQ(loc(a, "/free")->s.limit_rate_after, 1024u * 1024);
  EXPECT_EQ(http->servers.at(1)->s.limit_rate_after, 0u);
  EXPECT_EQ(parse("[server a]\n")->servers.at(0)->s.limit_rate, 0u);  // off by default
  expect_error("[server a]\nlimit_rate = fast\n", 2, "invalid size \"fast\" in \"limit_rate\"");
  expect_error("[server a]\nlimit_rate_after = -1\n", 2, "invalid size");
}

TEST_F(HttpConfTest, TypesFileRelativeToPrefix) {
  std::ofstream(prefix_ + "/conf/mime.types") << "[types]\nimage/webp = webp\n";
  auto http = parse("[http]\ntypes = conf/mime.types\n");
  ASSERT_NE(http->types->lookup("/a.webp"), nullptr);
  EXPECT_EQ(*http->types->lookup("/a.webp"), "image/webp");
  EXPECT_EQ(http->types->lookup("/a.html"), nullptr);  // the built-in list is replaced
}

TEST_F(HttpConfTest, TypesFileIsAmongTheFilesRead) {
  // -T prints every file the configuration was read from.
  std::string text = "[types]\nimage/webp = webp\n";
  std::ofstream(prefix_ + "/conf/mime.types") << text;
  auto http = parse("[http]\ntypes = conf/mime.types\n");
  ASSERT_EQ(http->files_read.size(), 1u);
  EXPECT_EQ(http->files_read[0].path, prefix_ + "/conf/mime.types");
  EXPECT_EQ(http->files_read[0].text, text);
  EXPECT_TRUE(parse("[http]\nroot = html\n")->files_read.empty());
}

TEST_F(HttpConfTest, MissingTypesFileNamesTheLine) {
  expect_error("[http]\nroot = html\ntypes = conf/nothere.types\n", 3, "nothere.types");
}

TEST_F(HttpConfTest, BadTypesFileNamesItsOwnLine) {
  std::ofstream(prefix_ + "/conf/mime.types") << "[types]\ntext/html = html\nbroken\n";
  std::string err = error("[http]\ntypes = conf/mime.types\n");
  EXPECT_NE(err.find("mime.types:3: "), std::string::npos) << err;
}

// ---------------------------------------------------------------------------------------------
// Locations

TEST_F(HttpConfTest, LocationKinds) {
  auto http = parse(
      "[server a]\n"
      "[location /pre]\n"
      "[location = /exact]\n"
      "[location ^~ /static/]\n");
  const Server& s = *http->servers.at(0);
  ASSERT_EQ(s.locations.size(), 3u);
  EXPECT_EQ(s.locations[0]->kind, MatchKind::kPrefix);
  EXPECT_EQ(s.locations[0]->match, "/pre");
  EXPECT_EQ(s.locations[0]->line, 2);
  EXPECT_EQ(s.locations[1]->kind, MatchKind::kExact);
  EXPECT_EQ(s.locations[1]->match, "/exact");
  EXPECT_EQ(s.locations[2]->kind, MatchKind::kPrefixNoRegex);
  EXPECT_EQ(s.locations[2]->match, "/static/");
  EXPECT_FALSE(s.locations[0]->implicit);
}

TEST_F(HttpConfTest, FindLocationPrecedence) {
  auto http = parse(
      "[server a]\n"
      "[location /a/b]\n"  // longer prefix first in the file
      "[location /]\n"
      "[location /a]\n"
      "[location = /a]\n"
      "[location ^~ /static/]\n"
      "[location /static/img/]\n"
      "[location = /]\n");
  const Server& s = *http->servers.at(0);
  auto where = [&](std::string_view path) {
    const Location* l = loc(s, path);
    return std::string(l->kind == MatchKind::kExact ? "= " : l->kind == MatchKind::kPrefixNoRegex ? "^~ " : "") +
           l->match;
  };
  EXPECT_EQ(where("/a"), "= /a");  // exact beats the equal prefix
  EXPECT_EQ(where("/a/"), "/a");
  EXPECT_EQ(where("/ab"), "/a");  // prefixes are string prefixes, as in nginx
  EXPECT_EQ(where("/a/b"), "/a/b");
  EXPECT_EQ(where("/a/b/c"), "/a/b");
  EXPECT_EQ(where("/"), "= /");
  EXPECT_EQ(where("/zzz"), "/");
  EXPECT_EQ(where("/static/x.css"), "^~ /static/");
  EXPECT_EQ(where("/static/img/x.png"), "/static/img/");  // the longest prefix wins
  EXPECT_EQ(where("/static"), "/");
}

TEST_F(HttpConfTest, FindLocationWithoutARootLocationFallsBack) {
  auto http = parse("[server a]\nroot = static\n[location = /exact]\n[location /p/]\n");
  const Server& s = *http->servers.at(0);
  const Location* l = loc(s, "/exact/more");
  EXPECT_TRUE(l->implicit);
  EXPECT_EQ(l, s.fallback.get());
  EXPECT_EQ(l->s.root, prefix_ + "/static");
  EXPECT_EQ(loc(s, "/p")->implicit, true);
  EXPECT_EQ(loc(s, "/p/")->match, "/p/");
}

TEST_F(HttpConfTest, LocationKeys) {
  auto http = parse(
      "[server a]\n"
      "[location = /healthz]\n"
      "return = 200 all good\n"
      "[location /old]\n"
      "return = 301 https://example.com/new\n"
      "[location /gone]\n"
      "return = 404\n"
      "[location /app/]\n"
      "try_files = $uri $uri/ /index.html\n"
      "[location /files/]\n"
      "alias = static\n"
      "[location /t]\n"
      "try_files = $uri =404\n");
  const Server& s = *http->servers.at(0);
  const Location* h = loc(s, "/healthz");
  EXPECT_EQ(h->return_code, 200);
  EXPECT_EQ(h->return_text, "all good");
  EXPECT_EQ(loc(s, "/old")->return_code, 301);
  EXPECT_EQ(loc(s, "/old")->return_text, "https://example.com/new");
  EXPECT_EQ(loc(s, "/gone")->return_code, 404);
  EXPECT_EQ(loc(s, "/gone")->return_text, "");
  EXPECT_EQ(loc(s, "/app/x")->try_files, (std::vector<std::string>{"$uri", "$uri/", "/index.html"}));
  EXPECT_EQ(loc(s, "/app/x")->return_code, 0);
  const Location* f = loc(s, "/files/a");
  EXPECT_TRUE(f->has_alias);
  EXPECT_EQ(f->alias, prefix_ + "/static/");  // a "/x/" location gets a "/"-terminated alias
  EXPECT_EQ(loc(s, "/t")->try_files.back(), "=404");
}

// ---------------------------------------------------------------------------------------------
// Listen addresses and virtual servers

TEST_F(HttpConfTest, ListenForms) {
  auto http = parse(
      "[server a]\n"
      "listen = 8080\n"
      "listen = 127.0.0.1:8081\n"
      "listen = [::1]:8082\n"
      "listen = unix:/tmp/baton-test-x.sock\n"
      "listen = 127.0.0.1:8083 default_server backlog=128 reuseport\n");
  ASSERT_EQ(http->listens.size(), 5u);
  const auto& g = http->listens;
  EXPECT_EQ(g[0]->addr.to_string(), "0.0.0.0:8080");
  EXPECT_EQ(g[0]->text, "8080");
  EXPECT_EQ(g[0]->line, 2);
  EXPECT_EQ(g[1]->addr.to_string(), "127.0.0.1:8081");
  EXPECT_EQ(g[2]->addr.family(), AF_INET6);
  EXPECT_EQ(g[2]->addr.to_string(), "[::1]:8082");
  EXPECT_EQ(g[3]->addr.family(), AF_UNIX);
  EXPECT_EQ(g[3]->addr.to_string(), "unix:/tmp/baton-test-x.sock");
  EXPECT_EQ(g[0]->opts.backlog, 511);
  EXPECT_FALSE(g[0]->opts.reuseport);
  EXPECT_FALSE(g[0]->explicit_default);
  EXPECT_EQ(g[4]->opts.backlog, 128);
  EXPECT_TRUE(g[4]->opts.reuseport);
  EXPECT_TRUE(g[4]->explicit_default);
  for (const auto& grp : g) {
    ASSERT_EQ(grp->servers.size(), 1u);
    EXPECT_EQ(grp->default_server, http->servers[0].get());
  }
}

TEST_F(HttpConfTest, ServersOnOneAddressShareAGroup) {
  auto http = parse(
      "[server a]\nlisten = 8080\nserver_name = a.test\n"
      "[server b]\nlisten = 0.0.0.0:8080\nlisten = 8081\nserver_name = b.test\n");
  ASSERT_EQ(http->listens.size(), 2u);
  ASSERT_EQ(http->listens[0]->servers.size(), 2u);
  EXPECT_EQ(http->listens[0]->default_server, http->servers[0].get());  // the first one
  EXPECT_EQ(http->listens[1]->servers.size(), 1u);
  EXPECT_EQ(http->listens[1]->default_server, http->servers[1].get());
}

TEST_F(HttpConfTest, FindServer) {
  auto http = parse(
      "[server one]\nlisten = 8080\nserver_name = example.com www.example.com\n"
      "[server two]\nlisten = 8080\nserver_name = *.example.org\n"
      "[server three]\nlisten = 8080 default_server\nserver_name = Other.NET\n"
      "[server four]\nlisten = 8080\nserver_name = *.deep.example.org\n");
  ASSERT_EQ(http->listens.size(), 1u);
  const ListenGroup& g = *http->listens[0];
  auto name = [&](std::string_view host) {
    Server* s = g.find_server(host);
    return s ? s->name : std::string("(null)");
  };
  EXPECT_EQ(name("example.com"), "one");
  EXPECT_EQ(name("www.example.com"), "one");
  EXPECT_EQ(name("other.net"), "three");  // names are lower-cased
  EXPECT_EQ(name("www.example.org"), "two");
  EXPECT_EQ(name("a.b.example.org"), "two");
  EXPECT_EQ(name("deep.example.org"), "two");
  EXPECT_EQ(name("x.deep.example.org"), "four");  // the longest suffix wins
  EXPECT_EQ(name("example.org"), "three");        // "*.example.org" needs a label before it
  EXPECT_EQ(name("xexample.org"), "three");
  EXPECT_EQ(name("unknown.test"), "three");
  EXPECT_EQ(name(""), "three");
  EXPECT_EQ(name("sub.example.com"), "three");
}

TEST_F(HttpConfTest, FindServerDefaultIsTheFirstWithoutDefaultServer) {
  auto http = parse(
      "[server one]\nlisten = 8080\nserver_name = one.test\n"
      "[server two]\nlisten = 8080\nserver_name = two.test\n");
  const ListenGroup& g = *http->listens.at(0);
  EXPECT_EQ(g.find_server("two.test")->name, "two");
  EXPECT_EQ(g.find_server("nobody.test")->name, "one");
  EXPECT_FALSE(g.explicit_default);
}

TEST_F(HttpConfTest, FindServerSingleServerTakesEveryHost) {
  auto http = parse("[server only]\nlisten = 8080\nserver_name = only.test\n");
  EXPECT_EQ(http->listens.at(0)->find_server("other.test")->name, "only");
  EXPECT_EQ(http->listens.at(0)->find_server("")->name, "only");
}

TEST_F(HttpConfTest, ServerNamesAreKept) {
  auto http = parse("[server a]\nserver_name = A.test  *.Wild.TEST b.test\n");
  const Server& s = *http->servers.at(0);
  EXPECT_EQ(s.exact_names, (std::vector<std::string>{"a.test", "b.test"}));
  EXPECT_EQ(s.wildcard_suffixes, std::vector<std::string>{".wild.test"});
}

// ---------------------------------------------------------------------------------------------
// Errors, each with file:line

TEST_F(HttpConfTest, UnknownKeyInEachSection) {
  expect_error("[http]\nroot = html\nkeepalive_idle = 5s\n", 3, "unknown key \"keepalive_idle\" in [http]");
  expect_error("[server a]\nlisten = 8080\nservername = x\n", 3, "unknown key \"servername\" in [server]");
  expect_error("[server a]\n[location /]\n\nrot = html\n", 4, "unknown key \"rot\" in [location]");
}

TEST_F(HttpConfTest, KeysInTheWrongSection) {
  expect_error("[http]\nlisten = 8080\n", 2, "listen");
  expect_error("[http]\nreturn = 200\n", 2, "return");
  expect_error("[server a]\ntypes = conf/mime.types\n", 2, "types");
  expect_error("[server a]\ntry_files = $uri =404\n", 2, "try_files");
  expect_error("[server a]\n[location /]\nlisten = 8080\n", 3, "listen");
  expect_error("[server a]\n[location /]\nserver_name = x\n", 3, "server_name");
}

TEST_F(HttpConfTest, KeysOfOtherSectionsSayWhereTheyBelong) {
  expect_error("[http]\nworker_connections = 10\n", 2, "\"worker_connections\" belongs in [main]");
  expect_error("[http]\nlisten = 8080\n", 2, "\"listen\" belongs in [server]");
  expect_error("[server a]\nalias = /srv\n", 2, "\"alias\" belongs in [location]");
  expect_error("[server a]\n[location /]\ntypes = conf/mime.types\n", 3, "\"types\" belongs in [http]");
}

TEST_F(HttpConfTest, UnsupportedNginxDirectivesSaySo) {
  expect_error("[http]\ngzip_disable = msie6\n", 2, "\"gzip_disable\" is not supported yet");
  expect_error("[server a]\nssl_stapling_verify = on\n", 2, "\"ssl_stapling_verify\" is not supported yet");
  expect_error("[server a]\n[location /]\nproxy_cache = one\n", 3, "\"proxy_cache\" is not supported yet");
  for (const char* key : {"recursive_error_pages", "rewrite_log", "sub_filter", "mirror",
                          "limit_except", "log_subrequest"}) {
    std::string err = error("[server a]\n" + std::string(key) + " = x\n");
    EXPECT_EQ(err, "t.ini:2: \"" + std::string(key) + "\" is not supported yet") << key;
  }
}

TEST_F(HttpConfTest, TypoGetsASuggestion) {
  EXPECT_EQ(error("[http]\nkeepalive_timout = 5s\n"),
            "t.ini:2: unknown key \"keepalive_timout\" in [http]; did you mean \"keepalive_timeout\"?");
  EXPECT_EQ(error("[server a]\nservername = x\n"), "t.ini:2: unknown key \"servername\" in [server]; did you mean \"server_name\"?");
  EXPECT_EQ(error("[server a]\n[location /]\ntry_file = $uri =404\n"),
            "t.ini:3: unknown key \"try_file\" in [location]; did you mean \"try_files\"?");
  EXPECT_EQ(error("[http]\nsendfile_magic = on\n"), "t.ini:2: unknown key \"sendfile_magic\" in [http]");
}

// A key that cannot repeat, given twice in one section: the second would silently win.
TEST_F(HttpConfTest, DuplicateKeys) {
  EXPECT_EQ(error("[server a]\nroot = html\nlisten = 8080\nroot = static\n"), "t.ini:4: \"root\" is duplicate (first at line 2)");
  expect_error("[http]\nindex = a.html\nindex = b.html\n", 3, "\"index\" is duplicate (first at line 2)");
  expect_error("[server a]\nserver_name = a.test\nserver_name = b.test\n", 3, "\"server_name\" is duplicate");
  expect_error("[http]\naccess_log = a.log\naccess_log = a.log json\n", 3, "\"a.log\" is named twice");
  expect_error("[http]\naccess_log = a.log\naccess_log = off\n", 3, "\"access_log = off\" and another");
  expect_error("[server a]\n[location /]\nreturn = 200 a\nreturn = 200 b\n", 4, "\"return\" is duplicate (first at line 3)");
  expect_error("[server a]\n[location /]\nkeepalive_timeout = 1s\n\nkeepalive_timeout = 2s\n", 5, "(first at line 3)");
  // listen repeats; the same key in different sections is no repetition.
  auto http = parse(
      "[http]\nroot = html\n"
      "[server a]\nlisten = 8080\nlisten = 8081\nroot = html\n"
      "[location /x]\nroot = static\n"
      "[location /y]\nroot = static\n");
  EXPECT_EQ(http->listens.size(), 2u);
}

TEST_F(HttpConfTest, KeepaliveTimeoutZeroTurnsKeepAliveOff) {
  auto http = parse("[http]\nkeepalive_timeout = 0\n");
  EXPECT_EQ(http->base.keepalive_timeout_ms, 0);
}

TEST_F(HttpConfTest, DefaultServerTwiceForOneAddressOfOneServer) {
  expect_error("[server a]\nlisten = 8080 default_server\nlisten = 0.0.0.0:8080 default_server\n", 3, "duplicate listen");
  expect_error("[server a]\nlisten = 8080 default_server default_server\n", 2, "default_server");
}

TEST_F(HttpConfTest, ReturnTextWithControlCharacters) {
  expect_error("[server a]\n[location /]\nreturn = 200 a\x01z\n", 3, "control character");
  expect_error("[server a]\n[location /]\nreturn = 200 a\x1bz\n", 3, "control character");
  expect_error("[server a]\n[location /]\nreturn = 200 a\x7fz\n", 3, "control character");
  expect_error("[server a]\n[location /]\nreturn = 302 http://a.test/\tx\n", 3, "control character");
  // A tab in a text body is only text.
  auto http = parse("[server a]\n[location /]\nreturn = 200 a\tb\n");
  EXPECT_EQ(http->servers.at(0)->locations.at(0)->return_text, "a\tb");
}

TEST_F(HttpConfTest, IndentedKeysAreKeys) {
  auto http = parse("[server a]\nserver_name = a.test\n    root = static\n");
  const Server& s = *http->servers.at(0);
  EXPECT_EQ(s.exact_names, std::vector<std::string>{"a.test"});
  EXPECT_EQ(s.s.root, prefix_ + "/static");
}

TEST_F(HttpConfTest, UnknownSections) {
  expect_error("[http]\n[servers a]\n", 2, "unknown section [servers a]");
  expect_error("[stream]\nlisten = 9000\n", 1, "unknown section [stream]");
}

TEST_F(HttpConfTest, LocationBeforeAnyServer) {
  expect_error("[http]\nroot = html\n[location /]\n[server a]\n", 3, "must follow a [server]");
  expect_error("[server a]\n[http]\n[location /]\n", 3, "must follow a [server]");
  // A location after an [upstream] belongs to no server: never silently dropped.
  expect_error("[server a]\n[upstream u]\nserver = 127.0.0.1:9000\n[location /]\n", 4, "must follow a [server]");
}

TEST_F(HttpConfTest, DuplicateLocation) {
  expect_error("[server a]\n[location /x]\n[location = /x]\n[location /x]\n", 4, "duplicate location \"/x\"");
  expect_error("[server a]\n[location = /x]\n[location = /x]\n", 3, "duplicate location");
  expect_error("[server a]\n[location /x]\n[location ^~ /x]\n", 3, "duplicate location");
  // The same location in two servers is fine.
  EXPECT_NO_THROW(parse("[server a]\nlisten = 1\n[location /x]\n[server b]\nlisten = 2\n[location /x]\n"));
}

TEST_F(HttpConfTest, BadLocationMatch) {
  expect_error("[server a]\n[location x]\n", 2, "must start with \"/\"");
  expect_error("[server a]\n[location ~ \\.(php$]\n", 2, "invalid regular expression \"\\.(php$\"");
  expect_error("[server a]\n[location ~]\n", 2, "invalid location");
  expect_error("[server a]\n[location]\n", 2, "invalid location");
  expect_error("[server a]\n[location = /a /b]\n", 2, "invalid location");
}

TEST_F(HttpConfTest, BadListen) {
  expect_error("[server a]\n\nlisten = 127.0.0.1:99999\n", 3, "invalid port");
  expect_error("[server a]\nlisten = host.example:80\n", 2, "invalid");
  expect_error("[server a]\nlisten =\n", 2, "listen");
  expect_error("[server a]\nlisten = 8080 fast\n", 2, "unknown listen option \"fast\"");
  expect_error("[server a]\nlisten = 8080 backlog=0\n", 2, "backlog");
  expect_error("[server a]\nlisten = 8080 backlog=x\n", 2, "backlog");
  expect_error("[server a]\nlisten = 8080 ssl\n", 1, "no \"ssl_certificate\" for [server a], which listens on 8080 with ssl");
  expect_error("[server a]\nlisten = 8080 ssl ssl\n", 2, "listen option \"ssl\" is given twice");
  expect_error("[server a]\nlisten = 8080\nlisten = 0.0.0.0:8080\n", 3, "duplicate listen");
}

TEST_F(HttpConfTest, TwoServersWithTheSameNameOnOneAddress) {
  expect_error(
      "[server a]\nlisten = 8080\nserver_name = x.test\n"
      "[server b]\nserver_name = y.test X.test\nlisten = 0.0.0.0:8080\n",
      6, "duplicate listen 0.0.0.0:8080 for server name \"x.test\"");
  expect_error(
      "[server a]\nlisten = 8080\nserver_name = *.x.test\n"
      "[server b]\nlisten = 8080\nserver_name = *.x.test\n",
      5, "*.x.test");
  // Without names both would answer to every host: the second is unreachable.
  expect_error("[server a]\nlisten = 8080\n[server b]\nlisten = 8080\n", 4, "duplicate listen");
  // The same name on different addresses is fine.
  EXPECT_NO_THROW(parse("[server a]\nlisten = 8080\nserver_name = x\n[server b]\nlisten = 8081\nserver_name = x\n"));
}

TEST_F(HttpConfTest, TwoDefaultServers) {
  expect_error(
      "[server a]\nlisten = 8080 default_server\nserver_name = a\n"
      "[server b]\nlisten = 8080 default_server\nserver_name = b\n",
      5, "default server");
}

TEST_F(HttpConfTest, ConflictingListenOptions) {
  expect_error(
      "[server a]\nlisten = 8080\nserver_name = a\n"
      "[server b]\nlisten = 8080 backlog=10\nserver_name = b\n",
      5, "conflict");
}

TEST_F(HttpConfTest, RootMustBeAnExistingDirectory) {
  expect_error("[http]\nroot = nothere\n", 2, "does not exist");
  expect_error("[server a]\nroot = /nonexistent/baton/root\n", 2, "does not exist");
  expect_error("[server a]\n[location /]\n\nroot = html/missing\n", 4, "does not exist");
  expect_error("[server a]\nroot = html/file.txt\n", 2, "not a directory");
  expect_error("[server a]\nroot =\n", 2, "root");
}

TEST_F(HttpConfTest, BadValues) {
  expect_error("[http]\nkeepalive_timeout = forever\n", 2, "invalid duration \"forever\"");
  expect_error("[http]\nclient_max_body_size = 1t\n", 2, "invalid size");
  expect_error("[http]\nkeepalive_requests = 0\n", 2, "keepalive_requests");
  expect_error("[http]\nclient_header_timeout = 0\n", 2, "client_header_timeout");
  expect_error("[http]\nclient_header_buffer_size = 100\n", 2, "client_header_buffer_size");
  expect_error("[http]\nclient_header_buffer_size = 2m\n", 2, "client_header_buffer_size");
  expect_error("[http]\ndisable_symlinks = maybe\n", 2, "disable_symlinks");
  expect_error("[http]\ndefault_type = text\n", 2, "default_type");
  expect_error("[http]\nindex = a/b.html\n", 2, "index");
  expect_error("[http]\nindex =\n", 2, "index");
  expect_error("[http]\naccess_log = a.log xml\n", 2, "xml");
  expect_error("[http]\naccess_log = off now\n", 2, "access_log");
  expect_error("[http]\nexpires = never\n", 2, "expires");
  expect_error("[http]\n[http]\n", 2, "duplicate [http]");
  expect_error("[http x]\n", 1, "[http] takes no name");
}

TEST_F(HttpConfTest, BadLocationKeys) {
  expect_error("[server a]\n[location /]\nreturn = 999\n", 3, "return code");
  expect_error("[server a]\n[location /]\nreturn = ok\n", 3, "return code");
  expect_error("[server a]\n[location /]\nreturn = 301\n", 3, "needs a URL");
  expect_error("[server a]\n[location /]\ntry_files = $uri\n", 3, "try_files");
  expect_error("[server a]\n[location /]\ntry_files = $uri =99\n", 3, "try_files");
  expect_error("[server a]\n[location /]\ntry_files = $uri fallback\n", 3, "try_files");
  expect_error("[server a]\n[location /]\nalias =\n", 3, "alias");
}

TEST_F(HttpConfTest, ErrorsInALaterServerNameTheirLine) {
  expect_error(
      "[http]\n"
      "root = html\n"
      "[server a]\n"
      "listen = 8080\n"
      "[location /]\n"
      "[server b]\n"
      "listen = 8081\n"
      "[location /x]\n"
      "index = a.html \\\n"
      "  b.html\n"
      "expires = later\n",
      11, "invalid duration");
}

}  // namespace
}  // namespace baton::http

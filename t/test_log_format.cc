// log_format and several access logs: every variable of a custom format checked against the
// request that made the line, the three escapes, `if=`, a level's own logs replacing the inherited
// ones, the upstream fields of a proxied request, and the variables in other values (return,
// add_header).
#include <time.h>

#include <string>
#include <vector>

#include "harness.h"
#include "lib/upstream.h"

using namespace baton_test;

namespace {

std::vector<std::string> lines_in(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

// The first line of the file at path that contains needle, waited for (lines are written when the
// worker's loop is about to block).
std::string line_with(const std::string& path, const std::string& needle) {
  std::string found;
  wait_for(
      [&] {
        for (const std::string& l : lines_in(read_file(path)))
          if (contains(l, needle)) {
            found = l;
            return true;
          }
        return false;
      },
      5000ms);
  return found;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

const std::string kServer = "[server main]\nlisten = 127.0.0.1:@PORT@\nroot = html\nserver_name = main.test\n";

}  // namespace

TEST(LogFormat, EveryVariableOfACustomFormat) {
  BatonServer s;
  s.write_file("html/file.txt", "twelve bytes");
  s.set_config(make_config(kServer + "add_header = X-Request-Id $request_id\n",
                           // A long format continues on the next lines ("\" at the end of a line: a space
                           // joins them, which the fields are trimmed of below).
                           "log_format = fields \"$remote_addr|$remote_port|$request|$status|$body_bytes_sent|\\\n"
                           "  $request_time|$time_iso8601|$time_local|$msec|$http_user_agent|$arg_page|$cookie_sid|\\\n"
                           "  $request_id|$uri|$args|$server_name|$server_port|$scheme|$host|$request_method|\\\n"
                           "  $server_protocol|$upstream_addr|$remote_user|$request_uri|$content_length|$pid\"\n"
                           "access_log = logs/fields.log fields\n"));
  ASSERT_TRUE(s.start());
  time_t before = time(nullptr);
  Client c(s.port());
  Response r = c.exchange(
      "GET /file.txt?a=1&Page=7&page=8 HTTP/1.1\r\nHost: Main.Test:8080\r\nUser-Agent: ua/1\r\n"
      "Cookie: x=1; sid=abc ; y=2\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(r.status, 200) << r;
  std::string line = line_with(s.path("logs/fields.log"), "file.txt");
  ASSERT_FALSE(line.empty()) << read_file(s.path("logs/fields.log"));
  std::vector<std::string> f = split(line, '|');
  ASSERT_EQ(f.size(), 26u) << line;
  for (std::string& field : f)
    if (!field.empty() && field[0] == ' ') field.erase(0, 1);
  EXPECT_EQ(f[0], "127.0.0.1");
  EXPECT_GT(std::stoi(f[1]), 0);
  EXPECT_EQ(f[2], "GET /file.txt?a=1&Page=7&page=8 HTTP/1.1");
  EXPECT_EQ(f[3], "200");
  EXPECT_EQ(f[4], "12");
  EXPECT_TRUE(matches_pattern(f[5], "%+.%d%d%d")) << f[5];
  EXPECT_TRUE(matches_pattern(f[6], "%d%d%d%d-%d%d-%d%dT%d%d:%d%d:%d%d%s%d%d:%d%d")) << f[6];
  EXPECT_TRUE(matches_pattern(f[7], "%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d %s%d%d%d%d")) << f[7];
  ASSERT_TRUE(matches_pattern(f[8], "%+.%d%d%d")) << f[8];
  double msec = std::stod(f[8]);
  EXPECT_GE(msec, static_cast<double>(before) - 1);
  EXPECT_LE(msec, static_cast<double>(time(nullptr)) + 1);
  EXPECT_EQ(f[9], "ua/1");
  EXPECT_EQ(f[10], "7");  // the first of the name, whatever its case (nginx's rule)
  EXPECT_EQ(f[11], "abc");
  EXPECT_EQ(f[12], r.header("X-Request-Id"));
  EXPECT_EQ(f[12].size(), 32u);
  EXPECT_EQ(f[13], "/file.txt");
  EXPECT_EQ(f[14], "a=1&Page=7&page=8");
  EXPECT_EQ(f[15], "main.test");
  EXPECT_EQ(f[16], std::to_string(s.port()));
  EXPECT_EQ(f[17], "http");
  EXPECT_EQ(f[18], "main.test");
  EXPECT_EQ(f[19], "GET");
  EXPECT_EQ(f[20], "HTTP/1.1");
  EXPECT_EQ(f[21], "-");  // not proxied: empty values are "-"
  EXPECT_EQ(f[22], "-");
  EXPECT_EQ(f[23], "/file.txt?a=1&Page=7&page=8");
  EXPECT_EQ(f[24], "-");
  std::vector<pid_t> workers = s.worker_pids();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(f[25], std::to_string(workers[0]));
  // The built-in combined log still gets its line.
  EXPECT_FALSE(line_with(s.path("logs/access.log"), "\"GET /file.txt?a=1&Page=7&page=8 HTTP/1.1\" 200 12").empty())
      << s.access_log();
}

TEST(LogFormat, EscapesDefaultJsonAndNone) {
  BatonServer s;
  s.set_config(make_config(kServer + "[location = /e]\nreturn = 200 ok\n",
                           "log_format = plain \"[$http_user_agent] [$http_referer]\"\n"
                           "log_format = js escape=json '{\"ua\":\"$http_user_agent\",\"ref\":\"$http_referer\"}'\n"
                           "log_format = raw escape=none \"[$http_user_agent] [$http_referer]\"\n"
                           "access_log = logs/plain.log plain\n"
                           "access_log = logs/js.log js\n"
                           "access_log = logs/raw.log raw\n"));
  ASSERT_TRUE(s.start());
  ASSERT_EQ(get(s.port(), "/e", "User-Agent: say \"hi\" \\ \xC3\xA9\r\n").status, 200);
  EXPECT_EQ(line_with(s.path("logs/plain.log"), "say"), "[say \\x22hi\\x22 \\x5C \\xC3\\xA9] [-]");
  // JSON keeps valid UTF-8 as it is (nginx's escape=json does too) and escapes other bytes.
  EXPECT_EQ(line_with(s.path("logs/js.log"), "say"), "{\"ua\":\"say \\\"hi\\\" \\\\ \xC3\xA9\",\"ref\":\"\"}");
  // escape=none writes nothing for a header that is not there, as nginx.
  EXPECT_EQ(line_with(s.path("logs/raw.log"), "say"), "[say \"hi\" \\ \xC3\xA9] []");
  ASSERT_EQ(get(s.port(), "/e", "User-Agent: bad \xC3\x28 \xFF\r\n").status, 200);
  EXPECT_EQ(line_with(s.path("logs/js.log"), "bad"), "{\"ua\":\"bad \\u00C3( \\u00FF\",\"ref\":\"\"}");
}

TEST(LogFormat, SeveralLogsConditionsAndALevelOfItsOwn) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.write_file("html/own/b.txt", "b");
  s.set_config(make_config(kServer + "[location /own/]\naccess_log = logs/own.log short\n",
                           "log_format = short \"$request_uri $status\"\n"
                           "log_format = parts \"[$uri$is_args$args] [$http_x_empty] [$http_x_absent]\"\n"
                           "access_log = logs/parts.log parts\n"
                           "access_log = logs/wanted.log short if=$arg_log\n"));
  ASSERT_TRUE(s.start());
  EXPECT_EQ(get(s.port(), "/a.txt?log=1").status, 200);
  EXPECT_EQ(get(s.port(), "/a.txt?log=0").status, 200);
  EXPECT_EQ(get(s.port(), "/a.txt?other=1").status, 200);
  EXPECT_EQ(get(s.port(), "/own/b.txt?log=1").status, 200);
  EXPECT_EQ(get(s.port(), "/missing?log=yes").status, 404);
  ASSERT_FALSE(line_with(s.path("logs/wanted.log"), "/missing").empty());
  ASSERT_FALSE(line_with(s.path("logs/access.log"), "/missing").empty());
  EXPECT_EQ(read_file(s.path("logs/wanted.log")), "/a.txt?log=1 200\n/missing?log=yes 404\n");
  // The location's own log replaces both inherited ones.
  EXPECT_EQ(line_with(s.path("logs/own.log"), "b.txt"), "/own/b.txt?log=1 200");
  EXPECT_FALSE(contains(s.access_log(), "b.txt")) << s.access_log();
  EXPECT_EQ(lines_in(s.access_log()).size(), 4u) << s.access_log();
  // "-" only for what has no value at all (nginx's "not found"): an empty query or an empty header
  // are empty.
  ASSERT_EQ(get(s.port(), "/a.txt", "X-Empty:\r\n").status, 200);
  EXPECT_EQ(line_with(s.path("logs/parts.log"), "[/a.txt]"), "[/a.txt] [] [-]");
}

TEST(LogFormat, UpstreamFieldsOfAProxiedRequest) {
  TestUpstream up;
  ASSERT_TRUE(up.start({"--name", "one"})) << up.error();
  BatonServer s;
  s.set_config(make_config(kServer + "[location /api/]\nproxy_pass = http://" + up.address() + "\n",
                           "log_format = up \"$uri $status $upstream_addr $upstream_status $upstream_response_time "
                           "$request_time\"\n"
                           "access_log = logs/up.log up\n"));
  ASSERT_TRUE(s.start());
  ASSERT_EQ(get(s.port(), "/api/size/10").status, 200);
  std::string line = line_with(s.path("logs/up.log"), "/api/");
  std::vector<std::string> f = split(line, ' ');
  ASSERT_EQ(f.size(), 6u) << line;
  EXPECT_EQ(f[1], "200");
  EXPECT_EQ(f[2], up.address());
  EXPECT_EQ(f[3], "200");
  EXPECT_TRUE(matches_pattern(f[4], "%+.%d%d%d")) << line;
  EXPECT_TRUE(matches_pattern(f[5], "%+.%d%d%d")) << line;
}

TEST(Variables, InReturnAndAddHeader) {
  BatonServer s;
  s.set_config(make_config(kServer + "add_header = X-Status $status always\n"
                                     "[location = /v]\nreturn = 200 \"a=$arg_a b=$cookie_b proto=$server_protocol "
                                     "when=$time_iso8601\"\n"));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/v?x=1&a=%20two", "Cookie: b=three\r\n");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_TRUE(matches_pattern(r.body, "a=%%20two b=three proto=HTTP/1.1 when=%d%d%d%d-%*")) << r.body;
  EXPECT_EQ(r.header("X-Status"), "200");
  r = get(s.port(), "/missing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("X-Status"), "404");
}

TEST(LogFormatConfig, MistakesNameTheirLine) {
  BatonServer s;
  struct Case {
    std::string http_extra, needle, message;
  };
  const Case cases[] = {
      {"access_log = logs/x.log nosuch\n", "nosuch", "unknown log format \"nosuch\""},
      {"log_format = a \"$status\"\nlog_format = a \"$uri\"\n", "$uri", "duplicate log_format \"a\""},
      {"log_format = a \"$stauts\"\n", "stauts", "unknown \"stauts\" variable"},
      {"log_format = combined \"$status\"\n", "log_format", "\"combined\" is a built-in log format"},
      {"log_format = a escape=xml \"$status\"\n", "escape=xml", "unknown escape \"xml\""},
      {"log_format = a\n", "log_format", "\"log_format\" needs a name and a format"},
      {"access_log = logs/x.log combined if=yes\n", "if=yes", "the condition \"yes\" holds no variable"},
      {"access_log = logs/access.log json\n", "json", "\"logs/access.log\" is named twice"},
  };
  for (const Case& c : cases) {
    s.set_config(make_config(kServer, c.http_extra));
    RunResult r = s.test_config();
    EXPECT_NE(r.exit_code, 0) << c.message;
    std::string where = "baton.ini:" + std::to_string(line_of(s.config_text(), c.needle)) + ": ";
    EXPECT_TRUE(contains(r.err, where + c.message)) << "expected \"" << where << c.message << "\" in:\n" << r.err;
  }
  // log_format belongs in [http].
  s.set_config(make_config(kServer + "log_format = a \"$status\"\n"));
  RunResult r = s.test_config();
  EXPECT_TRUE(contains(r.err, "\"log_format\" belongs in [http]")) << r.err;
  // A format may be named before it is defined, anywhere in [http].
  s.set_config(make_config(kServer, "access_log = logs/x.log later\nlog_format = later \"$status\"\n"));
  r = s.test_config();
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

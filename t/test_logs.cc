// Access log (combined and json), reopening the logs on USR1, and the error log.
#include <signal.h>

#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

// The first line of the file that contains `needle`, waiting up to `timeout` for it to be written.
std::string wait_for_line(const std::string& path, const std::string& needle, Millis timeout = 3000ms) {
  std::string found;
  wait_for(
      [&] {
        for (const std::string& l : lines_of(read_file(path)))
          if (contains(l, needle)) {
            found = l;
            return true;
          }
        return false;
      },
      timeout);
  return found;
}

// A JSON number, true, false or null.
bool is_json_scalar(const std::string& v) {
  if (v == "true" || v == "false" || v == "null") return true;
  return matches_pattern(v, "%+") || matches_pattern(v, "-%+") || matches_pattern(v, "%+.%+") ||
         matches_pattern(v, "-%+.%+") || matches_pattern(v, "%+.%+e%*") || matches_pattern(v, "%+e%*") ||
         matches_pattern(v, "%+.%+E%*") || matches_pattern(v, "%+E%*");
}

// A flat JSON object: string values decoded, other values (numbers, true, null) kept as text.
// nullopt when the line is not such an object.
std::optional<std::map<std::string, std::string>> parse_flat_json(const std::string& s, std::string* why) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  auto ws = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) i++;
  };
  auto str = [&](std::string* dst) -> bool {
    if (i >= s.size() || s[i] != '"') return false;
    i++;
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        dst->push_back(c);
        continue;
      }
      if (i >= s.size()) return false;
      char e = s[i++];
      switch (e) {
        case '"': dst->push_back('"'); break;
        case '\\': dst->push_back('\\'); break;
        case '/': dst->push_back('/'); break;
        case 'b': dst->push_back('\b'); break;
        case 'f': dst->push_back('\f'); break;
        case 'n': dst->push_back('\n'); break;
        case 'r': dst->push_back('\r'); break;
        case 't': dst->push_back('\t'); break;
        case 'u': {
          if (i + 4 > s.size()) return false;
          unsigned v = static_cast<unsigned>(std::stoul(s.substr(i, 4), nullptr, 16));
          i += 4;
          if (v < 0x80) {
            dst->push_back(static_cast<char>(v));
          } else if (v < 0x800) {
            dst->push_back(static_cast<char>(0xc0 | (v >> 6)));
            dst->push_back(static_cast<char>(0x80 | (v & 0x3f)));
          } else {
            dst->push_back(static_cast<char>(0xe0 | (v >> 12)));
            dst->push_back(static_cast<char>(0x80 | ((v >> 6) & 0x3f)));
            dst->push_back(static_cast<char>(0x80 | (v & 0x3f)));
          }
          break;
        }
        default: return false;
      }
    }
    if (i >= s.size()) return false;
    i++;
    return true;
  };
  ws();
  if (i >= s.size() || s[i++] != '{') {
    *why = "not an object";
    return std::nullopt;
  }
  ws();
  if (i < s.size() && s[i] == '}') return out;
  while (true) {
    ws();
    std::string key, value;
    if (!str(&key)) {
      *why = "bad key at " + std::to_string(i);
      return std::nullopt;
    }
    ws();
    if (i >= s.size() || s[i++] != ':') {
      *why = "no colon after " + key;
      return std::nullopt;
    }
    ws();
    if (i < s.size() && s[i] == '"') {
      if (!str(&value)) {
        *why = "bad string value for " + key;
        return std::nullopt;
      }
    } else {
      size_t start = i;
      while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ' ') i++;
      value = s.substr(start, i - start);
      if (!is_json_scalar(value)) {
        *why = "bad value for " + key + ": " + value;
        return std::nullopt;
      }
    }
    if (out.count(key)) {
      *why = "duplicate key " + key;
      return std::nullopt;
    }
    out[key] = value;
    ws();
    if (i < s.size() && s[i] == ',') {
      i++;
      continue;
    }
    if (i < s.size() && s[i] == '}') {
      i++;
      ws();
      if (i != s.size()) {
        *why = "trailing characters";
        return std::nullopt;
      }
      return out;
    }
    *why = "expected , or } at " + std::to_string(i);
    return std::nullopt;
  }
}

const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n";

}  // namespace

TEST(Logs, AccessLogCombinedFormat) {
  BatonServer s;
  s.write_file("html/hello.txt", "Hello, baton!\n");
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/hello.txt?q=1", "User-Agent: test-agent/1.0\r\nReferer: http://ref.example/page\r\n");
  ASSERT_EQ(r.status, 200);
  std::string line = wait_for_line(s.path("logs/access.log"), "/hello.txt");
  ASSERT_FALSE(line.empty()) << "no access log line; log is:\n" << s.access_log();
  // 127.0.0.1 - - [21/Nov/2026:04:44:58 +0000] "GET /x HTTP/1.1" 200 1234 "-" "ua"
  EXPECT_TRUE(matches_pattern(line,
                              "127.0.0.1 - - [%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d %s%d%d%d%d] "
                              "\"GET /hello.txt?q=1 HTTP/1.1\" 200 14 \"http://ref.example/page\" \"test-agent/1.0\""))
      << line;
  std::string month = line.find('/') != std::string::npos ? line.substr(line.find('/') + 1, 3) : "";
  EXPECT_TRUE(contains("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec", month)) << line;

  Response missing = get(s.port(), "/nope.txt");
  ASSERT_EQ(missing.status, 404);
  std::string line404 = wait_for_line(s.path("logs/access.log"), "/nope.txt");
  EXPECT_TRUE(matches_pattern(line404, "127.0.0.1 - - [%*] \"GET /nope.txt HTTP/1.1\" 404 %+ \"-\" \"-\"")) << line404;
}

TEST(Logs, AccessLogOneLinePerRequest) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  Client c(s.port());
  for (int i = 0; i < 5; i++) {
    Response r = c.exchange(req("GET", "/a.txt?n=" + std::to_string(i)));
    ASSERT_EQ(r.status, 200);
  }
  Response h = c.exchange(req("HEAD", "/a.txt?n=head"), true);
  ASSERT_EQ(h.status, 200);
  ASSERT_FALSE(wait_for_line(s.path("logs/access.log"), "n=head").empty()) << s.access_log();
  std::vector<std::string> lines;
  for (const std::string& l : lines_of(s.access_log()))
    if (contains(l, "/a.txt")) lines.push_back(l);
  EXPECT_EQ(lines.size(), 6u) << s.access_log();
  for (int i = 0; i < 5; i++)
    EXPECT_TRUE(contains(lines.size() > static_cast<size_t>(i) ? lines[i] : "",
                         "\"GET /a.txt?n=" + std::to_string(i) + " HTTP/1.1\" 200 1 "))
        << s.access_log();
  EXPECT_TRUE(contains(lines.back(), "\"HEAD /a.txt?n=head HTTP/1.1\" 200 0 ")) << lines.back();
}

TEST(Logs, AccessLogJson) {
  BatonServer s;
  s.write_file("html/hello.txt", "Hello, baton!\n");
  std::string config = make_config(kServer);
  config = replace_all(config, "access_log = logs/access.log combined", "access_log = logs/access.json json");
  s.set_config(config);
  ASSERT_TRUE(s.start());
  Response r = get(s.port(), "/hello.txt", "User-Agent: agent \"quoted\" \\ back\r\nReferer: http://r.example/\r\n");
  ASSERT_EQ(r.status, 200);
  std::string line = wait_for_line(s.path("logs/access.json"), "hello.txt");
  ASSERT_FALSE(line.empty()) << read_file(s.path("logs/access.json"));
  std::string why;
  auto obj = parse_flat_json(line, &why);
  ASSERT_TRUE(obj) << why << "\n" << line;
  auto field = [&](const char* k) { return obj->count(k) ? obj->at(k) : std::string("<missing>"); };
  for (const char* k : {"time", "remote_addr", "method", "uri", "protocol", "status", "body_bytes_sent", "referer",
                        "user_agent", "request_time"})
    EXPECT_TRUE(obj->count(k)) << "key " << k << " missing in " << line;
  EXPECT_EQ(field("remote_addr"), "127.0.0.1");
  EXPECT_EQ(field("method"), "GET");
  EXPECT_EQ(field("uri"), "/hello.txt");
  EXPECT_EQ(field("protocol"), "HTTP/1.1");
  EXPECT_EQ(field("status"), "200");
  EXPECT_EQ(field("body_bytes_sent"), "14");
  EXPECT_EQ(field("referer"), "http://r.example/");
  EXPECT_EQ(field("user_agent"), "agent \"quoted\" \\ back");
  EXPECT_FALSE(field("time").empty());
  std::string rt = field("request_time");
  EXPECT_TRUE(matches_pattern(rt, "%+") || matches_pattern(rt, "%+.%+")) << rt;
  EXPECT_FALSE(file_exists(s.path("logs/access.log")) && contains(s.access_log(), "hello.txt"));
}

TEST(Logs, AccessLogOff) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  std::string config = make_config(kServer);
  config = replace_all(config, "access_log = logs/access.log combined", "access_log = off");
  s.set_config(config);
  ASSERT_TRUE(s.start());
  ASSERT_EQ(get(s.port(), "/a.txt").status, 200);
  ASSERT_EQ(get(s.port(), "/a.txt").status, 200);
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(contains(s.access_log(), "a.txt"));
  EXPECT_FALSE(file_exists(s.path("off")));
  EXPECT_FALSE(file_exists(s.path("logs/off")));
}

TEST(Logs, AccessLogPerServer) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(
      "[server one]\n"
      "listen = 127.0.0.1:@PORT@\n"
      "root = html\n"
      "access_log = logs/one.log combined\n"
      "\n"
      "[server two]\n"
      "listen = 127.0.0.1:@PORT2@\n"
      "root = html\n"));
  ASSERT_TRUE(s.start());
  ASSERT_EQ(get(s.port(0), "/a.txt?server=one").status, 200);
  ASSERT_EQ(get(s.port(1), "/a.txt?server=two").status, 200);
  EXPECT_FALSE(wait_for_line(s.path("logs/one.log"), "server=one").empty());
  EXPECT_FALSE(wait_for_line(s.path("logs/access.log"), "server=two").empty());
  EXPECT_FALSE(contains(read_file(s.path("logs/one.log")), "server=two"));
  EXPECT_FALSE(contains(s.access_log(), "server=one"));
}

TEST(Logs, Usr1ReopensLogs) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  ASSERT_EQ(get(s.port(), "/a.txt?before").status, 200);
  ASSERT_FALSE(wait_for_line(s.path("logs/access.log"), "before").empty());

  ASSERT_EQ(::rename(s.path("logs/access.log").c_str(), s.path("logs/access.log.1").c_str()), 0);
  ASSERT_EQ(::rename(s.path("logs/error.log").c_str(), s.path("logs/error.log.1").c_str()), 0);
  ASSERT_TRUE(s.signal(SIGUSR1));
  // Workers may reopen a little after the master: probe until a request lands in the new file.
  int probe = 0;
  bool landed = wait_for(
      [&] {
        std::string target = "/a.txt?after" + std::to_string(probe++);
        if (get(s.port(), target).status != 200) return false;
        return !wait_for_line(s.path("logs/access.log"), target.substr(7), 300ms).empty();
      },
      5000ms, 50ms);
  EXPECT_TRUE(landed) << "new access.log:\n" << s.access_log();
  EXPECT_TRUE(file_exists(s.path("logs/error.log")));
  std::string old_log = read_file(s.path("logs/access.log.1"));
  EXPECT_TRUE(contains(old_log, "before"));
  EXPECT_FALSE(contains(s.access_log(), "before"));
  EXPECT_TRUE(s.running());
}

TEST(Logs, ErrorLogNoticeAtStart) {
  BatonServer s;
  s.set_config(make_config(kServer));
  ASSERT_TRUE(s.start());
  // 2026/11/21 04:44:58 [notice] PID#0: text, written by the master.
  std::string pattern = "%d%d%d%d/%d%d/%d%d %d%d:%d%d:%d%d [notice] " + std::to_string(s.master_pid()) + "#%+: %*";
  bool found = wait_for(
      [&] {
        for (const std::string& l : lines_of(s.error_log()))
          if (matches_pattern(l, pattern)) return true;
        return false;
      },
      3000ms);
  EXPECT_TRUE(found) << "master pid " << s.master_pid() << ", error log:\n" << s.error_log();
}

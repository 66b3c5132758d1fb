// Unit tests of AccessLogFile::flush (src/http/http_config.h) when writes fail: lines are lost and
// said to be, once per episode, and a line written in part never runs into the next one.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "core/log.h"
#include "http/http_config.h"

namespace baton::http {
namespace {

class AccessLogFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/baton-access-log-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ::close(fd);
    error_log_ = tmpl;
    ASSERT_EQ(ErrorLog::open(error_log_, LogLevel::kNotice), "");
  }
  void TearDown() override {
    ErrorLog::open("stderr", LogLevel::kNotice);
    ::unlink(error_log_.c_str());
  }
  std::string error_log() {
    std::ifstream in(error_log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static size_t count_of(const std::string& text, const std::string& needle) {
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) n++;
    return n;
  }
  std::string error_log_;
};

TEST_F(AccessLogFileTest, FullDiskIsSaidOnceAndTheEndOfItToo) {
  AccessLogFile f;
  f.path = "/dev/full";
  ASSERT_EQ(f.open(), "");
  for (int i = 0; i < 3; i++) {
    f.buf = "line one\nline two\n";
    f.flush();
    EXPECT_TRUE(f.buf.empty());
  }
  std::string log = error_log();
  EXPECT_EQ(count_of(log, "[alert]"), 1u) << log;
  EXPECT_NE(log.find("access log \"/dev/full\" write failed (No space left on device): 2 line(s) lost"),
            std::string::npos)
      << log;
  EXPECT_EQ(f.lost_lines, 6u);
  // Writing works again (the same object, now on a file that takes the lines).
  char tmpl[] = "/tmp/baton-access-log-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ::close(fd);
  f.path = tmpl;
  ASSERT_EQ(f.open(), "");
  f.buf = "back\n";
  f.flush();
  log = error_log();
  EXPECT_NE(log.find("is written again; 6 line(s) were lost"), std::string::npos) << log;
  EXPECT_FALSE(f.failing);
  std::ifstream in(tmpl);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "back\n");
  ::unlink(tmpl);
}

// A pipe cannot be cut back: a line written in part is ended by a line break before the next one.
TEST_F(AccessLogFileTest, PartOfALineThatCannotBeTakenBackIsEndedFirst) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  // Two pages, one of them taken: a long write puts one page in the pipe and stops there.
  ASSERT_EQ(fcntl(p[1], F_SETPIPE_SZ, 8192), 8192);
  std::string filler(4096, 'f');
  ASSERT_EQ(::write(p[1], filler.data(), filler.size()), 4096);

  AccessLogFile f;
  f.path = "pipe";
  f.fd = p[1];
  std::string first(3000, 'a');
  std::string second(3000, 'b');
  f.buf = first + "\n" + second + "\n";
  f.flush();
  EXPECT_TRUE(f.failing);
  EXPECT_TRUE(f.broken_line);
  EXPECT_EQ(f.lost_lines, 1u);
  EXPECT_NE(error_log().find("1 line(s) lost"), std::string::npos) << error_log();

  // Still full: the line is lost too (the line break that would go first is not counted), and the
  // mark stays.
  f.buf = "lost\n";
  f.flush();
  EXPECT_TRUE(f.broken_line);
  EXPECT_EQ(f.lost_lines, 2u);

  // What the pipe holds: the first line whole, the second in part.
  std::string got(16384, '\0');
  ssize_t n = ::read(p[0], got.data(), got.size());
  ASSERT_EQ(n, 8192);
  EXPECT_EQ(got.substr(4096, 4096), first + "\n" + std::string(4096 - 3001, 'b'));

  f.buf = "next\n";
  f.flush();
  EXPECT_FALSE(f.failing);
  EXPECT_FALSE(f.broken_line);
  n = ::read(p[0], got.data(), got.size());
  ASSERT_GT(n, 0);
  EXPECT_EQ(got.substr(0, static_cast<size_t>(n)), "\nnext\n");
  EXPECT_NE(error_log().find("is written again; 2 line(s) were lost"), std::string::npos) << error_log();
  f.fd = -1;
  ::close(p[0]);
  ::close(p[1]);
}

}  // namespace
}  // namespace baton::http

// An access log that cannot be written (a full disk): the server keeps serving, says so once in the
// error log (and again when writing works again), and never leaves half a line that the next
// write would continue.
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "harness.h"

using namespace baton_test;

namespace {

const char* kServer =
    "[server main]\n"
    "listen = 127.0.0.1:@PORT@\n"
    "root = html\n";

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) n++;
  return n;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

TEST(AccessLogFull, FailedWritesAreReportedOnceAndServingGoesOn) {
  BatonServer s;
  s.write_file("html/a.txt", "a");
  // Every write to /dev/full fails with ENOSPC.
  s.set_config(make_config(kServer + std::string("[location /]\naccess_log = /dev/full\n")));
  ASSERT_TRUE(s.start());
  for (int i = 0; i < 5; i++) {
    Response r = get(s.port(), "/a.txt");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "a");
  }
  EXPECT_TRUE(wait_for([&] { return contains(s.error_log(), "[alert]"); }, 3000ms)) << s.error_log();
  std::string log = s.error_log();
  EXPECT_TRUE(contains(log, "access log \"/dev/full\" write failed (No space left on device)")) << log;
  EXPECT_TRUE(contains(log, "lost")) << log;
  EXPECT_EQ(count_of(log, "write failed"), 1u) << "one alert per episode, not one per line:\n" << log;
}

// A file system of 64 KiB (a tmpfs, mounted for the test) is filled up to a few bytes less than a
// log line, so that the line is written in part before the disk is full.
class TinyFs {
 public:
  explicit TinyFs(const std::string& dir) : dir_(dir) {
    ::mkdir(dir.c_str(), 0755);
    if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755") != 0) {
      why_ = std::string("mount -t tmpfs failed: ") + strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~TinyFs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    ::rmdir(dir_.c_str());
  }
  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string why_;
};

// Writes `path` until the file system is full; false on any other error.
bool fill(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  std::string chunk(4096, 'f');
  for (;;) {
    ssize_t n = ::write(fd, chunk.data(), chunk.size());
    if (n > 0) continue;
    int e = errno;
    ::close(fd);
    return n < 0 && e == ENOSPC;
  }
}

TEST(AccessLogFull, AShortWriteLeavesNoHalfLine) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root";
  BatonServer s;
  TinyFs fs(s.path("full"));
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  s.write_file("html/a.txt", "a");
  // One page of the log is taken but for 30 bytes; the rest of the file system is filled.
  std::string before;
  while (before.size() + 40 <= 4096 - 30) before += std::string(39, 'p') + "\n";
  before += std::string(4096 - 30 - before.size() - 1, 'p') + "\n";
  ASSERT_EQ(before.size(), 4066u);
  s.write_file("full/access.log", before);
  ASSERT_TRUE(fill(s.path("full/filler")));
  s.set_config(make_config(kServer + std::string("[location /]\naccess_log = full/access.log\n")));
  ASSERT_TRUE(s.start());

  // A combined line is longer than 30 bytes: part of it fits, then the disk is full.
  EXPECT_EQ(get(s.port(), "/a.txt?first").status, 200);
  ASSERT_TRUE(wait_for([&] { return contains(s.error_log(), "write failed"); }, 3000ms)) << s.error_log();
  // Lost as well (unless the worker writes its line only after the room is made below).
  EXPECT_EQ(get(s.port(), "/a.txt?second").status, 200);

  // Room again: the next lines are written, whole, and the error log says so.
  ASSERT_EQ(::unlink(s.path("full/filler").c_str()), 0);
  EXPECT_EQ(get(s.port(), "/a.txt?third").status, 200);
  ASSERT_TRUE(wait_for([&] { return contains(s.error_log(), "written again"); }, 3000ms)) << s.error_log();
  EXPECT_TRUE(contains(s.error_log(), "line(s) were lost")) << s.error_log();
  EXPECT_EQ(get(s.port(), "/a.txt?fourth").status, 200);
  std::string log;
  ASSERT_TRUE(wait_for([&] { return contains(log = read_file(s.path("full/access.log")), "?fourth"); }, 3000ms)) << log;

  ASSERT_TRUE(log.starts_with(before)) << "the lines that were there are intact";
  std::string added = log.substr(before.size());
  ASSERT_FALSE(added.empty());
  EXPECT_EQ(added.back(), '\n');
  std::vector<std::string> lines = lines_of(added);
  ASSERT_GE(lines.size(), 2u) << added;
  ASSERT_LE(lines.size(), 3u) << added;
  for (const std::string& line : lines) {
    EXPECT_TRUE(line.starts_with("127.0.0.1 - - [")) << "a line continues a half one: " << line;
    EXPECT_EQ(count_of(line, "127.0.0.1 - - ["), 1u) << line;
    EXPECT_TRUE(line.ends_with(" 200 1 \"-\" \"-\"")) << line;
  }
  EXPECT_FALSE(contains(added, "?first")) << "the line that did not fit is lost, not half there:\n" << added;
  EXPECT_TRUE(contains(lines[lines.size() - 2], "GET /a.txt?third HTTP/1.1\" 200")) << added;
  EXPECT_TRUE(contains(lines.back(), "GET /a.txt?fourth HTTP/1.1\" 200")) << added;
  s.stop();
}

}  // namespace

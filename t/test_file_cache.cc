// Small static files are served from memory, and a change on disk is seen by the very next
// request: written in place, replaced by a rename, deleted, made unreadable, reached through a
// directory or a symbolic link that changed. No sleep between the change and the request.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <thread>
#include <utility>

#include "harness.h"

using namespace baton_test;

namespace {

class FileCacheTest : public ::testing::Test {
 protected:
  void start(std::string_view extra_server = "") {
    s.set_config(make_config(
        "[server main]\n"
        "listen = 127.0.0.1:@PORT@\n"
        "root = html\n" +
        std::string(extra_server)));
    ASSERT_TRUE(s.start());
    port = s.port();
  }

  // Every body is read on a keep-alive connection, so one worker serves them all in order.
  std::string body(std::string_view target, int* status = nullptr) {
    Response r = c->exchange(req("GET", target));
    if (status) *status = r.status;
    return r.status == 200 ? r.body : "<" + std::to_string(r.status) + ">";
  }

  void connect() { c = std::make_unique<Client>(port); }

  // Rewrites the file in place (same inode, same size), keeping its modification time: only the
  // bytes change.
  void rewrite_in_place(const std::string& rel, const std::string& content) {
    std::string p = s.path(rel);
    struct stat st;
    ASSERT_EQ(::stat(p.c_str(), &st), 0);
    int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, content.data(), content.size(), 0), static_cast<ssize_t>(content.size()));
    ::close(fd);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, 0), 0);
  }

  BatonServer s;
  int port = 0;
  std::unique_ptr<Client> c;
};

}  // namespace

TEST_F(FileCacheTest, AnInPlaceWriteIsSeenAtOnce) {
  s.write_file("html/a.txt", "version-1");
  start();
  connect();
  for (int i = 0; i < 3; i++) EXPECT_EQ(body("/a.txt"), "version-1");
  rewrite_in_place("html/a.txt", "version-2");
  EXPECT_EQ(body("/a.txt"), "version-2");
  rewrite_in_place("html/a.txt", "version-3");
  EXPECT_EQ(body("/a.txt"), "version-3");
}

TEST_F(FileCacheTest, ARenameOverTheFileIsSeenAtOnce) {
  s.write_file("html/a.txt", "old");
  start();
  connect();
  EXPECT_EQ(body("/a.txt"), "old");
  EXPECT_EQ(body("/a.txt"), "old");
  s.write_file("html/.a.txt.new", "new and longer");
  ASSERT_EQ(::rename(s.path("html/.a.txt.new").c_str(), s.path("html/a.txt").c_str()), 0);
  EXPECT_EQ(body("/a.txt"), "new and longer");
}

TEST_F(FileCacheTest, DeletedAndRecreated) {
  s.write_file("html/sub/a.txt", "here");
  start();
  connect();
  EXPECT_EQ(body("/sub/a.txt"), "here");
  ASSERT_EQ(::unlink(s.path("html/sub/a.txt").c_str()), 0);
  EXPECT_EQ(body("/sub/a.txt"), "<404>");
  s.write_file("html/sub/a.txt", "back");
  EXPECT_EQ(body("/sub/a.txt"), "back");
}

TEST_F(FileCacheTest, ADirectoryRenamedOnThePath) {
  s.write_file("html/d/x/a.txt", "one");
  s.write_file("html/e/x/a.txt", "two");
  start();
  connect();
  EXPECT_EQ(body("/d/x/a.txt"), "one");
  ASSERT_EQ(::rename(s.path("html/d").c_str(), s.path("html/old-d").c_str()), 0);
  EXPECT_EQ(body("/d/x/a.txt"), "<404>");
  ASSERT_EQ(::rename(s.path("html/e").c_str(), s.path("html/d").c_str()), 0);
  EXPECT_EQ(body("/d/x/a.txt"), "two");
}

TEST_F(FileCacheTest, ASymbolicLinkSwappedInsideTheRoot) {
  // The deploy habit: html/current -> releases/N, switched by renaming a new link over it.
  s.write_file("html/releases/1/app.js", "release 1");
  s.write_file("html/releases/2/app.js", "release 2");
  s.make_symlink("releases/1", "html/current");
  start();
  connect();
  EXPECT_EQ(body("/current/app.js"), "release 1");
  EXPECT_EQ(body("/current/app.js"), "release 1");
  s.make_symlink("releases/2", "html/current.new");
  ASSERT_EQ(::rename(s.path("html/current.new").c_str(), s.path("html/current").c_str()), 0);
  EXPECT_EQ(body("/current/app.js"), "release 2");
}

TEST_F(FileCacheTest, AFileReachedThroughALinkChangesAtItsTarget) {
  s.write_file("html/real/data.txt", "first");
  s.make_symlink("real/data.txt", "html/link.txt");
  start();
  connect();
  EXPECT_EQ(body("/link.txt"), "first");
  rewrite_in_place("html/real/data.txt", "again");
  EXPECT_EQ(body("/link.txt"), "again");
}

TEST_F(FileCacheTest, MadeUnreadable) {
  if (::geteuid() != 0) GTEST_SKIP() << "workers run as nobody only when started as root";
  s.write_file("html/a.txt", "open");
  start();
  connect();
  EXPECT_EQ(body("/a.txt"), "open");
  ASSERT_EQ(::chmod(s.path("html/a.txt").c_str(), 0600), 0);  // root's only; workers are nobody
  EXPECT_EQ(body("/a.txt"), "<403>");
  ASSERT_EQ(::chmod(s.path("html/a.txt").c_str(), 0644), 0);
  EXPECT_EQ(body("/a.txt"), "open");
}

TEST_F(FileCacheTest, TheIndexFileOfADirectory) {
  s.write_file("html/site/index.html", "index one");
  start();
  connect();
  EXPECT_EQ(body("/site/"), "index one");
  EXPECT_EQ(body("/site/"), "index one");
  rewrite_in_place("html/site/index.html", "index two");
  EXPECT_EQ(body("/site/"), "index two");
  ASSERT_EQ(::unlink(s.path("html/site/index.html").c_str()), 0);
  EXPECT_EQ(body("/site/"), "<403>");
}

TEST_F(FileCacheTest, ConditionalAndRangeRequestsFromMemory) {
  s.write_file("html/a.txt", "0123456789");
  start();
  connect();
  EXPECT_EQ(body("/a.txt"), "0123456789");
  Response full = c->exchange(req("GET", "/a.txt"));
  ASSERT_EQ(full.status, 200);
  Response range = c->exchange(req("GET", "/a.txt", "Range: bytes=2-4\r\n"));
  EXPECT_EQ(range.status, 206) << range;
  EXPECT_EQ(range.body, "234");
  Response multi = c->exchange(req("GET", "/a.txt", "Range: bytes=0-0,9-9\r\n"));
  EXPECT_EQ(multi.status, 206) << multi;
  EXPECT_TRUE(contains(multi.body, "\r\n\r\n0\r\n")) << multi.body;
  EXPECT_TRUE(contains(multi.body, "\r\n\r\n9\r\n")) << multi.body;
  Response cond = c->exchange(req("GET", "/a.txt", "If-None-Match: " + full.header("ETag") + "\r\n"));
  EXPECT_EQ(cond.status, 304) << cond;
  Response h = c->exchange(req("HEAD", "/a.txt"), true);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.header("Content-Length"), "10");
  EXPECT_EQ(h.body, "");
}

TEST_F(FileCacheTest, ManyFilesAndNoDescriptorLeak) {
  for (int i = 0; i < 200; i++) s.write_file("html/f/" + std::to_string(i) + ".txt", std::to_string(i));
  start();
  connect();
  std::vector<pid_t> workers;
  ASSERT_TRUE(wait_for([&] { return (workers = s.worker_pids()).size() == 1; }, 5000ms));
  EXPECT_EQ(body("/f/0.txt"), "0");
  // The worker may still be closing the descriptor of the answer the client has already read: the
  // counts are taken once they hold still.
  auto settled = [&] {
    int n = count_open_fds(workers[0]);
    wait_for([&] {
      std::this_thread::sleep_for(50ms);
      int again = count_open_fds(workers[0]);
      return std::exchange(n, again) == again;
    }, 2000ms, 0ms);
    return n;
  };
  int fds = settled();
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < 200; i++) ASSERT_EQ(body("/f/" + std::to_string(i) + ".txt"), std::to_string(i));
  EXPECT_EQ(settled(), fds);
  rewrite_in_place("html/f/7.txt", "X");
  EXPECT_EQ(body("/f/7.txt"), "X");
  EXPECT_EQ(body("/f/8.txt"), "8");
}

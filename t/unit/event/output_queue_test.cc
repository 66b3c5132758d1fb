// The output queue's writes over a socketpair: a write with an allowance (limit_rate's) sends no more
// than it, across memory chunks and file ranges, and what is left goes out in order afterwards.
#include "event/output_queue.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "event/connection.h"

namespace baton {
namespace {

class OutputQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv_), 0);
    char tmpl[] = "/tmp/baton-outq-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    path_ = tmpl;
    ASSERT_EQ(::write(fd, "0123456789", 10), 10);
    ::close(fd);
  }
  void TearDown() override {
    ::close(sv_[0]);
    ::close(sv_[1]);
    ::unlink(path_.c_str());
  }
  Fd file() { return Fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC)); }
  std::string received() {
    char buf[256];
    ssize_t n = ::read(sv_[1], buf, sizeof(buf));
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }
  ssize_t write(OutputQueue& q, uint64_t max, Transport* t = PlainTransport::instance()) {
    return q.write(t, sv_[0], false, max);
  }

  int sv_[2] = {-1, -1};
  std::string path_;
};

TEST_F(OutputQueueTest, AnAllowanceCutsMemoryAndFilesAlike) {
  OutputQueue q;
  q.append(std::string_view("head:"));
  q.append_file(file(), 2, 6);  // "234567"
  q.append(std::string_view(":tail"));
  ASSERT_EQ(q.bytes(), 16u);

  EXPECT_EQ(write(q, 3), 3);  // inside the first memory chunk
  EXPECT_EQ(received(), "hea");
  EXPECT_EQ(q.bytes(), 13u);
  EXPECT_EQ(write(q, 4), 4);  // the rest of it, and into the file
  EXPECT_EQ(received(), "d:23");
  EXPECT_EQ(write(q, 5), 5);  // the file's end, and into the memory after it
  EXPECT_EQ(received(), "4567:");
  EXPECT_EQ(q.bytes(), 4u);
  EXPECT_EQ(write(q, UINT64_MAX), 4);
  EXPECT_EQ(received(), "tail");
  EXPECT_TRUE(q.empty());
}

TEST_F(OutputQueueTest, WithoutAnAllowanceEverythingGoes) {
  OutputQueue q;
  q.append(std::string_view("a"));
  q.append_file(file(), 0, 10);
  q.append(std::string_view("b"));
  EXPECT_EQ(q.write(PlainTransport::instance(), sv_[0], false), 12);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(received(), "a0123456789b");
}

// A transport without sendfile (as TLS): files are read and written in pieces, under the allowance.
class NoSendfile final : public Transport {
 public:
  ssize_t read(int fd, char* buf, size_t len) override { return PlainTransport::instance()->read(fd, buf, len); }
  ssize_t writev(int fd, const iovec* iov, int iovcnt, bool more) override {
    return PlainTransport::instance()->writev(fd, iov, iovcnt, more);
  }
  void shutdown_write(int fd) override { PlainTransport::instance()->shutdown_write(fd); }
};

TEST_F(OutputQueueTest, AnAllowanceCutsAFileReadInPieces) {
  NoSendfile t;
  OutputQueue q;
  q.append_file(file(), 0, 10);
  EXPECT_EQ(write(q, 4, &t), 4);
  EXPECT_EQ(received(), "0123");
  EXPECT_EQ(write(q, 100, &t), 6);
  EXPECT_EQ(received(), "456789");
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace baton

// Unit tests of the Outbox in src/os/unix/control.h: messages a full channel does not take wait, in
// order, with their descriptors, and leave once the reader makes room.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "os/unix/control.h"

namespace baton {
namespace {

Message numbered(int i) {
  Message m(MsgType::kConnection);
  m.set("n", i);
  int p[2];
  EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
  ::close(p[1]);
  m.fds.emplace_back(p[0]);
  return m;
}

// A small send buffer, whatever the host's default: the channel is full after a few messages.
void small_buffer(const Fd& fd) {
  int size = 4096;
  ASSERT_EQ(setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
}

TEST(Outbox, WhatAFullChannelDoesNotTakeWaitsInOrderAndLeavesWhenThereIsRoom) {
  Fd writer, reader;
  ASSERT_TRUE(control_socketpair(&writer, &reader));
  small_buffer(writer);
  Outbox box;
  constexpr int kMessages = 500;  // far more than a packet socket queues
  for (int i = 0; i < kMessages; i++) ASSERT_EQ(box.send(writer.get(), numbered(i)), 0) << i;
  EXPECT_GT(box.size(), 0u) << "the channel took every message: the test proves nothing";
  int next = 0;
  while (next < kMessages) {
    Message m;
    int r = recv_message(reader.get(), &m);
    if (r < 0 && errno == EAGAIN) {
      ASSERT_FALSE(box.empty()) << "a message is missing after " << next;
      ASSERT_EQ(box.flush(writer.get()), 0);
      continue;
    }
    ASSERT_EQ(r, 1);
    EXPECT_EQ(m.get_int("n", -1), next);
    EXPECT_EQ(m.fds.size(), 1u);
    next++;
  }
  EXPECT_TRUE(box.empty());
}

TEST(Outbox, AChannelWhoseReaderIsGoneDropsWhatWaits) {
  Fd writer, reader;
  ASSERT_TRUE(control_socketpair(&writer, &reader));
  small_buffer(writer);
  Outbox box;
  for (int i = 0; i < 500; i++) ASSERT_EQ(box.send(writer.get(), numbered(i)), 0);
  ASSERT_FALSE(box.empty());
  reader.reset();
  EXPECT_EQ(box.flush(writer.get()), -1);
  EXPECT_TRUE(box.empty());
  EXPECT_EQ(box.send(writer.get(), numbered(0)), -1);
}

}  // namespace
}  // namespace baton

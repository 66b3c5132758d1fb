// What a connection still has to send, in order: memory chunks and file ranges. A response that
// leaves in one write never comes here (it is written from the worker's shared buffer); what the
// socket did not take is queued, and a handler that streams (a proxied body) writes into the queue
// and watches its water marks: above the high mark it stops reading from its source, and it is told
// to resume once the queue has drained below the low mark. Files stay files: they are sent with
// sendfile() where the transport allows it, and read in pieces where it does not (TLS).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "os/unix/fd.h"

namespace baton {

class Transport;

class OutputQueue {
 public:
  // Memory above which a producer should pause, and below which it may go on.
  static constexpr size_t kHighWater = 64 * 1024;
  static constexpr size_t kLowWater = 16 * 1024;

  OutputQueue() = default;
  ~OutputQueue() { clear(); }
  OutputQueue(const OutputQueue&) = delete;
  OutputQueue& operator=(const OutputQueue&) = delete;

  bool empty() const { return head_ == nullptr; }
  uint64_t bytes() const { return mem_bytes_ + file_bytes_; }
  size_t memory() const { return mem_bytes_; }
  bool above_high() const { return mem_bytes_ >= kHighWater; }
  bool below_low() const { return mem_bytes_ < kLowWater; }
  bool has_file() const { return file_bytes_ > 0; }

  void append(std::string_view data);
  void append(std::string&& data);
  // A range of an open file; the queue owns the descriptor from now on.
  void append_file(Fd file, off_t offset, uint64_t len);
  void clear();
  // Appends what the queue holds to *out, when it holds memory only (a connection handed to another
  // process takes its unsent bytes along); false, and *out untouched, when a file range is queued.
  bool copy_memory(std::string* out) const;

  // Writes as much as the transport takes, and no more than max bytes (a rate limit's allowance:
  // the last piece then leaves at once, not held back for what follows it). Returns the bytes
  // written (the queue is empty when empty() says so), kIoWantRead / kIoWantWrite when it must
  // wait, or kIoError (errno set; ENODATA: a file ended before its range did).
  ssize_t write(Transport* t, int fd, bool more, uint64_t max = UINT64_MAX);

 private:
  struct Chunk {
    std::string data;  // memory chunk: data[pos..]
    size_t pos = 0;
    Fd file;           // file chunk when valid: [offset, offset + left)
    off_t offset = 0;
    uint64_t left = 0;
    std::unique_ptr<Chunk> next;
  };
  void push(std::unique_ptr<Chunk> c);
  void pop();
  ssize_t write_memory(Transport* t, int fd, bool more, uint64_t max);
  ssize_t write_file(Transport* t, int fd, uint64_t max);

  // A list rather than a deque: an empty queue (the common case) owns no memory at all.
  std::unique_ptr<Chunk> head_;
  Chunk* tail_ = nullptr;
  size_t mem_bytes_ = 0;
  uint64_t file_bytes_ = 0;
};

}  // namespace baton

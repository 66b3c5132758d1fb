#include "event/output_queue.h"

#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

#include "event/connection.h"

namespace baton {

namespace {
// Small pieces are gathered into the last chunk up to this size, so that a stream of small writes
// (a proxied body read in pieces) does not become one allocation and one iovec each.
constexpr size_t kCoalesce = 16 * 1024;
constexpr int kMaxIov = 32;
// A file sent with sendfile() goes in pieces of at most this, so that one connection does not hold
// the loop for the whole of a large file on a fast link.
constexpr size_t kSendfileChunk = 1u << 20;
}  // namespace

void OutputQueue::push(std::unique_ptr<Chunk> c) {
  Chunk* raw = c.get();
  if (tail_) tail_->next = std::move(c);
  else head_ = std::move(c);
  tail_ = raw;
}

void OutputQueue::pop() {
  std::unique_ptr<Chunk> next = std::move(head_->next);
  head_ = std::move(next);
  if (!head_) tail_ = nullptr;
}

bool OutputQueue::copy_memory(std::string* out) const {
  if (file_bytes_ > 0) return false;
  out->reserve(out->size() + mem_bytes_);
  for (const Chunk* c = head_.get(); c; c = c->next.get()) out->append(c->data, c->pos, std::string::npos);
  return true;
}

void OutputQueue::append(std::string_view data) {
  if (data.empty()) return;
  mem_bytes_ += data.size();
  if (tail_ && !tail_->file.valid() && tail_->data.size() - tail_->pos + data.size() <= kCoalesce) {
    if (tail_->pos > 0 && tail_->data.size() + data.size() > tail_->data.capacity()) {
      tail_->data.erase(0, tail_->pos);  // room at the front: use it rather than grow
      tail_->pos = 0;
    }
    tail_->data.append(data);
    return;
  }
  auto c = std::make_unique<Chunk>();
  c->data.reserve(data.size() < kCoalesce ? kCoalesce : data.size());
  c->data.assign(data);
  push(std::move(c));
}

void OutputQueue::append(std::string&& data) {
  if (data.empty()) return;
  if (data.size() < 1024) {
    append(std::string_view(data));
    return;
  }
  mem_bytes_ += data.size();
  auto c = std::make_unique<Chunk>();
  c->data = std::move(data);
  push(std::move(c));
}

void OutputQueue::append_file(Fd file, off_t offset, uint64_t len) {
  if (len == 0) return;
  file_bytes_ += len;
  auto c = std::make_unique<Chunk>();
  c->file = std::move(file);
  c->offset = offset;
  c->left = len;
  push(std::move(c));
}

void OutputQueue::clear() {
  // One at a time: a long list must not unwind through recursive destructors.
  while (head_) pop();
  mem_bytes_ = 0;
  file_bytes_ = 0;
}

ssize_t OutputQueue::write(Transport* t, int fd, bool more, uint64_t max) {
  ssize_t total = 0;
  while (head_ && max > 0) {
    ssize_t n = head_->file.valid() ? write_file(t, fd, max) : write_memory(t, fd, more, max);
    if (n < 0) return n;
    total += n;
    max -= static_cast<uint64_t>(n);
  }
  return total;
}

ssize_t OutputQueue::write_memory(Transport* t, int fd, bool more, uint64_t max) {
  iovec iov[kMaxIov];
  int n = 0;
  size_t want = 0;
  Chunk* c = head_.get();
  for (; c && n < kMaxIov && !c->file.valid(); c = c->next.get(), ++n) {
    iov[n].iov_base = c->data.data() + c->pos;
    iov[n].iov_len = c->data.size() - c->pos;
    want += iov[n].iov_len;
  }
  // A file or more memory after these: the segments may wait to fill up.
  bool followed = c != nullptr;
  if (want > max) {
    // Cut at the allowance; what follows comes later, so nothing is held back for it.
    size_t left = static_cast<size_t>(max);
    int k = 0;
    while (iov[k].iov_len < left) left -= iov[k++].iov_len;
    iov[k].iov_len = left;
    n = k + 1;
    want = static_cast<size_t>(max);
    followed = more = false;
  }
  ssize_t sent = t->writev(fd, iov, n, more || followed);
  if (sent < 0) return sent;
  size_t done = static_cast<size_t>(sent);
  mem_bytes_ -= done;
  while (done > 0) {
    size_t left = head_->data.size() - head_->pos;
    if (done < left) {
      head_->pos += done;
      break;
    }
    done -= left;
    pop();
  }
  if (static_cast<size_t>(sent) < want) return kIoWantWrite;  // the socket is full
  return sent;
}

ssize_t OutputQueue::write_file(Transport* t, int fd, uint64_t max) {
  Chunk& c = *head_;
  uint64_t left = c.left < max ? c.left : max;  // of this range, what may go now
  ssize_t sent;
  if (t->can_sendfile()) {
    size_t len = left > kSendfileChunk ? kSendfileChunk : static_cast<size_t>(left);
    off_t off = c.offset;
    sent = t->sendfile(fd, c.file.get(), &off, len);
    if (sent == 0) {
      errno = ENODATA;
      return kIoError;
    }
  } else {
    // Read a piece and write it; what the transport does not take is read again next time.
    char buf[16384];
    size_t len = left > sizeof(buf) ? sizeof(buf) : static_cast<size_t>(left);
    ssize_t got;
    do {
      got = ::pread(c.file.get(), buf, len, c.offset);
    } while (got < 0 && errno == EINTR);
    if (got <= 0) {
      if (got == 0) errno = ENODATA;
      return kIoError;
    }
    iovec iov{buf, static_cast<size_t>(got)};
    sent = t->writev(fd, &iov, 1, left > static_cast<uint64_t>(got));
  }
  if (sent < 0) return sent;
  c.offset += sent;
  c.left -= static_cast<uint64_t>(sent);
  file_bytes_ -= static_cast<uint64_t>(sent);
  if (c.left == 0) pop();
  return sent;
}

}  // namespace baton

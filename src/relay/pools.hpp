#pragma once
// Per-thread pools of the scarce things a relay borrows only while bytes move:
// copy buffers and kernel pipes (for splice). An idle relay direction holds
// neither. Pools are thread_local: a session never leaves its worker thread.

#include <cstddef>
#include <memory>

namespace portier::relay {

inline constexpr size_t kBufferSize = 16 * 1024;

/// A borrowed copy buffer; returns itself to the thread's pool.
class Buffer {
 public:
  Buffer();
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  char* data() { return data_; }
  static constexpr size_t size() { return kBufferSize; }

 private:
  char* data_;
};

/// A borrowed pipe for splice(2); returned to the pool only when empty.
class Pipe {
 public:
  Pipe();
  ~Pipe();
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  bool ok() const { return fds_[0] >= 0; }
  int read_fd() const { return fds_[0]; }
  int write_fd() const { return fds_[1]; }
  /// Bytes currently inside the pipe; a pipe with bytes left is closed, not pooled.
  size_t pending = 0;

 private:
  int fds_[2];
};

}  // namespace portier::relay

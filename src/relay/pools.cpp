#include "relay/pools.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <vector>

namespace portier::relay {

namespace {
constexpr size_t kMaxPooled = 64;

struct BufferPool {
  std::vector<char*> free;
  ~BufferPool() {
    for (char* p : free) delete[] p;
  }
};
thread_local BufferPool g_buffers;

struct PipePool {
  std::vector<std::pair<int, int>> free;
  ~PipePool() {
    for (auto [r, w] : free) {
      ::close(r);
      ::close(w);
    }
  }
};
thread_local PipePool g_pipes;
}  // namespace

Buffer::Buffer() {
  if (!g_buffers.free.empty()) {
    data_ = g_buffers.free.back();
    g_buffers.free.pop_back();
  } else {
    data_ = new char[kBufferSize];
  }
}

Buffer::~Buffer() {
  if (g_buffers.free.size() < kMaxPooled) g_buffers.free.push_back(data_);
  else delete[] data_;
}

Pipe::Pipe() : fds_{-1, -1} {
  if (!g_pipes.free.empty()) {
    fds_[0] = g_pipes.free.back().first;
    fds_[1] = g_pipes.free.back().second;
    g_pipes.free.pop_back();
    return;
  }
  if (::pipe2(fds_, O_NONBLOCK | O_CLOEXEC) != 0) fds_[0] = fds_[1] = -1;
}

Pipe::~Pipe() {
  if (fds_[0] < 0) return;
  if (pending == 0 && g_pipes.free.size() < kMaxPooled) {
    g_pipes.free.emplace_back(fds_[0], fds_[1]);
  } else {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
}

}  // namespace portier::relay

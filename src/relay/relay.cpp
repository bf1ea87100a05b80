#include "relay/relay.hpp"

#include <fcntl.h>

#include <asio/error.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <cerrno>
#include <cstring>

#include "relay/pools.hpp"

namespace portier::relay {

using Clock = std::chrono::steady_clock;
using net::use_nothrow;

namespace {

struct Direction {
  tls::Stream& src;
  tls::Stream& dst;
  uint64_t& count;
  Clock::time_point& last;
  bool src_side_ended = true;  // false: the write to dst failed
  std::string error;
};

std::string errno_text(int e) { return std::strerror(e); }

bool is_abort(const asio::error_code& ec) { return ec == asio::error::operation_aborted; }

net::Task<void> pump_splice(Direction& d) {
  const int src_fd = d.src.socket().native_handle();
  const int dst_fd = d.dst.socket().native_handle();
  for (;;) {
    auto ec = co_await d.src.wait_readable();
    if (ec) {
      if (!is_abort(ec)) d.error = ec.message();
      co_return;
    }
    Pipe pipe;  // borrowed only while bytes move
    if (!pipe.ok()) {
      d.error = "pipe2() failed: " + errno_text(errno);
      co_return;
    }
    ssize_t n = ::splice(src_fd, nullptr, pipe.write_fd(), nullptr, 1 << 16,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n == 0) co_return;  // orderly close
    if (n < 0) {
      // EAGAIN after a readable wakeup: spurious or the data went elsewhere.
      if (errno == EAGAIN || errno == EINTR) continue;
      d.error = errno_text(errno);
      co_return;
    }
    pipe.pending = static_cast<size_t>(n);
    d.count += static_cast<uint64_t>(n);
    d.last = Clock::now();
    while (pipe.pending > 0) {
      ssize_t m = ::splice(pipe.read_fd(), nullptr, dst_fd, nullptr, pipe.pending,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (m > 0) {
        pipe.pending -= static_cast<size_t>(m);
        continue;
      }
      if (m < 0 && (errno == EAGAIN || errno == EINTR)) {
        auto [wec] = co_await d.dst.socket().async_wait(asio::ip::tcp::socket::wait_write,
                                                        use_nothrow);
        if (wec) {
          d.src_side_ended = false;
          if (!is_abort(wec)) d.error = wec.message();
          co_return;
        }
        continue;
      }
      d.src_side_ended = false;
      d.error = m < 0 ? errno_text(errno) : "Connection closed";
      co_return;
    }
  }
}

net::Task<void> pump_copy(Direction& d) {
  for (;;) {
    auto ec = co_await d.src.wait_readable();
    if (ec) {
      if (!is_abort(ec)) d.error = ec.message();
      co_return;
    }
    Buffer buf;  // borrowed only while bytes move
    size_t n = d.src.try_read(buf.data(), Buffer::size(), ec);
    if (ec == asio::error::would_block) continue;
    if (ec == asio::error::eof) co_return;
    if (ec) {
      d.error = ec.message();
      co_return;
    }
    d.count += n;
    d.last = Clock::now();
    auto wec = co_await d.dst.write_all(std::string_view(buf.data(), n));
    if (wec) {
      d.src_side_ended = false;
      if (!is_abort(wec)) d.error = wec.message();
      co_return;
    }
  }
}

net::Task<void> pump(Direction& d, bool splice) {
  if (splice) co_await pump_splice(d);
  else co_await pump_copy(d);
}

}  // namespace

net::Task<Result> run(tls::Stream& client, tls::Stream& backend, Options opts,
                      const bool* stopped) {
  using namespace asio::experimental::awaitable_operators;
  Result res;
  Clock::time_point last = Clock::now();
  const bool splice = opts.splice && !client.is_tls() && !backend.is_tls();
  Direction up{client, backend, res.in, last, true, {}};
  Direction down{backend, client, res.out, last, true, {}};

  auto which = co_await (pump(up, splice) || pump(down, splice));
  const Direction& d = which.index() == 0 ? up : down;
  const bool from_client = (which.index() == 0) == d.src_side_ended;
  res.side = from_client ? EndSide::Client : EndSide::Server;
  res.error = d.error;
  if (stopped && *stopped) {
    res.side = EndSide::Proxy;
    res.error.clear();
  }
  res.idle = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - last);
  co_return res;
}

}  // namespace portier::relay

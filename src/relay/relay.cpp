#include "relay/relay.hpp"

#include <fcntl.h>

#include <asio/error.hpp>
#include <asio/post.hpp>
#include <cerrno>
#include <cstring>

#include "net/readiness.hpp"

namespace portier::relay {

using Clock = std::chrono::steady_clock;
using WaitType = asio::ip::tcp::socket::wait_type;

namespace {
// Bytes one direction may move before yielding to other sessions.
constexpr size_t kFairnessBudget = 256 * 1024;
constexpr size_t kSpliceChunk = 64 * 1024;
thread_local Stats g_stats;
}  // namespace

Stats& thread_stats() { return g_stats; }

Relay* Relay::start(tls::Stream client, tls::Stream backend, Options opts, Done done) {
  auto* r = new Relay(std::move(client), std::move(backend), opts, std::move(done));
  r->arm_read(0);
  r->arm_read(1);
  return r;
}

Relay::Relay(tls::Stream client, tls::Stream backend, Options opts, Done done)
    : client_(std::move(client)), backend_(std::move(backend)), done_(std::move(done)),
      linger_(opts.linger), linger_timer_(client_.socket().get_executor()), last_(Clock::now()) {
  splice_ = opts.splice && !client_.is_tls() && !backend_.is_tls();
  dirs_[0].src = &client_;
  dirs_[0].dst = &backend_;
  dirs_[0].count = &result_.in;
  dirs_[0].from_client = true;
  dirs_[1].src = &backend_;
  dirs_[1].dst = &client_;
  dirs_[1].count = &result_.out;
}

void Relay::arm_read(int d) {
  Direction& x = dirs_[d];
  ++pending_;
  if (x.src->has_pending()) {
    // OpenSSL already holds decrypted bytes: the socket may never become
    // readable for them, so don't wait on it.
    asio::post(x.src->socket().get_executor(), [this, d] { on_event(d, {}, true); });
    return;
  }
  WaitType w = x.src->read_wants_write() ? WaitType::wait_write : WaitType::wait_read;
  net::async_wait_ready(x.src->socket(), w,
                        [this, d](const asio::error_code& ec) { on_event(d, ec, true); });
}

void Relay::arm_write(int d, WaitType want) {
  ++pending_;
  net::async_wait_ready(dirs_[d].dst->socket(), want,
                        [this, d](const asio::error_code& ec) { on_event(d, ec, false); });
}

void Relay::on_event(int d, const asio::error_code& ec, bool read_side) {
  --pending_;
  if (finished_) {
    maybe_delete();
    return;
  }
  if (ec) {
    bool client_side = dirs_[d].from_client == read_side;
    finish(client_side, ec == asio::error::operation_aborted ? "" : ec.message());
    return;
  }
  // The socket became ready (or a retry was posted for bytes TLS holds).
  if (read_side) dirs_[d].src->note_socket_wait();
  transfer(d);
}

void Relay::transfer(int d) {
  Direction& x = dirs_[d];
  // A direction that went over to splice may still hold copied bytes (the
  // write of the buffer that filled up blocked): those go out first.
  bool use_splice = splice_ && x.spliced && !x.copy && x.len == 0;
  bool more = use_splice ? transfer_splice(x, d) : transfer_copy(x, d);
  (void)more;
}

// One side ended its stream: pass the half-close on and keep the other
// direction going (bounded by the linger timer) until it ends too.
void Relay::end_of_stream(Direction& x) {
  x.eof = true;
  x.pipe.reset();
  x.buf.reset();
  if (!first_eof_) first_eof_ = x.from_client ? 1 : 2;
  if (dirs_[0].eof && dirs_[1].eof) {
    finish(first_eof_ == 1, "");
    return;
  }
  x.dst->shutdown_write();
  arm_linger(linger_);
}

void Relay::arm_linger(std::chrono::milliseconds after) {
  // A coarse per-worker deadline (net::Deadline): no timerfd_settime of its
  // own, and it never runs after finish() or the Relay's destruction.
  linger_timer_.arm_after(after, [this] {
    if (finished_) return;
    auto quiet = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_);
    if (quiet >= linger_) {
      finish(first_eof_ == 1, "");
      return;
    }
    arm_linger(linger_ - quiet);  // bytes moved meanwhile: wait the rest
  });
}

// Returns after arming the next wait or finishing.
bool Relay::transfer_splice(Direction& x, int d) {
  const int src_fd = x.src->socket().native_handle();
  const int dst_fd = x.dst->socket().native_handle();
  size_t moved = 0;
  for (;;) {
    if (!x.pipe) {
      x.pipe.emplace();
      if (!x.pipe->ok()) {
        // No pipe to be had (EMFILE, ENFILE): copy this direction instead of
        // ending a live session.
        x.pipe.reset();
        x.copy = true;
        return transfer_copy(x, d);
      }
    }
    if (x.pipe->pending == 0) {
      if (moved >= kFairnessBudget) {
        x.pipe.reset();
        ++pending_;
        asio::post(x.src->socket().get_executor(), [this, d] { on_event(d, {}, true); });
        return true;
      }
      ssize_t n = ::splice(src_fd, nullptr, x.pipe->write_fd(), nullptr, kSpliceChunk,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n == 0) {
        end_of_stream(x);
        return false;
      }
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
          x.pipe.reset();  // idle: the pipe goes back to the pool
          if (errno == EAGAIN) net::note_drained(x.src->socket(), WaitType::wait_read);
          arm_read(d);
          return false;
        }
        finish(x.from_client, std::strerror(errno));
        return false;
      }
      x.pipe->pending = static_cast<size_t>(n);
      *x.count += static_cast<uint64_t>(n);
      moved += static_cast<size_t>(n);
      last_ = Clock::now();
      // Fewer bytes than asked for: the socket was drained at that moment.
      x.drained = static_cast<size_t>(n) < kSpliceChunk;
    }
    ssize_t m = ::splice(x.pipe->read_fd(), nullptr, dst_fd, nullptr, x.pipe->pending,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (m > 0) {
      x.pipe->pending -= static_cast<size_t>(m);
      if (x.pipe->pending == 0 && x.drained) {
        // No EAGAIN probe: the wait re-checks readiness (a FIN that came
        // with the last bytes raised no event of its own, see net/readiness.hpp).
        x.pipe.reset();
        arm_read(d);
        return false;
      }
      continue;
    }
    if (m < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (errno == EAGAIN) net::note_drained(x.dst->socket(), WaitType::wait_write);
      arm_write(d, WaitType::wait_write);  // keep the pipe: it holds bytes
      return false;
    }
    finish(!x.from_client, m < 0 ? std::strerror(errno) : "Connection closed");
    return false;
  }
}

bool Relay::transfer_copy(Direction& x, int d) {
  size_t moved = 0;
  for (;;) {
    if (x.len == 0) {
      if (moved >= kFairnessBudget) {
        x.buf.reset();
        ++pending_;
        asio::post(x.src->socket().get_executor(), [this, d] { on_event(d, {}, true); });
        return true;
      }
      if (!x.buf) x.buf.emplace();
      asio::error_code ec;
      size_t n = x.src->try_read(x.buf->data(), Buffer::size(), ec);
      if (ec == asio::error::would_block) {
        x.buf.reset();  // idle: the buffer goes back to the pool
        arm_read(d);
        return false;
      }
      if (ec == asio::error::eof) {
        end_of_stream(x);
        return false;
      }
      if (ec) {
        finish(x.from_client, ec.message());
        return false;
      }
      x.off = 0;
      x.len = n;
      *x.count += n;
      moved += n;
      last_ = Clock::now();
      ++g_stats.copy_reads;
      x.drained = n < Buffer::size();
      // A read that fills the buffer is a bulk transfer: once these bytes
      // are out, this direction splices (when both legs are plaintext).
      if (!x.drained && splice_ && !x.copy && !x.spliced) {
        x.spliced = true;
        ++g_stats.splice_switches;
      }
    }
    asio::error_code ec;
    WaitType want;
    size_t w = x.dst->try_write(x.buf->data() + x.off, x.len, ec, want);
    if (ec == asio::error::would_block) {
      arm_write(d, want);  // keep the buffer: it holds bytes
      return false;
    }
    if (ec) {
      finish(!x.from_client, ec.message());
      return false;
    }
    x.off += w;
    x.len -= w;
    if (x.len == 0 && x.spliced && splice_ && !x.copy) {
      x.buf.reset();
      return transfer_splice(x, d);
    }
    if (x.len == 0 && x.drained) {
      // Short read: the socket (or TLS record) was drained; no EAGAIN probe.
      // arm_read() posts at once when TLS still holds bytes, and otherwise
      // the wait's EPOLL_CTL_MOD re-checks readiness (net/readiness.hpp:
      // only an EAGAIN proves a socket drained).
      x.buf.reset();
      arm_read(d);
      return false;
    }
  }
}

void Relay::stop(std::string_view reason) {
  if (finished_) return;
  stopped_ = true;
  result_.reason.assign(reason);
  finish(false, "");
}

void Relay::finish(bool client_side, std::string error) {
  if (finished_) return;
  finished_ = true;
  if (first_eof_) {
    // Whatever ends a half-closed relay (the linger timer, a write into the
    // side that has gone) follows from the first end of stream: report that.
    client_side = first_eof_ == 1;
    error.clear();
  }
  result_.side = stopped_ ? EndSide::Proxy : client_side ? EndSide::Client : EndSide::Server;
  result_.error = stopped_ ? std::string() : std::move(error);
  result_.idle = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - last_);
  for (auto& x : dirs_) {
    // A pipe with bytes still inside is closed, not pooled (Pipe's destructor).
    x.pipe.reset();
    x.buf.reset();
  }
  linger_timer_.cancel();
  client_.close();   // cancels pending waits: their handlers see `finished_`
  backend_.close();
  Done done = std::move(done_);
  if (done) done(result_);
  maybe_delete();
}

void Relay::maybe_delete() {
  if (finished_ && pending_ == 0) delete this;
}

}  // namespace portier::relay

#pragma once
// The post-login relay: a small self-owning object that takes over the two
// connections once the login is done; nothing of the pre-login session (its
// coroutine frames, parsers, buffers) survives. Bytes flow both ways until
// either side closes.
//
// Per direction it parks on "socket readable" (a reactor wait holding no
// buffer), then borrows a pooled 16 KiB buffer (read/write; always for a TLS
// leg) or a pooled pipe (splice(2)) only while bytes move, and keeps it only
// while the destination is not writable. A plaintext direction starts with
// read/write — the small post-login messages cost two system calls — and
// switches to splice for good once a read fills the buffer (a bulk
// transfer). When the pipe pool cannot open a pipe (EMFILE, ENFILE), that
// direction keeps copying.
//
// A read that returns less than asked for is not followed by an EAGAIN probe:
// the next wait is a non-speculative Asio reactor op, whose EPOLL_CTL_MOD
// re-evaluates readiness, so bytes that arrived meanwhile still complete it
// (edge-triggered epoll notwithstanding).
//
// Half-close: an end of stream from one side is passed on as a half-close
// (TCP shutdown of the sending side, with TLS close_notify first) and the
// other direction keeps relaying until its own end of stream, as long as
// bytes keep moving at least every `linger` (then the relay ends). A read or
// write error ends both directions at once.
//
// Threading: lives on the worker thread of its sockets. The `done` callback
// runs exactly once, on that thread, after both sockets are closed.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>


#include "net/deadline.hpp"
#include "relay/pools.hpp"
#include "tls/stream.hpp"

namespace portier::relay {

enum class EndSide { Client, Server, Proxy };

struct Result {
  EndSide side = EndSide::Client;
  std::string error;      // empty for a clean close
  std::string reason;     // EndSide::Proxy: why (empty = process shutdown)
  uint64_t in = 0;        // client -> backend bytes
  uint64_t out = 0;       // backend -> client bytes
  std::chrono::seconds idle{0};
};

struct Options {
  bool splice = true;  // allow splice(2) when both legs are plaintext
  /// After one side's end of stream: how long the other direction may stay
  /// silent before the relay ends.
  std::chrono::milliseconds linger{std::chrono::seconds(30)};
};

/// Per-thread counters (worker thread): what the relays of this thread did.
struct Stats {
  uint64_t copy_reads = 0;        // read()/SSL_read calls that returned bytes
  uint64_t splice_switches = 0;   // directions that went over to splice
};
/// This thread's counters.
Stats& thread_stats();

class Relay {
 public:
  using Done = std::function<void(const Result&)>;

  /// Start relaying; the Relay owns itself and deletes itself after `done`.
  static Relay* start(tls::Stream client, tls::Stream backend, Options opts, Done done);

  /// End now (process shutdown, or `reason` such as an admin kick):
  /// reported as EndSide::Proxy.
  void stop(std::string_view reason = {});
  /// Bytes relayed so far (worker thread).
  uint64_t bytes_in() const { return result_.in; }
  uint64_t bytes_out() const { return result_.out; }

 private:
  struct Direction {
    tls::Stream* src = nullptr;
    tls::Stream* dst = nullptr;
    uint64_t* count = nullptr;
    bool from_client = false;   // src is the client
    std::optional<Pipe> pipe;   // splice: borrowed while bytes are in flight
    std::optional<Buffer> buf;  // copy: borrowed while bytes are in flight
    size_t off = 0;
    size_t len = 0;
    bool copy = false;          // copy even when splicing (no pipe could be had)
    bool spliced = false;       // a read filled the copy buffer: splice from now on
    bool drained = false;       // the last read returned less than asked for
    bool eof = false;           // src ended its stream; dst got a half-close
  };

  Relay(tls::Stream client, tls::Stream backend, Options opts, Done done);
  void arm_read(int d);
  void arm_write(int d, asio::ip::tcp::socket::wait_type want);
  void on_event(int d, const asio::error_code& ec, bool read_side);
  void transfer(int d);
  bool transfer_splice(Direction& x, int d);
  bool transfer_copy(Direction& x, int d);
  void finish(bool client_side, std::string error);
  void end_of_stream(Direction& x);
  void arm_linger(std::chrono::milliseconds after);
  void maybe_delete();

  tls::Stream client_;
  tls::Stream backend_;
  Direction dirs_[2];
  Result result_;
  Done done_;
  std::chrono::milliseconds linger_;
  net::Deadline linger_timer_;  // armed only once half-closed
  std::chrono::steady_clock::time_point last_;
  unsigned pending_ = 0;  // outstanding async operations referring to `this`
  uint8_t first_eof_ = 0;  // 0 none yet, 1 client, 2 backend ended first
  bool splice_ = false;
  bool finished_ = false;
  bool stopped_ = false;
};

}  // namespace portier::relay

#pragma once
// TCP sockets without the system calls Asio adds around them (issue 9,
// docs/BENCHMARKS.md "syscalls per login"): sockets are created non-blocking
// (accept4/socket with SOCK_NONBLOCK|SOCK_CLOEXEC: no ioctl(FIONBIO) later),
// are known to Asio as not shared (closing them needs no EPOLL_CTL_DEL), the
// peer address comes with accept4, the local address is the listener's
// unless it is bound to a wildcard, and connect completes with one
// getsockopt(SO_ERROR) (no poll()). Waits on them skip Asio's EPOLL_CTL_MOD
// where the socket is known drained (net/readiness.hpp).
//
// Owns: nothing beyond the sockets it returns. May use: asio, core.
// Threading: call on the thread that runs the socket's executor.

#include <asio/ip/tcp.hpp>
#include <optional>
#include <tuple>

#include "net/awaitable.hpp"

namespace portier::net {

/// Hand `fd` — a TCP socket already O_NONBLOCK|O_CLOEXEC and not shared with
/// any other descriptor — to Asio: registered with the reactor, marked
/// non-blocking and not a possible dup. Closes `fd` on error.
asio::ip::tcp::socket adopt(const asio::any_io_executor& ex, const asio::ip::tcp& proto, int fd,
                            asio::error_code& ec);

/// socket(SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC) + adopt().
asio::ip::tcp::socket open_socket(const asio::any_io_executor& ex, const asio::ip::tcp& proto,
                                  asio::error_code& ec);

/// Both ends of an accepted connection, known without asking the kernel
/// again: `local` is empty when the listener is bound to a wildcard address
/// (then getsockname() is the only way to learn it).
struct Endpoints {
  asio::ip::tcp::endpoint remote;
  std::optional<asio::ip::tcp::endpoint> local;
};

/// The accept side of one listening socket (one per worker and listener).
/// Prepares the listener once: non-blocking, TCP_NODELAY (inherited by every
/// accepted socket on Linux, so no setsockopt per connection), and remembers
/// its local endpoint when it is not a wildcard.
class Listener {
 public:
  explicit Listener(asio::ip::tcp::acceptor& acc);
  /// accept4() a connection; when the backlog is empty (EAGAIN), wait for the
  /// next one without an EPOLL_CTL_MOD (net/readiness.hpp). Per connection:
  /// one accept4, plus one EAGAIN accept4 when connections come one by one
  /// (under load the backlog is rarely empty). Transient
  /// errors of a connection that went away before it was accepted are
  /// skipped; others (EMFILE, ENFILE, ENOBUFS, the listener closed) return.
  Task<std::tuple<asio::error_code, asio::ip::tcp::socket, Endpoints>> accept();
  /// The local endpoint of every accepted connection, unless wildcard-bound.
  const std::optional<asio::ip::tcp::endpoint>& fixed_local() const { return local_; }

 private:
  asio::ip::tcp::acceptor& acc_;
  std::optional<asio::ip::tcp::endpoint> local_;
};

/// The local endpoint of an accepted connection: `eps.local` or getsockname().
asio::ip::tcp::endpoint local_endpoint(asio::ip::tcp::socket& s, const Endpoints& eps,
                                       asio::error_code& ec);

/// connect(2) without waiting: an immediate error, or success with
/// `in_progress` telling whether the handshake still runs. A caller that
/// expects the peer to speak first (every mail backend greets) can go on to
/// read: a failed connect makes the socket readable with the error (recv
/// returns ECONNREFUSED, ETIMEDOUT ...), and connected() tells the two apart
/// on the failure path. This saves connect()'s wait for writability (an
/// EPOLL_CTL_MOD adding EPOLLOUT, and EPOLLOUT wake-ups for the rest of the
/// connection) and its getsockopt(SO_ERROR).
asio::error_code connect_start(asio::ip::tcp::socket& s, const asio::ip::tcp::endpoint& ep,
                               bool& in_progress);
/// The TCP handshake completed (getpeername(2) succeeds).
bool connected(asio::ip::tcp::socket& s);

/// Connect `s` (open, non-blocking) to `ep`: connect(2), then — when it is in
/// progress — a wait for writability and one getsockopt(SO_ERROR). Cancelling
/// the socket (deadline) ends the wait with operation_aborted.
Task<asio::error_code> connect(asio::ip::tcp::socket& s, const asio::ip::tcp::endpoint& ep);

}  // namespace portier::net

#pragma once
// TCP sockets without the system calls Asio adds around them (issue 9,
// docs/BENCHMARKS.md "syscalls per login"): sockets are created non-blocking
// (accept4/socket with SOCK_NONBLOCK|SOCK_CLOEXEC: no ioctl(FIONBIO) later),
// are known to Asio as not shared (closing them needs no EPOLL_CTL_DEL), the
// peer address comes with accept4, the local address is the listener's
// unless it is bound to a wildcard, and connect completes with one
// getsockopt(SO_ERROR) (no poll()).
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
  /// Wait until a connection is there, then accept4() it: per connection one
  /// EPOLL_CTL_MOD (the wait) and one accept4 — no EAGAIN probe (the wait's
  /// MOD re-checks readiness, so a backlog completes it at once). Transient
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

/// Connect `s` (open, non-blocking) to `ep`: connect(2), then — when it is in
/// progress — a wait for writability and one getsockopt(SO_ERROR). Cancelling
/// the socket (deadline) ends the wait with operation_aborted.
Task<asio::error_code> connect(asio::ip::tcp::socket& s, const asio::ip::tcp::endpoint& ep);

}  // namespace portier::net

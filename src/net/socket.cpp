#include "net/socket.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/error.hpp>
#include <cerrno>
#include <cstring>

#include "net/readiness.hpp"

namespace portier::net {

namespace {
using asio::ip::tcp;

asio::error_code errno_ec(int e) { return asio::error_code(e, asio::error::get_system_category()); }

// Asio keeps a socket's "non-blocking" and "possible dup" knowledge in its
// implementation state, which only its own ioctl/accept paths set. This
// subclass reaches it (Asio 1.22's reactive socket service; the move into a
// plain tcp::socket keeps the state).
class Access : public tcp::socket {
 public:
  using tcp::socket::basic_stream_socket;
  void mark_ours() {
    namespace so = asio::detail::socket_ops;
    auto& impl = this->impl_.get_implementation();
    impl.state_ = static_cast<so::state_type>(
        (impl.state_ | so::user_set_non_blocking | so::internal_non_blocking) & ~so::possible_dup);
  }
};

tcp::endpoint endpoint_of(const sockaddr_storage& ss, socklen_t len) {
  tcp::endpoint ep;
  if (len <= ep.capacity()) {
    std::memcpy(ep.data(), &ss, len);
    ep.resize(len);
  }
  return ep;
}
}  // namespace

tcp::socket adopt(const asio::any_io_executor& ex, const tcp& proto, int fd, asio::error_code& ec) {
  Access s(ex);
  s.assign(proto, fd, ec);  // EPOLL_CTL_ADD
  if (ec) {
    ::close(fd);
    return tcp::socket(ex);
  }
  s.mark_ours();
  tcp::socket out(std::move(s));
  note_registered(out);  // EPOLL_CTL_ADD reports readiness it finds: no wait needs a MOD
  return out;
}

tcp::socket open_socket(const asio::any_io_executor& ex, const tcp& proto, asio::error_code& ec) {
  int fd = ::socket(proto.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    ec = errno_ec(errno);
    return tcp::socket(ex);
  }
  return adopt(ex, proto, fd, ec);
}

Listener::Listener(tcp::acceptor& acc) : acc_(acc) {
  asio::error_code ec;
  acc_.non_blocking(true, ec);
  acc_.set_option(tcp::no_delay(true), ec);  // inherited by accepted sockets
  auto ep = acc_.local_endpoint(ec);
  if (!ec && !ep.address().is_unspecified()) local_ = ep;
}

Task<std::tuple<asio::error_code, tcp::socket, Endpoints>> Listener::accept() {
  auto ex = acc_.get_executor();
  for (;;) {
    if (!acc_.is_open())
      co_return std::tuple{asio::error_code(asio::error::operation_aborted), tcp::socket(ex),
                           Endpoints{}};
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = ::accept4(acc_.native_handle(), reinterpret_cast<sockaddr*>(&ss), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      // Nothing there after all, or a connection that died in the backlog
      // (accept(2): "treat as EAGAIN"): wait again.
      if (e == EAGAIN || e == EWOULDBLOCK) {
        // Backlog empty: every new connection raises a new event, so the
        // wait needs no EPOLL_CTL_MOD (net/readiness.hpp).
        note_drained(acc_, tcp::acceptor::wait_read);
        auto [wec] = co_await async_wait_ready(acc_, tcp::acceptor::wait_read, use_nothrow);
        if (wec) co_return std::tuple{wec, tcp::socket(ex), Endpoints{}};
        continue;
      }
      if (e == EINTR || e == ECONNABORTED || e == EPROTO ||
          e == ENETDOWN || e == ENOPROTOOPT || e == EHOSTDOWN || e == ENONET ||
          e == EHOSTUNREACH || e == EOPNOTSUPP || e == ENETUNREACH || e == EPERM)
        continue;
      co_return std::tuple{errno_ec(e), tcp::socket(ex), Endpoints{}};
    }
    Endpoints eps{endpoint_of(ss, len), local_};
    asio::error_code ec;
    tcp::socket s = adopt(ex, eps.remote.protocol(), fd, ec);
    if (ec) co_return std::tuple{ec, std::move(s), Endpoints{}};
    co_return std::tuple{asio::error_code{}, std::move(s), eps};
  }
}

tcp::endpoint local_endpoint(tcp::socket& s, const Endpoints& eps, asio::error_code& ec) {
  ec = {};
  if (eps.local) return *eps.local;
  return s.local_endpoint(ec);
}

asio::error_code connect_start(tcp::socket& s, const tcp::endpoint& ep, bool& in_progress) {
  in_progress = false;
  if (::connect(s.native_handle(), ep.data(), static_cast<socklen_t>(ep.size())) == 0) return {};
  int e = errno;
  if (e != EINPROGRESS && e != EAGAIN && e != EINTR) return errno_ec(e);
  in_progress = true;
  return {};
}

bool connected(tcp::socket& s) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  return ::getpeername(s.native_handle(), reinterpret_cast<sockaddr*>(&ss), &len) == 0;
}

Task<asio::error_code> connect(tcp::socket& s, const tcp::endpoint& ep) {
  bool in_progress = false;
  if (auto ec = connect_start(s, ep, in_progress); ec || !in_progress) co_return ec;
  auto [wec] = co_await s.async_wait(tcp::socket::wait_write, use_nothrow);
  if (wec) co_return wec;
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(s.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  co_return err ? errno_ec(err) : asio::error_code{};
}

}  // namespace portier::net

#include "tls/stream.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <asio/error.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "net/readiness.hpp"
#include "tls/context.hpp"

namespace portier::tls {

using net::use_nothrow;

Stream::Stream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {
  // Sockets from net::adopt() (accept4/socket with SOCK_NONBLOCK) already are:
  // asking Asio costs nothing, telling it would cost an ioctl(FIONBIO).
  if (!socket_.non_blocking()) {
    asio::error_code ec;
    socket_.non_blocking(true, ec);
  }
}

Stream::~Stream() {
  if (ssl_) SSL_free(ssl_);
}

void Stream::cancel() {
  asio::error_code ec;
  socket_.cancel(ec);
}

void Stream::close() {
  asio::error_code ec;
  if (ssl_ && socket_.is_open()) {
    // One non-blocking attempt at close_notify; a peer that is gone or slow
    // must not hold us up.
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  // No shutdown(SHUT_RDWR) first: close() of the last descriptor sends the
  // same FIN (or RST when unread bytes are left, as shutdown+close would).
  socket_.close(ec);
}

net::Task<HandshakeResult> Stream::handshake_server(SSL_CTX* ctx) {
  ssl_ = SSL_new(ctx);
  if (!ssl_ || SSL_set_fd(ssl_, socket_.native_handle()) != 1) {
    co_return HandshakeResult{false, false, "Failed to create SSL server: " + last_error()};
  }
  SSL_set_accept_state(ssl_);
  co_return co_await handshake(true);
}

net::Task<HandshakeResult> Stream::handshake_client(SSL_CTX* ctx, const std::string& host,
                                                    bool verify) {
  ssl_ = SSL_new(ctx);
  if (!ssl_ || SSL_set_fd(ssl_, socket_.native_handle()) != 1) {
    co_return HandshakeResult{false, false, "Failed to create SSL client: " + last_error()};
  }
  asio::error_code ec;
  (void)asio::ip::make_address(host, ec);  // only "is it an IP?" matters here
  bool is_ip = !ec;
  if (!host.empty() && !is_ip) SSL_set_tlsext_host_name(ssl_, host.c_str());
  if (verify && !host.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(ssl_, host.c_str());
    }
  }
  SSL_set_connect_state(ssl_);
  co_return co_await handshake(false);
}

net::Task<HandshakeResult> Stream::handshake(bool server) {
  for (;;) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) co_return HandshakeResult{true, false, {}};
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      auto [ec] = co_await socket_.async_wait(err == SSL_ERROR_WANT_READ
                                                  ? asio::ip::tcp::socket::wait_read
                                                  : asio::ip::tcp::socket::wait_write,
                                              use_nothrow);
      if (ec) co_return HandshakeResult{false, false, ec.message()};
      continue;
    }
    HandshakeResult res;
    long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      // Server side: the client's certificate ([tls] verify_client = required).
      res.cert_error = true;
      res.error = std::string(server ? "client certificate verification failed: "
                                     : "certificate verification failed: ") +
                  X509_verify_cert_error_string(verify);
      ERR_clear_error();
    } else if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
      res.error = errno != 0 ? std::string(std::strerror(errno)) : "Connection closed";
    } else if (err == SSL_ERROR_ZERO_RETURN) {
      res.error = "Connection closed";
    } else {
      res.error = last_error();
    }
    co_return res;
  }
}

void Stream::note_would_block() {
  want_socket_ = true;
  ++idle_polls_;
#ifdef PORTIER_PROGRESS_CHECKS
  // Two reads that wanted input without a socket wait between them: the
  // caller retries without suspending. That is the busy loop of a partial TLS
  // record (issue 8 item 1); the fuzz targets must never see it.
  if (idle_polls_ > 2) {
    std::fprintf(stderr, "tls::Stream: %u reads wanted input without a socket wait\n",
                 idle_polls_);
    std::abort();
  }
#endif
}

net::Task<asio::error_code> Stream::wait_readable() {
  if (has_pending()) co_return asio::error_code{};
  auto what = (ssl_ && tls_want_write_) ? asio::ip::tcp::socket::wait_write
                                         : asio::ip::tcp::socket::wait_read;
  // Plaintext: try_read() noted a drained socket, so no EPOLL_CTL_MOD.
  auto [ec] = ssl_ ? co_await socket_.async_wait(what, use_nothrow)
                   : co_await net::async_wait_ready(socket_, what, use_nothrow);
  if (!ec) note_socket_wait();
  co_return ec;
}

void Stream::shutdown_write() {
  if (write_shut_) return;
  write_shut_ = true;
  if (ssl_ && socket_.is_open()) {
    // close_notify ends only our sending direction: OpenSSL keeps reading
    // until the peer's own close_notify or end of stream.
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  asio::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
}

size_t Stream::try_read(char* buf, size_t len, asio::error_code& ec) {
  ec = {};
  if (!ssl_) {
    size_t n = socket_.read_some(asio::buffer(buf, len), ec);
    if (ec == asio::error::try_again) ec = asio::error::would_block;
    if (ec == asio::error::would_block) note_would_block();
    else idle_polls_ = 0;
    // EAGAIN: the receive queue is empty, so the next byte (or FIN) raises a
    // new edge-triggered event (net/readiness.hpp). A short read is not
    // enough: a FIN that came with the data raised no event of its own.
    if (ec == asio::error::would_block) net::note_drained(socket_, asio::ip::tcp::socket::wait_read);
    return n;
  }
  tls_want_write_ = false;
  ERR_clear_error();
  size_t n = 0;
  int r = SSL_read_ex(ssl_, buf, len, &n);
  if (r == 1) {
    want_socket_ = false;
    idle_polls_ = 0;
    return n;
  }
  int err = SSL_get_error(ssl_, r);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      ec = asio::error::would_block;
      note_would_block();
      break;
    case SSL_ERROR_WANT_WRITE:
      // TLS 1.3 post-handshake messages can need a write while reading.
      tls_want_write_ = true;
      ec = asio::error::would_block;
      note_would_block();
      break;
    case SSL_ERROR_ZERO_RETURN:
      ec = asio::error::eof;
      break;
    case SSL_ERROR_SYSCALL:
      // errno 0 with an empty queue: the peer closed without close_notify.
      ec = errno ? asio::error_code(errno, asio::error::get_system_category())
                 : asio::error_code(asio::error::eof);
      ERR_clear_error();
      break;
    default:
      // Includes OpenSSL 3's "unexpected eof while reading": treat as end.
      ERR_clear_error();
      ec = asio::error::eof;
      break;
  }
  return 0;
}

net::Task<size_t> Stream::read_some(char* buf, size_t len, asio::error_code& ec,
                                    bool wait_first) {
  for (;;) {
    if (!wait_first) {
      size_t n = try_read(buf, len, ec);
      if (ec != asio::error::would_block) co_return n;
    }
    wait_first = false;
    ec = co_await wait_readable();
    if (ec) co_return 0;
  }
}

size_t Stream::try_write(const char* data, size_t len, asio::error_code& ec,
                         asio::ip::tcp::socket::wait_type& want) {
  ec = {};
  want = asio::ip::tcp::socket::wait_write;
  if (!ssl_) {
    size_t n = socket_.write_some(asio::buffer(data, len), ec);
    if (ec == asio::error::try_again) ec = asio::error::would_block;
    if (ec == asio::error::would_block || (!ec && n < len))
      net::note_drained(socket_, asio::ip::tcp::socket::wait_write);
    return n;
  }
  ERR_clear_error();
  size_t n = 0;
  int r = SSL_write_ex(ssl_, data, len, &n);
  if (r == 1) return n;
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_WRITE) {
    ec = asio::error::would_block;
  } else if (err == SSL_ERROR_WANT_READ) {
    want = asio::ip::tcp::socket::wait_read;
    ec = asio::error::would_block;
  } else {
    ERR_clear_error();
    ec = asio::error::connection_reset;
  }
  return 0;
}

net::Task<asio::error_code> Stream::write_all(std::string_view data) {
  while (!data.empty()) {
    asio::error_code ec;
    size_t n = 0;
    asio::ip::tcp::socket::wait_type wait = asio::ip::tcp::socket::wait_write;
    if (!ssl_) {
      n = socket_.write_some(asio::buffer(data.data(), data.size()), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        ec = {};
        n = 0;
      } else if (ec) {
        co_return ec;
      }
      if (n < data.size()) net::note_drained(socket_, asio::ip::tcp::socket::wait_write);
    } else {
      ERR_clear_error();
      int r = SSL_write_ex(ssl_, data.data(), data.size(), &n);
      if (r != 1) {
        n = 0;
        int err = SSL_get_error(ssl_, r);
        if (err == SSL_ERROR_WANT_READ) {
          wait = asio::ip::tcp::socket::wait_read;
        } else if (err != SSL_ERROR_WANT_WRITE) {
          ERR_clear_error();
          co_return asio::error_code(asio::error::connection_reset);
        }
      }
    }
    data.remove_prefix(n);
    if (data.empty()) break;
    if (n == 0) {
      auto [wec] = ssl_ ? co_await socket_.async_wait(wait, use_nothrow)
                        : co_await net::async_wait_ready(socket_, wait, use_nothrow);
      if (wec) co_return wec;
    }
  }
  co_return asio::error_code{};
}

}  // namespace portier::tls

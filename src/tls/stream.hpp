#pragma once
// A TCP connection that is plaintext or TLS, with the few async operations the
// engine and the relay need. TLS runs on a raw SSL* bound to the socket's file
// descriptor (no memory BIO pair, no extra copies), driven by async_wait on the
// socket for WANT_READ / WANT_WRITE. With SSL_MODE_RELEASE_BUFFERS an idle TLS
// stream holds no record buffers.
//
// Threading: one Stream belongs to one worker thread.

#include <openssl/ssl.h>

#include <asio/ip/tcp.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "net/awaitable.hpp"

namespace portier::tls {

/// Result of a TLS handshake.
struct HandshakeResult {
  bool ok = false;
  bool cert_error = false;  // verification failed (bad chain or name mismatch)
  std::string error;
};

class Stream {
 public:
  explicit Stream(asio::ip::tcp::socket socket);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& o) noexcept
      : socket_(std::move(o.socket_)), ssl_(std::exchange(o.ssl_, nullptr)),
        tls_want_write_(o.tls_want_write_) {}
  Stream& operator=(Stream&&) = delete;

  asio::ip::tcp::socket& socket() { return socket_; }
  bool is_tls() const { return ssl_ != nullptr; }
  SSL* ssl() const { return ssl_; }

  /// Server-side TLS handshake on this connection.
  net::Task<HandshakeResult> handshake_server(SSL_CTX* ctx);
  /// Client-side TLS handshake; `host` is used for SNI (unless an IP) and, when
  /// `verify` is set, for the certificate name check (IP or DNS name).
  net::Task<HandshakeResult> handshake_client(SSL_CTX* ctx, const std::string& host, bool verify);

  /// Wait until a try_read() can make progress. Returns at once when TLS has
  /// buffered plaintext (SSL_has_pending): the socket may never become
  /// readable again for bytes OpenSSL already pulled in.
  net::Task<asio::error_code> wait_readable();
  /// Non-blocking read. >0 bytes; 0 with ec = eof at end; ec = would_block when
  /// nothing is there yet.
  size_t try_read(char* buf, size_t len, asio::error_code& ec);
  /// wait_readable() + try_read() until at least one byte or an error/eof.
  net::Task<size_t> read_some(char* buf, size_t len, asio::error_code& ec);
  /// Write everything or fail.
  net::Task<asio::error_code> write_all(std::string_view data);
  /// Non-blocking write of at least one byte. Returns bytes written; 0 with
  /// ec = would_block when the socket must first become `want` (TLS may need
  /// to read to write); other ec = failure.
  size_t try_write(const char* data, size_t len, asio::error_code& ec,
                   asio::ip::tcp::socket::wait_type& want);
  /// TLS has decrypted bytes buffered that a socket wait would not announce.
  bool has_pending() const { return ssl_ && SSL_has_pending(ssl_); }
  /// The last try_read() needs the socket writable rather than readable.
  bool read_wants_write() const { return ssl_ && tls_want_write_; }

  /// Cancel pending operations (they complete with operation_aborted).
  void cancel();
  /// Best-effort TLS close_notify, then close the socket.
  void close();

 private:
  net::Task<HandshakeResult> handshake(bool server);

  asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
  bool tls_want_write_ = false;  // the last SSL_read needed the socket writable
};

}  // namespace portier::tls

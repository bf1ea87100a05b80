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
        tls_want_write_(o.tls_want_write_), want_socket_(o.want_socket_),
        idle_polls_(o.idle_polls_), write_shut_(o.write_shut_) {}
  Stream& operator=(Stream&&) = delete;

  asio::ip::tcp::socket& socket() { return socket_; }
  const asio::ip::tcp::socket& socket() const { return socket_; }
  bool is_tls() const { return ssl_ != nullptr; }
  SSL* ssl() const { return ssl_; }

  /// Server-side TLS handshake on this connection.
  net::Task<HandshakeResult> handshake_server(SSL_CTX* ctx);
  /// Client-side TLS handshake; `host` is used for SNI (unless an IP) and, when
  /// `verify` is set, for the certificate name check (IP or DNS name).
  net::Task<HandshakeResult> handshake_client(SSL_CTX* ctx, const std::string& host, bool verify);

  /// Wait until a try_read() can make progress. Returns at once only when TLS
  /// holds decrypted bytes (has_pending()): the socket may never become
  /// readable again for bytes OpenSSL already pulled in. After a read that
  /// wanted more input it always waits on the socket: OpenSSL's buffer may
  /// hold an *incomplete* record (SSL_has_pending() is true for that too), and
  /// retrying without waiting would spin the worker forever.
  net::Task<asio::error_code> wait_readable();
  /// Non-blocking read. >0 bytes; 0 with ec = eof at end; ec = would_block when
  /// nothing is there yet.
  size_t try_read(char* buf, size_t len, asio::error_code& ec);
  /// wait_readable() + try_read() until at least one byte or an error/eof.
  /// `wait_first`: skip the first try_read() — for a peer that speaks only
  /// after us (a client after our reply): saves the read that would find
  /// nothing. Safe on Asio's edge-triggered reactor: the wait is a
  /// non-speculative op whose EPOLL_CTL_MOD re-checks readiness, and it
  /// returns at once when TLS already holds bytes.
  net::Task<size_t> read_some(char* buf, size_t len, asio::error_code& ec,
                              bool wait_first = false);
  /// Write everything or fail.
  net::Task<asio::error_code> write_all(std::string_view data);
  /// Non-blocking write of at least one byte. Returns bytes written; 0 with
  /// ec = would_block when the socket must first become `want` (TLS may need
  /// to read to write); other ec = failure.
  size_t try_write(const char* data, size_t len, asio::error_code& ec,
                   asio::ip::tcp::socket::wait_type& want);
  /// A try_read() can make progress without the socket becoming readable:
  /// TLS holds decrypted bytes, or holds record bytes that no read has looked
  /// at since the last socket wait. False whenever the last try_read() ended
  /// wanting socket input (a partial record must wait for the socket).
  bool has_pending() const {
    if (!ssl_) return false;
    if (SSL_pending(ssl_) > 0) return true;
    return !want_socket_ && SSL_has_pending(ssl_);
  }
  /// Reads that ended in would_block since the last socket wait or successful
  /// read. The event loop's progress invariant: this never grows past 2 (a
  /// spin would); fuzz builds abort when it does (PORTIER_PROGRESS_CHECKS).
  unsigned idle_polls() const { return idle_polls_; }
  /// Half-close: send TLS close_notify (best effort) and shut the socket's
  /// sending side; reading goes on until the peer's end of stream.
  void shutdown_write();
  /// For callers that wait on socket() themselves (the relay): the socket
  /// became ready, so the next read may retry.
  void note_socket_wait() {
    want_socket_ = false;
    idle_polls_ = 0;
  }
  bool write_shut() const { return write_shut_; }
  /// The last try_read() needs the socket writable rather than readable.
  bool read_wants_write() const { return ssl_ && tls_want_write_; }

  /// Cancel pending operations (they complete with operation_aborted).
  void cancel();
  /// Best-effort TLS close_notify, then close the socket (no shutdown(2):
  /// the close sends the FIN).
  void close();

 private:
  net::Task<HandshakeResult> handshake(bool server);

  asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
  void note_would_block();

  bool tls_want_write_ = false;  // the last SSL_read needed the socket writable
  bool want_socket_ = false;     // the last read needs the socket before a retry
  unsigned idle_polls_ = 0;      // see idle_polls()
  bool write_shut_ = false;      // shutdown_write() done
};

}  // namespace portier::tls

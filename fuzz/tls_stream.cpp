// libFuzzer target: tls::Stream and the relay's TLS path, fed TLS records
// split and truncated at arbitrary points (issue 8 item 1).
//
// Each input runs a real TLS handshake between a server tls::Stream (on one
// end of a socketpair, driven by an io_context) and an OpenSSL client on
// memory BIOs that this harness pumps by hand. Then the input is read as a
// list of operations: the client encrypts bytes (records queued, not sent),
// garbage is queued, the next k queued bytes are delivered (any split, so
// partial records are the common case), the backend writes plaintext (relay
// mode). Mode byte: 0 = a coroutine reading through Stream::read_some,
// 1 = a Relay between the TLS stream and a plaintext socketpair.
//
// Invariants:
//  - progress: after every operation the io_context goes idle within a
//    bounded number of handlers (a spinning stream or a relay re-posting
//    itself never does); Stream's own PORTIER_PROGRESS_CHECKS abort when two
//    reads want input without a socket wait between them;
//  - what the server side delivers is a prefix of what the client encrypted,
//    and all of it when no garbage was injected;
//  - at end of input, closing the client side ends the reader / relay within
//    a bounded number of handlers.
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <cerrno>
#include <fcntl.h>
#include <string>

#include "fuzz_common.hpp"
#include "relay/relay.hpp"
#include "tls/stream.hpp"

using namespace portier;

namespace {

constexpr int kMaxHandlers = 20000;  // per operation; a sleeping stream needs a handful

SSL_CTX* server_ctx() {
  static SSL_CTX* ctx = [] {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600L * 24 * 365);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("fuzz"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(c, cert);
    SSL_CTX_use_PrivateKey(c, key);
    // As in production (tls/context.cpp).
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    X509_free(cert);
    EVP_PKEY_free(key);
    return c;
  }();
  return ctx;
}

SSL_CTX* client_ctx() {
  static SSL_CTX* ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
    return c;
  }();
  return ctx;
}

struct Input {
  const uint8_t* p;
  size_t n;
  bool empty() const { return n == 0; }
  uint8_t byte() {
    if (!n) return 0;
    --n;
    return *p++;
  }
  std::string take(size_t k) {
    k = std::min(k, n);
    std::string s(reinterpret_cast<const char*>(p), k);
    p += k;
    n -= k;
    return s;
  }
};

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/// Runs ready handlers until none is left; a stream that keeps itself
/// runnable without input is a spin.
void settle(asio::io_context& io, const char* when) {
  int i = 0;
  while (io.poll_one()) {
    if (++i > kMaxHandlers) portier::fuzz::fail("no progress: the event loop never goes idle", when);
  }
  io.restart();
}

struct Client {
  SSL* ssl = nullptr;
  BIO* rbio = nullptr;  // network -> client
  BIO* wbio = nullptr;  // client -> network
  int fd = -1;          // fuzzer's end of the socketpair
  std::string queue;    // ciphertext (and garbage) not yet delivered
  std::string got;      // plaintext the client decrypted

  explicit Client(int f) : fd(f) {
    ssl = SSL_new(client_ctx());
    rbio = BIO_new(BIO_s_mem());
    wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
  }
  ~Client() { SSL_free(ssl); }

  std::string drain_wbio() {
    std::string out;
    char buf[4096];
    int r;
    while ((r = BIO_read(wbio, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(r));
    return out;
  }
  void send_now(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t w = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (w <= 0) return;  // peer gone; the checks below notice
      off += static_cast<size_t>(w);
    }
  }
  void pull() {
    char buf[4096];
    for (;;) {
      ssize_t r = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (r <= 0) break;
      BIO_write(rbio, buf, static_cast<int>(r));
    }
    size_t n = 0;
    while (SSL_read_ex(ssl, buf, sizeof buf, &n) == 1) got.append(buf, n);
    ERR_clear_error();
  }
};

net::Task<void> do_handshake(tls::Stream& s, bool& done, bool& ok) {
  auto r = co_await s.handshake_server(server_ctx());
  ok = r.ok;
  done = true;
}

net::Task<void> reader(tls::Stream& s, std::string& out, bool& done) {
  char buf[700];
  for (;;) {
    asio::error_code ec;
    size_t n = co_await s.read_some(buf, sizeof buf, ec);
    if (ec) break;
    out.append(buf, n);
  }
  done = true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  const bool relay_mode = in.byte() & 1;
  int a[2], b[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) != 0) return 0;
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, b) != 0) {
    close(a[0]);
    close(a[1]);
    return 0;
  }
  set_nonblocking(a[1]);
  set_nonblocking(b[1]);
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.assign(asio::ip::tcp::v4(), a[0]);
  auto server = std::make_unique<tls::Stream>(std::move(s));
  Client client(a[1]);

  // ---- handshake, pumped by hand (bounded)
  bool hs_done = false, hs_ok = false;
  asio::co_spawn(io, do_handshake(*server, hs_done, hs_ok), asio::detached);
  for (int i = 0; i < 200 && !hs_done; ++i) {
    SSL_do_handshake(client.ssl);
    ERR_clear_error();
    client.send_now(client.drain_wbio());
    settle(io, "handshake");
    client.pull();
  }
  FUZZ_CHECK(hs_done && hs_ok, "handshake over a socketpair completes", "");
  client.pull();

  // ---- the consumer: a reader coroutine, or a relay to a plaintext peer
  std::string server_got;  // plaintext that came out of the server side
  bool reader_done = false, relay_done = false;
  relay::Relay* rl = nullptr;
  if (relay_mode) {
    asio::ip::tcp::socket bs(io);
    bs.assign(asio::ip::tcp::v4(), b[0]);
    relay::Options opts;
    opts.linger = std::chrono::milliseconds(0);  // no timer wait at the end of input
    rl = relay::Relay::start(std::move(*server), tls::Stream(std::move(bs)), opts,
                             [&relay_done](const relay::Result&) { relay_done = true; });
  } else {
    close(b[0]);
    asio::co_spawn(io, reader(*server, server_got, reader_done), asio::detached);
  }
  auto pull_backend = [&] {
    char buf[4096];
    for (;;) {
      ssize_t r = ::recv(b[1], buf, sizeof buf, MSG_DONTWAIT);
      if (r <= 0) break;
      server_got.append(buf, static_cast<size_t>(r));
    }
  };

  std::string written;   // plaintext the client encrypted, in order
  std::string backend_written;
  bool garbage = false;
  while (!in.empty()) {
    uint8_t op = in.byte();
    size_t k = in.byte();
    switch (op % 4) {
      case 0: {  // client encrypts k bytes: records queued, not sent
        std::string pt = in.take(k + 1);
        size_t w = 0;
        if (SSL_write_ex(client.ssl, pt.data(), pt.size(), &w) == 1) written.append(pt, 0, w);
        ERR_clear_error();
        client.queue += client.drain_wbio();
        break;
      }
      case 1:  // garbage under the TLS layer
        client.queue += in.take(k + 1);
        garbage = true;
        break;
      case 2: {  // deliver the next k+1 queued bytes: any split point
        size_t n = std::min(client.queue.size(), k + 1);
        client.send_now(client.queue.substr(0, n));
        client.queue.erase(0, n);
        break;
      }
      case 3:  // the backend writes plaintext (relay mode)
        if (relay_mode && !relay_done) {
          std::string pt = in.take(k + 1);
          ssize_t w = ::send(b[1], pt.data(), pt.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          if (w > 0) backend_written.append(pt, 0, static_cast<size_t>(w));
        }
        break;
    }
    settle(io, "after an operation");
    client.pull();
    if (relay_mode) pull_backend();
  }
  // ---- end of input: deliver the rest, close the client's side
  client.send_now(client.queue);
  settle(io, "after the last bytes");
  if (relay_mode) pull_backend();
  ::shutdown(a[1], SHUT_WR);
  for (int i = 0; i < 50 && !(relay_mode ? relay_done : reader_done); ++i) {
    settle(io, "after the client's end of stream");
    client.pull();
    if (relay_mode) {
      pull_backend();
      ::shutdown(b[1], SHUT_WR);  // the backend ends too: the relay must finish
    }
  }
  FUZZ_CHECK(relay_mode ? relay_done : reader_done,
             "the client's end of stream ends the reader / relay", "");
  FUZZ_CHECK(written.compare(0, server_got.size(), server_got) == 0 &&
                 server_got.size() <= written.size(),
             "server side delivers a prefix of what the client encrypted", server_got);
  if (!garbage)
    FUZZ_CHECK(server_got == written, "without garbage, every encrypted byte arrives",
               server_got);
  if (relay_mode)
    FUZZ_CHECK(backend_written.compare(0, client.got.size(), client.got) == 0 &&
                   client.got.size() <= backend_written.size(),
               "client receives a prefix of what the backend wrote", client.got);
  (void)rl;
  server.reset();
  close(a[1]);
  close(b[1]);
  return 0;
}

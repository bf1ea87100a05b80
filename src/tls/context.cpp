#include "tls/context.hpp"

#include <openssl/err.h>

#include <fstream>
#include <iterator>

namespace portier::tls {

bool kernel_has_ktls() {
  // The "tls" ULP is listed once the kernel has CONFIG_TLS (built in or loaded).
  std::ifstream f("/proc/sys/net/ipv4/tcp_available_ulp");
  std::string ulps((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return ulps.find("tls") != std::string::npos;
}

void enable_ktls(SSL_CTX* ctx) {
#ifdef SSL_OP_ENABLE_KTLS
  SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
#else
  (void)ctx;
#endif
}

std::string last_error() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += ", ";
    out += buf;
  }
  return out.empty() ? "unknown error" : out;
}

namespace {
void common_setup(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Idle TLS connections keep no 17 KiB read/write buffers.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                              SSL_OP_IGNORE_UNEXPECTED_EOF);
}
}  // namespace

core::Result<CtxPtr> make_server_context(const std::string& cert, const std::string& key) {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    return core::fail(last_error());
  }
  common_setup(ctx.get());
  // Client records carry passwords: OpenSSL wipes decrypted bytes from its
  // read buffer once they are handed over (our own copies are wiped by us).
  SSL_CTX_set_options(ctx.get(), SSL_OP_CLEANSE_PLAINTEXT);
  // No server-side session cache: it would keep an SSL_SESSION per client in
  // memory. Resumption still works through stateless tickets.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert.c_str()) != 1) {
    return core::fail("cannot load certificate " + cert + ": " + last_error());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return core::fail("cannot load key " + key + ": " + last_error());
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return core::fail("key " + key + " does not match certificate " + cert);
  }
  return ctx;
}

core::Result<CtxPtr> make_client_context(bool verify, const std::string& ca_file,
                                         const std::string& cert, const std::string& key) {
  CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    return core::fail(last_error());
  }
  common_setup(ctx.get());
  if (verify) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    int ok = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx.get())
                             : SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr);
    if (ok != 1) {
      return core::fail("cannot load CA " + (ca_file.empty() ? std::string("defaults") : ca_file) + ": " +
              last_error());
    }
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  if (!cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
      return core::fail("cannot load backend client certificate: " + last_error());
    }
  }
  return ctx;
}

}  // namespace portier::tls

#pragma once
// OpenSSL contexts: one server context for the client-facing certificate and
// two client contexts for backends (verifying, and `any-cert`). Built once per
// config snapshot and shared read-only by all workers.

#include <openssl/ssl.h>

#include <memory>

#include "core/result.hpp"
#include <string>

namespace portier::tls {

struct CtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxDeleter>;

/// Server context from PEM files.
core::Result<CtxPtr> make_server_context(const std::string& cert, const std::string& key);

/// Client context for backends. `verify`: check the chain against `ca_file`
/// (or the system store when empty) — the host name is checked per connection.
core::Result<CtxPtr> make_client_context(bool verify, const std::string& ca_file,
                                         const std::string& cert, const std::string& key);

/// Whether the running kernel offers the TLS upper-layer protocol (kTLS).
bool kernel_has_ktls();
/// Enable kTLS on a context (OpenSSL falls back to userspace by itself when
/// the kernel or the cipher cannot do it).
void enable_ktls(SSL_CTX* ctx);

/// The last OpenSSL error queue entries as text (clears the queue).
std::string last_error();

}  // namespace portier::tls

#pragma once
// OpenSSL contexts: the client-facing server contexts (one per certificate
// name set, chosen by the client's SNI; each may hold an RSA and an ECDSA
// pair, served by the client's signature algorithms; client-certificate
// verification) and two client contexts for backends (verifying, and
// `any-cert`). Built once per config snapshot and shared read-only by all
// workers.
//
// Owns: SSL_CTX construction, SNI selection, reading a client certificate's
// identity after the handshake. May use: core, OpenSSL.

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/result.hpp"

namespace portier::tls {

struct CtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxDeleter>;

/// Server context from PEM files.
core::Result<CtxPtr> make_server_context(const std::string& cert, const std::string& key);

/// Client certificates on the client-facing side.
enum class VerifyClient {
  None,      ///< no certificate is asked for
  Optional,  ///< asked for; a missing or invalid one is noted, the handshake goes on
  Required,  ///< a valid one is needed: the handshake fails otherwise
};

/// One client-facing certificate: PEM chain + key, for `names` (exact,
/// lower-case host names or `*.domain` wildcards; empty = the default).
struct ServerCert {
  std::vector<std::string> names;
  std::string cert;
  std::string key;
};

struct ServerTlsOptions {
  VerifyClient verify = VerifyClient::None;
  std::string client_ca;  ///< PEM CA bundle for client certificates (verify != None)
  std::string crl;        ///< PEM CRL file(s); empty = no revocation check
  bool ktls = false;
};

/// The client-facing contexts of one snapshot. Certificates with the same
/// name set share one SSL_CTX (one RSA and one ECDSA pair at most); the
/// default one (no names, else the first) is the context every connection
/// starts with, and a servername callback switches to the one matching the
/// client's SNI: exact name first, then a one-label wildcard; case-insensitive.
class ServerContexts {
 public:
  static core::Result<std::unique_ptr<ServerContexts>> build(const std::vector<ServerCert>& certs,
                                                             const ServerTlsOptions& opts);
  ServerContexts() = default;
  ServerContexts(const ServerContexts&) = delete;
  ServerContexts& operator=(const ServerContexts&) = delete;
  /// The context to hand to SSL_new (the default certificate).
  SSL_CTX* default_ctx() const { return default_; }
  /// A new owning reference to default_ctx().
  CtxPtr default_ref() const;
  /// The context for an SNI name; nullptr when only the default matches.
  SSL_CTX* select(std::string_view sni) const;

 private:
  std::vector<CtxPtr> ctxs_;
  SSL_CTX* default_ = nullptr;
  std::unordered_map<std::string, SSL_CTX*> exact_;
  std::unordered_map<std::string, SSL_CTX*> wildcard_;  // key: the part after "*."
};

/// What the server side learned about the client in its handshake.
struct PeerInfo {
  std::string sni;            ///< the SNI name (lower case; "" when none or not a DNS name)
  bool cert_presented = false;
  bool cert_valid = false;    ///< presented and verified against client_ca (and the CRL)
  std::string cert_user;      ///< from cert_username_field, only when cert_valid
  std::string verify_error;   ///< why a presented certificate is not valid
};

/// `field` is a subject attribute name OpenSSL knows (commonName, CN,
/// emailAddress, UID, ...) or subjectAltName:email / subjectAltName:dns.
bool valid_username_field(std::string_view field);
/// Read PeerInfo from a server-side SSL after its handshake.
PeerInfo peer_info(SSL* ssl, std::string_view username_field);
/// A usable SNI name: DNS characters only, at most 253 bytes; lower-cased.
/// Empty when `name` is not one.
std::string normalize_server_name(std::string_view name);

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

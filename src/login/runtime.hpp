#pragma once
// An immutable snapshot of everything built from one config: passdbs, TLS
// contexts, per-protocol frontend settings. Sessions take a shared_ptr at
// accept time and keep it for life, so a reload (SIGHUP) only affects new
// sessions. Read-only after construction: shared by all workers without locks.

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "login/protocol.hpp"
#include "passdb/chain.hpp"
#include "tls/context.hpp"

namespace portier::login {

struct Snapshot {
  config::Config cfg;
  passdb::Chain passdbs;  // the [[passdb]] entries, in order, built through passdb::registry()
  tls::CtxPtr server_ctx;          // null when no [tls] cert is configured; the default certificate
  std::unique_ptr<tls::ServerContexts> server_certs;  // all client-facing certificates (SNI)
  /// The same certificates for listeners whose client-certificate settings
  /// differ from [tls]'s, one set per distinct setting.
  std::vector<std::pair<config::Tls::ClientCert, std::unique_ptr<tls::ServerContexts>>>
      listener_certs;
  std::vector<SSL_CTX*> listener_ctx;  // per cfg.listeners index: the context to handshake with
  tls::CtxPtr backend_verify_ctx;  // verifies chain; host name checked per connection
  tls::CtxPtr backend_anycert_ctx; // `any-cert`
  FrontendSettings frontend;

  /// Build from a validated config. On failure returns null and fills `errors`.
  static std::shared_ptr<const Snapshot> build(const config::Config& cfg,
                                               std::vector<std::string>& errors);
  bool is_trusted(const asio::ip::address& ip) const;
  /// The client-facing TLS context of listener `index` (cfg.listeners order;
  /// [tls]'s settings for an index the config does not have); null without
  /// a certificate.
  SSL_CTX* server_ctx_for(size_t index) const;
};

}  // namespace portier::login

#include "login/runtime.hpp"

#include <algorithm>

#include "passdb/registry.hpp"

namespace portier::login {

std::shared_ptr<const Snapshot> Snapshot::build(const config::Config& cfg,
                                                std::vector<std::string>& errors) {
  auto s = std::make_shared<Snapshot>();
  s->cfg = cfg;
  if (auto chain = passdb::Chain::build(cfg.passdbs, passdb::registry(), errors))
    s->passdbs = std::move(*chain);
  s->passdbs.set_timeout(cfg.auth.passdb_timeout);
  auto take = [&errors](core::Result<tls::CtxPtr> r, const char* what) {
    if (r) return std::move(*r);
    errors.push_back(what + r.error().message);
    return tls::CtxPtr();
  };
  if (cfg.tls.has_cert()) {
    std::vector<tls::ServerCert> certs;
    if (!cfg.tls.cert.empty()) certs.push_back({{}, cfg.tls.cert, cfg.tls.key});
    for (const auto& c : cfg.tls.certificates) certs.push_back({c.names, c.cert, c.key});
    auto build = [&](const config::Tls::ClientCert& cc) -> std::unique_ptr<tls::ServerContexts> {
      tls::ServerTlsOptions o;
      o.verify = static_cast<tls::VerifyClient>(cc.verify);  // same order: none, optional, required
      o.client_ca = cc.client_ca;
      o.crl = cc.crl;
      o.ktls = cfg.tls.ktls;
      auto r = tls::ServerContexts::build(certs, o);
      if (r) return std::move(*r);
      errors.push_back("tls: " + r.error().message);
      return nullptr;
    };
    const config::Tls::ClientCert global{cfg.tls.verify_client, cfg.tls.client_ca, cfg.tls.crl};
    s->server_certs = build(global);
    if (s->server_certs) s->server_ctx = s->server_certs->default_ref();
    // Listeners with their own client-certificate settings: the same
    // certificates (and SNI selection) under their own verification.
    for (const auto& l : cfg.listeners) {
      const config::Tls::ClientCert cc = cfg.tls.client_cert(l);
      SSL_CTX* ctx = s->server_ctx.get();
      if (l.tls != config::TlsMode::None && cc != global) {
        auto it = std::find_if(s->listener_certs.begin(), s->listener_certs.end(),
                               [&cc](const auto& e) { return e.first == cc; });
        if (it == s->listener_certs.end()) it = s->listener_certs.insert(it, {cc, build(cc)});
        ctx = it->second ? it->second->default_ctx() : nullptr;
      }
      s->listener_ctx.push_back(ctx);
    }
    if (!tls::valid_username_field(cfg.tls.cert_username_field))
      errors.push_back("tls: cert_username_field: unknown field '" + cfg.tls.cert_username_field +
                       "' (a subject attribute such as commonName or emailAddress, or "
                       "subjectAltName:email)");
  }
  s->backend_verify_ctx = take(tls::make_client_context(true, cfg.backend.ca_file, cfg.backend.cert,
                                                        cfg.backend.key),
                               "backend: ");
  s->backend_anycert_ctx =
      take(tls::make_client_context(false, "", cfg.backend.cert, cfg.backend.key), "backend: ");
  if (cfg.tls.ktls) {
    for (SSL_CTX* c : {s->server_ctx.get(), s->backend_verify_ctx.get(),
                       s->backend_anycert_ctx.get()})
      if (c) tls::enable_ktls(c);
  }
  s->frontend.hostname = cfg.server.hostname;
  s->frontend.greeting = cfg.login.greeting;
  s->frontend.allow_cleartext = cfg.auth.allow_cleartext;
  s->frontend.mechanisms = cfg.auth.mechanisms;
  s->frontend.max_line_length = cfg.login.max_line_length;
  s->frontend.max_literal_size = cfg.login.max_literal_size;
  s->frontend.max_command_size = cfg.login.max_command_size;
  s->frontend.max_invalid_commands = cfg.login.max_invalid_commands;
  if (!errors.empty()) return nullptr;
  return s;
}

SSL_CTX* Snapshot::server_ctx_for(size_t index) const {
  return index < listener_ctx.size() ? listener_ctx[index] : server_ctx.get();
}

bool Snapshot::is_trusted(const asio::ip::address& ip) const {
  for (const auto& c : cfg.login.trusted_networks)
    if (c.contains(ip)) return true;
  return false;
}

}  // namespace portier::login

#include "login/runtime.hpp"

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
    tls::ServerTlsOptions o;
    o.verify = static_cast<tls::VerifyClient>(cfg.tls.verify_client);  // same order: none, optional, required
    o.client_ca = cfg.tls.client_ca;
    o.crl = cfg.tls.crl;
    o.ktls = cfg.tls.ktls;
    if (auto r = tls::ServerContexts::build(certs, o)) {
      s->server_certs = std::move(*r);
      s->server_ctx = s->server_certs->default_ref();
    } else {
      errors.push_back("tls: " + r.error().message);
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

bool Snapshot::is_trusted(const asio::ip::address& ip) const {
  for (const auto& c : cfg.login.trusted_networks)
    if (c.contains(ip)) return true;
  return false;
}

}  // namespace portier::login

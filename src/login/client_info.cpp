#include "login/client_info.hpp"

#include <chrono>

#include "core/base64.hpp"

namespace portier::login {

std::string make_session_id(const asio::ip::address& ip, uint16_t port) {
  std::string raw;
  auto usecs = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  for (int i = 5; i >= 0; --i) raw += static_cast<char>((usecs >> (i * 8)) & 0xff);
  raw += static_cast<char>(port >> 8);
  raw += static_cast<char>(port & 0xff);
  if (ip.is_v4()) {
    auto b = ip.to_v4().to_bytes();
    raw.append(reinterpret_cast<const char*>(b.data()), b.size());
  } else {
    auto b = ip.to_v6().to_bytes();
    raw.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  std::string id = core::base64_encode(raw);
  while (!id.empty() && id.back() == '=') id.pop_back();
  return id;
}

bool init_client_info(ClientInfo& ci, asio::ip::tcp::socket& s, const net::Endpoints& eps,
                      const Snapshot& snap, config::TlsMode listener_tls) {
  asio::error_code ec;
  const auto& rep = eps.remote;
  auto lep = net::local_endpoint(s, eps, ec);
  if (ec) return false;
  ci.remote_ip = rep.address();
  ci.remote_port = rep.port();
  ci.local_ip = lep.address();
  ci.local_port = lep.port();
  ci.trusted = snap.is_trusted(ci.remote_ip);
  ci.tls_configured = listener_tls == config::TlsMode::StartTls && snap.server_ctx != nullptr;
  ci.proxy_ttl = snap.cfg.login.proxy_ttl;
  ci.session_id = make_session_id(ci.remote_ip, ci.remote_port);
  return true;
}

void note_tls_peer(ClientInfo& ci, SSL* ssl, const Snapshot& snap) {
  if (!ssl) return;
  tls::PeerInfo p = tls::peer_info(ssl, snap.cfg.tls.cert_username_field);
  if (!p.sni.empty()) ci.local_name = std::move(p.sni);
  ci.cert_valid = p.cert_valid;
  ci.cert_user = std::move(p.cert_user);
}

}  // namespace portier::login

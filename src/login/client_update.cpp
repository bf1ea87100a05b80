#include "login/client_update.hpp"

#include <string>

#include "core/strings.hpp"
#include "core/text.hpp"

namespace portier::login {

namespace {

std::optional<asio::ip::address> parse_ip(std::string_view s) {
  bool v6 = false;
  if (core::istarts_with(s, "IPV6:")) {
    s.remove_prefix(5);
    v6 = true;
  }
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  asio::error_code ec;
  auto a = asio::ip::make_address(std::string(s), ec);
  if (ec || (v6 && !a.is_v6())) return std::nullopt;
  return a;
}

std::optional<uint16_t> parse_port(std::string_view s) {
  auto v = core::parse_uint(s);
  if (!v || *v == 0 || *v > 65535) return std::nullopt;
  return static_cast<uint16_t>(*v);
}

}  // namespace

bool ClientUpdate::set(ClientField field, std::string_view value) {
  switch (field) {
    case ClientField::RemoteIp:
    case ClientField::LocalIp: {
      auto ip = parse_ip(value);
      if (!ip) return ok_ = false;
      (field == ClientField::RemoteIp ? next_.remote_ip : next_.local_ip) = *ip;
      return true;
    }
    case ClientField::RemotePort:
    case ClientField::LocalPort: {
      auto port = parse_port(value);
      if (!port) return ok_ = false;
      (field == ClientField::RemotePort ? next_.remote_port : next_.local_port) = *port;
      return true;
    }
    case ClientField::SessionId:
      if (!core::printable_ascii(value)) return ok_ = false;
      if (!value.empty() && value.size() <= kMaxSessionIdLength) next_.session_id.assign(value);
      return true;
    case ClientField::Ttl: {
      auto ttl = core::parse_uint(value);
      if (!ttl || *ttl > 0xffffffffULL) return ok_ = false;
      next_.proxy_ttl = static_cast<unsigned>(*ttl);
      return true;
    }
    case ClientField::Transport:
      next_.end_client_tls = core::istarts_with(value, "TLS");
      return true;
  }
  return ok_ = false;
}

bool ClientUpdate::apply(ClientInfo& c) const {
  if (!ok_) return false;
  c.remote_ip = next_.remote_ip;
  c.remote_port = next_.remote_port;
  c.local_ip = next_.local_ip;
  c.local_port = next_.local_port;
  c.session_id = next_.session_id;
  c.proxy_ttl = next_.proxy_ttl;
  c.end_client_tls = next_.end_client_tls;
  return true;
}

std::optional<ClientField> ClientUpdate::xclient_field(std::string_view name) {
  struct Entry {
    std::string_view name;
    ClientField field;
  };
  static constexpr Entry kNames[] = {
      {"ADDR", ClientField::RemoteIp},     {"PORT", ClientField::RemotePort},
      {"DESTADDR", ClientField::LocalIp},  {"DESTPORT", ClientField::LocalPort},
      {"SESSION", ClientField::SessionId}, {"TTL", ClientField::Ttl},
      {"CLIENT-TRANSPORT", ClientField::Transport},
  };
  for (const auto& e : kNames)
    if (core::iequals(name, e.name)) return e.field;
  return std::nullopt;
}

}  // namespace portier::login

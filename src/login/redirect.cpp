#include "login/redirect.hpp"

#include <algorithm>
#include <charconv>

#include "log/log.hpp"
#include "login/auth_flow.hpp"
#include "net/address.hpp"

namespace portier::login {

namespace {
std::string host_text(std::string_view host) {
  return host.find(':') != std::string_view::npos ? "[" + std::string(host) + "]"
                                                  : std::string(host);
}
}  // namespace

std::string RedirectTarget::host_port() const { return host_text(host) + ":" + std::to_string(port); }

std::string endpoint_text(const asio::ip::tcp::endpoint& ep) {
  return host_text(net::to_text(ep.address())) + ":" + std::to_string(ep.port());
}

std::variant<RedirectTarget, ProxyFailure> parse_redirect_target(std::string_view target,
                                                                 uint16_t current_port) {
  auto bad = [&] {
    return ProxyFailure{FailureType::InternalConfig,
                        "Redirect to " + log::sanitize(target) + ": Failed to parse host:port", {}};
  };
  RedirectTarget t;
  std::string_view hp = target;
  if (auto at = hp.rfind('@'); at != std::string_view::npos) {
    // IMAP's `user;AUTH=<mech>@host`: the user is the part before ';'.
    t.user = std::string(hp.substr(0, std::min(at, hp.find(';'))));
    hp = hp.substr(at + 1);
  }
  std::string_view host = hp, port_text;
  if (hp.starts_with('[')) {
    auto close = hp.find(']');
    if (close == std::string_view::npos) return bad();
    host = hp.substr(1, close - 1);
    std::string_view after = hp.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad();
      port_text = after.substr(1);
    }
  } else if (auto colon = hp.find(':'); colon != std::string_view::npos &&
                                        hp.find(':', colon + 1) == std::string_view::npos) {
    host = hp.substr(0, colon);
    port_text = hp.substr(colon + 1);
  }
  if (host.empty()) return bad();
  t.host = std::string(host);
  t.port = current_port;
  if (!port_text.empty()) {
    unsigned v = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), v);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || v == 0 || v > 65535)
      return bad();
    t.port = static_cast<uint16_t>(v);
  }
  return t;
}

std::optional<ProxyFailure> redirect_loop(const asio::ip::tcp::endpoint& next,
                                          const std::vector<asio::ip::tcp::endpoint>& visited,
                                          unsigned proxy_ttl, unsigned hops) {
  for (const auto& v : visited)
    if (v == next)
      return ProxyFailure{FailureType::RemoteConfig,
                          "Proxying loops - already connected to " + endpoint_text(next), {}};
  if (proxy_ttl <= hops + 1)
    return ProxyFailure{FailureType::RemoteConfig,
                        "TTL reached zero - proxies appear to be looping?", {}};
  return std::nullopt;
}

std::string attempts_text(const std::vector<asio::ip::tcp::endpoint>& visited) {
  std::string out;
  for (const auto& v : visited) {
    if (!out.empty()) out += ',';
    out += endpoint_text(v);
  }
  return out;
}

ReauthVerdict judge_reauth(const passdb::Lookup& lookup, const Protocol& protocol,
                           const RedirectTarget& target) {
  if (lookup.result != passdb::Result::Ok) {
    std::string why = "Redirect authentication failed";
    if (lookup.result == passdb::Result::TempFail && !lookup.error.empty())
      why += ": " + log::sanitize(lookup.error);
    return ProxyFailure{FailureType::Internal, std::move(why), {}};
  }
  auto pf = passdb::parse_proxy_fields(lookup.reply, protocol.default_port,
                                       protocol.default_tls_port);
  if (!pf.fields)
    return ProxyFailure{FailureType::InternalConfig, "Redirect authentication: " + pf.error, {}};
  passdb::ProxyFields& f = *pf.fields;
  // The referral's user unless the passdb names one (destuser defaults to
  // the login user otherwise).
  const bool referral_user = !lookup.reply.get("destuser") && !target.user.empty();
  if (referral_user) f.destuser = target.user;
  if (f.proxy) return std::move(f);
  if (f.nologin && !f.host.empty()) {
    // The same referral (and host check) as a first login's passdb answer.
    AuthVerdict v = judge(lookup, protocol);
    if (!v.referral)
      return ProxyFailure{FailureType::InternalConfig, "Redirect authentication: " + v.log_error, {}};
    if (referral_user) v.referral->user = target.user;
    return std::move(*v.referral);
  }
  return ProxyFailure{FailureType::Internal,
                      "Redirect authentication is missing proxy or nologin field", {}};
}

}  // namespace portier::login

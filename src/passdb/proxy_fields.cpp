#include "passdb/proxy_fields.hpp"

#include <asio/ip/address.hpp>

#include <algorithm>

#include "core/strings.hpp"

namespace portier::passdb {

namespace {

bool truthy(std::string_view v) {
  return !(core::iequals(v, "n") || core::iequals(v, "no") || core::iequals(v, "false") || v == "0");
}

bool is_ip(std::string_view s, asio::ip::address* out = nullptr) {
  asio::error_code ec;
  auto a = asio::ip::make_address(std::string(s), ec);
  if (ec) return false;
  if (out) *out = a;
  return true;
}

bool bad_chars(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

ProxyFieldsResult fail(std::string e) { return ProxyFieldsResult{std::nullopt, std::move(e)}; }

}  // namespace

ProxyFieldsResult parse_proxy_fields(const Reply& reply, uint16_t default_port, uint16_t default_tls_port) {
  ProxyFields f;
  f.destuser = reply.user;
  bool have_port = false;
  bool ssl = false, starttls = false, ssl_any = false, starttls_any = false;

  for (const auto& [key, value] : reply.fields) {
    if (key == "proxy") {
      f.proxy = truthy(value);
    } else if (key == "host") {
      f.host = value;
    } else if (key == "hostip") {
      if (!value.empty() && !is_ip(value)) return fail("proxy: Invalid hostip in passdb: " + value);
      f.hostip = value;
    } else if (key == "port") {
      auto n = core::parse_uint(value);
      if (!n || *n == 0 || *n > 65535)
        return fail("Auth service returned invalid port value '" + value + "': must be 1..65535");
      f.port = static_cast<uint16_t>(*n);
      have_port = true;
    } else if (key == "ssl") {
      ssl = value == "yes" || value == "any-cert";
      ssl_any = value == "any-cert";
    } else if (key == "starttls") {
      starttls = value == "yes" || value == "any-cert";
      starttls_any = value == "any-cert";
    } else if (key == "proxy_timeout") {
      auto d = core::parse_duration(value);
      if (!d) return fail("Auth service returned invalid proxy_timeout value '" + value + "'");
      // Clamped: a value near 2^63 ms would overflow `now + timeout`.
      f.proxy_timeout = std::min(*d, kMaxProxyTimeout);
    } else if (key == "destuser") {
      if (bad_chars(value)) return fail("proxy: invalid characters in destuser");
      f.destuser = value;
    } else if (key == "pass") {
      if (bad_chars(value)) return fail("proxy: invalid characters in pass");
      f.pass = value;
    } else if (key == "master") {
      if (bad_chars(value)) return fail("proxy: invalid characters in master");
      f.master = value;
    } else if (key == "proxy_mech") {
      f.proxy_mech = value;
    } else if (key == "proxy_nopipelining") {
      f.nopipelining = truthy(value);
    } else if (key == "proxy_not_trusted") {
      f.not_trusted = truthy(value);
    } else if (key == "proxy_redirect_reauth") {
      f.redirect_reauth = truthy(value);
    } else if (key == "proxy_noauth") {
      f.noauth = truthy(value);
    } else if (key == "source_ip") {
      if (!value.empty() && !is_ip(value)) return fail("proxy: Invalid source_ip in passdb: " + value);
      f.source_ip = value;
    } else if (key == "proxy_protocol") {
      if (value == "v1") f.proxy_protocol = 1;
      else if (value == "v2") f.proxy_protocol = 2;
      else if (value == "no") f.proxy_protocol = 0;
      else return fail("proxy: Invalid proxy_protocol value '" + value + "' (expected v1, v2 or no)");
    } else if (key == "nologin") {
      f.nologin = truthy(value);
    } else if (key == "reason") {
      f.reason = value;
    } else if (key == "nopassword") {
      f.nopassword = truthy(value);
    } else if (key.size() > 8 && key.compare(0, 8, "forward_") == 0) {
      f.forward.emplace_back(key.substr(8), value);
    }
  }

  if (starttls) {
    f.tls = BackendTls::StartTls;
    f.any_cert = starttls_any;
  } else if (ssl) {
    f.tls = BackendTls::Implicit;
    f.any_cert = ssl_any;
  }
  if (!have_port) f.port = f.tls == BackendTls::Implicit ? default_tls_port : default_port;
  if (f.proxy && f.port == 0)
    return fail("proxy: ssl requires an explicit port (the protocol has no implicit-TLS port)");

  if (f.proxy) {
    if (f.host.empty()) return fail("proxy: host field not given");
    asio::ip::address host_addr, hostip_addr;
    bool host_is_ip = is_ip(f.host, &host_addr);
    if (f.hostip.empty()) {
      if (!host_is_ip) return fail("proxy: host " + f.host + " is not an IP (auth should have changed it)");
    } else {
      is_ip(f.hostip, &hostip_addr);
      if (host_is_ip && host_addr != hostip_addr) return fail("host and hostip are both IPs, but they don't match");
    }
  }
  return ProxyFieldsResult{std::move(f), {}};
}

}  // namespace portier::passdb

#include "passdb/vars.hpp"

#include <unistd.h>

#include <algorithm>

#include "core/secure.hpp"
#include "core/strings.hpp"

namespace portier::passdb {

namespace {

struct Name {
  std::string_view name;
  Var var;
};

// Long names: Dovecot 2.4's, plus 2.3's older aliases.
constexpr Name kLong[] = {
    {"user", Var::User},           {"original_user", Var::User}, {"username", Var::Username},
    {"domain", Var::Domain},       {"service", Var::Service},    {"protocol", Var::Service},
    {"remote_ip", Var::RemoteIp},  {"rip", Var::RemoteIp},       {"local_ip", Var::LocalIp},
    {"lip", Var::LocalIp},         {"local_port", Var::LocalPort}, {"lport", Var::LocalPort},
    {"remote_port", Var::RemotePort}, {"rport", Var::RemotePort}, {"mechanism", Var::Mechanism},
    {"mech", Var::Mechanism},      {"secured", Var::Secured},    {"pid", Var::Pid},
    {"client_pid", Var::Pid},      {"password", Var::Password},  {"session", Var::Session},
    {"local_name", Var::LocalName}, {"cert", Var::Cert},
    {"proxy_redirect_host_next", Var::RedirectHostNext},
    {"proxy_redirect_host_attempts", Var::RedirectHostAttempts},
};

std::optional<Var> short_var(char c) {
  switch (c) {
    case 'u': return Var::User;
    case 'n': return Var::Username;
    case 'd': return Var::Domain;
    case 's': return Var::Service;
    case 'r': return Var::RemoteIp;
    case 'l': return Var::LocalIp;
    case 'a': return Var::LocalPort;
    case 'b': return Var::RemotePort;
    case 'm': return Var::Mechanism;
    case 'c': return Var::Secured;
    case 'p': return Var::Pid;
    case 'w': return Var::Password;
    case 'k': return Var::Cert;
    default: return std::nullopt;
  }
}

std::string_view before_at(std::string_view u) { return u.substr(0, u.find('@')); }
std::string_view after_at(std::string_view u) {
  auto at = u.find('@');
  return at == std::string_view::npos ? std::string_view() : u.substr(at + 1);
}

}  // namespace

std::string_view var_name(Var v) {
  switch (v) {
    case Var::User: return "user";
    case Var::Username: return "username";
    case Var::Domain: return "domain";
    case Var::Service: return "protocol";
    case Var::RemoteIp: return "remote_ip";
    case Var::LocalIp: return "local_ip";
    case Var::LocalPort: return "local_port";
    case Var::RemotePort: return "remote_port";
    case Var::Mechanism: return "mechanism";
    case Var::Secured: return "secured";
    case Var::Pid: return "client_pid";
    case Var::Password: return "password";
    case Var::Session: return "session";
    case Var::LocalName: return "local_name";
    case Var::Cert: return "cert";
    case Var::RedirectHostNext: return "proxy_redirect_host_next";
    case Var::RedirectHostAttempts: return "proxy_redirect_host_attempts";
  }
  return "?";
}

core::Result<void> Template::parse_name(std::string_view name, Var& v, std::vector<Filter>& filters) {
  // "name" or "name | filter | filter" (2.4).
  std::string_view first = core::trim(name.substr(0, name.find('|')));
  bool found = false;
  for (const auto& n : kLong)
    if (n.name == first) {
      v = n.var;
      found = true;
      break;
    }
  if (!found) {
    return core::fail("unknown variable '%{" + std::string(first) + "}'");
  }
  size_t bar = name.find('|');
  while (bar != std::string_view::npos) {
    name = name.substr(bar + 1);
    bar = name.find('|');
    std::string_view f = core::trim(name.substr(0, bar));
    if (f == "lower" || f == "lcase") filters.push_back(Filter::Lower);
    else if (f == "upper" || f == "ucase") filters.push_back(Filter::Upper);
    else if (f == "username") filters.push_back(Filter::Username);
    else if (f == "domain") filters.push_back(Filter::Domain);
    else {
      return core::fail("unsupported filter '" + std::string(f) + "' in '%{" + std::string(first) +
              " | ...}' (supported: username, domain, lower, upper)");
    }
  }
  return {};
}

core::Result<Template> Template::compile(std::string_view text) {
  Template t;
  t.text_ = std::string(text);
  std::string lit;
  auto flush = [&] {
    if (!lit.empty()) t.pieces_.push_back(Piece{std::move(lit), false, Var::User, {}});
    lit.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c != '%') {
      lit += c;
      continue;
    }
    if (++i >= text.size()) {
      return core::fail("'%' at the end of the template (write %% for a literal '%')");
    }
    if (text[i] == '%') {
      lit += '%';
      continue;
    }
    Piece p;
    p.is_var = true;
    // 2.3 case modifiers: %Lu, %Uu, %L{user}.
    if (text[i] == 'L' || text[i] == 'U') {
      p.filters.push_back(text[i] == 'L' ? Filter::Lower : Filter::Upper);
      if (++i >= text.size()) {
        return core::fail("'%" + std::string(1, text[i - 1]) + "' at the end of the template");
      }
    }
    if (text[i] == '{') {
      size_t close = text.find('}', i);
      if (close == std::string_view::npos) {
        return core::fail("unterminated '%{' in template");
      }
      std::vector<Filter> f;
      if (auto r = parse_name(text.substr(i + 1, close - i - 1), p.var, f); !r) return r.error();
      // 2.4 filters apply left to right; a 2.3 case modifier applies last.
      f.insert(f.end(), p.filters.begin(), p.filters.end());
      p.filters = std::move(f);
      i = close;
    } else if (auto v = short_var(text[i])) {
      p.var = *v;
    } else {
      return core::fail("unknown variable '%" + std::string(1, text[i]) +
              "' (supported: %u %n %d %s %r %l %a %b %m %c %p %w, %L/%U modifiers, %{name})");
    }
    flush();
    if (std::find(t.vars_.begin(), t.vars_.end(), p.var) == t.vars_.end()) t.vars_.push_back(p.var);
    t.pieces_.push_back(std::move(p));
  }
  flush();
  return t;
}

bool Template::uses(Var v) const { return std::find(vars_.begin(), vars_.end(), v) != vars_.end(); }

std::string Template::value(Var v, const Request& req) {
  switch (v) {
    case Var::User: return std::string(req.user);
    case Var::Username: return std::string(before_at(req.user));
    case Var::Domain: return std::string(after_at(req.user));
    case Var::Service:
      // Dovecot's service name for ManageSieve is "sieve".
      return req.protocol == "managesieve" ? std::string("sieve") : std::string(req.protocol);
    case Var::RemoteIp: return std::string(req.remote_ip);
    case Var::LocalIp: return std::string(req.local_ip);
    case Var::LocalPort: return req.local_port ? std::to_string(req.local_port) : std::string();
    case Var::RemotePort: return req.remote_port ? std::to_string(req.remote_port) : std::string();
    case Var::Mechanism: return std::string(req.mechanism);
    case Var::Secured: return req.tls ? "TLS" : req.secured ? "secured" : "";
    case Var::Pid: return std::to_string(::getpid());
    case Var::Password: return std::string(req.password);
    case Var::Session: return std::string(req.session_id);
    case Var::LocalName: return std::string(req.local_name);
    case Var::Cert: return req.cert_valid ? "valid" : "";
    case Var::RedirectHostNext: return std::string(req.redirect_host_next);
    case Var::RedirectHostAttempts: return std::string(req.redirect_host_attempts);
  }
  return {};
}

bool Template::expand(const Request& req, const Escaper& escape, std::string& out) const {
  out.clear();
  std::string v;
  for (const auto& p : pieces_) {
    if (!p.is_var) {
      out += p.literal;
      continue;
    }
    v = value(p.var, req);
    for (Filter f : p.filters) {
      switch (f) {
        case Filter::Lower: v = core::to_lower(v); break;
        case Filter::Upper: v = core::to_upper(v); break;
        case Filter::Username: v = std::string(before_at(v)); break;
        case Filter::Domain: v = std::string(after_at(v)); break;
      }
    }
    const bool nul = v.find('\0') != std::string::npos;
    if (!nul) escape(out, v);
    core::secure_zero(v);
    if (nul) {
      core::secure_zero(out);
      out.clear();
      return false;
    }
  }
  return true;
}

namespace {
void hex_escape(std::string& out, unsigned char c) {
  constexpr char kHex[] = "0123456789ABCDEF";
  out += '\\';
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}
}  // namespace

void ldap_filter_escape(std::string& out, std::string_view value) {
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7f || c == '*' || c == '(' || c == ')' || c == '\\') hex_escape(out, c);
    else out += ch;
  }
}

void ldap_dn_escape(std::string& out, std::string_view value) {
  for (size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c < 0x20 || c >= 0x7f) {
      hex_escape(out, c);
      continue;
    }
    const bool special = std::string_view("\"+,;<>\\=").find(static_cast<char>(c)) != std::string_view::npos;
    const bool edge = (i == 0 && (c == '#' || c == ' ')) || (i + 1 == value.size() && c == ' ');
    if (special || edge) out += '\\';
    out += static_cast<char>(c);
  }
}

std::string Template::key(const Request& req) const {
  std::string k;
  for (Var v : vars_) {
    if (v == Var::Password) continue;
    if (!k.empty()) k += '\x1f';
    k += value(v, req);
  }
  return k;
}

}  // namespace portier::passdb

#include "config/config.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits.h>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "core/strings.hpp"

namespace portier::config {

std::string Error::to_string() const {
  std::string s = file;
  if (line > 0) {
    s += ':' + std::to_string(line);
    if (column > 0) s += ':' + std::to_string(column);
  }
  s += ": ";
  s += message;
  return s;
}

Tls::ClientCert Tls::client_cert(const Listener& l) const {
  // A CRL belongs to its CA: a listener with its own client_ca does not
  // inherit the [tls] crl.
  return {l.verify_client.value_or(verify_client), l.client_ca.value_or(client_ca),
          l.crl.value_or(l.client_ca ? std::string() : crl)};
}

namespace {

/// A control-plane listener address: "ip:port" or "[ipv6]:port" (port 0 =
/// any). False when it is neither.
bool parse_listen(const std::string& s, std::string& host, uint16_t& port) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon + 1 >= s.size() || s.size() - colon - 1 > 5 ||
      s.find_first_not_of("0123456789", colon + 1) != std::string::npos)
    return false;
  std::string h = s.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  const unsigned long p = std::stoul(s.substr(colon + 1));
  asio::error_code ec;
  asio::ip::make_address(h, ec);
  if (ec || p > 65535) return false;
  host = h;
  port = static_cast<uint16_t>(p);
  return true;
}

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    default: return "nothing";
  }
}

std::string default_hostname() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}


class Loader {
 public:
  Loader(std::string path, const Registries& drivers) : path_(std::move(path)), drivers_(drivers) {
    std::filesystem::path p(path_);
    dir_ = p.parent_path();
  }

  LoadResult run(std::string_view text) {
    LoadResult r;
    toml::table root;
    try {
      root = toml::parse(text, std::string_view(path_));
    } catch (const toml::parse_error& e) {
      r.errors.push_back(Error{path_, static_cast<int>(e.source().begin.line),
                               static_cast<int>(e.source().begin.column),
                               std::string(e.description())});
      return r;
    } catch (const std::exception& e) {
      r.errors.push_back(Error{path_, 0, 0, std::string("cannot parse: ") + e.what()});
      return r;
    }
    Config c;
    c.path = path_;
    c.server.hostname = default_hostname();
    try {
      load_root(root, c);
    } catch (const std::exception& e) {  // defensive: e.g. bad_alloc
      error(root, std::string("internal error: ") + e.what());
    }
    r.errors = std::move(errors_);
    std::stable_sort(r.errors.begin(), r.errors.end(), [](const Error& a, const Error& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    if (r.errors.empty()) r.config = std::move(c);
    return r;
  }

 private:
  // ---- error helpers ---------------------------------------------------------
  void error_at(const toml::source_region& src, std::string msg) {
    errors_.push_back(Error{path_, static_cast<int>(src.begin.line), static_cast<int>(src.begin.column),
                            std::move(msg)});
  }
  void error(const toml::node& n, std::string msg) { error_at(n.source(), std::move(msg)); }

  void type_error(const toml::node& n, std::string_view name, std::string_view expected) {
    error(n, std::string(name) + ": expected " + std::string(expected) + ", got " + type_name(n.type()));
  }

  // ---- typed getters ---------------------------------------------------------
  // Each returns true if the key was present and valid (out updated).
  bool get_string(const toml::node& n, std::string_view name, std::string& out) {
    if (auto v = n.as_string()) {
      out = v->get();
      return true;
    }
    type_error(n, name, "a string");
    return false;
  }

  bool get_bool(const toml::node& n, std::string_view name, bool& out) {
    if (auto v = n.as_boolean()) {
      out = v->get();
      return true;
    }
    type_error(n, name, "a boolean");
    return false;
  }

  template <typename T>
  bool get_uint(const toml::node& n, std::string_view name, T& out, long long min, long long max) {
    auto v = n.as_integer();
    if (!v) {
      type_error(n, name, "an integer");
      return false;
    }
    long long x = v->get();
    if (x < min || x > max) {
      error(n, std::string(name) + ": value " + std::to_string(x) + " out of range " + std::to_string(min) +
                   ".." + std::to_string(max));
      return false;
    }
    out = static_cast<T>(x);
    return true;
  }

  bool get_duration(const toml::node& n, std::string_view name, std::chrono::milliseconds& out) {
    if (auto v = n.as_integer()) {
      long long x = v->get();
      if (x < 0 || x > 100LL * 365 * 24 * 3600) {
        error(n, std::string(name) + ": invalid duration " + std::to_string(x));
        return false;
      }
      out = std::chrono::seconds(x);
      return true;
    }
    if (auto v = n.as_string()) {
      auto d = core::parse_duration(v->get());
      if (!d) {
        error(n, std::string(name) + ": invalid duration '" + v->get() +
                     "' (use e.g. \"500ms\", \"30s\", \"2m\", \"1h\")");
        return false;
      }
      out = *d;
      return true;
    }
    type_error(n, name, "a duration string or integer seconds");
    return false;
  }

  // Array of strings; non-string elements are reported individually.
  bool get_string_array(const toml::node& n, std::string_view name, std::vector<std::string>& out,
                        std::vector<const toml::node*>* nodes = nullptr) {
    auto arr = n.as_array();
    if (!arr) {
      type_error(n, name, "an array of strings");
      return false;
    }
    std::vector<std::string> result;
    bool ok = true;
    for (const auto& el : *arr) {
      if (auto s = el.as_string()) {
        result.push_back(s->get());
        if (nodes) nodes->push_back(&el);
      } else {
        type_error(el, std::string(name) + " element", "a string");
        ok = false;
      }
    }
    if (ok) out = std::move(result);
    return ok;
  }

  const toml::table* as_table(const toml::node& n, std::string_view name) {
    if (auto t = n.as_table()) return t;
    type_error(n, name, "a table");
    return nullptr;
  }

  std::string resolve(const std::string& p) const {
    if (p.empty()) return p;
    std::filesystem::path fp(p);
    if (fp.is_absolute() || dir_.empty()) return p;
    return (dir_ / fp).lexically_normal().string();
  }

  void unknown_key(const toml::key& k, std::string_view table) {
    error_at(k.source(), "unknown key '" + std::string(k.str()) + "' in " + std::string(table));
  }

  // ---- sections --------------------------------------------------------------
  void load_root(const toml::table& root, Config& c) {
    const toml::node* listeners = nullptr;
    const toml::node* passdbs = nullptr;
    for (const auto& [k, v] : root) {
      std::string_view key = k.str();
      if (key == "server") {
        if (auto t = as_table(v, "server")) load_server(*t, c.server);
      } else if (key == "listener") {
        listeners = &v;
      } else if (key == "tls") {
        if (auto t = as_table(v, "tls")) load_tls(*t, c.tls);
      } else if (key == "backend") {
        if (auto t = as_table(v, "backend")) load_backend(*t, c.backend);
      } else if (key == "passdb") {
        passdbs = &v;
      } else if (key == "auth") {
        if (auto t = as_table(v, "auth")) load_auth(*t, c.auth);
      } else if (key == "login") {
        if (auto t = as_table(v, "login")) load_login(*t, c.login);
      } else if (key == "log") {
        if (auto t = as_table(v, "log")) load_log(*t, c.log);
      } else if (key == "lmtp") {
        if (auto t = as_table(v, "lmtp")) load_lmtp(*t, c.lmtp);
      } else if (key == "doveadm") {
        if (auto t = as_table(v, "doveadm")) load_doveadm(*t, c.doveadm);
      } else if (key == "admin") {
        if (auto t = as_table(v, "admin")) load_admin(*t, c.admin);
      } else {
        error_at(k.source(), "unknown top-level key or table '" + std::string(key) + "'");
      }
    }
    // Listeners after [tls] so the cert/key check sees it regardless of order.
    if (listeners) load_listeners(*listeners, c);
    if (!listeners || (listeners->as_array() && listeners->as_array()->empty()))
      errors_.push_back(Error{path_, 0, 0, "no [[listener]] configured (at least one is required)"});
    if (passdbs) load_passdbs(*passdbs, c);
    if (!passdbs || (passdbs->as_array() && passdbs->as_array()->empty()))
      errors_.push_back(Error{path_, 0, 0, "no [[passdb]] configured (at least one is required)"});
  }

  void load_server(const toml::table& t, Server& s) {
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      if (key == "hostname") {
        std::string h;
        if (get_string(v, "server.hostname", h)) {
          if (h.empty() || h.find_first_of(" \t\r\n") != std::string::npos)
            error(v, "server.hostname: must be non-empty and contain no whitespace");
          else
            s.hostname = h;
        }
      } else if (key == "workers") {
        get_uint(v, "server.workers", s.workers, 0, 256);
      } else if (key == "user") {
        get_string(v, "server.user", s.user);
      } else if (key == "allow_root") {
        get_bool(v, "server.allow_root", s.allow_root);
      } else if (key == "shutdown_timeout") {
        get_duration(v, "server.shutdown_timeout", s.shutdown_timeout);
      } else {
        unknown_key(k, "[server]");
      }
    }
  }

  void load_tls(const toml::table& t, Tls& tls) {
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      if (key == "cert") {
        if (get_string(v, "tls.cert", tls.cert)) tls.cert = resolve(tls.cert);
      } else if (key == "key") {
        if (get_string(v, "tls.key", tls.key)) tls.key = resolve(tls.key);
      } else if (key == "ktls") {
        get_bool(v, "tls.ktls", tls.ktls);
      } else if (key == "certificate") {
        load_tls_certificates(v, tls);
      } else if (key == "verify_client") {
        if (auto m = get_verify_client(v, "tls.verify_client")) tls.verify_client = *m;
      } else if (key == "client_ca") {
        if (get_string(v, "tls.client_ca", tls.client_ca)) tls.client_ca = resolve(tls.client_ca);
      } else if (key == "crl") {
        if (get_string(v, "tls.crl", tls.crl)) tls.crl = resolve(tls.crl);
      } else if (key == "cert_username_field") {
        if (get_string(v, "tls.cert_username_field", tls.cert_username_field) &&
            tls.cert_username_field.empty())
          error(v, "tls.cert_username_field: must not be empty");
      } else {
        unknown_key(k, "[tls]");
      }
    }
    if (tls.cert.empty() != tls.key.empty())
      error(t, "[tls]: cert and key must be given together");
    if (tls.verify_client != Tls::VerifyClient::None && tls.client_ca.empty())
      error(t, "[tls]: verify_client needs client_ca");
  }

  std::optional<VerifyClient> get_verify_client(const toml::node& v, std::string_view what) {
    std::string m;
    if (!get_string(v, what, m)) return std::nullopt;
    if (m == "none") return VerifyClient::None;
    if (m == "optional") return VerifyClient::Optional;
    if (m == "required") return VerifyClient::Required;
    error(v, std::string(what) + ": unknown value '" + m + "' (expected none, optional or required)");
    return std::nullopt;
  }

  // [[tls.certificate]] names = [...], cert, key
  void load_tls_certificates(const toml::node& n, Tls& tls) {
    auto arr = n.as_array();
    if (!arr) {
      error(n, "tls.certificate: must be an array of tables ([[tls.certificate]])");
      return;
    }
    for (const auto& el : *arr) {
      auto t = el.as_table();
      if (!t) {
        type_error(el, "tls.certificate", "a table");
        continue;
      }
      Tls::Certificate c;
      for (const auto& [k, v] : *t) {
        std::string_view key = k.str();
        if (key == "cert") {
          if (get_string(v, "tls.certificate.cert", c.cert)) c.cert = resolve(c.cert);
        } else if (key == "key") {
          if (get_string(v, "tls.certificate.key", c.key)) c.key = resolve(c.key);
        } else if (key == "names") {
          if (get_string_array(v, "tls.certificate.names", c.names)) {
            for (auto& name : c.names) {
              for (char& ch : name)
                if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
              if (!valid_cert_name(name))
                error(v, "tls.certificate.names: '" + name +
                             "' is not a host name or a *.domain wildcard");
            }
          }
        } else {
          unknown_key(k, "[[tls.certificate]]");
        }
      }
      if (c.cert.empty() || c.key.empty()) {
        error(*t, "[[tls.certificate]]: cert and key are required");
        continue;
      }
      tls.certificates.push_back(std::move(c));
    }
  }

  // A host name (letters, digits, '-', '_', dots; no empty label) or "*." + one.
  static bool valid_cert_name(std::string_view n) {
    if (n.rfind("*.", 0) == 0) n.remove_prefix(2);
    if (n.empty() || n.size() > 253 || n.front() == '.' || n.back() == '.') return false;
    if (n.find("..") != std::string_view::npos) return false;
    return std::all_of(n.begin(), n.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
             ch == '.';
    });
  }

  void load_backend(const toml::table& t, Backend& b) {
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      if (key == "ca_file") {
        if (get_string(v, "backend.ca_file", b.ca_file)) b.ca_file = resolve(b.ca_file);
      } else if (key == "cert") {
        if (get_string(v, "backend.cert", b.cert)) b.cert = resolve(b.cert);
      } else if (key == "key") {
        if (get_string(v, "backend.key", b.key)) b.key = resolve(b.key);
      } else if (key == "proxy_protocol") {
        std::string pp;
        if (get_string(v, "backend.proxy_protocol", pp)) {
          if (pp == "v1") b.proxy_protocol = 1;
          else if (pp == "v2") b.proxy_protocol = 2;
          else if (pp == "no") b.proxy_protocol = 0;
          else error(v, "backend.proxy_protocol: unknown value '" + pp + "' (expected v1, v2 or no)");
        }
      } else {
        unknown_key(k, "[backend]");
      }
    }
    if (b.cert.empty() != b.key.empty())
      error(t, "[backend]: cert and key must be given together");
  }

  void load_listeners(const toml::node& n, Config& c) {
    auto arr = n.as_array();
    if (!arr) {
      error(n, "listener: must be an array of tables ([[listener]])");
      return;
    }
    struct Seen { std::string addr; uint16_t port; int line; };
    std::vector<Seen> seen;
    for (const auto& el : *arr) {
      auto t = el.as_table();
      if (!t) {
        type_error(el, "listener", "a table");
        continue;
      }
      Listener l;
      l.line = static_cast<int>(t->source().begin.line);
      l.address = "0.0.0.0";
      bool ok = true;
      bool have_port = false;
      const toml::node* port_node = nullptr;
      const toml::node* tls_node = nullptr;
      const toml::node* proto_node = nullptr;
      for (const auto& [k, v] : *t) {
        std::string_view key = k.str();
        if (key == "protocol") {
          proto_node = &v;
          if (get_string(v, "listener.protocol", l.protocol)) {
            if (!drivers_.protocol_port(l.protocol, false)) {
              error(v, "listener.protocol: unknown protocol '" + l.protocol + "' (expected " +
                           drivers_.protocol_names() + ")");
              ok = false;
            }
          } else {
            ok = false;
          }
        } else if (key == "address") {
          if (get_string(v, "listener.address", l.address)) {
            asio::error_code ec;
            auto a = asio::ip::make_address(l.address, ec);
            if (ec) {
              error(v, "listener.address: '" + l.address + "' is not an IP address");
              ok = false;
            } else {
              l.address = a.to_string();
            }
          } else {
            ok = false;
          }
        } else if (key == "port") {
          port_node = &v;
          if (get_uint(v, "listener.port", l.port, 0, 65535))
            have_port = true;
          else
            ok = false;
        } else if (key == "tls") {
          tls_node = &v;
          std::string m;
          if (get_string(v, "listener.tls", m)) {
            if (m == "none") l.tls = TlsMode::None;
            else if (m == "starttls") l.tls = TlsMode::StartTls;
            else if (m == "implicit") l.tls = TlsMode::Implicit;
            else {
              error(v, "listener.tls: unknown mode '" + m + "' (expected none, starttls or implicit)");
              ok = false;
            }
          } else {
            ok = false;
          }
        } else if (key == "haproxy") {
          if (!get_bool(v, "listener.haproxy", l.haproxy)) ok = false;
        } else if (key == "verify_client") {
          l.verify_client = get_verify_client(v, "listener.verify_client");
          if (!l.verify_client) ok = false;
        } else if (key == "client_ca" || key == "crl") {
          std::string file;
          if (get_string(v, key == "crl" ? "listener.crl" : "listener.client_ca", file))
            (key == "crl" ? l.crl : l.client_ca) = resolve(file);
          else
            ok = false;
        } else if (key == "path") {
          if (!get_string(v, "listener.path", l.path)) {
            ok = false;
          } else if (l.path.empty() || l.path.size() > 107) {
            error(v, "listener.path: a unix socket path of 1..107 bytes");
            ok = false;
          } else {
            l.path = resolve(l.path);
          }
        } else {
          unknown_key(k, "[[listener]]");
        }
      }
      if (!proto_node) {
        error(*t, "listener: missing required key 'protocol'");
        ok = false;
      }
      if (l.tls != TlsMode::None && !c.tls.has_cert()) {
        error(tls_node ? *tls_node : static_cast<const toml::node&>(*t),
              "listener.tls: TLS mode requires [tls] cert and key (or a [[tls.certificate]])");
        ok = false;
      }
      const bool own_client_cert = l.verify_client || l.client_ca || l.crl;
      if (own_client_cert && l.tls == TlsMode::None) {
        error(*t, "listener: verify_client, client_ca and crl need tls = \"starttls\" or \"implicit\"");
        ok = false;
      } else if (own_client_cert && c.tls.client_cert(l).verify != VerifyClient::None &&
                 c.tls.client_cert(l).client_ca.empty()) {
        error(*t, "listener: verify_client needs client_ca (here or in [tls])");
        ok = false;
      }
      if (!ok) continue;
      if (!have_port) l.port = drivers_.protocol_port(l.protocol, l.tls == TlsMode::Implicit).value_or(0);
      if (!l.path.empty()) {
        if (have_port) {
          error(port_node ? *port_node : static_cast<const toml::node&>(*t),
                "listener: path and port exclude each other");
          continue;
        }
        l.port = 0;
      } else if (l.port != 0) {
        auto it = std::find_if(seen.begin(), seen.end(),
                               [&](const Seen& s) { return s.addr == l.address && s.port == l.port; });
        if (it != seen.end()) {
          error(port_node ? *port_node : static_cast<const toml::node&>(*t),
                "listener: duplicate address " + l.address + " port " + std::to_string(l.port) +
                    " (already used by the listener at line " + std::to_string(it->line) + ")");
          continue;
        }
        seen.push_back({l.address, l.port, l.line});
      }
      c.listeners.push_back(std::move(l));
    }
  }

  // The driver's keys of one [[passdb]] table, for the driver's parser.
  class Section final : public PassdbSection {
   public:
    Section(Loader& l, const toml::table& t, std::string driver) : l_(l), t_(t), driver_(std::move(driver)) {}
    std::string_view driver() const override { return driver_; }
    bool has(std::string_view key) const override { return t_.get(key) != nullptr; }
    std::optional<std::string> string(std::string_view key) override {
      std::string out;
      if (auto n = take(key); n && l_.get_string(*n, name(key), out)) return out;
      return std::nullopt;
    }
    std::optional<bool> boolean(std::string_view key) override {
      bool out = false;
      if (auto n = take(key); n && l_.get_bool(*n, name(key), out)) return out;
      return std::nullopt;
    }
    std::optional<long long> integer(std::string_view key, long long min, long long max) override {
      long long out = 0;
      if (auto n = take(key); n && l_.get_uint(*n, name(key), out, min, max)) return out;
      return std::nullopt;
    }
    std::optional<std::chrono::milliseconds> duration(std::string_view key) override {
      std::chrono::milliseconds out{};
      if (auto n = take(key); n && l_.get_duration(*n, name(key), out)) return out;
      return std::nullopt;
    }
    std::optional<std::vector<std::string>> strings(std::string_view key) override {
      std::vector<std::string> out;
      if (auto n = take(key); n && l_.get_string_array(*n, name(key), out)) return out;
      return std::nullopt;
    }
    std::optional<std::vector<std::pair<std::string, std::string>>> string_table(std::string_view key) override {
      auto n = take(key);
      if (!n) return std::nullopt;
      auto t = l_.as_table(*n, name(key));
      if (!t) return std::nullopt;
      std::vector<std::pair<std::string, std::string>> out;
      bool ok = true;
      for (const auto& [k, v] : *t) {
        std::string val;
        if (l_.get_string(v, name(key) + "." + std::string(k.str()), val))
          out.emplace_back(std::string(k.str()), std::move(val));
        else
          ok = false;
      }
      if (!ok) return std::nullopt;
      return out;
    }
    std::string resolve_path(std::string_view p) const override { return l_.resolve(std::string(p)); }
    void error(std::string_view key, std::string message) override {
      ++errors_;
      if (auto n = t_.get(key)) l_.error(*n, std::move(message));
      else l_.error(t_, std::move(message));
    }
    bool taken(std::string_view key) const {
      return std::find(taken_.begin(), taken_.end(), key) != taken_.end();
    }
    size_t errors() const { return errors_; }

   private:
    static std::string name(std::string_view key) { return "passdb." + std::string(key); }
    const toml::node* take(std::string_view key) {
      auto n = t_.get(key);
      if (n) taken_.emplace_back(key);
      return n;
    }
    Loader& l_;
    const toml::table& t_;
    std::string driver_;
    std::vector<std::string> taken_;
    size_t errors_ = 0;
  };

  void load_passdbs(const toml::node& n, Config& c) {
    auto arr = n.as_array();
    if (!arr) {
      error(n, "passdb: must be an array of tables ([[passdb]])");
      return;
    }
    for (const auto& el : *arr) {
      auto t = el.as_table();
      if (!t) {
        type_error(el, "passdb", "a table");
        continue;
      }
      if (auto p = load_passdb(*t)) c.passdbs.push_back(std::move(*p));
    }
  }

  // The keys every driver shares; the rest goes to the driver's parser.
  static bool common_passdb_key(std::string_view key) {
    static constexpr std::string_view keys[] = {"driver", "protocols", "default_fields",
                                                "override_fields", "default_pass_scheme", "skip",
                                                "result_success", "result_failure",
                                                "result_internalfail"};
    return std::find(std::begin(keys), std::end(keys), key) != std::end(keys);
  }

  std::optional<Passdb> load_passdb(const toml::table& t) {
    Passdb p;
    p.line = static_cast<int>(t.source().begin.line);
    bool ok = true;
    bool have_driver = false;
    PassdbParser parser = nullptr;
    auto action = [&](const toml::node& v, std::string_view name, PassdbAction& out) {
      std::string s;
      if (!get_string(v, name, s)) return false;
      if (auto a = parse_passdb_action(s)) {
        out = *a;
        return true;
      }
      error(v, std::string(name) + ": unknown value '" + s +
                   "' (expected return-ok, return-fail, return, continue, continue-ok or continue-fail)");
      return false;
    };
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      if (key == "driver") {
        have_driver = true;
        if (get_string(v, "passdb.driver", p.driver)) {
          parser = drivers_.parser(p.driver);
          if (!parser) {
            error(v, "passdb.driver: unknown driver '" + p.driver + "' (supported: " + drivers_.names() + ")");
            ok = false;
          }
        } else {
          ok = false;
        }
      } else if (key == "protocols") {
        std::vector<const toml::node*> nodes;
        if (get_string_array(v, "passdb.protocols", p.protocols, &nodes)) {
          for (size_t i = 0; i < p.protocols.size(); ++i) {
            if (!drivers_.protocol_port(p.protocols[i], false)) {
              error(*nodes[i], "passdb.protocols: unknown protocol '" + p.protocols[i] + "'");
              ok = false;
            }
          }
        } else {
          ok = false;
        }
      } else if (key == "default_fields") {
        ok &= get_string(v, "passdb.default_fields", p.default_fields);
      } else if (key == "override_fields") {
        ok &= get_string(v, "passdb.override_fields", p.override_fields);
      } else if (key == "default_pass_scheme") {
        ok &= get_string(v, "passdb.default_pass_scheme", p.default_pass_scheme);
      } else if (key == "skip") {
        std::string s;
        if (get_string(v, "passdb.skip", s)) {
          if (auto sk = parse_passdb_skip(s)) {
            p.skip = *sk;
          } else {
            error(v, "passdb.skip: unknown value '" + s + "' (expected never, authenticated or unauthenticated)");
            ok = false;
          }
        } else {
          ok = false;
        }
      } else if (key == "result_success") {
        ok &= action(v, "passdb.result_success", p.result_success);
      } else if (key == "result_failure") {
        ok &= action(v, "passdb.result_failure", p.result_failure);
      } else if (key == "result_internalfail") {
        ok &= action(v, "passdb.result_internalfail", p.result_internalfail);
      }
    }
    if (!have_driver) {
      error(t, "passdb: missing required key 'driver'");
      return std::nullopt;
    }
    // Without a known driver its keys cannot be checked: the driver error stands alone.
    if (!parser) return std::nullopt;
    Section section(*this, t, p.driver);
    p.settings = parser(section);
    if (!p.settings || section.errors() > 0) ok = false;
    for (const auto& [k, v] : t)
      if (!common_passdb_key(k.str()) && !section.taken(k.str())) {
        unknown_key(k, "[[passdb]]");
        ok = false;
      }
    if (!ok) return std::nullopt;
    return p;
  }

  // "16M", "512k", "1G", "4096" (bytes), or an integer; 1024-based.
  bool get_size(const toml::node& n, std::string_view name, uint64_t& out) {
    if (auto v = n.as_integer()) {
      if (v->get() < 0) {
        error(n, std::string(name) + ": must not be negative");
        return false;
      }
      out = static_cast<uint64_t>(v->get());
      return true;
    }
    auto v = n.as_string();
    if (!v) {
      type_error(n, name, "a size string (\"16M\") or integer bytes");
      return false;
    }
    std::string_view s = v->get();
    size_t i = 0;
    uint64_t x = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && x < (1ULL << 40)) x = x * 10 + uint64_t(s[i++] - '0');
    std::string_view unit = s.substr(i);
    uint64_t mul = 0;
    if (unit.empty() || unit == "B") mul = 1;
    else if (unit == "k" || unit == "K" || unit == "KB" || unit == "KiB") mul = 1ULL << 10;
    else if (unit == "M" || unit == "MB" || unit == "MiB") mul = 1ULL << 20;
    else if (unit == "G" || unit == "GB" || unit == "GiB") mul = 1ULL << 30;
    if (i == 0 || mul == 0 || x >= (1ULL << 40)) {
      error(n, std::string(name) + ": invalid size '" + std::string(s) + "' (use e.g. \"16M\", \"512k\", \"1G\")");
      return false;
    }
    out = x * mul;
    return true;
  }

  void load_auth_cache(const toml::table& t, Auth::Cache& c) {
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      if (key == "size") get_size(v, "auth.cache.size", c.size);
      else if (key == "ttl") get_duration(v, "auth.cache.ttl", c.ttl);
      else if (key == "negative_ttl") get_duration(v, "auth.cache.negative_ttl", c.negative_ttl);
      else unknown_key(k, "[auth.cache]");
    }
  }

  void load_auth(const toml::table& t, Auth& a) {
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      if (key == "allow_cleartext") {
        get_bool(v, "auth.allow_cleartext", a.allow_cleartext);
      } else if (key == "mechanisms") {
        std::vector<std::string> mechs;
        std::vector<const toml::node*> nodes;
        if (get_string_array(v, "auth.mechanisms", mechs, &nodes)) {
          bool ok = true;
          for (size_t i = 0; i < mechs.size(); ++i) {
            mechs[i] = core::to_upper(mechs[i]);
            if (!drivers_.mechanism_known(mechs[i])) {
              error(*nodes[i], "auth.mechanisms: unknown mechanism '" + mechs[i] +
                                   "' (supported: " + drivers_.mechanism_names() + ")");
              ok = false;
            }
          }
          if (mechs.empty()) {
            error(v, "auth.mechanisms: at least one mechanism is required");
            ok = false;
          }
          if (ok) {
            // De-duplicate, keeping order.
            std::vector<std::string> uniq;
            for (auto& m : mechs)
              if (std::find(uniq.begin(), uniq.end(), m) == uniq.end()) uniq.push_back(m);
            a.mechanisms = std::move(uniq);
          }
        }
      } else if (key == "failure_delay") {
        get_duration(v, "auth.failure_delay", a.failure_delay);
      } else if (key == "verbose") {
        get_bool(v, "auth.verbose", a.verbose);
      } else if (key == "passdb_timeout") {
        get_duration(v, "auth.passdb_timeout", a.passdb_timeout);
      } else if (key == "cache") {
        if (auto ct = as_table(v, "auth.cache")) load_auth_cache(*ct, a.cache);
      } else {
        unknown_key(k, "[auth]");
      }
    }
  }

  void load_networks(const toml::node& v, const std::string& name, std::vector<Cidr>& out) {
    std::vector<std::string> nets;
    std::vector<const toml::node*> nodes;
    if (get_string_array(v, name, nets, &nodes)) {
      for (size_t i = 0; i < nets.size(); ++i) {
        if (auto c = parse_cidr(nets[i]))
          out.push_back(*c);
        else
          error(*nodes[i], name + ": invalid network '" + nets[i] + "'");
      }
    }
  }

  void load_login(const toml::table& t, Login& l) {
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      if (key == "trusted_networks") {
        load_networks(v, "login.trusted_networks", l.trusted_networks);
      } else if (key == "proxy_timeout") {
        get_duration(v, "login.proxy_timeout", l.proxy_timeout);
      } else if (key == "proxy_max_reconnects") {
        get_uint(v, "login.proxy_max_reconnects", l.proxy_max_reconnects, 0, 100);
      } else if (key == "greeting") {
        std::string g;
        if (get_string(v, "login.greeting", g)) {
          if (g.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
            error(v, "login.greeting: must not contain CR, LF or NUL");
          else
            l.greeting = g;
        }
      } else if (key == "client_timeout") {
        get_duration(v, "login.client_timeout", l.client_timeout);
      } else if (key == "relay_linger") {
        get_duration(v, "login.relay_linger", l.relay_linger);
      } else if (key == "max_line_length") {
        get_uint(v, "login.max_line_length", l.max_line_length, 64, 16LL * 1024 * 1024);
      } else if (key == "max_literal_size") {
        get_uint(v, "login.max_literal_size", l.max_literal_size, 0, 1024LL * 1024 * 1024);
      } else if (key == "max_command_size") {
        get_uint(v, "login.max_command_size", l.max_command_size, 64, 1024LL * 1024 * 1024);
      } else if (key == "max_invalid_commands") {
        get_uint(v, "login.max_invalid_commands", l.max_invalid_commands, 0, 1000);
      } else if (key == "proxy_ttl") {
        get_uint(v, "login.proxy_ttl", l.proxy_ttl, 0, 100);
      } else if (key == "proxy_redirect_reauth") {
        get_bool(v, "login.proxy_redirect_reauth", l.proxy_redirect_reauth);
      } else if (key == "proxy_host_immediate_failure_after") {
        get_duration(v, "login.proxy_host_immediate_failure_after",
                     l.proxy_host_immediate_failure_after);
      } else if (key == "max_connections") {
        get_uint(v, "login.max_connections", l.max_connections, 0, 10'000'000);
      } else if (key == "max_connections_per_ip") {
        get_uint(v, "login.max_connections_per_ip", l.max_connections_per_ip, 0, 10'000'000);
      } else if (key == "max_sessions_per_user") {
        get_uint(v, "login.max_sessions_per_user", l.max_sessions_per_user, 0, 10'000'000);
      } else if (key == "max_auth_attempts") {
        get_uint(v, "login.max_auth_attempts", l.max_auth_attempts, 1, 1000);
      } else if (key == "auth_penalty_max") {
        get_duration(v, "login.auth_penalty_max", l.auth_penalty_max);
      } else if (key == "ipv6_prefix") {
        get_uint(v, "login.ipv6_prefix", l.ipv6_prefix, 1, 128);
      } else if (key == "haproxy_trusted_networks") {
        load_networks(v, "login.haproxy_trusted_networks", l.haproxy_trusted_networks);
      } else if (key == "haproxy_timeout") {
        get_duration(v, "login.haproxy_timeout", l.haproxy_timeout);
      } else {
        unknown_key(k, "[login]");
      }
    }
  }

  void load_lmtp(const toml::table& t, Lmtp& m) {
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      if (key == "recipient_delimiter") {
        get_string(v, "lmtp.recipient_delimiter", m.recipient_delimiter);
        if (m.recipient_delimiter.find_first_of(std::string_view("@<> \r\n\0", 7)) != std::string::npos)
          error(v, "lmtp.recipient_delimiter: must not contain '@', '<', '>', space, CR, LF or NUL");
      } else if (key == "unproxied") {
        if (get_string(v, "lmtp.unproxied", m.unproxied) && m.unproxied != "refuse" && m.unproxied != "default")
          error(v, "lmtp.unproxied: unknown value '" + m.unproxied + "' (expected refuse or default)");
      } else if (key == "default_host") {
        asio::error_code ec;
        if (get_string(v, "lmtp.default_host", m.default_host) &&
            (asio::ip::make_address(m.default_host, ec), ec))
          error(v, "lmtp.default_host: '" + m.default_host + "' is not an IP address");
      } else if (key == "default_port") {
        get_uint(v, "lmtp.default_port", m.default_port, 1, 65535);
      } else if (key == "default_protocol") {
        if (get_string(v, "lmtp.default_protocol", m.default_protocol) && m.default_protocol != "lmtp" &&
            m.default_protocol != "smtp")
          error(v, "lmtp.default_protocol: unknown value '" + m.default_protocol + "' (expected lmtp or smtp)");
      } else if (key == "proxy_timeout") {
        get_duration(v, "lmtp.proxy_timeout", m.proxy_timeout);
      } else if (key == "max_recipients") {
        get_uint(v, "lmtp.max_recipients", m.max_recipients, 1, 100000);
      } else {
        unknown_key(k, "[lmtp]");
      }
    }
    if (m.unproxied == "default" && m.default_host.empty())
      error(t, "lmtp.unproxied = \"default\" requires lmtp.default_host");
  }

  void load_log(const toml::table& t, Log& lg) {
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      if (key == "level") {
        std::string lv;
        if (get_string(v, "log.level", lv)) {
          static constexpr std::string_view levels[] = {"trace", "debug", "info", "warn", "warning", "error", "off"};
          if (std::find(std::begin(levels), std::end(levels), lv) == std::end(levels))
            error(v, "log.level: unknown level '" + lv + "' (expected trace, debug, info, warn(ing), error or off)");
          else
            lg.level = lv;
        }
      } else if (key == "format" || key == "target") {
        std::string val;
        const bool fmt = key == "format";
        if (get_string(v, fmt ? "log.format" : "log.target", val)) {
          if (fmt ? (val != "text" && val != "json") : (val != "stderr" && val != "syslog"))
            error(v, fmt ? "log.format: expected \"text\" or \"json\", got '" + val + "'"
                         : "log.target: expected \"stderr\" or \"syslog\", got '" + val + "'");
          else
            (fmt ? lg.format : lg.target) = val;
        }
      } else if (key == "syslog_socket") {
        if (get_string(v, "log.syslog_socket", lg.syslog_socket) &&
            (lg.syslog_socket.empty() || lg.syslog_socket.size() >= 108))
          error(v, "log.syslog_socket: a socket path of 1..107 bytes");
      } else if (key == "syslog_ident") {
        if (get_string(v, "log.syslog_ident", lg.syslog_ident) &&
            (lg.syslog_ident.empty() || lg.syslog_ident.size() > 32 ||
             lg.syslog_ident.find_first_of(" :[]\t\r\n") != std::string::npos))
          error(v, "log.syslog_ident: 1..32 characters, no spaces, ':' or brackets");
      } else {
        unknown_key(k, "[log]");
      }
    }
  }

  void load_doveadm(const toml::table& t, Doveadm& d) {
    d.line = static_cast<int>(t.source().begin.line);
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      if (key == "listen") {
        std::string s;
        if (!get_string(v, "doveadm.listen", s)) continue;
        if (!parse_listen(s, d.listen_address, d.listen_port))
          error(v, "doveadm.listen: expected \"<ip>:<port>\" (e.g. \"127.0.0.1:2425\", \"[::1]:2425\"), got '" + s + "'");
      } else if (key == "password") {
        get_string(v, "doveadm.password", d.password);
      } else if (key == "backend_password") {
        get_string(v, "doveadm.backend_password", d.backend_password);
      } else if (key == "port") {
        get_uint(v, "doveadm.port", d.port, 1, 65535);
      } else if (key == "passdb_port") {
        get_bool(v, "doveadm.passdb_port", d.passdb_port);
      } else if (key == "timeout") {
        if (get_duration(v, "doveadm.timeout", d.timeout) && d.timeout.count() <= 0)
          error(v, "doveadm.timeout: must be positive");
      } else if (key == "max_connections") {
        get_uint(v, "doveadm.max_connections", d.max_connections, 1, 100000);
      } else if (key == "http_port") {
        get_uint(v, "doveadm.http_port", d.http_port, 1, 65535);
      } else if (key == "backend_api_key") {
        get_string(v, "doveadm.backend_api_key", d.backend_api_key);
      } else {
        unknown_key(k, "[doveadm]");
      }
    }
    if (!d.listen_address.empty() && d.password.empty())
      error(t, "doveadm: listen needs a password (clients authenticate as Dovecot's doveadm_password)");
    for (char ch : d.password + d.backend_password + d.backend_api_key)
      if (ch == '\0' || ch == '\r' || ch == '\n') {
        error(t, "doveadm: passwords and the API key must not contain NUL, CR or LF");
        break;
      }
  }

  void load_admin(const toml::table& t, Admin& a) {
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      if (key == "listen") {
        if (get_string(v, "admin.listen", a.listen) &&
            !parse_listen(a.listen, a.listen_address, a.listen_port))
          error(v, "admin.listen: expected \"IP:PORT\" (e.g. \"127.0.0.1:9143\", \"[::1]:9143\")");
      } else if (key == "api_key") {
        if (get_string(v, "admin.api_key", a.api_key) && a.api_key.size() < 16)
          error(v, "admin.api_key: at least 16 characters");
      } else if (key == "cert") {
        if (get_string(v, "admin.cert", a.cert)) a.cert = resolve(a.cert);
      } else if (key == "key") {
        if (get_string(v, "admin.key", a.key)) a.key = resolve(a.key);
      } else if (key == "socket") {
        if (get_string(v, "admin.socket", a.socket) &&
            (a.socket.empty() || a.socket.size() >= 108))
          error(v, "admin.socket: a socket path of 1..107 bytes");
        else a.socket = resolve(a.socket);
      } else if (key == "max_connections") {
        get_uint(v, "admin.max_connections", a.max_connections, 1, 1024);
      } else if (key == "timeout") {
        get_duration(v, "admin.timeout", a.timeout);
      } else if (key == "max_request_size") {
        get_uint(v, "admin.max_request_size", a.max_request_size, 1024, 64LL * 1024 * 1024);
      } else {
        unknown_key(k, "[admin]");
      }
    }
    if (!a.listen.empty() && a.api_key.empty())
      error(t, "[admin]: listen needs an api_key");
    if (a.cert.empty() != a.key.empty()) error(t, "[admin]: cert and key must be given together");
  }

  std::string path_;
  const Registries& drivers_;  // passdb drivers, protocols, mechanisms
  std::filesystem::path dir_;
  std::vector<Error> errors_;
};

}  // namespace

PassdbSettings::~PassdbSettings() = default;

std::optional<PassdbSkip> parse_passdb_skip(std::string_view text) {
  if (text == "never") return PassdbSkip::Never;
  if (text == "authenticated") return PassdbSkip::Authenticated;
  if (text == "unauthenticated") return PassdbSkip::Unauthenticated;
  return std::nullopt;
}

std::optional<PassdbAction> parse_passdb_action(std::string_view text) {
  if (text == "return-ok") return PassdbAction::ReturnOk;
  if (text == "return-fail") return PassdbAction::ReturnFail;
  if (text == "return") return PassdbAction::Return;
  if (text == "continue") return PassdbAction::Continue;
  if (text == "continue-ok") return PassdbAction::ContinueOk;
  if (text == "continue-fail") return PassdbAction::ContinueFail;
  return std::nullopt;
}

LoadResult load_string(std::string_view toml_text, const std::string& path, const Registries& drivers) {
  try {
    return Loader(path, drivers).run(toml_text);
  } catch (const std::exception& e) {
    LoadResult r;
    r.errors.push_back(Error{path, 0, 0, std::string("internal error: ") + e.what()});
    return r;
  }
}

LoadResult load_file(const std::string& path, const Registries& drivers) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    LoadResult r;
    r.errors.push_back(Error{path, 0, 0, std::string("cannot open file: ") + std::strerror(err)});
    return r;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    LoadResult r;
    r.errors.push_back(Error{path, 0, 0, "cannot read file"});
    return r;
  }
  return load_string(ss.str(), path, drivers);
}

}  // namespace portier::config

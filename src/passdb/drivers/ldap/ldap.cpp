#include "passdb/drivers/ldap/ldap.hpp"

#include <ldap.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>
#include <optional>

#include "core/secure.hpp"
#include "core/strings.hpp"
#include "passdb/blocking.hpp"
#include "passdb/field_table.hpp"
#include "passdb/password.hpp"
#include "passdb/sql_common.hpp"

namespace portier::passdb::ldap_db {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::string_view kName = "ldap";
constexpr std::chrono::seconds kDefaultTimeout{10};

bool attribute_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == ';';
}

bool valid_attribute(std::string_view a) {
  return !a.empty() && std::all_of(a.begin(), a.end(), attribute_char);
}

// ------------------------------------------------------------ connections
struct Conn {
  LDAP* ld = nullptr;
  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    if (ld) ldap_unbind_ext_s(ld, nullptr, nullptr);
  }
};
using ConnPtr = std::unique_ptr<Conn>;

// Idle connections of one kind (lookup or auth_bind); pool threads take one
// for a lookup and give it back when it is still healthy.
class ConnPool {
 public:
  explicit ConnPool(size_t max) : max_(max) {}
  ConnPtr take() {
    std::lock_guard lock(mu_);
    if (idle_.empty()) return nullptr;
    ConnPtr c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }
  void put(ConnPtr c) {
    std::lock_guard lock(mu_);
    if (idle_.size() < max_) idle_.push_back(std::move(c));
  }

 private:
  std::mutex mu_;
  std::vector<ConnPtr> idle_;
  size_t max_;
};

struct MsgFree {
  void operator()(LDAPMessage* m) const { ldap_msgfree(m); }
};
using MsgPtr = std::unique_ptr<LDAPMessage, MsgFree>;

// The outcome of one LDAP operation.
struct Op {
  int rc = LDAP_SUCCESS;  ///< the server's result code (when !broken)
  bool broken = false;    ///< transport failure or timeout: drop the connection
  bool timeout = false;
  std::string error;      ///< for logs; never a password
  MsgPtr res;
};

timeval remaining(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
  if (left < std::chrono::milliseconds(1)) left = std::chrono::milliseconds(1);
  timeval tv;
  tv.tv_sec = static_cast<time_t>(left.count() / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(left.count() % 1000000);
  return tv;
}

std::string ld_error(LDAP* ld, int rc) {
  std::string s = ldap_err2string(rc);
  char* diag = nullptr;
  if (ld && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag) == LDAP_OPT_SUCCESS && diag) {
    if (*diag) s += std::string(" (") + diag + ")";
    ldap_memfree(diag);
  }
  return s;
}

// Waits for the complete answer to `msgid` until the deadline. A timeout
// abandons the operation and marks the connection broken: a server that did
// not answer in time is not trusted with the next lookup.
Op await_result(LDAP* ld, int msgid, Clock::time_point deadline, std::string_view what) {
  Op op;
  LDAPMessage* res = nullptr;
  timeval tv = remaining(deadline);
  const int got = ldap_result(ld, msgid, LDAP_MSG_ALL, &tv, &res);
  if (got == 0) {
    ldap_abandon_ext(ld, msgid, nullptr, nullptr);
    op.broken = op.timeout = true;
    op.error = std::string(what) + " timed out";
    return op;
  }
  if (got < 0) {
    int rc = LDAP_SERVER_DOWN;
    ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &rc);
    op.broken = true;
    op.error = std::string(what) + " failed: " + ld_error(ld, rc);
    return op;
  }
  op.res.reset(res);
  char* diag = nullptr;
  int prc = ldap_parse_result(ld, res, &op.rc, nullptr, &diag, nullptr, nullptr, 0);
  if (prc != LDAP_SUCCESS) {
    op.broken = true;
    op.error = std::string(what) + ": unparsable result: " + ldap_err2string(prc);
  } else if (op.rc != LDAP_SUCCESS) {
    op.error = std::string(what) + " failed: " + ldap_err2string(op.rc);
    if (diag && *diag) op.error += std::string(" (") + diag + ")";
  }
  if (diag) ldap_memfree(diag);
  return op;
}

// A simple bind; `password` is sent as is (callers refuse empty ones where
// an anonymous bind would be wrong).
Op simple_bind(LDAP* ld, const std::string& dn, std::string_view password, Clock::time_point deadline) {
  berval cred;
  cred.bv_val = const_cast<char*>(password.data());
  cred.bv_len = password.size();
  int msgid = -1;
  const int rc = ldap_sasl_bind(ld, dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, &msgid);
  if (rc != LDAP_SUCCESS) {
    Op op;
    op.broken = true;
    op.error = "bind failed: " + ld_error(ld, rc);
    return op;
  }
  return await_result(ld, msgid, deadline, "bind");
}

Lookup tempfail(std::string error) {
  Lookup l;
  l.result = Result::TempFail;
  l.passdb = kName;
  l.error = "ldap: " + std::move(error);
  return l;
}

Lookup unknown_user(std::string why) {
  Lookup l;
  l.result = Result::UnknownUser;
  l.passdb = kName;
  l.error = std::move(why);
  return l;
}

// One attribute's first value (nullopt: absent). Values may be passwords:
// the holder wipes them.
struct Attrs {
  std::vector<std::pair<std::string_view, std::optional<std::string>>> values;
  ~Attrs() {
    for (auto& [k, v] : values)
      if (v) core::secure_zero(*v);
  }
  const std::optional<std::string>* find(std::string_view name) const {
    for (const auto& kv : values)
      if (kv.first.size() == name.size() && core::iequals(kv.first, name)) return &kv.second;
    return nullptr;
  }
};

// ---------------------------------------------------------------- driver
class Ldap final : public SyncPassdb {
 public:
  Ldap(config::Passdb cfg, const Settings& s)
      : cfg_(std::move(cfg)), s_(s), lookups_(s.connections), binds_(s.connections) {
    for (const auto& u : s_.uris) {
      if (!uris_.empty()) uris_ += ' ';
      uris_ += u;
    }
  }

  Lookup lookup_blocking(const Request& req) override {
    const Clock::time_point deadline =
        req.deadline != Clock::time_point{} ? req.deadline : Clock::now() + kDefaultTimeout;
    if (Clock::now() >= deadline) return tempfail("timed out waiting for a free LDAP connection");

    std::string base, filter;
    if (!s_.base.expand(req, ldap_dn_escape, base) || !s_.filter.expand(req, ldap_filter_escape, filter))
      return unknown_user("user name contains NUL");

    for (int attempt = 0;; ++attempt) {
      bool reused = false;
      ConnPtr c = lookups_.take();
      if (c) {
        reused = true;
      } else {
        std::string err;
        c = open(deadline, true, err);
        if (!c) {
          if (s_.filter.uses_password()) core::secure_zero(filter);
          return tempfail(std::move(err));
        }
      }
      Broken broken;
      Lookup l = search(*c, req, base, filter, deadline, broken);
      if (!broken.yes) {
        lookups_.put(std::move(c));
      } else {
        c.reset();
        // A pooled connection the server closed meanwhile: one retry on a new one.
        if (reused && attempt == 0 && !broken.timeout) continue;
      }
      if (s_.filter.uses_password()) core::secure_zero(filter);
      return l;
    }
  }

 private:
  // A new connection with the options every connection gets; the lookup
  // connection also binds as bind_dn (when set).
  ConnPtr open(Clock::time_point deadline, bool service, std::string& err) {
    auto c = std::make_unique<Conn>();
    int rc = ldap_initialize(&c->ld, uris_.c_str());
    if (rc != LDAP_SUCCESS || !c->ld) {
      err = "cannot initialise " + uris_ + ": " + ldap_err2string(rc);
      return nullptr;
    }
    int version = LDAP_VERSION3;
    ldap_set_option(c->ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(c->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    ldap_set_option(c->ld, LDAP_OPT_RESTART, LDAP_OPT_ON);
    timeval nt = remaining(deadline);
    ldap_set_option(c->ld, LDAP_OPT_NETWORK_TIMEOUT, &nt);
    if (service && !s_.bind_dn.empty()) {
      Op op = simple_bind(c->ld, s_.bind_dn, s_.bind_password.view(), deadline);
      if (op.broken || op.rc != LDAP_SUCCESS) {
        err = "connect/bind as " + s_.bind_dn + " to " + uris_ + ": " + op.error;
        return nullptr;
      }
    }
    return c;
  }

  struct Broken {
    bool yes = false;
    bool timeout = false;
  };

  Lookup search(Conn& c, const Request& req, const std::string& base, const std::string& filter,
                Clock::time_point deadline, Broken& broken) {
    std::vector<char*> attrs;
    static char kNoAttrs[] = "1.1";  // RFC 4511: no attributes
    for (const auto& a : s_.attributes) attrs.push_back(const_cast<char*>(a.c_str()));
    if (attrs.empty()) attrs.push_back(kNoAttrs);
    attrs.push_back(nullptr);
    int msgid = -1;
    // Size limit 2: a second entry is enough to know the answer is ambiguous.
    int rc = ldap_search_ext(c.ld, base.c_str(), s_.scope, filter.c_str(), attrs.data(), 0, nullptr, nullptr,
                             nullptr, 2, &msgid);
    if (rc != LDAP_SUCCESS) {
      broken.yes = true;
      return tempfail("search failed: " + ld_error(c.ld, rc));
    }
    Op op = await_result(c.ld, msgid, deadline, "search");
    if (op.broken) {
      broken.yes = true;
      broken.timeout = op.timeout;
      return tempfail(std::move(op.error));
    }
    if (op.rc == LDAP_NO_SUCH_OBJECT) return unknown_user("search base does not exist");
    if (op.rc != LDAP_SUCCESS && op.rc != LDAP_SIZELIMIT_EXCEEDED) return tempfail(std::move(op.error));
    const int n = ldap_count_entries(c.ld, op.res.get());
    if (n == 0) return unknown_user("");
    if (n > 1) return tempfail("search returned multiple entries");
    LDAPMessage* e = ldap_first_entry(c.ld, op.res.get());
    if (!e) return tempfail("search: no entry in the result");
    std::string dn;
    if (char* d = ldap_get_dn(c.ld, e)) {
      dn = d;
      ldap_memfree(d);
    }
    Attrs attrs_got;
    for (const auto& a : s_.attributes) {
      std::optional<std::string> v;
      if (berval** vals = ldap_get_values_len(c.ld, e, a.c_str())) {
        if (vals[0]) v.emplace(vals[0]->bv_val, vals[0]->bv_len);
        for (size_t i = 0; vals[i]; ++i)  // may be passwords
          if (vals[i]->bv_val) core::secure_zero(vals[i]->bv_val, vals[i]->bv_len);
        ldap_value_free_len(vals);
      }
      attrs_got.values.emplace_back(a, std::move(v));
    }
    op.res.reset();
    return answer(req, dn, attrs_got, deadline);
  }

  // Maps the entry like an SQL row, then checks the password (stored
  // password, or a bind as the entry's DN).
  Lookup answer(const Request& req, const std::string& dn, const Attrs& attrs, Clock::time_point deadline) {
    std::vector<std::string> built;  // constants; reserved: row views into it
    built.reserve(s_.fields.size());
    SqlRow row;
    row.rows = 1;
    bool has_password = false;
    for (const auto& f : s_.fields) {
      const bool pw = f.name == "password" || f.name == "password_noscheme";
      if (pw && s_.auth_bind) continue;  // auth_bind: the bind checks the password
      has_password = has_password || pw;
      row.names.push_back(f.name);
      if (!f.constant) {
        const auto* v = attrs.find(f.pieces.front().text);
        row.values.push_back(v && *v ? std::optional<std::string_view>(**v) : std::nullopt);
        continue;
      }
      std::string& out = built.emplace_back();
      for (const auto& p : f.pieces) {
        if (!p.attr) {
          out += p.text;
        } else if (const auto* v = attrs.find(p.text); v && *v) {
          out += **v;
        }
      }
      row.values.push_back(std::string_view(out));
    }
    if (!has_password) {
      row.names.push_back("password");
      row.values.push_back(std::nullopt);
    }
    SqlAnswer a = sql_answer(req, row, cfg_, kName);
    for (auto& b : built) core::secure_zero(b);
    if (s_.auth_bind && a.lookup.result == Result::Mismatch && !a.lookup.reply.has("nopassword")) {
      Lookup l = std::move(a.lookup);
      l.error.clear();
      auth_bind(l, dn, req, deadline);
      return l;
    }
    return sql_verify(std::move(a), req, cfg_, kName);
  }

  // Checks the client's password by binding as `dn` on a bind connection.
  void auth_bind(Lookup& l, const std::string& dn, const Request& req, Clock::time_point deadline) {
    if (req.password.empty()) {
      // An empty simple bind password is an anonymous bind (RFC 4513 5.1.2):
      // it must never count as a verified password.
      l.result = Result::Mismatch;
      l.error = "ldap: empty password (not sent as a bind)";
      return;
    }
    if (dn.empty()) {
      l.result = Result::TempFail;
      l.error = "ldap: the entry has no DN to bind as";
      return;
    }
    for (int attempt = 0;; ++attempt) {
      ConnPtr c = binds_.take();
      const bool reused = c != nullptr;
      if (!c) {
        std::string err;
        c = open(deadline, false, err);
        if (!c) {
          l.result = Result::TempFail;
          l.error = "ldap: auth_bind: " + err;
          return;
        }
      }
      Op op = simple_bind(c->ld, dn, req.password, deadline);
      if (op.broken) {
        c.reset();
        if (reused && attempt == 0 && !op.timeout) continue;
        l.result = Result::TempFail;
        l.error = "ldap: auth_bind: " + op.error;
        return;
      }
      binds_.put(std::move(c));
      if (op.rc == LDAP_SUCCESS) {
        l.result = Result::Ok;
      } else if (op.rc == LDAP_INVALID_CREDENTIALS) {
        l.result = Result::Mismatch;
      } else {
        l.result = Result::TempFail;
        l.error = "ldap: auth_bind: " + op.error;
      }
      return;
    }
  }

  config::Passdb cfg_;
  const Settings& s_;  // owned by cfg_.settings
  std::string uris_;   // space-separated, for ldap_initialize
  ConnPool lookups_;
  ConnPool binds_;
};

}  // namespace

std::string Settings::cache_identity() const {
  if (auth_bind || base.uses_password() || filter.uses_password()) return {};
  std::string id = "ldap";
  for (const auto& u : uris) id += '\x1e' + u;
  id += '\x1e' + bind_dn + '\x1e' + base.text() + '\x1e' + filter.text() + '\x1e' +
        std::to_string(scope);
  for (const auto& a : attributes) id += '\x1f' + a;
  for (const auto& f : fields) id += '\x1f' + f.name;
  return id;
}

std::string Settings::cache_key(const Request& req) const {
  return base.key(req) + '\x1e' + filter.key(req);
}

std::string Settings::describe() const {
  std::string out = "ldap";
  for (const auto& u : uris) out += " " + u;
  return out + " base=" + base.text();
}

core::Result<Field> parse_field(std::string_view name, std::string_view value) {
  Field f;
  f.name = std::string(name);
  if (name.empty()) return core::fail("an extra field name must not be empty");
  if (value.empty() || value.front() != '=') {
    if (!valid_attribute(value)) {
      return core::fail("field '" + f.name + "': '" + std::string(value) +
                        "' is not an attribute name (write \"=text\" for a constant)");
    }
    f.pieces.push_back({std::string(value), true});
    return f;
  }
  f.constant = true;
  value.remove_prefix(1);
  std::string lit;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '%') {
      lit += value[i];
      continue;
    }
    if (value.substr(i, 2) == "%%") {
      lit += '%';
      ++i;
      continue;
    }
    constexpr std::string_view kOpen = "%{ldap:";
    const size_t close = value.find('}', i);
    if (value.substr(i, kOpen.size()) != kOpen || close == std::string_view::npos) {
      return core::fail("field '" + f.name + "': only %{ldap:attribute} and %% are supported in a constant");
    }
    std::string_view attr = value.substr(i + kOpen.size(), close - i - kOpen.size());
    if (!valid_attribute(attr)) {
      return core::fail("field '" + f.name + "': '" + std::string(attr) + "' is not an attribute name");
    }
    if (!lit.empty()) f.pieces.push_back({std::move(lit), false});
    lit.clear();
    f.pieces.push_back({std::string(attr), true});
    i = close;
  }
  if (!lit.empty()) f.pieces.push_back({std::move(lit), false});
  return f;
}

std::shared_ptr<const config::PassdbSettings> parse_settings(config::PassdbSection& section) {
  auto s = std::make_shared<Settings>();
  bool ok = true;
  auto require = [&](std::string_view key) {
    if (section.has(key)) return true;
    section.error(key, "passdb: missing required key '" + std::string(key) + "' (driver ldap)");
    ok = false;
    return false;
  };
  if (require("uris")) {
    if (auto u = section.strings("uris")) {
      s->uris = std::move(*u);
      if (s->uris.empty()) {
        section.error("uris", "passdb.uris: at least one LDAP URI is needed");
        ok = false;
      }
      for (const auto& uri : s->uris) {
        LDAPURLDesc* desc = nullptr;
        const bool scheme = uri.rfind("ldap://", 0) == 0 || uri.rfind("ldaps://", 0) == 0 ||
                            uri.rfind("ldapi://", 0) == 0;
        if (!scheme || ldap_url_parse(uri.c_str(), &desc) != LDAP_URL_SUCCESS) {
          section.error("uris", "passdb.uris: '" + uri + "' is not an ldap://, ldaps:// or ldapi:// URI");
          ok = false;
        }
        if (desc) ldap_free_urldesc(desc);
      }
    } else {
      ok = false;
    }
  }
  if (section.has("bind_dn")) {
    if (auto v = section.string("bind_dn")) s->bind_dn = std::move(*v);
    else ok = false;
  }
  if (section.has("bind_password")) {
    if (auto v = section.string("bind_password")) s->bind_password = core::Secret::take(*v);
    else ok = false;
  }
  struct TemplateKey {
    const char* key;
    Template* out;
  };
  for (TemplateKey k : {TemplateKey{"base", &s->base}, TemplateKey{"filter", &s->filter}}) {
    if (!require(k.key)) continue;
    auto text = section.string(k.key);
    if (!text) {
      ok = false;
      continue;
    }
    auto t = Template::compile(*text);
    if (!t) {
      section.error(k.key, "passdb." + std::string(k.key) + ": " + t.error().message);
      ok = false;
      continue;
    }
    *k.out = std::move(*t);
  }
  if (section.has("scope")) {
    auto v = section.string("scope");
    if (!v) ok = false;
    else if (*v == "subtree") s->scope = LDAP_SCOPE_SUBTREE;
    else if (*v == "onelevel") s->scope = LDAP_SCOPE_ONELEVEL;
    else if (*v == "base") s->scope = LDAP_SCOPE_BASE;
    else {
      section.error("scope", "passdb.scope: must be \"subtree\", \"onelevel\" or \"base\"");
      ok = false;
    }
  }
  ok &= parse_field_table(section, parse_field, s->fields);
  for (const auto& f : s->fields) {
    for (const auto& p : f.pieces) {
      if (!p.attr) continue;
      const bool seen = std::any_of(s->attributes.begin(), s->attributes.end(),
                                    [&](const std::string& a) { return core::iequals(a, p.text); });
      if (!seen) s->attributes.push_back(p.text);
    }
  }
  if (section.has("auth_bind")) {
    if (auto b = section.boolean("auth_bind")) s->auth_bind = *b;
    else ok = false;
  }
  if (section.has("connections")) {
    if (auto n = section.integer("connections", 1, 64)) s->connections = static_cast<unsigned>(*n);
    else ok = false;
  }
  if (ok && !s->auth_bind) {
    const bool has = std::any_of(s->fields.begin(), s->fields.end(), [](const Field& f) {
      return f.name == "password" || f.name == "password_noscheme" || f.name == "nopassword";
    });
    if (!has) {
      section.error("fields", "passdb.fields: needs a 'password' field (e.g. password = \"userPassword\"), "
                              "or auth_bind = true");
      ok = false;
    }
  }
  if (!ok) return nullptr;
  return s;
}

core::Result<std::shared_ptr<Passdb>> make(const config::Passdb& cfg) {
  const auto* s = dynamic_cast<const Settings*>(cfg.settings.get());
  if (!s) return core::fail("ldap: settings missing");
  if (!known_scheme(cfg.default_pass_scheme)) {
    return core::fail("ldap: unknown default_pass_scheme '" + cfg.default_pass_scheme + "'");
  }
  auto drv = std::make_shared<Ldap>(cfg, *s);
  return std::make_shared<BlockingPassdb>(std::move(drv), s->connections);
}

}  // namespace portier::passdb::ldap_db

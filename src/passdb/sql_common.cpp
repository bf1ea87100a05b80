#include "passdb/sql_common.hpp"

#include <algorithm>

#include "core/secure.hpp"
#include "core/strings.hpp"
#include "passdb/cache.hpp"
#include "passdb/password.hpp"

namespace portier::passdb {

namespace {

constexpr std::string_view kBooleanFields[] = {
    "proxy",      "proxy_maybe",       "nopassword",         "nologin",              "nodelay",
    "proxy_noauth", "proxy_not_trusted", "proxy_nopipelining", "proxy_redirect_reauth",
};

bool boolean_field(std::string_view k) {
  return std::find(std::begin(kBooleanFields), std::end(kBooleanFields), k) != std::end(kBooleanFields);
}

}  // namespace

std::string SqlSettings::describe() const { return driver + " " + hide_conninfo_password(connect); }

std::string hide_conninfo_password(std::string_view c) {
  std::string out(c);
  // URI form: postgresql://user:secret@host/db
  if (c.rfind("postgresql://", 0) == 0 || c.rfind("postgres://", 0) == 0) {
    size_t start = c.find("://") + 3;
    size_t at = c.find('@', start);
    size_t colon = c.find(':', start);
    if (at != std::string_view::npos && colon != std::string_view::npos && colon < at)
      out = std::string(c.substr(0, colon + 1)) + "***" + std::string(c.substr(at));
    size_t q = out.find("password=");
    if (q != std::string::npos) {
      size_t end = out.find('&', q);
      out.replace(q + 9, end == std::string::npos ? std::string::npos : end - q - 9, "***");
    }
    return out;
  }
  // key = value form; values may be single-quoted with \' and \\ escapes.
  std::string res;
  size_t i = 0;
  while (i < c.size()) {
    if (c[i] == ' ' || c[i] == '\t') {
      res += c[i++];
      continue;
    }
    size_t k = i;
    while (i < c.size() && c[i] != '=' && c[i] != ' ' && c[i] != '\t') ++i;
    std::string_view key = c.substr(k, i - k);
    while (i < c.size() && (c[i] == ' ' || c[i] == '\t')) ++i;
    if (i >= c.size() || c[i] != '=') {
      res.append(c.substr(k, i - k));
      if (i < c.size()) res += c[i++];
      continue;
    }
    ++i;
    while (i < c.size() && (c[i] == ' ' || c[i] == '\t')) ++i;
    size_t vs = i;
    if (i < c.size() && c[i] == '\'') {
      ++i;
      while (i < c.size() && c[i] != '\'') i += (c[i] == '\\' && i + 1 < c.size()) ? 2 : 1;
      if (i < c.size()) ++i;
    } else {
      while (i < c.size() && c[i] != ' ' && c[i] != '\t') i += (c[i] == '\\' && i + 1 < c.size()) ? 2 : 1;
    }
    res.append(c.substr(k, vs - k));
    if (key == "password") res += "***";
    else res.append(c.substr(vs, i - vs));
  }
  return res;
}

std::shared_ptr<const config::PassdbSettings> parse_sql_settings(config::PassdbSection& section) {
  auto s = std::make_shared<SqlSettings>();
  s->driver = std::string(section.driver());
  bool ok = true;
  for (std::string_view key : {"connect", "query"})
    if (!section.has(key)) {
      section.error(key, "passdb: missing required key '" + std::string(key) + "' (driver " + s->driver + ")");
      ok = false;
    }
  auto connect = section.string("connect");  // read both: neither is then an "unknown key"
  auto query = section.string("query");
  if (!ok || !connect || !query) return nullptr;
  if (connect->empty()) {
    section.error("connect", "passdb.connect: must not be empty");
    return nullptr;
  }
  s->connect = s->driver == "sqlite" ? section.resolve_path(*connect) : *connect;
  auto t = Template::compile(*query);
  if (!t) {
    section.error("query", "passdb.query: " + t.error().message);
    return nullptr;
  }
  if (core::trim(*query).empty()) {
    section.error("query", "passdb.query: must not be empty");
    return nullptr;
  }
  s->query = std::move(*t);
  return s;
}

SqlAnswer::~SqlAnswer() { core::secure_zero(stored); }

Lookup sql_tempfail(std::string error) {
  Lookup l;
  l.result = Result::TempFail;
  l.error = std::move(error);
  l.passdb = kSqlLogName;
  return l;
}

SqlAnswer sql_answer(const Request& req, const SqlRow& row, const config::Passdb& cfg,
                     std::string_view who) {
  SqlAnswer a;
  Lookup& res = a.lookup;
  res.passdb = who;
  if (row.rows == 0) {
    res.result = Result::UnknownUser;
    return a;
  }
  if (row.rows > 1) {
    res.result = Result::TempFail;
    res.error = "Password query returned multiple matches";
    return a;
  }
  std::optional<size_t> pw;
  bool noscheme = false;
  for (size_t i = 0; i < row.names.size(); ++i) {
    if (row.names[i] == "password" || row.names[i] == "password_noscheme") {
      pw = i;
      noscheme = row.names[i] == "password_noscheme";
    }
  }
  if (!pw) {
    res.result = Result::TempFail;
    res.error = "Password query must return a field named 'password'";
    return a;
  }
  Reply& r = res.reply;
  r.user = std::string(req.user);
  for (const auto& [k, v] : parse_extra_fields(cfg.default_fields)) r.set(k, v);
  for (size_t i = 0; i < row.names.size(); ++i) {
    std::string_view k = row.names[i];
    if (i == *pw || k.empty() || !row.values[i] || k.rfind("userdb_", 0) == 0) continue;
    std::string_view v = *row.values[i];
    if (k == "user") r.user = std::string(v);
    else if (boolean_field(k)) r.set(k, "");
    else r.set(k, v);
  }
  for (const auto& [k, v] : parse_extra_fields(cfg.override_fields)) r.set(k, v);
  if (req.lookup_only && !req.fetch) {
    res.result = Result::Ok;
    return a;
  }
  std::string_view stored = row.values[*pw].value_or(std::string_view());
  if (noscheme && !stored.empty()) a.stored = "{" + cfg.default_pass_scheme + "}" + std::string(stored);
  else a.stored = std::string(stored);
  if (req.fetch) {  // the auth cache checks the password (cached_verdict)
    res.result = Result::Ok;
    res.stored = std::make_shared<const core::Secret>(a.stored);
    return a;
  }
  const StoredCheck check = stored_check(r, a.stored);
  if (r.has("nopassword") && check == StoredCheck::Verify)
    res.error = std::string(who) + ": user " + r.user + ": nopassword set but password is non-empty (ignored)";
  if (check == StoredCheck::Ok) {
    res.result = Result::Ok;
    return a;
  }
  if (check == StoredCheck::Mismatch) {
    res.result = Result::Mismatch;
    res.error = std::string(who) + ": user " + r.user + " has no password";
    return a;
  }
  a.verify = true;
  return a;
}

bool sql_verify_is_cheap(const SqlAnswer& a, const config::Passdb& cfg) {
  return cleartext_scheme(a.stored, cfg.default_pass_scheme);
}

Lookup sql_verify(SqlAnswer a, const Request& req, const config::Passdb& cfg, std::string_view who) {
  Lookup res = std::move(a.lookup);
  if (!a.verify) return res;
  apply_verify(res, verify_password(a.stored, req.password, cfg.default_pass_scheme),
               std::string(who) + ": user " + res.reply.user);
  return res;
}

}  // namespace portier::passdb

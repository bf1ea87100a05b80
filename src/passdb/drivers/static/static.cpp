#include "passdb/drivers/static/static.hpp"

#include <asio/co_spawn.hpp>
#include <asio/use_awaitable.hpp>

#include "core/secure.hpp"

namespace portier::passdb::static_db {

namespace {
constexpr std::string_view kName = "static";
void append_verbatim(std::string& out, std::string_view v) { out.append(v); }

// parse_extra_fields() with spaces inside `%{...}` kept in their token
// ("host=%{user | domain}.backend" is one field).
std::vector<std::pair<std::string, std::string>> split_fields(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    size_t start = i;
    bool in_var = false;
    for (; i < text.size(); ++i) {
      char c = text[i];
      if (!in_var && (c == ' ' || c == '\t')) break;
      if (!in_var && c == '%' && i + 1 < text.size() && text[i + 1] == '{') in_var = true;
      else if (in_var && c == '}') in_var = false;
    }
    std::string_view tok = text.substr(start, i - start);
    if (tok.empty()) continue;
    size_t eq = tok.find('=');
    std::string_view k = tok.substr(0, eq);
    if (k.empty()) continue;
    out.emplace_back(std::string(k), eq == std::string_view::npos ? std::string() : std::string(tok.substr(eq + 1)));
  }
  return out;
}
}

std::shared_ptr<const config::PassdbSettings> parse_settings(config::PassdbSection& section) {
  auto s = std::make_shared<Settings>();
  if (section.has("fields")) {
    auto f = section.string("fields");
    if (!f) return nullptr;
    for (const auto& [k, v] : split_fields(*f)) {
      if (k == "password") continue;  // a literal, never expanded
      if (auto t = Template::compile(v); !t) {
        section.error("fields", "passdb.fields: " + k + ": " + t.error().message);
        return nullptr;
      }
    }
    s->fields = *f;
  }
  if (section.has("password")) {
    auto p = section.string("password");
    if (!p) return nullptr;
    s->password = *p;
  }
  return s;
}

Static::Static(const config::Passdb& cfg) : default_scheme_(cfg.default_pass_scheme) {
  const auto& s = dynamic_cast<const Settings&>(*cfg.settings);
  password_ = s.password;
  for (const auto& [k, v] : parse_extra_fields(cfg.default_fields)) reply_.set(k, v);
  for (auto& [k, v] : split_fields(s.fields)) {
    if (k == "password") {  // Dovecot's static args: password=<pw>
      password_ = v;
      core::secure_zero(v);
      continue;
    }
    reply_.set(k, v);
    if (auto t = Template::compile(v); t && !t->variables().empty()) templated_.emplace_back(k, std::move(*t));
  }
  for (const auto& [k, v] : parse_extra_fields(cfg.override_fields)) {
    reply_.set(k, v);
    const std::string& key = k;  // clang 14 cannot capture a structured binding
    std::erase_if(templated_, [&key](const auto& kt) { return kt.first == key; });
  }
}

Static::~Static() { core::secure_zero(password_); }

Lookup Static::answer(const Request& req, bool may_hash, bool& needs_hash) const {
  Lookup l;
  l.passdb = kName;
  l.reply = reply_;
  l.reply.user = std::string(req.user);
  std::string value;
  for (const auto& [k, t] : templated_) {
    if (!t.expand(req, append_verbatim, value)) {
      l.result = Result::TempFail;
      l.error = "static: a variable in field '" + k + "' holds NUL";
      return l;
    }
    l.reply.set(k, value);
  }
  if (req.lookup_only) {
    l.result = Result::Ok;
    return l;
  }
  std::string_view stored = password_;
  if (!stored.empty() && stored.front() == '{') {
    auto close = stored.find('}');
    if (close != std::string_view::npos) stored.remove_prefix(close + 1);
  }
  if (stored.empty()) {
    l.result = l.reply.has("nopassword") ? Result::Ok : Result::Mismatch;
    if (l.result == Result::Mismatch) l.error = "static: no password and no nopassword field";
    return l;
  }
  if (!may_hash && !cleartext_scheme(password_, default_scheme_)) {
    needs_hash = true;
    return l;
  }
  apply_verify(l, verify_password(password_, req.password, default_scheme_), "static");
  return l;
}

std::optional<Lookup> Static::lookup_inline(const Request& req) {
  bool needs_hash = false;
  Lookup l = answer(req, false, needs_hash);
  if (needs_hash) return std::nullopt;
  return l;
}

Lookup Static::verify(const Request& req) const {
  bool needs_hash = false;
  return answer(req, true, needs_hash);
}

namespace {
// By-value parameters (GCC 12 coroutine captures); holds the passdb alive.
net::Task<Lookup> verify_on_pool(std::shared_ptr<const Static> db, RequestCopy req) {
  co_return db->verify(req.view());
}
}  // namespace

net::Task<Lookup> Static::lookup(const Request& req) {
  if (!req.hashing) co_return verify(req);
  co_return co_await asio::co_spawn(req.hashing->get_executor(),
                                    verify_on_pool(shared_from_this(), RequestCopy(req)),
                                    asio::use_awaitable);
}

core::Result<std::shared_ptr<Passdb>> make(const config::Passdb& cfg) {
  if (!dynamic_cast<const Settings*>(cfg.settings.get())) {
    return core::fail("static: settings missing");
  }
  if (!known_scheme(cfg.default_pass_scheme)) {
    return core::fail("static: unknown default_pass_scheme '" + cfg.default_pass_scheme + "'");
  }
  return std::make_shared<Static>(cfg);
}

}  // namespace portier::passdb::static_db

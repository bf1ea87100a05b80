#include "passdb/drivers/oauth2/oauth2.hpp"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <mutex>
#include <unordered_map>

#include "core/secret.hpp"
#include "core/secure.hpp"
#include "passdb/blocking.hpp"
#include "passdb/field_table.hpp"
#include "passdb/drivers/oauth2/jwt.hpp"

namespace portier::passdb::oauth2 {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::string_view kName = "oauth2";

enum class Mode { Post, Get, Auth, Local };

/// One `fields` entry: literal text and %{oauth2:claim} pieces.
struct Field {
  std::string name;
  struct Piece {
    std::string text;  ///< literal, or the claim name when `claim`
    bool claim = false;
  };
  std::vector<Piece> pieces;
};

struct Settings final : config::PassdbSettings {
  std::string url;  ///< introspection_url, else tokeninfo_url
  Mode mode = Mode::Post;
  std::string local_keys;
  std::string client_id;
  core::Secret client_secret;
  ClaimRules rules;
  std::string openid_configuration_url;
  std::chrono::milliseconds timeout{5000};
  std::vector<Field> fields;
  size_t cache_size = 1000;
  std::chrono::milliseconds cache_ttl{60000};
  unsigned connections = 8;
  std::string describe() const override {
    return mode == Mode::Local ? "oauth2 local " + local_keys : "oauth2 " + url;
  }
};

core::Result<Field> parse_field(std::string_view name, std::string_view value) {
  Field f;
  f.name = std::string(name);
  if (name.empty()) return core::fail("an extra field name must not be empty");
  std::string lit;
  constexpr std::string_view kOpen = "%{oauth2:";
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '%') {
      lit += value[i];
    } else if (value.substr(i, 2) == "%%") {
      lit += '%';
      ++i;
    } else {
      const size_t close = value.find('}', i);
      if (value.substr(i, kOpen.size()) != kOpen || close == std::string_view::npos ||
          close == i + kOpen.size()) {
        return core::fail("field '" + f.name + "': only %{oauth2:claim} and %% are supported");
      }
      if (!lit.empty()) f.pieces.push_back({std::move(lit), false});
      lit.clear();
      f.pieces.push_back({std::string(value.substr(i + kOpen.size(), close - i - kOpen.size())), true});
      i = close;
    }
  }
  if (!lit.empty()) f.pieces.push_back({std::move(lit), false});
  return f;
}

Lookup make_lookup(Result r, std::string error) {
  Lookup l;
  l.result = r;
  l.passdb = kName;
  l.error = "oauth2: " + std::move(error);
  return l;
}

std::string sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

size_t collect(char* p, size_t size, size_t n, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() + size * n > (1u << 20)) return 0;  // 1 MiB is plenty for a token answer
  body->append(p, size * n);
  return size * n;
}

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// ---------------------------------------------------------------- driver
class OAuth2 final : public SyncPassdb {
 public:
  OAuth2(config::Passdb cfg, const Settings& s)
      : cfg_(std::move(cfg)), s_(s), keys_(s.local_keys) {}

  std::optional<Lookup> lookup_inline(const Request& req) override {
    if (req.lookup_only || req.fetch) {
      return make_lookup(Result::UnknownUser, "no token to look a user up with");
    }
    if (req.password.empty()) return refused({"invalid_request", "empty token"});
    if (s_.cache_size == 0) return std::nullopt;
    const std::string key = cache_key(req);
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it == cache_.end()) return std::nullopt;
    if (it->second.expires <= Clock::now()) {
      cache_.erase(it);
      return std::nullopt;
    }
    Lookup l = make_lookup(Result::Ok, "");
    l.error.clear();
    l.reply = it->second.reply;
    return l;
  }

  Lookup lookup_blocking(const Request& req) override {
    nlohmann::json claims;
    if (s_.mode == Mode::Local) {
      auto v = verify_jwt(req.password, keys_);
      if (auto* r = std::get_if<Refusal>(&v)) return refused(std::move(*r));
      claims = std::move(std::get<nlohmann::json>(v));
    } else {
      auto got = introspect(req);
      if (auto* l = std::get_if<Lookup>(&got)) return std::move(*l);
      claims = std::move(std::get<nlohmann::json>(got));
      // RFC 7662: `active` is required and false means refused.
      if (auto it = claims.find("active"); it != claims.end() && *it == false) {
        return refused({"invalid_token", "token not active"});
      }
    }
    const long long now = static_cast<long long>(std::time(nullptr));
    if (auto r = check_claims(claims, rules(), req.user, now)) return refused(std::move(*r));
    Lookup l = make_lookup(Result::Ok, "");
    l.error.clear();
    l.reply.user = std::string(req.user);
    for (const auto& f : s_.fields) l.reply.set(f.name, expand(f, claims));
    remember(req, l.reply, claims, now);
    return l;
  }

 private:
  struct Entry {
    Reply reply;
    Clock::time_point expires;
  };

  ClaimRules rules() const {
    ClaimRules r = s_.rules;
    r.require_exp = r.require_aud = s_.mode == Mode::Local;
    return r;
  }

  static std::string cache_key(const Request& req) {
    return sha256(req.password) + '\0' + std::string(req.user);
  }

  Lookup refused(Refusal r) const {
    Lookup l = make_lookup(Result::Mismatch, r.reason);
    OAuthFailure f;
    f.status = r.status;
    for (const auto& sc : s_.rules.scopes) {
      if (!f.scope.empty()) f.scope += ' ';
      f.scope += sc;
    }
    f.openid_configuration = s_.openid_configuration_url;
    l.oauth_failure = std::move(f);
    return l;
  }

  static std::string expand(const Field& f, const nlohmann::json& claims) {
    std::string out;
    for (const auto& p : f.pieces) {
      if (!p.claim) out += p.text;
      else if (auto v = claim_text(claims, p.text)) out += *v;
    }
    return out;
  }

  void remember(const Request& req, const Reply& reply, const nlohmann::json& claims, long long now) {
    if (s_.cache_size == 0) return;
    auto life = std::chrono::duration_cast<Clock::duration>(s_.cache_ttl);
    if (auto it = claims.find("exp"); it != claims.end() && it->is_number()) {
      const auto left = std::chrono::seconds(it->get<long long>() - now);
      if (left <= std::chrono::seconds::zero()) return;  // valid only by grace: never cached
      life = std::min<Clock::duration>(life, left);
    }
    const Clock::time_point t = Clock::now();
    std::lock_guard lock(mu_);
    if (cache_.size() >= s_.cache_size) {
      for (auto it = cache_.begin(); it != cache_.end();) {
        if (it->second.expires <= t) it = cache_.erase(it);
        else ++it;
      }
      if (cache_.size() >= s_.cache_size) cache_.erase(cache_.begin());
    }
    cache_[cache_key(req)] = Entry{reply, t + life};
  }

  // One HTTP request: the claims, or the Lookup to answer (TempFail, refusal).
  std::variant<nlohmann::json, Lookup> introspect(const Request& req) {
    thread_local std::unique_ptr<CURL, CurlFree> handle(curl_easy_init());
    CURL* c = handle.get();
    if (!c) return make_lookup(Result::TempFail, "curl_easy_init failed");
    curl_easy_reset(c);
    auto timeout = s_.timeout;
    if (req.deadline != Clock::time_point{}) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(req.deadline - Clock::now());
      if (left <= std::chrono::milliseconds::zero()) return make_lookup(Result::TempFail, "login timed out");
      timeout = std::min(timeout, left);
    }
    char* esc = curl_easy_escape(c, req.password.data(), static_cast<int>(req.password.size()));
    if (!esc) return make_lookup(Result::TempFail, "curl_easy_escape failed");
    core::Secret escaped(esc);
    core::secure_zero(esc, std::strlen(esc));
    curl_free(esc);
    core::Secret url(s_.url);
    core::Secret body;
    core::Secret bearer;
    std::unique_ptr<curl_slist, SlistFree> headers;
    auto add_header = [&](const char* h) { headers.reset(curl_slist_append(headers.release(), h)); };
    add_header("Accept: application/json");
    switch (s_.mode) {
      case Mode::Post:
        body = "token=";
        body.append(escaped.view());
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.view().data());
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
        break;
      case Mode::Get:
        url.append(escaped.view());
        break;
      case Mode::Auth:
        bearer = "Authorization: Bearer ";
        bearer.append(req.password);
        bearer.push_back('\0');
        add_header(bearer.view().data());
        break;
      case Mode::Local:
        break;
    }
    url.push_back('\0');
    std::string response;
    curl_easy_setopt(c, CURLOPT_URL, url.view().data());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
    core::Secret pw(s_.client_secret.view());
    pw.push_back('\0');
    if (!s_.client_id.empty() && s_.mode != Mode::Auth) {
      curl_easy_setopt(c, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
      curl_easy_setopt(c, CURLOPT_USERNAME, s_.client_id.c_str());
      curl_easy_setopt(c, CURLOPT_PASSWORD, pw.view().data());
    }
    return finish(c, response);
  }

  std::variant<nlohmann::json, Lookup> finish(CURL* c, std::string& response) {
    const CURLcode rc = curl_easy_perform(c);
    // Clear what pointed at our buffers (the handle outlives this request).
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(c, CURLOPT_PASSWORD, nullptr);
    if (rc != CURLE_OK) {
      // curl_easy_strerror never contains the URL (nor a token appended to it).
      return make_lookup(Result::TempFail, std::string("introspection request to ") + host() +
                                               " failed: " + curl_easy_strerror(rc));
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 500 || (status >= 300 && status < 400) || status < 200) {
      core::secure_zero(response);
      return make_lookup(Result::TempFail, "introspection server " + host() + " answered HTTP " +
                                               std::to_string(status));
    }
    auto j = nlohmann::json::parse(response, nullptr, false);
    core::secure_zero(response);
    if (status >= 400) {
      return refused({"invalid_token", "introspection answered HTTP " + std::to_string(status)});
    }
    if (j.is_discarded() || !j.is_object()) {
      return make_lookup(Result::TempFail, "introspection server " + host() + " sent invalid JSON");
    }
    return j;
  }

  std::string host() const {
    // scheme://host[:port] of the URL, for messages (never its path/query).
    const size_t start = s_.url.find("://");
    const size_t end = start == std::string::npos ? std::string::npos : s_.url.find('/', start + 3);
    return s_.url.substr(0, end);
  }

  config::Passdb cfg_;
  const Settings& s_;  // owned by cfg_.settings
  KeyStore keys_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> cache_;
};

bool read_string(config::PassdbSection& section, const char* key, std::string& out) {
  if (!section.has(key)) return true;
  auto v = section.string(key);
  if (!v) return false;
  out = std::move(*v);
  return true;
}

bool read_strings(config::PassdbSection& section, const char* key, std::vector<std::string>& out) {
  if (!section.has(key)) return true;
  auto v = section.strings(key);
  if (!v) return false;
  out = std::move(*v);
  return true;
}

bool read_duration(config::PassdbSection& section, const char* key, std::chrono::milliseconds& out,
                   bool allow_zero) {
  if (!section.has(key)) return true;
  auto v = section.duration(key);
  if (!v) return false;
  if (*v < std::chrono::milliseconds::zero() || (!allow_zero && *v == std::chrono::milliseconds::zero())) {
    section.error(key, "passdb." + std::string(key) + ": must be " + (allow_zero ? "zero or more" : "positive"));
    return false;
  }
  out = *v;
  return true;
}

}  // namespace

std::shared_ptr<const config::PassdbSettings> parse_settings(config::PassdbSection& section) {
  auto s = std::make_shared<Settings>();
  bool ok = true;
  std::string introspection_url, tokeninfo_url, mode = "post", secret;
  ok &= read_string(section, "introspection_url", introspection_url);
  ok &= read_string(section, "tokeninfo_url", tokeninfo_url);
  ok &= read_string(section, "introspection_mode", mode);
  ok &= read_string(section, "local_keys", s->local_keys);
  ok &= read_string(section, "client_id", s->client_id);
  ok &= read_string(section, "client_secret", secret);
  s->client_secret = core::Secret::take(secret);
  ok &= read_string(section, "username_attribute", s->rules.username_attribute);
  ok &= read_string(section, "active_attribute", s->rules.active_attribute);
  ok &= read_string(section, "active_value", s->rules.active_value);
  ok &= read_strings(section, "scope", s->rules.scopes);
  ok &= read_strings(section, "issuers", s->rules.issuers);
  ok &= read_string(section, "openid_configuration_url", s->openid_configuration_url);
  std::chrono::milliseconds grace = s->rules.grace;
  ok &= read_duration(section, "token_expire_grace", grace, true);
  s->rules.grace = std::chrono::duration_cast<std::chrono::seconds>(grace);
  ok &= read_duration(section, "timeout", s->timeout, false);
  ok &= read_duration(section, "cache_ttl", s->cache_ttl, true);
  s->rules.client_id = s->client_id;
  if (section.has("cache_size")) {
    if (auto n = section.integer("cache_size", 0, 10000000)) s->cache_size = static_cast<size_t>(*n);
    else ok = false;
  }
  if (s->cache_ttl == std::chrono::milliseconds::zero()) s->cache_size = 0;
  if (section.has("connections")) {
    if (auto n = section.integer("connections", 1, 256)) s->connections = static_cast<unsigned>(*n);
    else ok = false;
  }
  if (mode == "post") s->mode = Mode::Post;
  else if (mode == "get") s->mode = Mode::Get;
  else if (mode == "auth") s->mode = Mode::Auth;
  else if (mode == "local") s->mode = Mode::Local;
  else {
    section.error("introspection_mode", "passdb.introspection_mode: must be \"post\", \"get\", \"auth\" or \"local\"");
    ok = false;
  }
  if (s->mode == Mode::Local) {
    if (s->local_keys.empty()) {
      section.error("local_keys", "passdb: introspection_mode = \"local\" needs local_keys (a key directory)");
      ok = false;
    } else {
      s->local_keys = section.resolve_path(s->local_keys);
    }
  } else {
    s->url = !introspection_url.empty() ? introspection_url : tokeninfo_url;
    if (tokeninfo_url == s->url && !tokeninfo_url.empty()) s->mode = Mode::Get;
    if (s->url.empty()) {
      section.error("introspection_url", "passdb: driver oauth2 needs introspection_url or tokeninfo_url "
                                         "(or introspection_mode = \"local\" with local_keys)");
      ok = false;
    } else if (s->url.rfind("http://", 0) != 0 && s->url.rfind("https://", 0) != 0) {
      section.error(introspection_url.empty() ? "tokeninfo_url" : "introspection_url",
                    "passdb: the oauth2 URL must start with http:// or https://");
      ok = false;
    }
  }
  ok &= parse_field_table(section, parse_field, s->fields);
  if (!ok) return nullptr;
  return s;
}

core::Result<std::shared_ptr<Passdb>> make(const config::Passdb& cfg) {
  const auto* s = dynamic_cast<const Settings*>(cfg.settings.get());
  if (!s) return core::fail("oauth2: settings missing");
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  auto drv = std::make_shared<OAuth2>(cfg, *s);
  return std::make_shared<BlockingPassdb>(std::move(drv), s->connections);
}

}  // namespace portier::passdb::oauth2

#include "passdb/drivers/oauth2/jwt.hpp"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "core/secret.hpp"
#include "core/secure.hpp"

namespace portier::passdb::oauth2 {

struct Key {
  EVP_PKEY* pkey = nullptr;  // asymmetric
  core::Secret secret;       // HS*
  ~Key() {
    if (pkey) EVP_PKEY_free(pkey);
  }
};

namespace {

int b64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

std::string escape_part(std::string_view s) {
  std::string out;
  if (!s.empty() && s.front() == '.') out += '.';  // Dovecot's fs dict doubles a leading dot
  for (char c : s) {
    if (c == '%') out += "%25";
    else if (c == '/') out += "%2f";
    else out += c;
  }
  return out;
}

const EVP_MD* digest_for(std::string_view bits) {
  if (bits == "256") return EVP_sha256();
  if (bits == "384") return EVP_sha384();
  if (bits == "512") return EVP_sha512();
  return nullptr;
}

// The EC curve and coordinate size of ES256/384/512.
struct Curve {
  int nid;
  size_t size;
};
std::optional<Curve> curve_for(std::string_view alg) {
  if (alg == "ES256") return Curve{NID_X9_62_prime256v1, 32};
  if (alg == "ES384") return Curve{NID_secp384r1, 48};
  if (alg == "ES512") return Curve{NID_secp521r1, 66};
  return std::nullopt;
}

bool supported_alg(std::string_view alg) {
  static constexpr std::string_view kAlgs[] = {"RS256", "RS384", "RS512", "PS256", "PS384",
                                               "PS512", "ES256", "ES384", "ES512", "EdDSA",
                                               "HS256", "HS384", "HS512"};
  return std::find(std::begin(kAlgs), std::end(kAlgs), alg) != std::end(kAlgs);
}

// The key's type fits `alg`.
bool key_fits(EVP_PKEY* k, std::string_view alg) {
  const int id = EVP_PKEY_base_id(k);
  if (alg.substr(0, 2) == "RS" || alg.substr(0, 2) == "PS") return id == EVP_PKEY_RSA;
  if (alg == "EdDSA") return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448;
  if (auto c = curve_for(alg)) {
    if (id != EVP_PKEY_EC) return false;
    char name[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(k, "group", name, sizeof name, &len) != 1) return false;
    return OBJ_txt2nid(name) == c->nid || EC_curve_nist2nid(name) == c->nid;
  }
  return false;
}

Refusal refuse(std::string reason, std::string status = "invalid_token") {
  return Refusal{std::move(status), std::move(reason)};
}

// ES*: JOSE's raw r||s → DER for OpenSSL.
std::optional<std::string> ecdsa_der(std::string_view raw, size_t n) {
  if (raw.size() != 2 * n) return std::nullopt;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(n), nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data() + n), static_cast<int>(n), nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) return std::nullopt;
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

bool verify_signature(const Key& key, std::string_view alg, std::string_view input, std::string_view sig) {
  const std::string_view family = alg.substr(0, 2);
  if (family == "HS") {
    const std::string digest = "SHA" + std::string(alg.substr(2));
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t len = 0;
    if (!EVP_Q_mac(nullptr, "HMAC", nullptr, digest.c_str(), nullptr, key.secret.view().data(),
                   key.secret.size(), reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
                   sizeof mac, &len)) {
      return false;
    }
    return sig.size() == len && CRYPTO_memcmp(mac, sig.data(), len) == 0;
  }
  std::string der;
  if (auto c = curve_for(alg)) {
    auto d = ecdsa_der(sig, c->size);
    if (!d) return false;
    der = std::move(*d);
    sig = der;
  }
  const EVP_MD* md = alg == "EdDSA" ? nullptr : digest_for(alg.substr(2));
  if (alg != "EdDSA" && !md) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok = ctx && EVP_DigestVerifyInit(ctx, &pctx, md, nullptr, key.pkey) == 1;
  if (ok && family == "PS") {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
  } else if (ok && family == "RS") {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
  }
  ok = ok && EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                              reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

std::optional<nlohmann::json> parse_object(std::string_view b64) {
  std::string raw;
  if (!base64url_decode(b64, raw)) return std::nullopt;
  auto j = nlohmann::json::parse(raw, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

std::optional<long long> time_claim(const nlohmann::json& c, const char* name) {
  auto it = c.find(name);
  if (it == c.end()) return std::nullopt;
  if (it->is_number()) return it->get<long long>();
  if (it->is_string()) {  // some introspection servers send numbers as strings
    try {
      return std::stoll(it->get<std::string>());
    } catch (...) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::vector<std::string> words(const nlohmann::json& v) {
  std::vector<std::string> out;
  if (v.is_string()) {
    std::istringstream in(v.get<std::string>());
    for (std::string w; in >> w;) out.push_back(w);
  } else if (v.is_array()) {
    for (const auto& e : v)
      if (e.is_string()) out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace

bool base64url_decode(std::string_view in, std::string& out) {
  out.clear();
  if (in.size() % 4 == 1) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = b64url_value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return (acc & ((1u << bits) - 1)) == 0;  // trailing bits must be zero
}

KeyStore::KeyStore(std::string dir) : dir_(std::move(dir)) {}
KeyStore::~KeyStore() = default;

core::Result<std::shared_ptr<const Key>> KeyStore::find(std::string_view azp, std::string_view alg,
                                                        std::string_view kid) {
  if (!supported_alg(alg)) return core::fail("unsupported alg");
  std::string dir_alg(alg);  // Dovecot's layout: the alg upper-case ("EDDSA")
  for (char& ch : dir_alg) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::string rel = escape_part(azp.empty() ? "default" : azp) + "/" + dir_alg + "/" +
                    escape_part(kid.empty() ? "default" : kid);
  std::lock_guard lock(mu_);
  if (auto it = keys_.find(rel); it != keys_.end()) return it->second;
  std::ifstream f(dir_ + "/" + rel, std::ios::binary);
  if (!f) return core::fail("no key " + rel);
  std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto key = std::make_shared<Key>();
  if (alg.substr(0, 2) == "HS") {
    if (data.empty()) return core::fail("empty key " + rel);
    key->secret = core::Secret::take(data);
  } else {
    BIO* bio = BIO_new_mem_buf(data.data(), static_cast<int>(data.size()));
    key->pkey = bio ? PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr) : nullptr;
    BIO_free(bio);
    if (!key->pkey) return core::fail("key " + rel + " is not a PEM public key");
    if (!key_fits(key->pkey, alg)) return core::fail("key " + rel + " does not fit alg " + std::string(alg));
  }
  keys_.emplace(rel, key);
  return std::shared_ptr<const Key>(key);
}

std::variant<nlohmann::json, Refusal> verify_jwt(std::string_view token, KeyStore& keys) {
  const size_t d1 = token.find('.');
  const size_t d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) {
    return refuse("not a JWT");
  }
  auto header = parse_object(token.substr(0, d1));
  if (!header) return refuse("JWT header is not base64url JSON");
  auto claims = parse_object(token.substr(d1 + 1, d2 - d1 - 1));
  if (!claims) return refuse("JWT payload is not base64url JSON");
  std::string sig;
  if (!base64url_decode(token.substr(d2 + 1), sig)) return refuse("JWT signature is not base64url");
  auto alg_it = header->find("alg");
  if (alg_it == header->end() || !alg_it->is_string()) return refuse("JWT without alg");
  const std::string alg = alg_it->get<std::string>();
  if (alg == "none" || !supported_alg(alg)) return refuse("JWT alg '" + alg + "' not accepted");
  std::string kid, azp;
  if (auto it = header->find("kid"); it != header->end()) {
    if (!it->is_string()) return refuse("JWT kid is not a string");
    kid = it->get<std::string>();
  }
  if (auto it = claims->find("azp"); it != claims->end()) {
    if (!it->is_string()) return refuse("JWT azp is not a string");
    azp = it->get<std::string>();
  }
  auto key = keys.find(azp, alg, kid);
  if (!key) return refuse("JWT key: " + key.error().message);
  if (!verify_signature(**key, alg, token.substr(0, d2), sig)) return refuse("JWT signature invalid");
  return std::move(*claims);
}

std::optional<Refusal> check_claims(const nlohmann::json& c, const ClaimRules& r, std::string_view user,
                                    long long now) {
  if (!c.is_object()) return refuse("token answer is not a JSON object");
  if (!r.active_attribute.empty()) {
    auto v = claim_text(c, r.active_attribute);
    if (!v || *v != r.active_value) return refuse("token not active");
  }
  if (!r.username_attribute.empty()) {
    auto v = claim_text(c, r.username_attribute);
    if (!v) return refuse("token has no '" + r.username_attribute + "'");
    if (*v != user) return refuse("token is for another user");
  }
  const long long grace = r.grace.count();
  auto exp = time_claim(c, "exp");
  if (!exp && (r.require_exp || c.contains("exp"))) return refuse("token has no valid exp");
  if (exp && *exp + grace < now) return refuse("token expired");
  if (auto nbf = time_claim(c, "nbf"); nbf && *nbf - grace > now) return refuse("token not yet valid (nbf)");
  if (c.contains("nbf") && !time_claim(c, "nbf")) return refuse("token nbf invalid");
  if (auto iat = time_claim(c, "iat"); iat && *iat - grace > now) return refuse("token issued in the future (iat)");
  if (!r.issuers.empty()) {
    auto iss = claim_text(c, "iss");
    if (!iss || std::find(r.issuers.begin(), r.issuers.end(), *iss) == r.issuers.end()) {
      return refuse("token issuer not accepted");
    }
  }
  if (!r.client_id.empty()) {
    auto it = c.find("aud");
    if (it == c.end()) {
      if (r.require_aud) return refuse("token has no aud");
    } else {
      auto auds = words(*it);
      if (it->is_string()) auds = {it->get<std::string>()};
      if (std::find(auds.begin(), auds.end(), r.client_id) == auds.end()) {
        return refuse("token audience does not include client_id");
      }
    }
  }
  if (!r.scopes.empty()) {
    std::vector<std::string> have;
    if (auto it = c.find("scope"); it != c.end()) have = words(*it);
    if (auto it = c.find("scp"); it != c.end()) {
      auto more = words(*it);
      have.insert(have.end(), more.begin(), more.end());
    }
    const bool any = std::any_of(r.scopes.begin(), r.scopes.end(), [&](const std::string& s) {
      return std::find(have.begin(), have.end(), s) != have.end();
    });
    if (!any) return refuse("token lacks the required scope", "insufficient_scope");
  }
  return std::nullopt;
}

std::optional<std::string> claim_text(const nlohmann::json& c, std::string_view name) {
  auto it = c.find(std::string(name));
  if (it == c.end() || it->is_null() || it->is_object()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    std::string out;
    for (const auto& e : *it) {
      if (!out.empty()) out += ' ';
      out += e.is_string() ? e.get<std::string>() : e.dump();
    }
    return out;
  }
  return it->dump();
}

}  // namespace portier::passdb::oauth2

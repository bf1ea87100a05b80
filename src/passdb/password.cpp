#include "passdb/password.hpp"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/base64.hpp"
#include "core/secure.hpp"
#include "core/strings.hpp"

namespace portier::passdb {

namespace {

bool ct_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// Splits "{SCHEME}data" into (upper-case scheme, data). No prefix: CRYPT when
// the value starts with '$', else `default_scheme`.
std::pair<std::string, std::string_view> split_scheme(std::string_view stored,
                                                      std::string_view default_scheme) {
  if (!stored.empty() && stored.front() == '{') {
    auto close = stored.find('}');
    if (close != std::string_view::npos)
      return {core::to_upper(stored.substr(1, close - 1)), stored.substr(close + 1)};
  }
  if (!stored.empty() && stored.front() == '$') return {"CRYPT", stored};
  return {core::to_upper(default_scheme), stored};
}

bool is_cleartext(std::string_view upper_scheme) {
  return upper_scheme == "PLAIN" || upper_scheme == "CLEAR" || upper_scheme == "CLEARTEXT";
}

VerifyResult crypt_verify(std::string_view hash, std::string_view plain) {
  if (hash.empty()) return VerifyResult::Malformed;
  if (plain.find('\0') != std::string_view::npos || hash.find('\0') != std::string_view::npos)
    return VerifyResult::Mismatch;
  std::string p(plain), h(hash);
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* r = crypt_rn(p.c_str(), h.c_str(), data.get(), sizeof(crypt_data));
  core::secure_zero(p);
  VerifyResult res;
  if (r == nullptr || r[0] == '*')
    res = VerifyResult::Malformed;
  else
    res = ct_equal(r, hash) ? VerifyResult::Match : VerifyResult::Mismatch;
  core::secure_zero(data.get(), sizeof(crypt_data));
  return res;
}

const EVP_MD* digest_for(std::string_view scheme, bool& salted) {
  salted = scheme.front() == 'S' && scheme.size() > 1 && scheme[1] == 'S';
  std::string_view base = salted ? scheme.substr(1) : scheme;
  if (base == "SHA" || base == "SHA1") return EVP_sha1();
  if (base == "SHA256") return EVP_sha256();
  if (base == "SHA512") return EVP_sha512();
  return nullptr;
}

bool digest(const EVP_MD* md, std::string_view a, std::string_view b, std::string& out) {
  unsigned char buf[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), a.data(), a.size()) != 1 ||
      EVP_DigestUpdate(ctx.get(), b.data(), b.size()) != 1 || EVP_DigestFinal_ex(ctx.get(), buf, &len) != 1)
    return false;
  out.assign(reinterpret_cast<const char*>(buf), len);
  core::secure_zero(buf, sizeof buf);
  return true;
}

VerifyResult digest_verify(const EVP_MD* md, bool salted, std::string_view data, std::string_view plain) {
  auto raw = core::base64_decode(data);
  if (!raw) return VerifyResult::Malformed;
  size_t dlen = static_cast<size_t>(EVP_MD_get_size(md));
  if (salted ? raw->size() <= dlen : raw->size() != dlen) return VerifyResult::Malformed;
  std::string_view salt = std::string_view(*raw).substr(dlen);
  std::string d;
  if (!digest(md, plain, salt, d)) return VerifyResult::Malformed;
  bool eq = ct_equal(d, std::string_view(*raw).substr(0, dlen));
  return eq ? VerifyResult::Match : VerifyResult::Mismatch;
}

std::string crypt_hash(const char* prefix, std::string_view plain) {
  if (plain.find('\0') != std::string_view::npos) return {};
  char* salt = crypt_gensalt_ra(prefix, 0, nullptr, 0);
  if (!salt) return {};
  std::string p(plain);
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* r = crypt_rn(p.c_str(), salt, data.get(), sizeof(crypt_data));
  std::string out = (r && r[0] != '*') ? std::string(r) : std::string();
  std::free(salt);
  core::secure_zero(p);
  core::secure_zero(data.get(), sizeof(crypt_data));
  return out;
}

}  // namespace

bool known_scheme(std::string_view scheme_in) {
  std::string scheme = core::to_upper(scheme_in);
  if (is_cleartext(scheme) || scheme == "CRYPT" || scheme == "SHA512-CRYPT" ||
      scheme == "SHA256-CRYPT" || scheme == "BLF-CRYPT" || scheme == "MD5-CRYPT")
    return true;
  bool salted = false;
  return !scheme.empty() && digest_for(scheme, salted) != nullptr;
}

bool cleartext_scheme(std::string_view stored, std::string_view default_scheme) {
  return is_cleartext(split_scheme(stored, default_scheme).first);
}

VerifyResult verify_password(std::string_view stored, std::string_view plain,
                             std::string_view default_scheme) {
  auto [scheme, data] = split_scheme(stored, default_scheme);
  if (is_cleartext(scheme))
    return ct_equal(data, plain) ? VerifyResult::Match : VerifyResult::Mismatch;
  if (scheme == "CRYPT") return crypt_verify(data, plain);
  struct CryptScheme { std::string_view name; std::string_view prefix1, prefix2, prefix3; };
  static constexpr CryptScheme kCrypt[] = {
      {"SHA512-CRYPT", "$6$", "", ""},
      {"SHA256-CRYPT", "$5$", "", ""},
      {"BLF-CRYPT", "$2y$", "$2a$", "$2b$"},
      {"MD5-CRYPT", "$1$", "", ""},
  };
  for (const auto& c : kCrypt) {
    if (scheme != c.name) continue;
    // Capture a copy, not the structured binding: clang 14 rejects capturing bindings.
    auto starts = [d = data](std::string_view p) { return !p.empty() && d.substr(0, p.size()) == p; };
    if (!starts(c.prefix1) && !starts(c.prefix2) && !starts(c.prefix3)) return VerifyResult::Malformed;
    return crypt_verify(data, plain);
  }
  if (!scheme.empty()) {
    bool salted = false;
    if (const EVP_MD* md = digest_for(scheme, salted)) return digest_verify(md, salted, data, plain);
  }
  return VerifyResult::UnknownScheme;
}

std::string hash_password(std::string_view scheme_in, std::string_view plain) {
  std::string scheme = core::to_upper(scheme_in);
  std::string h;
  if (scheme == "PLAIN") {
    h.assign(plain);
  } else if (scheme == "SHA512-CRYPT") {
    h = crypt_hash("$6$", plain);
  } else if (scheme == "SHA256-CRYPT") {
    h = crypt_hash("$5$", plain);
  } else if (scheme == "BLF-CRYPT") {
    h = crypt_hash("$2y$", plain);
  } else if (scheme == "MD5-CRYPT") {
    h = crypt_hash("$1$", plain);
  } else if (scheme == "CRYPT") {
    h = crypt_hash(nullptr, plain);
  } else if (scheme == "SSHA256" || scheme == "SSHA512") {
    unsigned char salt[8];
    if (RAND_bytes(salt, sizeof salt) != 1) return {};
    std::string_view s(reinterpret_cast<const char*>(salt), sizeof salt);
    std::string d;
    if (!digest(scheme == "SSHA256" ? EVP_sha256() : EVP_sha512(), plain, s, d)) return {};
    d.append(s);
    h = core::base64_encode(d);
  } else {
    return {};
  }
  if (h.empty() && scheme != "PLAIN") return {};
  return "{" + scheme + "}" + h;
}

}  // namespace portier::passdb

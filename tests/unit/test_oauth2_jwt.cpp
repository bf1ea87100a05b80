// passdb/drivers/oauth2/jwt: strict base64url, local JWT verification for
// every algorithm family with keys generated here through OpenSSL, and the
// claim checks (exp/nbf/grace, iss, aud, scope, user, active).
#include "passdb/drivers/oauth2/jwt.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdlib.h>

#include <cctype>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>

namespace fs = std::filesystem;
using namespace portier::passdb::oauth2;
using nlohmann::json;

namespace {

std::string b64url(std::string_view in) {
  static const char* kAlpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlpha[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kAlpha[(acc << (6 - bits)) & 63];
  return out;
}

const EVP_MD* md_of(std::string_view alg) {
  if (alg.ends_with("256")) return EVP_sha256();
  if (alg.ends_with("384")) return EVP_sha384();
  return EVP_sha512();
}

// One signing key and its published public half.
struct TestKey {
  std::string alg;
  EVP_PKEY* pkey = nullptr;
  std::string secret;  // HS*
  ~TestKey() { EVP_PKEY_free(pkey); }

  std::string public_file() const {
    if (!secret.empty()) return secret;
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, pkey);
    char* p = nullptr;
    long n = BIO_get_mem_data(b, &p);
    std::string out(p, static_cast<size_t>(n));
    BIO_free(b);
    return out;
  }

  std::string sign(std::string_view input) const {
    if (!secret.empty()) {
      unsigned char mac[EVP_MAX_MD_SIZE];
      size_t len = 0;
      const std::string digest = "SHA" + alg.substr(2);
      EVP_Q_mac(nullptr, "HMAC", nullptr, digest.c_str(), nullptr, secret.data(), secret.size(),
                reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, sizeof mac, &len);
      return std::string(reinterpret_cast<char*>(mac), len);
    }
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX* pctx = nullptr;
    const EVP_MD* md = alg == "EdDSA" ? nullptr : md_of(alg);
    EXPECT_EQ(EVP_DigestSignInit(ctx, &pctx, md, nullptr, pkey), 1);
    if (alg.starts_with("PS")) {
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    size_t len = 0;
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(input.data()), input.size());
    sig.resize(len);
    EVP_MD_CTX_free(ctx);
    if (alg.starts_with("ES")) {  // DER -> JOSE r||s
      const size_t n = alg == "ES256" ? 32 : alg == "ES384" ? 48 : 66;
      const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
      ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
      std::string raw(2 * n, '\0');
      BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(n));
      BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(raw.data() + n), static_cast<int>(n));
      ECDSA_SIG_free(es);
      return raw;
    }
    return sig;
  }
};

std::unique_ptr<TestKey> make_key(const std::string& alg) {
  auto k = std::make_unique<TestKey>();
  k->alg = alg;
  if (alg.starts_with("HS")) k->secret = "shared-secret-for-" + alg + "-0123456789abcdef";
  else if (alg.starts_with("RS") || alg.starts_with("PS")) k->pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
  else if (alg == "ES256") k->pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  else if (alg == "ES384") k->pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
  else if (alg == "ES512") k->pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521");
  else if (alg == "EdDSA") k->pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  return k;
}

class Jwt : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "portier_jwt_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Publishes `k` at <dir>/<azp>/<dir_alg>/<kid>.
  void publish(const TestKey& k, const std::string& kid = "k1", const std::string& azp = "default",
               std::string dir_alg = "") {
    if (dir_alg.empty()) {
      dir_alg = k.alg;
      for (char& ch : dir_alg) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    }
    fs::path p = fs::path(dir_) / azp / dir_alg / kid;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << k.public_file();
  }

  static std::string token(const TestKey& k, const json& header, const json& claims) {
    std::string input = b64url(header.dump()) + "." + b64url(claims.dump());
    return input + "." + b64url(k.sign(input));
  }
  static json claims() {
    const long long now = std::time(nullptr);
    return {{"iss", "https://issuer.test"}, {"aud", "portier"}, {"sub", "alice"}, {"email", "alice"},
            {"exp", now + 300}, {"iat", now}, {"scope", "openid mail"}};
  }

  std::string dir_;
};

bool refused(const std::variant<json, Refusal>& v) { return std::holds_alternative<Refusal>(v); }

}  // namespace

TEST(Base64Url, Strict) {
  std::string out;
  EXPECT_TRUE(base64url_decode("aGk", out));
  EXPECT_EQ(out, "hi");
  EXPECT_TRUE(base64url_decode("-_8", out));
  EXPECT_FALSE(base64url_decode("aGk=", out));    // padding
  EXPECT_FALSE(base64url_decode("aG+k", out));    // standard alphabet
  EXPECT_FALSE(base64url_decode("aGl", out));     // non-zero trailing bits
  EXPECT_FALSE(base64url_decode("aGkxa", out));   // 4n+1
  EXPECT_FALSE(base64url_decode("aG k", out));
}

class JwtAlg : public Jwt, public ::testing::WithParamInterface<const char*> {};

TEST_P(JwtAlg, VerifiesAndRejectsTampering) {
  const std::string alg = GetParam();
  auto k = make_key(alg);
  ASSERT_TRUE(k->pkey || !k->secret.empty());
  publish(*k);
  KeyStore store(dir_);
  const std::string tok = token(*k, {{"alg", alg}, {"kid", "k1"}, {"typ", "JWT"}}, claims());
  auto v = verify_jwt(tok, store);
  ASSERT_FALSE(refused(v)) << std::get<Refusal>(v).reason;
  EXPECT_EQ(std::get<json>(v)["sub"], "alice");
  // flip one signature byte
  std::string bad = tok;
  const size_t dot = bad.rfind('.');
  const char c = bad[dot + 3];
  bad[dot + 3] = c == 'A' ? 'B' : 'A';
  EXPECT_TRUE(refused(verify_jwt(bad, store)));
  // change the payload
  json other = claims();
  other["email"] = "mallory";
  std::string forged = tok.substr(0, tok.find('.') + 1) + b64url(other.dump()) + tok.substr(tok.rfind('.'));
  EXPECT_TRUE(refused(verify_jwt(forged, store)));
  // unknown kid
  EXPECT_TRUE(refused(verify_jwt(token(*k, {{"alg", alg}, {"kid", "k2"}}, claims()), store)));
}

INSTANTIATE_TEST_SUITE_P(All, JwtAlg,
                         ::testing::Values("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
                                           "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"));

TEST_F(Jwt, NoneAndUnknownAlgRefused) {
  auto k = make_key("RS256");
  publish(*k);
  KeyStore store(dir_);
  json h = {{"alg", "none"}, {"kid", "k1"}};
  EXPECT_TRUE(refused(verify_jwt(b64url(h.dump()) + "." + b64url(claims().dump()) + ".", store)));
  EXPECT_TRUE(refused(verify_jwt(token(*k, {{"alg", "RS1"}, {"kid", "k1"}}, claims()), store)));
  EXPECT_TRUE(refused(verify_jwt(token(*k, {{"kid", "k1"}}, claims()), store)));
  EXPECT_TRUE(refused(verify_jwt("a.b", store)));
  EXPECT_TRUE(refused(verify_jwt("a.b.c.d", store)));
}

TEST_F(Jwt, AlgMustFitKeyType) {
  auto rsa = make_key("RS256");
  publish(*rsa, "k1", "default", "ES256");  // an RSA key where an EC key belongs
  KeyStore store(dir_);
  EXPECT_TRUE(refused(verify_jwt(token(*rsa, {{"alg", "ES256"}, {"kid", "k1"}}, claims()), store)));
  // HS256 with the RSA public key as the "secret" (the classic confusion) finds no HS key
  TestKey hs;
  hs.alg = "HS256";
  hs.secret = rsa->public_file();
  EXPECT_TRUE(refused(verify_jwt(token(hs, {{"alg", "HS256"}, {"kid", "k1"}}, claims()), store)));
  // a P-384 key cannot serve ES256
  auto p384 = make_key("ES384");
  publish(*p384, "k3", "default", "ES256");
  EXPECT_TRUE(refused(verify_jwt(token(*p384, {{"alg", "ES256"}, {"kid", "k3"}}, claims()), store)));
}

TEST_F(Jwt, AzpAndDefaultKidSelectTheKey) {
  auto k = make_key("ES256");
  publish(*k, "default", "my%2fapp");
  KeyStore store(dir_);
  json c = claims();
  c["azp"] = "my/app";
  EXPECT_FALSE(refused(verify_jwt(token(*k, {{"alg", "ES256"}}, c), store)));
  EXPECT_TRUE(refused(verify_jwt(token(*k, {{"alg", "ES256"}}, claims()), store)));  // default azp: no key
}

TEST(Claims, Checks) {
  const long long now = 1'800'000'000;
  ClaimRules r;
  r.issuers = {"https://issuer.test"};
  r.client_id = "portier";
  r.scopes = {"mail"};
  r.require_exp = true;
  json c = {{"iss", "https://issuer.test"}, {"aud", json::array({"x", "portier"})}, {"email", "alice"},
            {"exp", now + 10}, {"scope", "openid mail"}};
  EXPECT_FALSE(check_claims(c, r, "alice", now));
  EXPECT_TRUE(check_claims(c, r, "bob", now));
  json e = c;
  e["exp"] = now - 30;  // within the 60 s grace
  EXPECT_FALSE(check_claims(e, r, "alice", now));
  e["exp"] = now - 61;
  EXPECT_TRUE(check_claims(e, r, "alice", now));
  e.erase("exp");
  EXPECT_TRUE(check_claims(e, r, "alice", now));
  json n = c;
  n["nbf"] = now + 30;
  EXPECT_FALSE(check_claims(n, r, "alice", now));
  n["nbf"] = now + 61;
  EXPECT_TRUE(check_claims(n, r, "alice", now));
  json i = c;
  i["iss"] = "https://evil.test";
  EXPECT_TRUE(check_claims(i, r, "alice", now));
  json a = c;
  a["aud"] = "other";
  EXPECT_TRUE(check_claims(a, r, "alice", now));
  json s = c;
  s["scope"] = "calendar";
  auto sr = check_claims(s, r, "alice", now);
  ASSERT_TRUE(sr);
  EXPECT_EQ(sr->status, "insufficient_scope");
  s.erase("scope");
  s["scp"] = json::array({"mail"});
  EXPECT_FALSE(check_claims(s, r, "alice", now));
  ClaimRules act;
  act.active_attribute = "enabled";
  act.active_value = "yes";
  EXPECT_TRUE(check_claims({{"email", "alice"}, {"enabled", "no"}}, act, "alice", now));
  EXPECT_FALSE(check_claims({{"email", "alice"}, {"enabled", "yes"}}, act, "alice", now));
}

#include <gtest/gtest.h>

#include "passdb/password.hpp"

using namespace portier::passdb;

namespace {

// `openssl passwd -6 -salt saltsalt secret`
constexpr const char* kSha512Crypt =
    "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
// `openssl passwd -5 -salt saltsalt secret`
constexpr const char* kSha256Crypt = "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA";
// `openssl passwd -1 -salt saltsalt secret`
constexpr const char* kMd5Crypt = "$1$saltsalt$9xy1btjgzLYfb7hivXtC//";
// Python crypt.crypt('secret', '$2b$05$abcdefghijklmnopqrstuu')
constexpr const char* kBcrypt = "$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a";
// python3: salt=bytes.fromhex('0102030405060708');
//   base64(hashlib.sha256(b'secret'+salt).digest()+salt)
constexpr const char* kSsha256 = "A7N1lAy5bBb4T6qH9e85zAvHBmzNPhRFbZ105DjjWDIBAgMEBQYHCA==";
constexpr const char* kSsha512 =
    "KO8EsMPQTwZrxxbOkDAOOXEeVCc2grMQg1pnZwZhC1bBQLby8zCmFn7qTZRvoTd+yQdROQQNYHWpTUST4zjTdQECAwQFBgcI";
constexpr const char* kSsha1 = "lHFzXul4wnzRItssVcTnvXWRjNgBAgMEBQYHCA==";
constexpr const char* kSha256 = "K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=";

struct Case {
  std::string stored;
  const char* plain;
  VerifyResult expect;
};

TEST(PassdbPassword, KnownVectors) {
  using VR = VerifyResult;
  const Case cases[] = {
      {"{PLAIN}secret", "secret", VR::Match},
      {"{PLAIN}secret", "Secret", VR::Mismatch},
      {"{plain}secret", "secret", VR::Match},
      {"{CLEAR}secret", "secret", VR::Match},
      {"{CLEARTEXT}secret", "secret", VR::Match},
      {"{PLAIN}", "", VR::Match},
      {"{PLAIN}", "x", VR::Mismatch},
      {std::string("{SHA512-CRYPT}") + kSha512Crypt, "secret", VR::Match},
      {std::string("{SHA512-CRYPT}") + kSha512Crypt, "secret2", VR::Mismatch},
      {std::string("{sha512-crypt}") + kSha512Crypt, "secret", VR::Match},
      {std::string("{CRYPT}") + kSha512Crypt, "secret", VR::Match},
      {kSha512Crypt, "secret", VR::Match},  // no scheme, '$' -> CRYPT
      {kSha512Crypt, "wrong", VR::Mismatch},
      {std::string("{SHA256-CRYPT}") + kSha256Crypt, "secret", VR::Match},
      {std::string("{SHA256-CRYPT}") + kSha256Crypt, "nope", VR::Mismatch},
      {std::string("{MD5-CRYPT}") + kMd5Crypt, "secret", VR::Match},
      {std::string("{MD5-CRYPT}") + kMd5Crypt, "nope", VR::Mismatch},
      {std::string("{BLF-CRYPT}") + kBcrypt, "secret", VR::Match},
      {std::string("{BLF-CRYPT}") + kBcrypt, "nope", VR::Mismatch},
      {std::string("{SSHA256}") + kSsha256, "secret", VR::Match},
      {std::string("{SSHA256}") + kSsha256, "secreT", VR::Mismatch},
      {std::string("{SSHA512}") + kSsha512, "secret", VR::Match},
      {std::string("{SSHA512}") + kSsha512, "", VR::Mismatch},
      {std::string("{SSHA}") + kSsha1, "secret", VR::Match},
      {std::string("{SHA256}") + kSha256, "secret", VR::Match},
      {std::string("{SHA256}") + kSha256, "x", VR::Mismatch},
      // Wrong scheme for the hash.
      {std::string("{SHA256-CRYPT}") + kSha512Crypt, "secret", VR::Malformed},
      {std::string("{SSHA512}") + kSsha256, "secret", VR::Malformed},  // too short for SHA512
      {"{SSHA256}not*base64", "secret", VR::Malformed},
      {"{SSHA256}AAAA", "secret", VR::Malformed},  // shorter than digest
      {"{SHA256}AAAA", "secret", VR::Malformed},
      {"{CRYPT}", "secret", VR::Malformed},
      {"{CRYPT}$6$broken", "secret", VR::Mismatch},  // libcrypt accepts, hash differs
      {"{FOO}bar", "bar", VR::UnknownScheme},
      {"{}bar", "bar", VR::UnknownScheme},
      {"{ARGON2ID}$argon2id$v=19$...", "x", VR::UnknownScheme},
  };
  for (const auto& c : cases)
    EXPECT_EQ(verify_password(c.stored, c.plain), c.expect) << c.stored << " / " << c.plain;
}

// Issue 8 item 7: without "{SCHEME}" a stored password is CRYPT (Dovecot's
// passwd-file default), not plain text: a migrated DES or $6$ entry verifies
// with the real password and the hash string itself is not a password.
TEST(PassdbPassword, UnprefixedIsCryptByDefault) {
  const std::string des = "abNANd1rDfiNc";  // crypt("secret", "ab")
  EXPECT_EQ(verify_password(des, "secret"), VerifyResult::Match);
  EXPECT_EQ(verify_password(des, des), VerifyResult::Mismatch);
  EXPECT_EQ(verify_password(des, "secre"), VerifyResult::Mismatch);
  EXPECT_EQ(verify_password(kSha512Crypt, "secret"), VerifyResult::Match);
  EXPECT_EQ(verify_password(kSha512Crypt, kSha512Crypt), VerifyResult::Mismatch);
  EXPECT_EQ(verify_password(des, "secret", "CRYPT"), VerifyResult::Match);
  EXPECT_NE(verify_password("secret", "secret"), VerifyResult::Match);
  EXPECT_FALSE(cleartext_scheme(des));
  EXPECT_TRUE(cleartext_scheme("{PLAIN}x"));
}

TEST(PassdbPassword, DefaultSchemePlain) {
  EXPECT_EQ(verify_password("secret", "secret", "PLAIN"), VerifyResult::Match);
  EXPECT_EQ(verify_password("secret", "secre", "plain"), VerifyResult::Mismatch);
  EXPECT_TRUE(cleartext_scheme("secret", "PLAIN"));
  // A value starting with '$' stays CRYPT: a hash is never a password.
  EXPECT_EQ(verify_password(kSha512Crypt, "secret", "PLAIN"), VerifyResult::Match);
  EXPECT_EQ(verify_password(kSha512Crypt, kSha512Crypt, "PLAIN"), VerifyResult::Mismatch);
  EXPECT_FALSE(cleartext_scheme(kSha512Crypt, "PLAIN"));
  // Another default scheme applies to unprefixed values too.
  const std::string ssha = hash_password("SSHA256", "secret").substr(9);
  EXPECT_EQ(verify_password(ssha, "secret", "SSHA256"), VerifyResult::Match);
  EXPECT_TRUE(known_scheme("crypt"));
  EXPECT_TRUE(known_scheme("SSHA512"));
  EXPECT_FALSE(known_scheme("ARGON2ID"));
  EXPECT_FALSE(known_scheme(""));
}

TEST(PassdbPassword, NulInPlaintextNeverMatchesCrypt) {
  std::string plain("secret\0junk", 11);
  EXPECT_EQ(verify_password(std::string("{SHA512-CRYPT}") + kSha512Crypt, plain), VerifyResult::Mismatch);
  EXPECT_EQ(verify_password("{PLAIN}secret", plain), VerifyResult::Mismatch);
}

TEST(PassdbPassword, HashThenVerify) {
  const char* schemes[] = {"SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "MD5-CRYPT", "CRYPT",
                           "SSHA256",      "SSHA512",      "PLAIN",     "ssha256"};
  for (const char* s : schemes) {
    SCOPED_TRACE(s);
    std::string h = hash_password(s, "pä ss:wörd");
    ASSERT_FALSE(h.empty());
    EXPECT_EQ(h.front(), '{');
    EXPECT_EQ(verify_password(h, "pä ss:wörd"), VerifyResult::Match) << h;
    EXPECT_EQ(verify_password(h, "pä ss:wörD"), VerifyResult::Mismatch) << h;
    EXPECT_EQ(verify_password(h, ""), VerifyResult::Mismatch) << h;
  }
  EXPECT_EQ(hash_password("SHA512-CRYPT", "x").substr(0, 17), "{SHA512-CRYPT}$6$");
  EXPECT_EQ(hash_password("SHA256-CRYPT", "x").substr(0, 17), "{SHA256-CRYPT}$5$");
  EXPECT_EQ(hash_password("BLF-CRYPT", "x").substr(0, 15), "{BLF-CRYPT}$2y$");
  EXPECT_EQ(hash_password("PLAIN", "x"), "{PLAIN}x");
  EXPECT_EQ(hash_password("PLAIN", ""), "{PLAIN}");
}

TEST(PassdbPassword, SaltsAreRandom) {
  EXPECT_NE(hash_password("SSHA256", "x"), hash_password("SSHA256", "x"));
  EXPECT_NE(hash_password("SHA512-CRYPT", "x"), hash_password("SHA512-CRYPT", "x"));
}

TEST(PassdbPassword, UnknownHashScheme) {
  EXPECT_EQ(hash_password("NOPE", "x"), "");
  EXPECT_EQ(hash_password("", "x"), "");
  EXPECT_EQ(hash_password("SHA512-CRYPT", std::string("a\0b", 3)), "");
}

}  // namespace

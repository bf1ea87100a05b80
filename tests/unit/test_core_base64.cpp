#include <gtest/gtest.h>

#include "core/base64.hpp"
#include "core/secure.hpp"

using portier::core::base64_decode;
using portier::core::base64_encode;

namespace {

struct Vec { const char* plain; const char* encoded; };

// RFC 4648 section 10 test vectors.
const Vec kVectors[] = {
    {"", ""},           {"f", "Zg=="},         {"fo", "Zm8="},         {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
};

TEST(CoreBase64, Rfc4648Vectors) {
  for (const auto& v : kVectors) {
    EXPECT_EQ(base64_encode(v.plain), v.encoded) << v.plain;
    auto d = base64_decode(v.encoded);
    ASSERT_TRUE(d.has_value()) << v.encoded;
    EXPECT_EQ(*d, v.plain);
  }
}

TEST(CoreBase64, BinaryRoundTrip) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t len = 0; len <= all.size(); len += 7) {
    std::string s = all.substr(0, len);
    auto d = base64_decode(base64_encode(s));
    ASSERT_TRUE(d);
    EXPECT_EQ(*d, s);
  }
  std::string plain("\0user\0pass", 10);
  EXPECT_EQ(base64_encode(plain), "AHVzZXIAcGFzcw==");
  EXPECT_EQ(*base64_decode("AHVzZXIAcGFzcw=="), plain);
  EXPECT_EQ(*base64_decode("+/+/"), std::string("\xfb\xff\xbf"));
}

TEST(CoreBase64, RejectsInvalid) {
  const char* bad[] = {
      "Zg",        // missing padding
      "Zg=",       // short padding
      "Zm9",       // length not multiple of 4
      "Z===",      // padding too early
      "====",      // all padding
      "Zg==Zg==",  // padding in middle
      "Zm=v",      // data after padding
      "Zm9v\n",    // whitespace
      " Zm9v",     // leading space
      "Zm9-",      // url-safe alphabet
      "Zm9_",      // url-safe alphabet
      "Zh==",      // non-zero trailing bits
      "Zm9=",      // ok? (see below) - "Zm9=" has trailing bits 0b01 -> reject
      "Zm\x80v",   // high byte
  };
  for (const char* b : bad) EXPECT_FALSE(base64_decode(b).has_value()) << b;
  EXPECT_FALSE(base64_decode(std::string_view("Zm\0v", 4)).has_value());
}

TEST(CoreSecure, ZeroesString) {
  std::string s = "hunter2hunter2hunter2hunter2";  // beyond SSO
  const char* p = s.data();
  size_t n = s.size();
  portier::core::secure_zero(s);
  EXPECT_TRUE(s.empty());
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(p[i], '\0');  // buffer still owned by s
  std::string e;
  portier::core::secure_zero(e);
  EXPECT_TRUE(e.empty());
}

}  // namespace

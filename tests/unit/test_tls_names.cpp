// tls::normalize_server_name and tls::valid_username_field (issue 13): the
// SNI names portier keeps and the certificate fields it accepts.
#include <gtest/gtest.h>

#include "tls/context.hpp"

using portier::tls::normalize_server_name;
using portier::tls::valid_username_field;

TEST(TlsNames, ServerNameIsLowerCasedDnsText) {
  EXPECT_EQ(normalize_server_name("Mail.Example.ORG"), "mail.example.org");
  EXPECT_EQ(normalize_server_name("a-b_c.example.net"), "a-b_c.example.net");
  EXPECT_EQ(normalize_server_name(""), "");
  EXPECT_EQ(normalize_server_name("bad name"), "");
  EXPECT_EQ(normalize_server_name("x\ny"), "");
  EXPECT_EQ(normalize_server_name(std::string(254, 'a')), "");
  EXPECT_EQ(normalize_server_name(std::string(253, 'a')), std::string(253, 'a'));
}

TEST(TlsNames, UsernameFields) {
  EXPECT_TRUE(valid_username_field("commonName"));
  EXPECT_TRUE(valid_username_field("CN"));
  EXPECT_TRUE(valid_username_field("emailAddress"));
  EXPECT_TRUE(valid_username_field("UID"));
  EXPECT_TRUE(valid_username_field("subjectAltName:email"));
  EXPECT_TRUE(valid_username_field("subjectAltName:DNS"));
  EXPECT_FALSE(valid_username_field("subjectAltName:ip"));
  EXPECT_FALSE(valid_username_field("noSuchField"));
  EXPECT_FALSE(valid_username_field(""));
}

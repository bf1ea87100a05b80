// LDAP passdb (issue 10, LDAP part): the RFC 4515 filter and RFC 4514 DN
// escapers (vars.hpp) that keep user names from changing a filter or base,
// the driver's `fields` syntax, its config errors with file:line, and a
// lookup against a closed port failing as a TempFail that names the driver
// without leaking the bind password. The driver against a real slapd:
// tests/integration/test_passdb_ldap.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <chrono>

#include "app/registries.hpp"
#include "core/strings.hpp"
#include "passdb/chain.hpp"
#include "passdb/drivers/ldap/ldap.hpp"
#include "passdb/registry.hpp"
#include "passdb/vars.hpp"

using namespace portier;
using namespace portier::passdb;
using namespace std::chrono_literals;

namespace {

std::string filter_escaped(std::string_view v) {
  std::string out;
  ldap_filter_escape(out, v);
  return out;
}

std::string dn_escaped(std::string_view v) {
  std::string out;
  ldap_dn_escape(out, v);
  return out;
}

config::LoadResult load(const std::string& passdb) {
  return config::load_string("[[listener]]\nprotocol = \"imap\"\nport = 0\n" + passdb, "/t/portier.toml",
                             app::registries());
}

const std::string kGood =
    "[[passdb]]\ndriver = \"ldap\"\nuris = [\"ldap://127.0.0.1:1\"]\n"
    "bind_dn = \"cn=portier,dc=example,dc=org\"\nbind_password = \"bind-S3cret\"\n"
    "base = \"ou=people,dc=example,dc=org\"\nfilter = \"(&(objectClass=inetOrgPerson)(mail=%{user}))\"\n";

}  // namespace

TEST(LdapEscape, FilterValueRfc4515) {
  EXPECT_EQ(filter_escaped("alice@example.org"), "alice@example.org");
  EXPECT_EQ(filter_escaped("*"), "\\2A");
  EXPECT_EQ(filter_escaped("a(b)c"), "a\\28b\\29c");
  EXPECT_EQ(filter_escaped("back\\slash"), "back\\5Cslash");
  EXPECT_EQ(filter_escaped(std::string_view("n\0l", 3)), "n\\00l");
  EXPECT_EQ(filter_escaped("cr\r\nlf"), "cr\\0D\\0Alf");
  EXPECT_EQ(filter_escaped("j\xc3\xb6rg"), "j\\C3\\B6rg");
  // Characters that mean nothing inside a filter value stay as they are.
  EXPECT_EQ(filter_escaped("o'b\"r,i=e;n&|!~<>"), "o'b\"r,i=e;n&|!~<>");
  // A classic injection stays one value: no unescaped parenthesis or star.
  const std::string inj = filter_escaped("*)(uid=*))(|(uid=*");
  EXPECT_EQ(inj.find_first_of("()*"), std::string::npos) << inj;
}

TEST(LdapEscape, DnValueRfc4514) {
  EXPECT_EQ(dn_escaped("alice"), "alice");
  EXPECT_EQ(dn_escaped("a,b+c\"d\\e<f>g;h=i"), "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h\\=i");
  EXPECT_EQ(dn_escaped("#lead"), "\\#lead");
  EXPECT_EQ(dn_escaped("mid#dle"), "mid#dle");
  EXPECT_EQ(dn_escaped(" both "), "\\ both\\ ");
  EXPECT_EQ(dn_escaped("in side"), "in side");
  EXPECT_EQ(dn_escaped(std::string_view("\0\n", 2)), "\\00\\0A");
  EXPECT_EQ(dn_escaped("\xc3\xa9"), "\\C3\\A9");
  EXPECT_EQ(dn_escaped(""), "");
}

TEST(LdapEscape, ThroughATemplate) {
  auto t = Template::compile("(&(objectClass=inetOrgPerson)(mail=%{user}))");
  ASSERT_TRUE(t);
  Request r;
  r.user = "x)(uid=*";
  std::string out;
  ASSERT_TRUE(t->expand(r, ldap_filter_escape, out));
  EXPECT_EQ(out, "(&(objectClass=inetOrgPerson)(mail=x\\29\\28uid=\\2A))");
  auto b = Template::compile("ou=%d,dc=example,dc=org");
  ASSERT_TRUE(b);
  r.user = "u@evil,dc=org";
  ASSERT_TRUE(b->expand(r, ldap_dn_escape, out));
  EXPECT_EQ(out, "ou=evil\\,dc\\=org,dc=example,dc=org");
  // NUL is refused before any escaping.
  r.user = std::string_view("a\0b", 3);
  EXPECT_FALSE(t->expand(r, ldap_filter_escape, out));
}

TEST(LdapFields, AttributeConstantAndTemplate) {
  auto a = ldap_db::parse_field("host", "mailHost");
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->constant);
  ASSERT_EQ(a->pieces.size(), 1u);
  EXPECT_TRUE(a->pieces[0].attr);
  EXPECT_EQ(a->pieces[0].text, "mailHost");

  auto c = ldap_db::parse_field("proxy", "=y");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->constant);
  ASSERT_EQ(c->pieces.size(), 1u);
  EXPECT_FALSE(c->pieces[0].attr);
  EXPECT_EQ(c->pieces[0].text, "y");

  auto t = ldap_db::parse_field("destuser", "=%{ldap:uid}@100%%.%{ldap:o}");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->pieces.size(), 3u);
  EXPECT_TRUE(t->pieces[0].attr);
  EXPECT_EQ(t->pieces[0].text, "uid");
  EXPECT_EQ(t->pieces[1].text, "@100%.");
  EXPECT_EQ(t->pieces[2].text, "o");

  auto empty = ldap_db::parse_field("nopassword", "=");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->pieces.empty());

  EXPECT_FALSE(ldap_db::parse_field("host", "mail Host"));
  EXPECT_FALSE(ldap_db::parse_field("host", ""));
  EXPECT_FALSE(ldap_db::parse_field("host", "=%u"));
  EXPECT_FALSE(ldap_db::parse_field("host", "=%{ldap:bad attr}"));
  EXPECT_FALSE(ldap_db::parse_field("host", "=%{ldap:unterminated"));
}

TEST(LdapConfig, ParsesKeys) {
  auto r = load(kGood + "scope = \"onelevel\"\nauth_bind = true\nconnections = 3\n"
                        "fields = { host = \"mailHost\", proxy = \"=y\", port = \"mailPort\", "
                        "destuser = \"=%{ldap:uid}\", HOST2 = \"MAILHOST\" }\n");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  const auto& s = dynamic_cast<const ldap_db::Settings&>(*r.config->passdbs[0].settings);
  EXPECT_EQ(s.uris, std::vector<std::string>{"ldap://127.0.0.1:1"});
  EXPECT_EQ(s.bind_dn, "cn=portier,dc=example,dc=org");
  EXPECT_EQ(s.bind_password.view(), "bind-S3cret");
  EXPECT_EQ(s.scope, 1);  // LDAP_SCOPE_ONELEVEL
  EXPECT_TRUE(s.auth_bind);
  EXPECT_EQ(s.connections, 3u);
  ASSERT_EQ(s.fields.size(), 5u);
  // Each attribute requested once (names are case-insensitive; the table's
  // order is the TOML library's).
  auto attrs = s.attributes;
  for (auto& a : attrs) a = core::to_lower(a);
  std::sort(attrs.begin(), attrs.end());
  EXPECT_EQ(attrs, (std::vector<std::string>{"mailhost", "mailport", "uid"}));
  EXPECT_EQ(s.describe().find("bind-S3cret"), std::string::npos);
}

TEST(LdapConfig, ErrorsWithLine) {
  // Unknown variable in the filter: at the filter's line.
  auto r = load("[[passdb]]\ndriver = \"ldap\"\nuris = [\"ldap://h\"]\nbase = \"dc=x\"\n"
                "filter = \"(uid=%{usr})\"\nfields = { password = \"userPassword\" }\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 8);
  EXPECT_NE(r.errors[0].message.find("passdb.filter: unknown variable '%{usr}'"), std::string::npos);
  // Missing keys.
  r = load("[[passdb]]\ndriver = \"ldap\"\nfields = { password = \"userPassword\" }\n");
  ASSERT_EQ(r.errors.size(), 3u);
  EXPECT_NE(r.errors[0].message.find("missing required key 'uris'"), std::string::npos);
  // Not an LDAP URI, bad scope, bad field.
  r = load("[[passdb]]\ndriver = \"ldap\"\nuris = [\"http://h\"]\nbase = \"dc=x\"\nfilter = \"(uid=%u)\"\n"
           "scope = \"everything\"\nfields = { password = \"user Password\" }\n");
  ASSERT_EQ(r.errors.size(), 3u);
  EXPECT_EQ(r.errors[0].line, 6);
  EXPECT_NE(r.errors[0].message.find("'http://h' is not an ldap://"), std::string::npos);
  EXPECT_NE(r.errors[1].message.find("passdb.scope"), std::string::npos);
  EXPECT_NE(r.errors[2].message.find("is not an attribute name"), std::string::npos);
  // No password source at all.
  r = load(kGood + "fields = { host = \"mailHost\" }\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("needs a 'password' field"), std::string::npos);
  // Unknown key.
  r = load(kGood + "fields = { password = \"userPassword\" }\npass_attrs = \"x\"\n");
  ASSERT_EQ(r.errors.size(), 1u);
}

// Nothing listens: the connect fails fast as a TempFail naming the driver,
// and the bind password is in no message.
TEST(LdapDriver, ConnectRefusedIsTempFail) {
  auto r = load(kGood + "fields = { password = \"userPassword\" }\n");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  std::vector<std::string> errors;
  auto chain = Chain::build(r.config->passdbs, registry(), errors);
  ASSERT_TRUE(chain) << errors[0];
  chain->set_timeout(3s);
  Request q;
  q.user = "alice@example.org";
  q.password = "pw";
  q.protocol = "imap";
  asio::io_context io;
  std::optional<Lookup> out;
  asio::co_spawn(io, chain->lookup(q), [&](std::exception_ptr e, Lookup l) {
    if (e) std::rethrow_exception(e);
    out = std::move(l);
  });
  const auto t0 = std::chrono::steady_clock::now();
  io.run();
  ASSERT_TRUE(out);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(out->result, Result::TempFail);
  EXPECT_EQ(out->passdb, "ldap");
  EXPECT_NE(out->error.find("ldap: connect/bind"), std::string::npos) << out->error;
  EXPECT_EQ(out->error.find("bind-S3cret"), std::string::npos) << out->error;
}

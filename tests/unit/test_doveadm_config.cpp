// [doveadm]: the doveadm proxy's config table (docs/DOVEADM.md).
#include <gtest/gtest.h>

#include "app/registries.hpp"
#include "config/config.hpp"

using namespace portier::config;
using namespace std::chrono_literals;

namespace {

const std::string kBase =
    "[[listener]]\nprotocol = \"imap\"\nport = 143\n"
    "[[passdb]]\ndriver = \"passwd-file\"\npath = \"users\"\n";

LoadResult load(const std::string& doveadm) {
  return load_string(kBase + "[doveadm]\n" + doveadm, "/etc/portier/portier.toml", portier::app::registries());
}

std::string first_error(const LoadResult& r) { return r.errors.empty() ? "" : r.errors[0].to_string(); }

}  // namespace

TEST(DoveadmConfig, OffByDefault) {
  auto r = load_string(kBase, "/p.toml", portier::app::registries());
  ASSERT_TRUE(r.config) << first_error(r);
  EXPECT_TRUE(r.config->doveadm.listen_address.empty());
  EXPECT_EQ(r.config->doveadm.port, 2425);
  EXPECT_TRUE(r.config->doveadm.passdb_port);
  EXPECT_EQ(r.config->doveadm.timeout, 30000ms);
}

TEST(DoveadmConfig, AllKeys) {
  auto r = load("listen = \"[::1]:0\"\npassword = \"pw\"\nbackend_password = \"bpw\"\nport = 12425\n"
                "passdb_port = false\ntimeout = \"2s\"\nmax_connections = 5\n");
  ASSERT_TRUE(r.config) << first_error(r);
  const auto& d = r.config->doveadm;
  EXPECT_EQ(d.listen_address, "::1");
  EXPECT_EQ(d.listen_port, 0);
  EXPECT_EQ(d.password, "pw");
  EXPECT_EQ(d.backend_password, "bpw");
  EXPECT_EQ(d.port, 12425);
  EXPECT_FALSE(d.passdb_port);
  EXPECT_EQ(d.timeout, 2000ms);
  EXPECT_EQ(d.max_connections, 5u);
  auto v4 = load("listen = \"127.0.0.1:2425\"\npassword = \"pw\"\n");
  ASSERT_TRUE(v4.config) << first_error(v4);
  EXPECT_EQ(v4.config->doveadm.listen_address, "127.0.0.1");
  EXPECT_EQ(v4.config->doveadm.listen_port, 2425);
}

TEST(DoveadmConfig, Errors) {
  for (const char* bad : {"listen = \"127.0.0.1\"\npassword = \"x\"\n", "listen = \"localhost:2425\"\npassword = \"x\"\n",
                          "listen = \"127.0.0.1:99999\"\npassword = \"x\"\n", "listen = \"1.2.3.4:\"\npassword = \"x\"\n"}) {
    auto r = load(bad);
    EXPECT_FALSE(r.config) << bad;
    EXPECT_NE(first_error(r).find("doveadm.listen: expected"), std::string::npos) << first_error(r);
  }
  auto nopw = load("listen = \"127.0.0.1:2425\"\n");
  EXPECT_NE(first_error(nopw).find("listen needs a password"), std::string::npos) << first_error(nopw);
  auto unknown = load("listen = \"127.0.0.1:2425\"\npassword = \"x\"\nfoo = 1\n");
  EXPECT_NE(first_error(unknown).find("unknown key 'foo' in [doveadm]"), std::string::npos);
  auto crlf = load("listen = \"127.0.0.1:2425\"\npassword = \"a\\nb\"\n");
  EXPECT_NE(first_error(crlf).find("must not contain"), std::string::npos);
  auto zero = load("timeout = 0\n");
  EXPECT_NE(first_error(zero).find("doveadm.timeout"), std::string::npos) << first_error(zero);
}

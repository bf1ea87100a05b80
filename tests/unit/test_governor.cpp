// login::Governor: the keys limits and penalties use, and leases that release
// exactly what they were admitted under (issue 8 items 4 and 10).

#include <gtest/gtest.h>

#include <asio/ip/address.hpp>

#include "app/registries.hpp"
#include "config/config.hpp"
#include "login/governor.hpp"
#include "passdb/registry.hpp"

using portier::login::Governor;
using namespace std::chrono_literals;

namespace {

asio::ip::address ip(const char* s) { return asio::ip::make_address(s); }

TEST(Governor, IpKeyIpv4AndMapped) {
  EXPECT_EQ(Governor::ip_key(ip("192.0.2.7")), "192.0.2.7");
  // IPv4-mapped IPv6 counts as the IPv4 address, whatever the prefix.
  EXPECT_EQ(Governor::ip_key(ip("::ffff:192.0.2.7")), "192.0.2.7");
  EXPECT_EQ(Governor::ip_key(ip("::ffff:192.0.2.7"), 128), "192.0.2.7");
  EXPECT_EQ(Governor::ip_key(ip("::ffff:192.0.2.7"), 1), "192.0.2.7");
}

TEST(Governor, IpKeyGroupsIpv6ByPrefix) {
  // Default /64: every address of one /64 shares one key.
  EXPECT_EQ(Governor::ip_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), "2001:db8:1:2::/64");
  EXPECT_EQ(Governor::ip_key(ip("2001:db8:1:2::1")), Governor::ip_key(ip("2001:db8:1:2::2")));
  EXPECT_NE(Governor::ip_key(ip("2001:db8:1:2::1")), Governor::ip_key(ip("2001:db8:1:3::1")));
  EXPECT_EQ(Governor::ip_key(ip("::1")), "::/64");
  // Other prefixes, including ones not on a byte boundary.
  EXPECT_EQ(Governor::ip_key(ip("2001:db8:1:2::1"), 128), "2001:db8:1:2::1/128");
  EXPECT_EQ(Governor::ip_key(ip("2001:db8:1:2::1"), 48), "2001:db8:1::/48");
  EXPECT_EQ(Governor::ip_key(ip("2001:db8:ffff::1"), 36), "2001:db8:f000::/36");
  EXPECT_EQ(Governor::ip_key(ip("2001:db8:1:2:ffff::1"), 65), "2001:db8:1:2:8000::/65");
  EXPECT_EQ(Governor::ip_key(ip("ffff::1"), 1), "8000::/1");
  // Out of range: the full address.
  EXPECT_EQ(Governor::ip_key(ip("2001:db8::1"), 0), "2001:db8::1/128");
  EXPECT_EQ(Governor::ip_key(ip("2001:db8::1"), 200), "2001:db8::1/128");
  // An IPv4 text never collides with an IPv6 key.
  EXPECT_EQ(Governor::ip_key(ip("::"), 64), "::/64");
}

TEST(Governor, Ipv6PrefixConfig) {
  auto r = portier::config::load_string(
      "[[listener]]\nprotocol = \"imap\"\nport = 0\n"
      "[[passdb]]\ndriver = \"passwd-file\"\npath = \"x\"\n"
      "[login]\nipv6_prefix = 56\n",
      "/tmp/t.toml", portier::app::registries());
  ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0].to_string());
  EXPECT_EQ(r.config->login.ipv6_prefix, 56u);
  auto d = portier::config::load_string(
      "[[listener]]\nprotocol = \"imap\"\nport = 0\n"
      "[[passdb]]\ndriver = \"passwd-file\"\npath = \"x\"\n",
      "/tmp/t.toml", portier::app::registries());
  ASSERT_TRUE(d.config);
  EXPECT_EQ(d.config->login.ipv6_prefix, 64u);
  for (const char* bad : {"0", "129"}) {
    auto e = portier::config::load_string(
        std::string("[[listener]]\nprotocol = \"imap\"\nport = 0\n"
                    "[[passdb]]\ndriver = \"passwd-file\"\npath = \"x\"\n"
                    "[login]\nipv6_prefix = ") + bad + "\n",
        "/tmp/t.toml", portier::app::registries());
    EXPECT_FALSE(e.config) << bad;
  }
}

TEST(Governor, LeaseReleasesItsOwnKeyOnce) {
  Governor g;
  const std::string a = Governor::ip_key(ip("127.0.0.2"));
  {
    Governor::Lease l1, l2;
    ASSERT_EQ(g.admit_connection(a, 0, 2, l1), Governor::Admit::Ok);
    ASSERT_EQ(g.admit_connection(a, 0, 2, l2), Governor::Admit::Ok);
    Governor::Lease l3;
    EXPECT_EQ(g.admit_connection(a, 0, 2, l3), Governor::Admit::TooManyFromIp);
    EXPECT_FALSE(l3);
    EXPECT_EQ(g.connections_from(a), 2u);
    l1.release();
    l1.release();  // idempotent
    EXPECT_EQ(g.connections_from(a), 1u);
    // Moving a lease (into a relay's record) moves the count, not a copy.
    Governor::Lease moved = std::move(l2);
    EXPECT_FALSE(l2);
    EXPECT_EQ(g.connections_from(a), 1u);
    EXPECT_EQ(g.connections(), 1u);
  }
  EXPECT_EQ(g.connections_from(a), 0u);
  EXPECT_EQ(g.connections(), 0u);
}

TEST(Governor, UserLease) {
  Governor g;
  Governor::Lease u1, u2;
  EXPECT_TRUE(g.admit_user("alice", 1, u1));
  EXPECT_FALSE(g.admit_user("alice", 1, u2));
  u1 = Governor::Lease();
  EXPECT_TRUE(g.admit_user("alice", 1, u2));
}

TEST(Governor, PenaltyPerKey) {
  Governor g;
  const auto k1 = Governor::ip_key(ip("2001:db8::1"));
  const auto k2 = Governor::ip_key(ip("2001:db8::2"));  // same /64
  g.record_auth_failure(k1);
  g.record_auth_failure(k1);
  EXPECT_EQ(g.failure_delay(k2, 100ms, 1000ms), 200ms);
  g.record_auth_success(k2);
  EXPECT_EQ(g.failure_delay(k1, 100ms, 1000ms), 100ms);
}

}  // namespace

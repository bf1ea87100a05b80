// net/address.hpp: the fast address text equals Asio's, and IPv4-mapped
// addresses show as plain IPv4 where clients see them.
#include <gtest/gtest.h>

#include "net/address.hpp"

namespace portier::net {
namespace {

TEST(NetAddress, TextEqualsAsioForEveryIpv4Octet) {
  for (unsigned v = 0; v < 256; ++v) {
    asio::ip::address_v4::bytes_type b{static_cast<unsigned char>(v), 0,
                                       static_cast<unsigned char>(255 - v),
                                       static_cast<unsigned char>(v / 3)};
    asio::ip::address a = asio::ip::address_v4(b);
    EXPECT_EQ(to_text(a), a.to_string());
    EXPECT_EQ(plain_text(a), a.to_string());
  }
}

TEST(NetAddress, Ipv6AndMapped) {
  auto v6 = asio::ip::make_address("2001:db8::1");
  EXPECT_EQ(to_text(v6), "2001:db8::1");
  auto mapped = asio::ip::make_address("::ffff:192.0.2.7");
  EXPECT_EQ(to_text(mapped), mapped.to_string());  // as Asio writes it
  EXPECT_EQ(plain_text(mapped), "192.0.2.7");      // as the client sees it
}

}  // namespace
}  // namespace portier::net

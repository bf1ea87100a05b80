#include <algorithm>
#include <array>

#include "config/config.hpp"
#include "core/strings.hpp"

namespace portier::config {

namespace {

// Maps ::ffff:a.b.c.d to a.b.c.d; other addresses unchanged.
asio::ip::address unmap(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

template <size_t N>
std::array<unsigned char, N> mask_bytes(std::array<unsigned char, N> b, unsigned prefix) {
  for (size_t i = 0; i < N; ++i) {
    unsigned bits_before = static_cast<unsigned>(i * 8);
    if (prefix >= bits_before + 8) continue;
    if (prefix <= bits_before) {
      b[i] = 0;
    } else {
      unsigned keep = prefix - bits_before;
      b[i] &= static_cast<unsigned char>(0xff << (8 - keep));
    }
  }
  return b;
}

asio::ip::address mask(const asio::ip::address& a, unsigned prefix) {
  if (a.is_v4()) return asio::ip::address_v4(mask_bytes(a.to_v4().to_bytes(), prefix));
  return asio::ip::address_v6(mask_bytes(a.to_v6().to_bytes(), prefix));
}

}  // namespace

std::optional<Cidr> parse_cidr(std::string_view text) {
  text = core::trim(text);
  std::string_view ip = text;
  std::optional<unsigned long long> prefix;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    ip = text.substr(0, slash);
    prefix = core::parse_uint(text.substr(slash + 1));
    if (!prefix) return std::nullopt;
  }
  asio::error_code ec;
  auto addr = asio::ip::make_address(std::string(ip), ec);
  if (ec) return std::nullopt;
  // Scoped IPv6 addresses ("fe80::1%eth0") make no sense as networks.
  if (addr.is_v6() && addr.to_v6().scope_id() != 0) return std::nullopt;
  unsigned max = addr.is_v4() ? 32 : 128;
  unsigned p = prefix ? static_cast<unsigned>(std::min<unsigned long long>(*prefix, 1000)) : max;
  if (p > max) return std::nullopt;
  if (addr.is_v6() && addr.to_v6().is_v4_mapped()) {
    if (p < 96) {
      // A mapped network shorter than /96 covers more than the mapped range;
      // keep it as an IPv6 network.
    } else {
      addr = unmap(addr);
      p -= 96;
    }
  }
  return Cidr{mask(addr, p), p};
}

bool Cidr::contains(const asio::ip::address& addr_in) const {
  asio::ip::address addr = unmap(addr_in);
  if (addr.is_v4() != net.is_v4()) {
    // IPv6 network that is itself in mapped space with prefix < 96: compare
    // the mapped form of an IPv4 address.
    if (net.is_v6() && addr.is_v4()) {
      auto mapped = asio::ip::make_address_v6(asio::ip::v4_mapped, addr.to_v4());
      return mask(mapped, prefix) == net;
    }
    return false;
  }
  return mask(addr, prefix) == net;
}

}  // namespace portier::config

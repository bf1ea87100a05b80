#include "net/address.hpp"

namespace portier::net {

void append_v4(std::string& out, const asio::ip::address_v4& v4) {
  auto b = v4.to_bytes();
  char buf[16];
  size_t n = 0;
  for (size_t i = 0; i < 4; ++i) {
    unsigned v = b[i];
    if (v >= 100) buf[n++] = static_cast<char>('0' + v / 100);
    if (v >= 10) buf[n++] = static_cast<char>('0' + v / 10 % 10);
    buf[n++] = static_cast<char>('0' + v % 10);
    if (i < 3) buf[n++] = '.';
  }
  out.append(buf, n);
}

std::string to_text(const asio::ip::address& a) {
  if (!a.is_v4()) return a.to_string();
  std::string s;
  append_v4(s, a.to_v4());
  return s;
}

std::string plain_text(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return to_text(asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()));
  return to_text(a);
}

}  // namespace portier::net

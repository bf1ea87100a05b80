#include "protocols/common/referral.hpp"

namespace portier::protocols::common {

namespace {
bool url_safe(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-': case '.': case '_': case '~':                       // unreserved
    case '!': case '$': case '\'': case '(': case ')': case '*':  // sub-delims-sh
    case '+': case ',': case '&': case '=':
      return true;
    default:
      return false;
  }
}
}  // namespace

std::string url_user(std::string_view user) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(user.size());
  for (unsigned char c : user) {
    if (url_safe(c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string referral_target(const login::Referral& r, uint16_t default_port, bool auth_mech) {
  std::string out;
  if (!r.user.empty()) {
    out += url_user(r.user);
    if (auth_mech && !r.mech.empty()) {
      out += ";AUTH=";
      out += url_user(r.mech);
    }
    out += '@';
  }
  const bool v6 = r.host.find(':') != std::string::npos;
  if (v6) out += '[';
  out += r.host;
  if (v6) out += ']';
  if (r.port != default_port) {
    out += ':';
    out += std::to_string(r.port);
  }
  return out;
}

std::string_view referral_target_in(std::string_view text, std::string_view marker,
                                    std::string_view stops) {
  size_t at = text.find(marker);
  if (at == std::string_view::npos) return {};
  std::string_view rest = text.substr(at + marker.size());
  return rest.substr(0, rest.find_first_of(stops));
}

}  // namespace portier::protocols::common

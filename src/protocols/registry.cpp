#include "protocols/registry.hpp"

#include <array>

#include "protocols/imap/imap.hpp"
#include "protocols/managesieve/managesieve.hpp"
#include "protocols/pop3/pop3.hpp"
#include "protocols/submission/submission.hpp"

namespace portier::protocols {

namespace {
constexpr std::array<const login::Protocol*, 4> kProtocols = {
    &imap::kProtocol,
    &submission::kProtocol,
    &pop3::kProtocol,
    &managesieve::kProtocol,
};
}  // namespace

std::span<const login::Protocol* const> all() { return kProtocols; }

const login::Protocol* find(std::string_view name) {
  for (const auto* p : kProtocols)
    if (p->name == name) return p;
  return nullptr;
}

}  // namespace portier::protocols

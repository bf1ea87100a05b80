#include "app/registries.hpp"

#include <array>
#include <vector>

#include "lmtp/service.hpp"
#include "protocols/registry.hpp"
#include "sasl/sasl.hpp"

namespace portier::app {

namespace {
// "a, b or c"
template <typename Range, typename Name>
std::string name_list(const Range& items, Name name, std::string_view last_sep) {
  std::string out;
  size_t n = std::size(items), i = 0;
  for (const auto& it : items) {
    if (i > 0) out += (i + 1 == n) ? last_sep : std::string_view(", ");
    out += name(it);
    ++i;
  }
  return out;
}
}  // namespace

config::PassdbParser Registries::parser(std::string_view driver) const {
  return passdb_.parser(driver);
}

std::string Registries::names() const { return passdb_.names(); }

std::optional<uint16_t> Registries::protocol_port(std::string_view protocol,
                                                  bool implicit_tls) const {
  const login::Protocol* p = protocols::find(protocol);
  if (!p) {
    if (const auto* sib = find_sibling(protocol)) return sib->default_port;
    return std::nullopt;
  }
  // A protocol without an implicit-TLS port (ManageSieve) keeps its own.
  return implicit_tls && p->default_tls_port ? p->default_tls_port : p->default_port;
}

std::string Registries::protocol_names() const {
  std::vector<std::string_view> names;
  for (const auto* p : protocols::all()) names.push_back(p->name);
  for (const auto* s : sibling_services()) names.push_back(s->name);
  return name_list(names, [](std::string_view n) { return n; }, " or ");
}

bool Registries::mechanism_known(std::string_view mech) const { return sasl::is_known_mech(mech); }

std::string Registries::mechanism_names() const {
  return name_list(sasl::known_mech_names(), [](std::string_view n) { return n; }, ", ");
}

std::span<const login::SiblingService* const> sibling_services() {
  static constexpr std::array<const login::SiblingService*, 1> kServices = {&lmtp::kService};
  return kServices;
}

const login::SiblingService* find_sibling(std::string_view name) {
  for (const auto* s : sibling_services())
    if (s->name == name) return s;
  return nullptr;
}

const Registries& registries() {
  static const Registries r(passdb::registry());
  return r;
}

}  // namespace portier::app

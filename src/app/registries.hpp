#pragma once
// The registries as config sees them: protocols (protocols/registry), SASL
// mechanisms (sasl/) and passdb drivers (passdb/registry) behind the one
// config::Registries interface the loader validates names with.
//
// Owns: nothing (views of the registries). May use: config, protocols,
// sasl, passdb. Only app/ (and tests) wire these together.

#include <span>

#include "config/config.hpp"
#include "login/sibling.hpp"
#include "passdb/registry.hpp"

namespace portier::app {

class Registries final : public config::Registries {
 public:
  /// Over `passdb` (a test may pass a registry with an extra driver).
  explicit Registries(const passdb::Registry& passdb) : passdb_(passdb) {}

  config::PassdbParser parser(std::string_view driver) const override;
  std::string names() const override;
  std::optional<uint16_t> protocol_port(std::string_view protocol, bool implicit_tls) const override;
  std::string protocol_names() const override;
  bool mechanism_known(std::string_view mech) const override;
  std::string mechanism_names() const override;

 private:
  const passdb::Registry& passdb_;
};

/// Non-login services a listener may name (login/sibling.hpp): LMTP.
std::span<const login::SiblingService* const> sibling_services();
/// The sibling service with this listener protocol name, or nullptr.
const login::SiblingService* find_sibling(std::string_view name);

/// The built-in registries.
const Registries& registries();

}  // namespace portier::app

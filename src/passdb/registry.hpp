#pragma once
// The passdb registry: driver name → config parser + factory. A new driver
// is one folder under passdb/drivers/ plus one line in registry.cpp's table.
// Owns: that table, and answering config's questions about driver names and
// keys (it implements config::PassdbDrivers; config keeps no list of its own).
// May use: passdb.hpp, config, the drivers' headers. Not login/.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/result.hpp"
#include "passdb/passdb.hpp"

namespace portier::passdb {

/// One driver.
struct Driver {
  std::string_view name;      ///< `driver = "..."` in [[passdb]]
  std::string_view log_name;  ///< the `auth:` log prefix (Dovecot's: "passwd-file", "sql", "ldap" ...)
  config::PassdbParser parse; ///< the driver's own keys; null = it has none (other keys are errors)
  /// Builds a ready passdb (first load done) from a validated entry.
  using Factory = core::Result<std::shared_ptr<Passdb>> (*)(const config::Passdb& cfg);
  Factory make = nullptr;
};

class Registry final : public config::PassdbDrivers {
 public:
  explicit Registry(std::vector<Driver> drivers);
  /// The driver called `name`, or null.
  const Driver* find(std::string_view name) const;
  /// This registry plus `d` (tests: a deliberately slow driver).
  Registry with(Driver d) const;

  config::PassdbParser parser(std::string_view driver) const override;
  std::string names() const override;

 private:
  std::vector<Driver> drivers_;
};

/// The built-in drivers.
const Registry& registry();

}  // namespace portier::passdb

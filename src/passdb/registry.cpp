#include "passdb/registry.hpp"

#include "passdb/drivers/auth_http/auth_http.hpp"
#include "passdb/drivers/ldap/ldap.hpp"
#include "passdb/drivers/oauth2/oauth2.hpp"
#include "passdb/drivers/passwd_file/passwd_file.hpp"
#include "passdb/drivers/pgsql/pgsql.hpp"
#include "passdb/drivers/sqlite/sqlite.hpp"
#include "passdb/sql_common.hpp"
#include "passdb/drivers/static/static.hpp"

namespace portier::passdb {

namespace {

std::shared_ptr<const config::PassdbSettings> no_settings(config::PassdbSection&) {
  struct None final : config::PassdbSettings {
    std::string describe() const override { return {}; }
  };
  return std::make_shared<None>();
}

core::Result<std::shared_ptr<Passdb>> make_passwd_file_passdb(const config::Passdb& cfg) {
  auto r = make_passwd_file(cfg);
  if (!r) return r.error();
  return std::shared_ptr<Passdb>(std::move(*r));
}

}  // namespace

Registry::Registry(std::vector<Driver> drivers) : drivers_(std::move(drivers)) {}

const Driver* Registry::find(std::string_view name) const {
  for (const auto& d : drivers_)
    if (d.name == name) return &d;
  return nullptr;
}

Registry Registry::with(Driver d) const {
  Registry r = *this;
  r.drivers_.push_back(d);
  return r;
}

config::PassdbParser Registry::parser(std::string_view driver) const {
  const Driver* d = find(driver);
  if (!d) return nullptr;
  return d->parse ? d->parse : no_settings;
}

std::string Registry::names() const {
  std::string out;
  for (const auto& d : drivers_) {
    if (!out.empty()) out += ", ";
    out += d.name;
  }
  return out;
}

const Registry& registry() {
  static const Registry r({
      // name           log name       config parser                 factory
      {"passwd-file", "passwd-file", parse_passwd_file_settings, make_passwd_file_passdb},
      {"sqlite",      kSqlLogName,   parse_sql_settings,           make_sqlite},
      {"pgsql",       kSqlLogName,   parse_sql_settings,           make_pgsql},
      {"auth_http", "auth_http", auth_http::parse_settings, auth_http::make},
      {"static", "static", static_db::parse_settings, static_db::make},
      {"ldap", "ldap", ldap_db::parse_settings, ldap_db::make},
      {"oauth2", "oauth2", oauth2::parse_settings, oauth2::make},
  });
  return r;
}

}  // namespace portier::passdb

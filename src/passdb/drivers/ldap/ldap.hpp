#pragma once
// LDAP passdb driver (registry name and log name "ldap"): Dovecot's
// `passdb ldap` (pass_filter, pass_attrs, auth_bind) with OpenLDAP's libldap.
//
// Keys ([[passdb]] driver = "ldap"; docs/PASSDB.md has the reference):
//   uris           ["ldap://host:389", ...] tried in order when connecting
//                  (failover); ldap://, ldaps:// or ldapi://
//   bind_dn, bind_password   the lookup connection's simple bind (absent:
//                  anonymous); the password is never logged
//   base           search base; %variables escaped per RFC 4514 (DN value)
//   filter         search filter; %variables escaped per RFC 4515
//   scope          "subtree" (default) | "onelevel" | "base"
//   fields         { extra_field = "attribute" | "=constant" } — Dovecot's
//                  pass_attrs; a constant may hold %{ldap:attribute}
//                  (the attribute's first value, "" when absent) and %%
//   auth_bind      true: the password is checked by a simple bind as the
//                  found entry's DN on a separate connection pool (an empty
//                  password is never sent: that would be an anonymous bind)
//   connections    lookup threads = connections per pool (default 4, 1..64)
//
// Result semantics: one entry -> its fields, mapped like an SQL row
// (sql_common.hpp: first value of a multi-valued attribute, absent attribute
// = NULL column, boolean fields are existence tests, `password` /
// `password_noscheme` in default_pass_scheme); zero entries (or a base that
// does not exist) -> UnknownUser; more than one -> TempFail.
//
// Owns: the driver's config parsing, its connection pools and the LDAP
// protocol exchange. Threading: the lookups run on a BlockingPassdb pool of
// `connections` threads (blocking.hpp) — libldap connects, resolves host
// names and starts TLS synchronously inside its calls, so it never runs on a
// worker. Each operation is sent asynchronously and awaited with
// ldap_result() bounded by Request::deadline (a hung server costs a pool
// thread at most until the deadline; the connection is then dropped). Idle
// connections are reused (one bind per connection, not per lookup); a
// connection found broken is replaced and the lookup retried once, so a
// restarted server is picked up without restarting portier.
// May use: passdb.hpp, blocking.hpp, vars.hpp, sql_common.hpp, password.hpp,
// config, core.

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/result.hpp"
#include "core/secret.hpp"
#include "passdb/passdb.hpp"
#include "passdb/vars.hpp"

namespace portier::passdb::ldap_db {

/// One `fields` entry.
struct Field {
  std::string name;  ///< the extra field ("password", "host", "proxy" ...)
  /// The value: literal text and attribute references in order. A plain
  /// attribute mapping ("mailHost") is one attribute piece; an absent
  /// attribute then leaves the field out.
  struct Piece {
    std::string text;  ///< literal text, or the attribute name when `attr`
    bool attr = false;
  };
  std::vector<Piece> pieces;
  bool constant = false;  ///< written "=..." (always present)
};

struct Settings final : config::PassdbSettings {
  std::vector<std::string> uris;
  std::string bind_dn;
  core::Secret bind_password;
  Template base;
  Template filter;
  int scope = 2;  ///< LDAP_SCOPE_SUBTREE
  std::vector<Field> fields;
  std::vector<std::string> attributes;  ///< every attribute the fields read, once
  bool auth_bind = false;
  unsigned connections = 4;
  std::string describe() const override;  ///< "ldap <uris> base=<base>"
};

/// Parses a `fields` value ("attr" or "=constant with %{ldap:attr}").
core::Result<Field> parse_field(std::string_view name, std::string_view value);

/// The driver's config parser (registry).
std::shared_ptr<const config::PassdbSettings> parse_settings(config::PassdbSection& section);

/// Creates the passdb (no connection yet: made on first use).
core::Result<std::shared_ptr<Passdb>> make(const config::Passdb& cfg);

}  // namespace portier::passdb::ldap_db

#pragma once
// Dovecot's `static` passdb (registry name and log name "static"): every
// user gets the same answer, with no I/O — e.g. "send everyone to one
// backend and let it check the password".
//
// Owns: its [[passdb]] keys and the inline answer. May use: passdb.hpp,
// reply.hpp, password.hpp, config, core.
//
// Keys: `fields` (Dovecot's static `args`: space-separated extra fields,
// e.g. "proxy host=10.0.0.5 port=143 nopassword"; a `password=` token in
// it is the password, as in Dovecot's args) and optional `password`
// ("{SCHEME}..." or in default_pass_scheme).
// Lookup semantics (Dovecot's):
//  - lookup_only -> Ok;
//  - a password set -> the client's password is verified against it
//    (inline for cleartext schemes, on Request::hashing otherwise);
//  - no password: with `nopassword` -> Ok (the backend checks the
//    client's password), without it -> Mismatch.
// The reply's user is the login name; fields are default_fields, `fields`,
// override_fields (later values replace earlier ones). Values in `fields`
// may use Dovecot's %variables (vars.hpp, 2.3 and 2.4 forms, e.g.
// "host=%{user | domain}.backend"), expanded per login without escaping
// (the value is a field, not a query); an unknown variable is a config error
// at the `fields` line; a value holding NUL fails the lookup (TempFail).

#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/result.hpp"
#include "passdb/passdb.hpp"
#include "passdb/vars.hpp"

namespace portier::passdb::static_db {

struct Settings final : config::PassdbSettings {
  std::string fields;    ///< `fields`, raw
  std::string password;  ///< `password` ("" = none)
  std::string describe() const override { return "static"; }
};

/// The driver's config parser (registry).
std::shared_ptr<const config::PassdbSettings> parse_settings(config::PassdbSection& section);

class Static final : public Passdb, public std::enable_shared_from_this<Static> {
 public:
  explicit Static(const config::Passdb& cfg);
  ~Static() override;
  std::optional<Lookup> lookup_inline(const Request& req) override;
  net::Task<Lookup> lookup(const Request& req) override;
  /// The whole check on the calling thread (hashing included).
  Lookup verify(const Request& req) const;

 private:
  Lookup answer(const Request& req, bool may_hash, bool& needs_hash) const;
  Reply reply_;            ///< fields, without the user
  /// `fields` values with variables, expanded into reply_'s copy per login.
  std::vector<std::pair<std::string, Template>> templated_;
  std::string password_;   ///< wiped on destruction
  std::string default_scheme_;
};

/// Creates the passdb; null with `error` set when unusable.
core::Result<std::shared_ptr<Passdb>> make(const config::Passdb& cfg);

}  // namespace portier::passdb::static_db

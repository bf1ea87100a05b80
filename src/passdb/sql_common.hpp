#pragma once
// What the SQL passdb drivers (drivers/sqlite, drivers/pgsql) share.
// Owns: their common [[passdb]] keys (`connect`, `query`, the query compiled
// once as a vars.hpp Template), hiding a connect string's password from
// messages, and Dovecot's result semantics (passdb-sql.c), so both drivers
// answer identically:
//  - zero rows -> UnknownUser; more than one row -> TempFail
//    ("Password query returned multiple matches");
//  - a `password` or `password_noscheme` column must exist (its value may be
//    NULL) -> otherwise TempFail ("Password query must return a field named
//    'password'"); `password_noscheme` is in default_pass_scheme even when it
//    starts with '{';
//  - every other column becomes an extra field named after it, through the
//    same Reply passwd-file fills ([[passdb]] default_fields first,
//    override_fields last); a column with an empty name or a NULL value is
//    absent; `userdb_*` columns are accepted and ignored; a `user` column
//    renames the user (Dovecot's `user` field);
//  - boolean fields are existence tests: proxy, proxy_maybe, nopassword,
//    nologin, nodelay, proxy_noauth, proxy_not_trusted, proxy_nopipelining,
//    proxy_redirect_reauth are on when present with any value ('N', '0' and
//    '' included); return NULL to turn one off;
//  - NULL/empty password: Ok with `nopassword`, else Mismatch; a non-empty
//    password with `nopassword` is verified (nopassword ignored, as Dovecot).
// May use: passdb.hpp, vars.hpp, password.hpp, reply.hpp, config, core.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "passdb/passdb.hpp"
#include "passdb/vars.hpp"

namespace portier::passdb {

/// The log name of both SQL drivers (Dovecot's: `sql(user,ip,<session>): ...`).
inline constexpr std::string_view kSqlLogName = "sql";

/// `connect` and `query` of an SQL [[passdb]].
struct SqlSettings final : config::PassdbSettings {
  std::string driver;   ///< "sqlite" | "pgsql"
  std::string connect;  ///< libpq conninfo, or the SQLite file path (resolved)
  Template query;       ///< compiled at config load
  std::string describe() const override;  ///< "<driver> <connect>", password hidden
};

/// The config parser of both drivers: `connect` (required, non-empty; a
/// path for sqlite), `query` (required; unknown variables are errors at its
/// line).
std::shared_ptr<const config::PassdbSettings> parse_sql_settings(config::PassdbSection& section);

/// `conninfo` with the value of every `password=` replaced by "***" (key=value
/// form) and the password of a postgresql:// URI hidden.
std::string hide_conninfo_password(std::string_view conninfo);

/// One result set: the number of rows and the first row's columns.
struct SqlRow {
  size_t rows = 0;
  std::vector<std::string_view> names;                  ///< column names
  std::vector<std::optional<std::string_view>> values;  ///< nullopt = NULL
};

/// A mapped result: `lookup` is final unless `verify` is set, in which case
/// `stored` must still be checked against the client's password
/// (sql_verify()).
struct SqlAnswer {
  Lookup lookup;
  std::string stored;  ///< "{SCHEME}..." or unprefixed; wiped by the destructor
  bool verify = false;
  SqlAnswer() = default;
  SqlAnswer(SqlAnswer&&) = default;
  SqlAnswer& operator=(SqlAnswer&&) = default;
  ~SqlAnswer();
};

/// Maps `row` to an answer by the rules above. `who` names the driver in
/// the answer and its messages (the LDAP driver maps its entry the same way).
SqlAnswer sql_answer(const Request& req, const SqlRow& row, const config::Passdb& cfg,
                     std::string_view who = kSqlLogName);
/// True when checking `a.stored` needs no hashing (cleartext scheme).
bool sql_verify_is_cheap(const SqlAnswer& a, const config::Passdb& cfg);
/// Checks the password (hashing on this thread) and returns the final lookup.
Lookup sql_verify(SqlAnswer a, const Request& req, const config::Passdb& cfg,
                  std::string_view who = kSqlLogName);

/// A lookup that failed before any row: TempFail with `error` (never a password).
Lookup sql_tempfail(std::string error);

}  // namespace portier::passdb

#pragma once
// SQLite passdb driver (registry name "sqlite", log name "sql"): Dovecot's
// `passdb sql` with `driver = sqlite`. Keys: `connect` = the database file
// (relative to the config file's directory), `query` = Dovecot's password
// query with %variables (vars.hpp). Result semantics: sql_common.hpp.
// Owns: the SQLite connections (opened read-only, one per pool thread at
// most, reused) and the escaping of substituted values (sqlite3_mprintf %q).
// Runs on its own BlockingPassdb pool (libsqlite3 is synchronous); password
// hashing happens there too, never on a worker.
// May use: passdb.hpp, blocking.hpp, sql_common.hpp, vars.hpp, config, core.

#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/result.hpp"
#include "passdb/passdb.hpp"

namespace portier::passdb {

/// Creates the passdb and opens the database once (a missing or unreadable
/// file is an error here). Null with `error` set on failure.
core::Result<std::shared_ptr<Passdb>> make_sqlite(const config::Passdb& cfg);

}  // namespace portier::passdb

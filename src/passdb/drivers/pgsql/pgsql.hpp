#pragma once
// PostgreSQL passdb driver (registry name "pgsql", log name "sql"): Dovecot's
// `passdb sql` with `driver = pgsql`. Keys: `connect` = a libpq conninfo
// ("host=a,b port=5432 dbname=mail user=portier password=..." — several
// hosts fail over as libpq does — or a postgresql:// URI), `query` =
// Dovecot's password query with %variables (vars.hpp), values escaped with
// PQescapeStringConn. Result semantics: sql_common.hpp.
//
// Owns: per-worker connection pools and libpq's asynchronous API on the
// worker's event loop. One Pgsql instance serves every worker; each worker
// (keyed by its io_context) gets its own pool of at most kMaxConnections
// connections, used only on that worker's thread. A connection is made with
// PQconnectStart/PQconnectPoll and queried with PQsendQuery/PQconsumeInput/
// PQisBusy/PQgetResult, waiting for socket readiness through Asio (a
// stream_descriptor wrapped around libpq's socket for each wait, released
// before libpq touches the socket again) — no thread per query, the worker
// never blocks. A connection that breaks mid-query is dropped and the lookup
// is a TempFail (a pooled idle connection found dead is replaced once, then
// the query is retried). A failed connect puts the worker's pool in backoff
// (250 ms doubling to 5 s): lookups fail at once until the next attempt.
// Every wait is bounded by Request::deadline (or kDefaultTimeout). Password
// hashing hops to Request::hashing. The connect string's password is never
// logged (hide_conninfo_password).
// May use: passdb.hpp, sql_common.hpp, vars.hpp, net/awaitable.hpp, config, core.

#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/result.hpp"
#include "passdb/passdb.hpp"

namespace portier::passdb {

/// Creates the passdb. Does not connect (connections are per worker, made on
/// first use); a conninfo libpq cannot parse is an error here.
core::Result<std::shared_ptr<Passdb>> make_pgsql(const config::Passdb& cfg);

}  // namespace portier::passdb

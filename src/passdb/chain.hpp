#pragma once
// The passdb chain: Dovecot's ordered passdbs, walked once per login.
// Owns: the order, the per-entry protocol filter, Dovecot's `skip` and
// `result_success` / `result_failure` / `result_internalfail` semantics,
// and which passdb's name a result carries (for the `auth:` log lines).
// May use: passdb.hpp, registry.hpp (to build entries), cache.hpp,
// sql_common.hpp (which entries are cacheable), config. The engine
// calls Chain::lookup() and nothing else of passdb/ for a login.
//
// Semantics (Dovecot's): the state starts as "failure". Each consulted
// passdb's result selects its action: Ok → result_success (default
// return-ok), TempFail → result_internalfail (default continue; remembered),
// Mismatch / UnknownUser → result_failure (default continue). After a
// success that continues, later passdbs are asked with lookup_only (the
// password was verified). The end result: success → Ok (fields of every
// successful passdb merged, later ones winning); else an internal failure
// seen → TempFail; else the last answer (Mismatch, or UnknownUser; a
// successful lookup overridden to failure → Mismatch); nothing consulted →
// UnknownUser.
//
// Timeout ([auth] passdb_timeout, set_timeout()): a passdb that has not
// answered within it counts as an internal failure (TempFail "passdb lookup
// timed out", then result_internalfail applies). The slow lookup is left to
// finish on its own (with an owning copy of the request, the passdb held) and
// its answer dropped; Request::deadline tells drivers doing their own I/O
// when to give up and free what they hold. Inline answers never wait.
//
// Auth cache (cache.hpp; set_cache(), Chain::build() uses the process-wide
// one): an entry whose query is a Template (the SQL drivers) is looked up by
// its cache key = the entry's identity (driver, connect, query, field and
// scheme settings, hashed) + the values of the query's variables. A fresh
// entry answers without asking the database (the password is checked against
// the cached stored password); otherwise the passdb is asked with
// Request::fetch, its answer cached (not TempFail), then checked; a TempFail
// with an expired entry at hand serves the expired entry; a mismatch against
// a fresh entry whose last login succeeded asks the database once more.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "passdb/passdb.hpp"

namespace portier::passdb {

class Registry;
class AuthCache;
class Template;

class Chain {
 public:
  struct Entry {
    std::shared_ptr<Passdb> db;
    std::string_view name;               ///< log name (the registry's, static storage)
    std::vector<std::string> protocols;  ///< empty = all
    config::PassdbSkip skip = config::PassdbSkip::Never;
    config::PassdbAction result_success = config::PassdbAction::ReturnOk;
    config::PassdbAction result_failure = config::PassdbAction::Continue;
    config::PassdbAction result_internalfail = config::PassdbAction::Continue;
    /// Auth cache: the query whose variables key the entry (null = not
    /// cached), the entry's identity, and its default_pass_scheme.
    std::shared_ptr<const config::PassdbSettings> settings;  ///< keeps cache_template alive
    const Template* cache_template = nullptr;
    std::string cache_id;
    std::string default_pass_scheme;
    bool serves(std::string_view protocol) const;
  };

  Chain() = default;
  /// Builds every entry through `reg` (first loads included). On failure
  /// returns nullopt and appends "passdb <what>: <error>" lines to `errors`.
  static std::optional<Chain> build(const std::vector<config::Passdb>& cfgs, const Registry& reg,
                                    std::vector<std::string>& errors);
  /// An entry with the common keys of `cfg` (tests; build() uses it).
  static Entry entry(std::shared_ptr<Passdb> db, std::string_view name, const config::Passdb& cfg);
  void add(Entry e) { entries_.push_back(std::move(e)); }

  /// The login's lookup through the chain; completes on the caller's
  /// executor. Entries that answer inline cost no thread hop. `req` must stay
  /// valid until the task completes.
  net::Task<Lookup> lookup(const Request& req) const;

  /// The log name for a line about `protocol` before any lookup (e.g.
  /// "Authorization as another user denied"): the first entry serving it.
  std::string_view log_name(std::string_view protocol) const;

  const std::vector<Entry>& entries() const { return entries_; }
  /// Per-passdb lookup limit; zero = none (the default until set).
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  /// The auth cache consulted for cacheable entries (null = none; tests).
  void set_cache(AuthCache* c) { cache_ = c; }
  std::vector<std::string> warnings() const;

 private:
  net::Task<Lookup> ask(const Entry& e, const Request& r) const;
  net::Task<Lookup> ask_cached(const Entry& e, const Request& r) const;

  std::vector<Entry> entries_;
  std::chrono::milliseconds timeout_{0};
  AuthCache* cache_ = nullptr;
};

}  // namespace portier::passdb

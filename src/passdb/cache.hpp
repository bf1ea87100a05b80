#pragma once
// The auth cache ([auth.cache]): Dovecot's passdb cache, process-wide.
//
// Owns: the cached passdb answers (keyed by passdb identity + the values of
// every variable its query uses), their positive and negative TTLs, LRU
// eviction within a byte budget, hit/miss statistics, flushing (all, or the
// entries of given users) and the per-login verdict from a cached answer
// (cached_verdict: the client's password is checked against the cached
// stored password on every login; the client's password is never cached).
// May use: passdb.hpp, reply.hpp, password.hpp, core. The chain (chain.cpp)
// decides when to consult it; main.cpp configures it (config load, SIGHUP)
// and flushes it on SIGUSR2; the admin API may call auth_cache_flush() and
// metrics auth_cache_stats().
//
// Semantics (Dovecot's auth-cache.c, ops-reference.md §2.6):
//  - a positive entry (user found: reply fields + the stored password, held
//    in a core::Secret) lives `ttl`, a negative one (unknown user)
//    `negative_ttl` (0 = negative answers are not cached);
//  - an expired entry is not dropped: it is replaced by the next successful
//    database answer, and served while the database answers with an
//    internal failure (logins keep working while the database is down);
//  - a password that does not match a fresh entry re-asks the database once
//    when the entry's last login succeeded (the password changed); after a
//    failed login the entry is trusted until it expires;
//  - internal failures (TempFail) are never cached;
//  - eviction is LRU once the entries' bytes exceed `size`; an entry's bytes
//    are its strings' capacities plus its node's bookkeeping (entry_bytes()).
// Which passdbs are cached: those whose query is a vars.hpp Template that
// does not use the client's password (the SQL drivers; LDAP can join the same
// way). passwd-file and static answer from memory and are not cached;
// auth_http's verdict depends on the client's password, so it is not cached
// either (caching it would mean keeping a password-derived key).
//
// Threading: 16 shards, each with its own mutex and LRU list; a lookup locks
// one shard for a map find and a copy of the entry. No global lock.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/secret.hpp"
#include "net/awaitable.hpp"
#include "passdb/passdb.hpp"
#include "passdb/reply.hpp"

namespace portier::passdb {

/// [auth.cache]
struct CacheSettings {
  size_t size = 0;  ///< byte budget; 0 = off
  std::chrono::milliseconds ttl{3600 * 1000};
  std::chrono::milliseconds negative_ttl{3600 * 1000};
};

/// Counters for metrics and the admin API.
struct CacheStats {
  uint64_t hits = 0;    ///< logins answered from a fresh entry
  uint64_t misses = 0;  ///< logins that asked the database (no entry, expired, or re-ask)
  size_t entries = 0;
  size_t bytes = 0;
};

/// What a passdb answered for one key, as cached.
struct CachedAnswer {
  bool found = false;  ///< false: unknown user (a negative entry)
  Reply reply;
  std::shared_ptr<const core::Secret> stored;  ///< "{SCHEME}..." or in the default scheme; may be empty
};

class AuthCache {
 public:
  using Clock = std::chrono::steady_clock;

  struct Hit {
    CachedAnswer answer;
    bool expired = false;
    bool last_ok = false;  ///< the last login verified against this entry succeeded
  };

  AuthCache() = default;
  explicit AuthCache(const CacheSettings& s) { configure(s); }

  /// Sets the budget and TTLs (a smaller budget evicts at once; size 0
  /// empties and disables the cache). Existing entries keep their expiry.
  void configure(const CacheSettings& s);
  bool enabled() const;

  /// The entry for `key` (touching its LRU position), expired or not.
  std::optional<Hit> get(std::string_view key, Clock::time_point now);
  /// Inserts or replaces the entry for `key`; `user` is what flush() matches.
  /// A negative answer with negative_ttl 0 is not stored.
  void put(std::string_view key, std::string_view user, CachedAnswer answer, bool last_ok,
           Clock::time_point now);
  /// Records the outcome of a login verified against the entry.
  void set_last_ok(std::string_view key, bool ok);
  /// Removes every entry (users empty) or those of `users`; returns how many.
  size_t flush(const std::vector<std::string>& users);
  void count_hit();
  void count_miss();
  CacheStats stats() const;

  /// The bytes one entry is counted for.
  static size_t entry_bytes(std::string_view key, std::string_view user, const CachedAnswer& a);

 private:
  struct Entry {
    std::string key;
    std::string user;
    CachedAnswer answer;
    Clock::time_point expires;
    bool last_ok = false;
    size_t bytes = 0;
  };
  struct Shard {
    mutable std::mutex mu;
    std::list<Entry> lru;  // front = most recently used
    std::unordered_map<std::string_view, std::list<Entry>::iterator> index;  // views into Entry::key
    size_t bytes = 0;
    uint64_t hits = 0, misses = 0;
    void erase(std::list<Entry>::iterator it);
    void evict_to(size_t budget);
  };
  static constexpr size_t kShards = 16;
  Shard& shard(std::string_view key);

  std::array<Shard, kShards> shards_;
  // Read on every login: atomics, not a lock shared by all workers.
  std::atomic<size_t> size_{0};
  std::atomic<int64_t> ttl_ms_{3600 * 1000};
  std::atomic<int64_t> negative_ttl_ms_{3600 * 1000};
};

/// The process-wide cache (what [auth.cache] configures; off until then).
AuthCache& auth_cache();
/// Flushes the process-wide cache: every entry (users empty) or those whose
/// login name is one of `users`. Returns the number of entries removed.
size_t auth_cache_flush(const std::vector<std::string>& users);
/// The process-wide cache's counters.
CacheStats auth_cache_stats();

/// What a stored password means before any hashing (Dovecot's rules, shared
/// with sql_common): `nopassword` with an empty password → Ok; an empty
/// password → Mismatch; otherwise it must be verified.
enum class StoredCheck { Ok, Mismatch, Verify };
StoredCheck stored_check(const Reply& reply, std::string_view stored);

/// The login's answer from a cached answer: unknown user, lookup_only, the
/// nopassword/empty rules, or the client's password verified against the
/// stored one (on Request::hashing unless the scheme is cleartext). `who`
/// starts error texts ("sql"). Completes on the caller's executor.
net::Task<Lookup> cached_verdict(CachedAnswer a, const Request& req, std::string default_scheme,
                                 std::string_view who);

}  // namespace portier::passdb

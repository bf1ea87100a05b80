#pragma once
// The blocking adapter: a synchronous driver (a blocking client library, a
// slow file, SQLite) behind the asynchronous Passdb interface. Its lookups
// run on the adapter's own bounded thread pool — apart from the
// password-hashing pool — so a slow driver delays only its own lookups,
// never a worker's event loop or other passdbs' password checks.
// May use: passdb.hpp, Asio's thread_pool.

#include <memory>

#include "passdb/passdb.hpp"

namespace portier::passdb {

/// A driver whose lookup blocks. Thread-safe: called concurrently from the
/// adapter's pool threads.
class SyncPassdb {
 public:
  virtual ~SyncPassdb();
  /// The cheap answer, on the worker (see Passdb::lookup_inline). Must not block.
  virtual std::optional<Lookup> lookup_inline(const Request& req) {
    (void)req;
    return std::nullopt;
  }
  /// The blocking lookup, on a pool thread.
  virtual Lookup lookup_blocking(const Request& req) = 0;
  virtual std::vector<std::string> warnings() const { return {}; }
};

/// Runs a SyncPassdb on `threads` pool threads of its own. Lookups beyond
/// that queue on the pool (bounded threads, not bounded queue: the login
/// timeout bounds the wait). Destruction stops the pool and waits for the
/// lookups running on it; queued ones are dropped.
class BlockingPassdb final : public Passdb {
 public:
  BlockingPassdb(std::shared_ptr<SyncPassdb> driver, unsigned threads);
  ~BlockingPassdb() override;
  std::optional<Lookup> lookup_inline(const Request& req) override;
  net::Task<Lookup> lookup(const Request& req) override;
  std::vector<std::string> warnings() const override;

 private:
  std::shared_ptr<SyncPassdb> driver_;  // pool jobs hold it, never the adapter (no self-join)
  asio::thread_pool pool_;
};

}  // namespace portier::passdb

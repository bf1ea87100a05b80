#pragma once
// Password databases. Currently one driver: Dovecot's passwd-file.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "passdb/password.hpp"
#include "passdb/proxy_fields.hpp"
#include "passdb/reply.hpp"

namespace portier::passdb {

/// Outcome of Passdb::verify().
enum class Result {
  Ok,           ///< password verified (or nopassword); reply is filled
  Mismatch,     ///< wrong password, or the user has no password
  UnknownUser,  ///< no such user in this passdb
  TempFail,     ///< the passdb could not answer (unreadable file, bad hash, ...)
};

/// Result of a lookup. `reply` is filled for Ok and Mismatch.
struct Lookup {
  Result result = Result::TempFail;
  Reply reply;
  std::string error;  ///< reason for logs (TempFail, or a warning); never contains passwords
};

/// A password database.
class Passdb {
 public:
  virtual ~Passdb();
  /// Looks up `user` and verifies `password`. Blocking (may run crypt);
  /// thread-safe; meant to be called from a thread pool.
  virtual Lookup verify(std::string_view user, std::string_view password, const RequestInfo& info) = 0;
  /// True when this passdb applies to `protocol` (empty protocol list = all).
  virtual bool serves(std::string_view protocol) const = 0;
  /// Answer at once when that needs no password hashing (unknown user, empty
  /// password with `nopassword`, cleartext schemes): the engine then skips
  /// the trip to the hashing thread pool. nullopt = call verify() off-loop.
  virtual std::optional<Lookup> verify_inline(std::string_view user, std::string_view password,
                                              const RequestInfo& info) {
    (void)user, (void)password, (void)info;
    return std::nullopt;
  }
  /// Non-fatal problems found by the last (re)load, formatted
  /// "path:line: message" (e.g. skipped malformed lines). Default: none.
  virtual std::vector<std::string> warnings() const;
};

/// Creates a passdb from its config. Returns nullptr and sets `error` when
/// the driver is unknown or the initial load fails (e.g. file unreadable).
std::unique_ptr<Passdb> make_passdb(const config::Passdb& cfg, std::string& error);

}  // namespace portier::passdb

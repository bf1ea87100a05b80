#pragma once
// Dovecot passwd-file driver: the first passdb driver (registry name and log
// name "passwd-file"; its own [[passdb]] key: `path`). Owns the file's
// parsing, background re-read and checks; may use passdb.hpp, password.hpp,
// reply.hpp, core. Password hashing hops to Request::hashing.
//
// Format, one user per line:
//   user:{SCHEME}password:uid:gid:gecos:home:shell:extra fields
// Every field after the password is optional; extra fields (everything after
// the 7th ':') are space-separated "key=value" or bare "key". Lines that are
// empty or start with '#' are skipped. The password may be empty.
//
// Lookup semantics (Dovecot's):
//  - user not in the file (exact, case-sensitive match) -> UnknownUser
//  - stored password empty (also "{PLAIN}" with nothing after the scheme):
//      with a "nopassword" field -> Ok (any password; the proxy forwards the
//      client's), otherwise -> Mismatch
//  - "nopassword" with a non-empty stored password is ignored (as Dovecot
//    does) and noted in Lookup::error; the password is verified normally
//  - unknown scheme / malformed hash -> TempFail
//  - Request::lookup_only: a found user is Ok without any password check
//  - the reply's fields are: [passdb] default_fields, then the user's extra
//    fields, then override_fields (later values replace earlier ones for the
//    same key, keeping the first position). No %variable expansion.
//  - a stored password without "{SCHEME}" is in [[passdb]] default_pass_scheme
//    (CRYPT unless set, as in Dovecot; a value starting with '$' is CRYPT)
// The file is re-read automatically when its inode, size, mtime or ctime
// changes (checked with stat() on every lookup). Only the first load is
// synchronous (make_passwd_file/load()); later re-reads run on a background
// thread and the parsed table is swapped in when complete: lookups never
// wait for a parse, they use the previous table until then. The replaced
// table is freed on that background thread too.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "core/result.hpp"
#include "passdb/passdb.hpp"

namespace portier::passdb {

/// passwd-file's own [[passdb]] keys.
struct PasswdFileSettings final : config::PassdbSettings {
  std::string path;  ///< resolved relative to the config file's directory
  std::string describe() const override { return path; }
};

/// The driver's config parser (registry): `path` (required, non-empty).
std::shared_ptr<const config::PassdbSettings> parse_passwd_file_settings(config::PassdbSection& section);

/// The settings of a passwd-file [[passdb]] entry (its `settings` must be
/// PasswdFileSettings, as the parser above makes them).
const PasswdFileSettings& passwd_file_settings(const config::Passdb& cfg);

/// A config::Passdb for `path` with default common keys (tests, tools).
config::Passdb passwd_file_config(std::string path);

/// One malformed line skipped while parsing.
struct LineError {
  int line = 0;
  std::string message;  ///< never contains the password (may name the user)
};

/// Parsed contents of a passwd-file.
struct PasswdFileData {
  struct Entry {
    std::string password;  ///< stored password ("{SCHEME}..."), wiped on destruction
    std::vector<std::pair<std::string, std::string>> fields;  ///< extra fields
    Entry() = default;
    Entry(const Entry&) = default;
    Entry(Entry&&) noexcept = default;
    Entry& operator=(const Entry&) = default;
    Entry& operator=(Entry&&) noexcept = default;
    ~Entry();
  };
  std::unordered_map<std::string, Entry> users;
  std::vector<LineError> errors;
};

/// Parses passwd-file text. Malformed lines (no ':' after the user name,
/// empty user name, duplicate user) are skipped and recorded in `errors`;
/// for a duplicate user the first entry wins (as in Dovecot).
PasswdFileData parse_passwd_file(std::string_view text);

/// The passwd-file passdb.
class PasswdFile final : public Passdb, public std::enable_shared_from_this<PasswdFile> {
 public:
  /// Does not read the file; call load() (make_passwd_file does) or let the
  /// first lookup load it. `cfg.settings` must be PasswdFileSettings.
  explicit PasswdFile(config::Passdb cfg);

  /// (Re)reads the file if it changed. Returns false and sets `error` if it
  /// cannot be read.
  core::Result<void> load();

  /// No hashing needed (unknown user, nopassword, cleartext scheme,
  /// lookup_only): the answer; otherwise nullopt.
  std::optional<Lookup> lookup_inline(const Request& req) override;
  /// Hashes on req.hashing (a pool), or on this thread when it is null.
  net::Task<Lookup> lookup(const Request& req) override;
  std::vector<std::string> warnings() const override;

  /// The whole check on the calling thread, hashing included (blocking).
  Lookup verify(const Request& req);
  /// Same as lookup_inline().
  std::optional<Lookup> verify_inline(const Request& req) { return lookup_inline(req); }

  /// Malformed lines skipped by the last successful load.
  std::vector<LineError> line_errors() const;
  /// Number of successful (re)loads so far (for tests and diagnostics).
  unsigned load_count() const;
  /// Waits until no background re-read is running (tests and diagnostics).
  /// False when one is still running after `timeout`.
  bool wait_reload_idle(std::chrono::milliseconds timeout) const;

  ~PasswdFile() override;

  struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = -1;
    timespec mtime{};
    timespec ctime{};
    bool operator==(const FileId& o) const;
  };
  struct Shared;  // table + reload state, shared with the background re-read

 private:
  core::Result<std::shared_ptr<const PasswdFileData>> snapshot();

  config::Passdb cfg_;
  std::string path_;
  std::vector<std::pair<std::string, std::string>> default_fields_;
  std::vector<std::pair<std::string, std::string>> override_fields_;
  Lookup check(const Request& req, bool may_hash, bool& needs_hash);
  std::shared_ptr<Shared> shared_;
};

/// Creates a passwd-file passdb and loads the file. Returns nullptr and sets
/// `error` when the settings are unusable or the first load fails.
core::Result<std::shared_ptr<PasswdFile>> make_passwd_file(const config::Passdb& cfg);

}  // namespace portier::passdb

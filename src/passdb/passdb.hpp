#pragma once
// passdb: password databases behind one asynchronous interface.
//
// Owns: the lookup vocabulary every driver and the engine share — Request
// (what a driver may use), Lookup (what it answers), Result, and the Passdb
// interface a driver implements. The ordered chain lives in chain.hpp, the
// driver name → config parser + factory table in registry.hpp, the pool for
// synchronous drivers in blocking.hpp, the drivers in drivers/<name>/.
// May use: core, config (a driver's settings), net/awaitable.hpp (Asio
// coroutines). Never login/ or protocols/: the engine calls in, not back.
//
// Threading: Passdb::lookup() is co_awaited on the worker's event loop and
// completes there. A driver that can answer at no cost answers in
// lookup_inline() (no coroutine, no thread hop: the per-login CPU fast path);
// one that must wait does so without blocking the worker — asynchronous I/O
// on the worker, or a hop to a pool (BlockingPassdb, the hashing pool).

#include <asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/secret.hpp"
#include "net/awaitable.hpp"
#include "passdb/password.hpp"
#include "passdb/proxy_fields.hpp"
#include "passdb/reply.hpp"

namespace portier::passdb {

/// Outcome of a lookup.
enum class Result {
  Ok,           ///< password verified (or nopassword, or lookup_only); reply is filled
  Mismatch,     ///< wrong password, or the user has no password
  UnknownUser,  ///< no such user in this passdb
  TempFail,     ///< the passdb could not answer (unreadable file, bad hash, database down, ...)
};

/// Why an OAuth 2.0 token was refused (RFC 6750 error and the settings a
/// client needs to get a better token): the SASL mechanisms OAUTHBEARER and
/// XOAUTH2 send it to the client as a JSON challenge before the final failure
/// (sasl::oauth_failure_json renders it per mechanism).
struct OAuthFailure {
  std::string status = "invalid_token";  ///< invalid_token | insufficient_scope | invalid_request
  std::string scope;                     ///< the scope(s) a token needs ("" = the mechanism's default)
  std::string openid_configuration;      ///< discovery URL for the client ("" = none)
};

/// What a lookup answered. `reply` is filled for Ok and Mismatch.
struct Lookup {
  Result result = Result::TempFail;
  Reply reply;
  std::string error;  ///< reason for logs (TempFail, or a warning); never contains passwords
  /// The log name of the passdb that answered ("passwd-file", later "sql",
  /// "ldap" ...): the engine's `auth:` lines read `<passdb>(user,ip,<session>)`.
  /// Static storage (the registry's driver table).
  std::string_view passdb;
  /// A failed login after which the connection ends (auth_http's failure
  /// without Auth-Wait, as nginx does); otherwise the client may retry.
  bool disconnect = false;
  /// Request::fetch answers only: the stored password ("{SCHEME}..." or in
  /// the passdb's default scheme; empty = none), not yet checked. Set (maybe
  /// empty) on every found user of a fetch; null otherwise.
  std::shared_ptr<const core::Secret> stored;
  /// Set by a driver that validated an OAuth 2.0 token and refused it
  /// (Mismatch): what the OAuth mechanisms tell the client.
  std::optional<OAuthFailure> oauth_failure;
};

/// One authentication request: everything a driver may use (for queries,
/// templates, HTTP headers). Views: valid until the lookup completes; a
/// driver that hops threads copies it first (RequestCopy).
struct Request {
  std::string_view user;        ///< the authentication identity (authcid)
  std::string_view password;    ///< the client's password; never logged
  std::string_view protocol;    ///< "imap", "pop3", "submission", "managesieve"
  std::string_view service;     ///< log service, e.g. "imap-login"
  std::string_view mechanism;   ///< SASL mechanism, upper-case ("PLAIN", "LOGIN")
  std::string_view remote_ip;   ///< client address (possibly forwarded by a trusted hop)
  uint16_t remote_port = 0;
  std::string_view local_ip;    ///< address the client connected to
  uint16_t local_port = 0;
  std::string_view session_id;  ///< Dovecot-style session id
  std::string_view local_name;  ///< TLS SNI name the client asked for ("" = none)
  bool tls = false;             ///< TLS active on the client connection
  bool secured = false;         ///< Dovecot's "secured": TLS, local, or a trusted network
  bool cert_valid = false;      ///< a verified TLS client certificate was presented (%{cert})
  std::string_view tls_protocol;  ///< client TLS version, e.g. "TLSv1.3" ("" = none/unknown)
  std::string_view tls_cipher;    ///< client TLS cipher, e.g. "TLS_AES_256_GCM_SHA384"
  unsigned login_attempt = 1;   ///< 1 for the first login attempt on this connection, +1 per retry
  /// A re-authentication after a backend referral ([login] proxy_redirect_reauth):
  /// the referral's destination ("host:port") and the destinations this login
  /// already tried ("ip:port,ip:port"); "" otherwise.
  std::string_view redirect_host_next;
  std::string_view redirect_host_attempts;
  /// Look the user up without checking the password (LMTP/doveadm routing,
  /// and a chain after a `continue`/`continue-ok` success): a found user is Ok.
  bool lookup_only = false;
  /// The auth cache's fetch (cache.hpp): a found user is Ok with its fields
  /// and Lookup::stored set, and the password is NOT checked (the cache
  /// checks it per login). Only asked of passdbs the cache keys (SQL).
  bool fetch = false;
  /// Where password hashing runs (shared by all passdbs, owned by the
  /// server); null = hash on the calling thread (tests, fuzzers).
  asio::thread_pool* hashing = nullptr;
  /// When the chain stops waiting for this lookup ([auth] passdb_timeout;
  /// zero = no deadline). Drivers doing their own I/O give up by then and
  /// free what they hold (a connection, a pool slot).
  std::chrono::steady_clock::time_point deadline{};
};

/// A routing lookup without password (the LMTP and doveadm proxies): the
/// user, protocol and service `protocol`, lookup_only, a deadline `timeout`
/// from now (zero: none). The caller adds what it knows of the client.
Request lookup_only_request(std::string_view user, std::string_view protocol, std::chrono::milliseconds timeout);

/// An owning copy of a Request, for work that outlives the caller's frame
/// (a hop to another thread). The password is a core::Secret: wiped when the
/// copy goes away.
class RequestCopy {
 public:
  explicit RequestCopy(const Request& r);
  RequestCopy(RequestCopy&&) = default;
  /// A Request viewing this copy.
  Request view() const;

 private:
  std::string user_, protocol_, service_, mechanism_, remote_ip_, local_ip_, session_id_, local_name_;
  std::string tls_protocol_, tls_cipher_, redirect_host_next_, redirect_host_attempts_;
  core::Secret password_;
  Request flags_;  // ports, flags and executor; its views are unused
};

/// Sets `l.result` (and `l.error` for a stored password that cannot be used)
/// from a password check; `who` starts the error ("sql: user alice").
void apply_verify(Lookup& l, VerifyResult v, std::string_view who);

/// A password database (one [[passdb]] entry's driver). Thread-safe: one
/// instance serves every worker.
class Passdb {
 public:
  virtual ~Passdb();
  /// The answer when it costs nothing (no I/O, no password hashing: unknown
  /// user, nopassword, cleartext scheme, lookup_only). nullopt: co_await
  /// lookup(). Runs on the caller's thread; must not block.
  virtual std::optional<Lookup> lookup_inline(const Request& req) {
    (void)req;
    return std::nullopt;
  }
  /// The full lookup; completes on the caller's executor. Never blocks the
  /// calling thread. `req` stays valid until the task completes.
  virtual net::Task<Lookup> lookup(const Request& req) = 0;
  /// Non-fatal problems found by the last (re)load, formatted
  /// "path:line: message" (e.g. skipped malformed lines). Default: none.
  virtual std::vector<std::string> warnings() const;
};

}  // namespace portier::passdb

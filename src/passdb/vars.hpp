#pragma once
// Dovecot's %variables in passdb queries and filters (SQL, LDAP).
// Owns: parsing a template ONCE (at config load) into a compiled Template,
// rejecting unknown variables and modifiers there (config errors with
// file:line), and expanding it per request with an escaping function the
// driver supplies (SQL string literal, RFC 4515 LDAP filter, RFC 4514 DN...).
// May use: passdb.hpp (Request), core. Not login/.
//
// Forms (docs/PASSDB.md has the table):
//   Dovecot 2.3: %u %n %d %s %r %l %a %b %m %c %p %w, modifiers %L<x> / %U<x>
//                (lower / upper case), long names %{user} %{username} ...,
//                %L{user}.
//   Dovecot 2.4: %{user}, %{user | username}, %{user | domain},
//                %{user | lower}, %{user | upper}, %{protocol}, %{remote_ip} ...
//   %% is a literal '%'.
// Every substituted value goes through the escaper; the literal text between
// variables is copied as written. A value containing NUL is refused (no
// escaping can put it in a C-string query): expand() returns false.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "passdb/passdb.hpp"

namespace portier::passdb {

/// A variable a template can use.
enum class Var : uint8_t {
  User,        ///< %u %{user} %{original_user}: the full user name
  Username,    ///< %n %{username}: part before the first '@' (all of it without '@')
  Domain,      ///< %d %{domain}: part after the first '@' ("" without '@')
  Service,     ///< %s %{service} %{protocol}: imap, pop3, submission, sieve
  RemoteIp,    ///< %r %{remote_ip} %{rip}
  LocalIp,     ///< %l %{local_ip} %{lip}
  LocalPort,   ///< %a %{local_port} %{lport}
  RemotePort,  ///< %b %{remote_port} %{rport}
  Mechanism,   ///< %m %{mechanism}
  Secured,     ///< %c %{secured}: "TLS", "secured" or ""
  Pid,         ///< %p %{pid} %{client_pid}: portier's process id
  Password,    ///< %w %{password}: the client's password (escaped; the expansion is then a secret)
  Session,     ///< %{session}
  LocalName,   ///< %{local_name}: TLS SNI
  Cert,        ///< %{cert} / %k: "valid" when a verified client certificate was presented
  RedirectHostNext,      ///< %{proxy_redirect_host_next}: a backend referral's host:port (reauth)
  RedirectHostAttempts,  ///< %{proxy_redirect_host_attempts}: ip:port,... already tried (reauth)
};

/// The canonical 2.4 name of `v` ("user", "remote_ip", ...).
std::string_view var_name(Var v);

/// Appends `value`, escaped for the target language, to `out`.
using Escaper = std::function<void(std::string& out, std::string_view value)>;

/// RFC 4515 escaping of a value inside an LDAP search filter: '*', '(',
/// ')', '\\', NUL, control characters and every non-ASCII byte become \XX
/// (two upper-case hex digits, as slapd logs them); nothing a user name
/// holds can change the filter's structure.
void ldap_filter_escape(std::string& out, std::string_view value);

/// RFC 4514 escaping of a value inside an LDAP DN (an attribute value of one
/// RDN): '"', '+', ',', ';', '<', '>', '\\', '=' get a backslash; a leading
/// '#' or space and a trailing space get a backslash; NUL, control
/// characters and every non-ASCII byte become \XX.
void ldap_dn_escape(std::string& out, std::string_view value);

/// A compiled template.
class Template {
 public:
  /// Parses `text`. nullopt with `error` set ("unknown variable '%{foo}'")
  /// on a syntax error or an unknown variable/modifier/filter.
  static core::Result<Template> compile(std::string_view text);

  /// Expands for `req` into `out` (replaced). False when a value contains
  /// NUL (out is then cleared). When uses_password(), the caller must wipe
  /// `out` after use (core::secure_zero) and never log it.
  bool expand(const Request& req, const Escaper& escape, std::string& out) const;

  /// The value of one variable for `req` (unescaped, filters not applied).
  static std::string value(Var v, const Request& req);

  /// The variables the template uses, each once, in first-use order (the
  /// auth cache keys on their values).
  const std::vector<Var>& variables() const { return vars_; }
  bool uses(Var v) const;
  bool uses_password() const { return uses(Var::Password); }
  /// The raw values of variables() joined with '\x1f' (a cache key part).
  /// Without the password even when the template uses it.
  std::string key(const Request& req) const;
  const std::string& text() const { return text_; }

 private:
  enum class Filter : uint8_t { Lower, Upper, Username, Domain };
  struct Piece {
    std::string literal;  // copied as is (when !is_var)
    bool is_var = false;
    Var var = Var::User;
    std::vector<Filter> filters;
  };
  static core::Result<void> parse_name(std::string_view name, Var& v, std::vector<Filter>& filters);

  std::string text_;
  std::vector<Piece> pieces_;
  std::vector<Var> vars_;
};

/// Settings of a driver whose answers the auth cache may keep (SQL, LDAP).
/// The chain keys an entry by cache_identity() + cache_key(request).
struct Cacheable {
  virtual ~Cacheable() = default;
  /// Everything besides the request that shapes an answer (driver, server,
  /// query or filter, ...); "" = never cache this passdb (e.g. its query
  /// uses the password, or the password check is a bind).
  virtual std::string cache_identity() const = 0;
  /// The request's part of the key: the values of every variable used.
  virtual std::string cache_key(const Request& req) const = 0;
};

}  // namespace portier::passdb

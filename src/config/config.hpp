#pragma once
// portier configuration: a TOML file loaded and validated into plain structs.
// Loading never throws; all problems are collected as Errors with the
// file:line:column of the offending value (or of the table/key when the
// value is missing).

#include <asio/ip/address.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portier::config {

/// TLS mode of a client-facing listener.
enum class TlsMode { None, StartTls, Implicit };

/// An IP network, e.g. 127.0.0.0/8 or ::1/128.
struct Cidr {
  asio::ip::address net;  ///< network address, host bits cleared
  unsigned prefix = 0;    ///< prefix length (0..32 for IPv4, 0..128 for IPv6)

  /// True when `addr` is inside the network. IPv4-mapped IPv6 addresses
  /// (::ffff:a.b.c.d) are treated as the IPv4 address on both sides, so
  /// 127.0.0.0/8 contains ::ffff:127.0.0.1. IPv4 and IPv6 never match
  /// otherwise.
  bool contains(const asio::ip::address& addr) const;
};

/// Parses "127.0.0.0/8", "::1/128", or a bare IP (host prefix /32 or /128).
/// An IPv4-mapped IPv6 network (::ffff:10.0.0.0/104) is converted to its
/// IPv4 form (10.0.0.0/8). Host bits are cleared. std::nullopt when invalid.
std::optional<Cidr> parse_cidr(std::string_view text);

/// Client certificates on a TLS listener: "none" | "optional" | "required".
enum class VerifyClient { None, Optional, Required };

/// One [[listener]] table.
struct Listener {
  std::string protocol;  ///< "imap" | "pop3" | "submission" | "managesieve"
  std::string address;   ///< IP address to bind; default "0.0.0.0"
  /// Port to bind; 0 = ephemeral. When the key is absent the protocol's
  /// standard port is used (imap 143/993, pop3 110/995, submission 587/465,
  /// managesieve 4190; the second value for tls = "implicit").
  uint16_t port = 0;
  TlsMode tls = TlsMode::None;
  /// `haproxy = true`: every connection starts with a PROXY v1/v2 header
  /// (from login.haproxy_trusted_networks, within login.haproxy_timeout).
  bool haproxy = false;
  /// `path`: a unix stream socket instead of address/port (sibling services
  /// such as LMTP, for Postfix's `lmtp:unix:`); created mode 0666.
  std::string path;
  /// Client certificates on this listener; unset = the [tls] value.
  std::optional<VerifyClient> verify_client;
  std::optional<std::string> client_ca;
  std::optional<std::string> crl;
  int line = 0;  ///< line of the [[listener]] header, for later diagnostics
};

/// [server]
struct Server {
  std::string hostname;  ///< default: gethostname()
  unsigned workers = 0;  ///< 0 = automatic (e.g. number of CPUs); max 256
  std::string user;         ///< user to drop privileges to; empty = don't
  bool allow_root = false;  ///< run as root without `user` (refused otherwise)
  std::chrono::milliseconds shutdown_timeout{10000};  ///< SIGTERM: logins in progress may finish
};

/// [tls]: client-facing certificate. Paths are resolved relative to the
/// config file's directory. Existence is NOT checked here.
struct Tls {
  std::string cert;  ///< the default certificate (with key); optional with `certificates`
  std::string key;
  /// One [[tls.certificate]]: a PEM chain + key for `names` (lower case; exact
  /// host names or `*.domain`); no names = a default certificate.
  struct Certificate {
    std::vector<std::string> names;
    std::string cert;
    std::string key;
  };
  std::vector<Certificate> certificates;
  /// Client certificates (a [[listener]] may override all three).
  using VerifyClient = config::VerifyClient;
  VerifyClient verify_client = VerifyClient::None;
  std::string client_ca;  ///< PEM CA bundle (required unless verify_client = none)
  std::string crl;        ///< PEM CRL file; empty = no revocation check
  /// The client-certificate settings of one listener: its own keys where it
  /// has them, else the ones above (the [tls] crl only with the [tls] client_ca).
  struct ClientCert {
    VerifyClient verify = VerifyClient::None;
    std::string client_ca;
    std::string crl;
    bool operator==(const ClientCert&) const = default;
  };
  ClientCert client_cert(const Listener& l) const;
  /// Where the user name of a verified certificate comes from (EXTERNAL):
  /// a subject attribute (commonName, emailAddress, ...) or subjectAltName:email|dns.
  std::string cert_username_field = "commonName";
  bool has_cert() const { return !cert.empty() || !certificates.empty(); }
  /// Ask OpenSSL for kernel TLS where the kernel offers it (probed at start;
  /// silent fallback to userspace TLS).
  bool ktls = false;
};

/// [backend]: TLS towards backends (ssl=yes / starttls=yes in passdb).
struct Backend {
  std::string ca_file;  ///< CA bundle to verify backends; empty = system store
  std::string cert;     ///< optional client certificate (requires key)
  std::string key;      ///< optional client key (requires cert)
  /// PROXY protocol header sent first on every backend connection: 0 = none,
  /// 1 = v1, 2 = v2 (a passdb `proxy_protocol` field overrides it).
  unsigned proxy_protocol = 0;
};

/// Dovecot's passdb `skip`: when a passdb of the chain is not consulted.
enum class PassdbSkip {
  Never,            ///< "never" (default)
  Authenticated,    ///< "authenticated": skip when an earlier passdb already succeeded
  Unauthenticated,  ///< "unauthenticated": skip unless an earlier passdb succeeded
};

/// Dovecot's passdb result_success / result_failure / result_internalfail.
enum class PassdbAction {
  ReturnOk,      ///< "return-ok": stop, success
  ReturnFail,    ///< "return-fail": stop, failure
  Return,        ///< "return": stop with the state so far (failure when nothing succeeded)
  Continue,      ///< "continue": next passdb, state unchanged
  ContinueOk,    ///< "continue-ok": next passdb, state success
  ContinueFail,  ///< "continue-fail": next passdb, state failure
};

/// A driver's own keys of a [[passdb]] table, as its config parser built
/// them (e.g. passwd-file's `path`). Drivers derive from it.
struct PassdbSettings {
  virtual ~PassdbSettings();
  /// What the driver reads, for messages ("/etc/portier/users", a URL, ...).
  virtual std::string describe() const = 0;
};

/// One [[passdb]] table: the keys every driver shares; the driver's own keys
/// are in `settings` (parsed by the driver's config parser, see PassdbDrivers).
struct Passdb {
  std::string driver;                   ///< a name the passdb registry knows ("passwd-file")
  std::vector<std::string> protocols;   ///< empty = all protocols
  std::string default_fields;           ///< space-separated k=v applied before the user's
  std::string override_fields;          ///< space-separated k=v applied after the user's
  std::string default_pass_scheme = "CRYPT";  ///< scheme of passwords without "{SCHEME}" (Dovecot's default)
  PassdbSkip skip = PassdbSkip::Never;
  PassdbAction result_success = PassdbAction::ReturnOk;        ///< Dovecot's defaults
  PassdbAction result_failure = PassdbAction::Continue;        ///< unknown user, wrong password
  PassdbAction result_internalfail = PassdbAction::Continue;   ///< the passdb could not answer
  std::shared_ptr<const PassdbSettings> settings;  ///< the driver's keys; never null once loaded
  int line = 0;                         ///< line of the [[passdb]] header
};

/// Read access to the driver's own keys of one [[passdb]] table, handed to
/// the driver's config parser. Every getter marks its key as taken; keys no
/// parser took are reported "unknown key 'k' in [[passdb]]" afterwards.
/// Getters report type errors themselves (file:line:col) and then return
/// nullopt; nullopt without an error means "absent".
class PassdbSection {
 public:
  virtual ~PassdbSection() = default;
  virtual std::string_view driver() const = 0;
  virtual bool has(std::string_view key) const = 0;
  virtual std::optional<std::string> string(std::string_view key) = 0;
  virtual std::optional<bool> boolean(std::string_view key) = 0;
  virtual std::optional<long long> integer(std::string_view key, long long min, long long max) = 0;
  virtual std::optional<std::chrono::milliseconds> duration(std::string_view key) = 0;
  virtual std::optional<std::vector<std::string>> strings(std::string_view key) = 0;
  /// An inline table of strings (`fields = { password = "userPassword" }`), in file order.
  virtual std::optional<std::vector<std::pair<std::string, std::string>>> string_table(std::string_view key) = 0;
  /// `p` relative to the config file's directory (absolute stays as is).
  virtual std::string resolve_path(std::string_view p) const = 0;
  /// An error at `key`'s value, or at the [[passdb]] header when `key` is absent.
  virtual void error(std::string_view key, std::string message) = 0;
};

/// A driver's config parser: reads its keys, reports problems through the
/// section and returns null when there were any.
using PassdbParser = std::shared_ptr<const PassdbSettings> (*)(PassdbSection& section);

/// What the config loader asks about passdb drivers; implemented by the
/// passdb registry (passdb/registry.hpp) — config keeps no list of its own.
class PassdbDrivers {
 public:
  virtual ~PassdbDrivers() = default;
  /// The config parser of `driver`, or null when no such driver exists.
  virtual PassdbParser parser(std::string_view driver) const = 0;
  /// The known driver names for messages, e.g. "passwd-file, static".
  virtual std::string names() const = 0;
};

/// Everything the config loader asks the registries: passdb drivers (the
/// base class), protocols and SASL mechanisms. Implemented in app/
/// (app/registries.hpp) from the protocol, SASL and passdb registries:
/// config keeps no list of names of its own.
class Registries : public PassdbDrivers {
 public:
  /// The default port of `protocol` (implicit TLS or not); nullopt when no
  /// such protocol exists.
  virtual std::optional<uint16_t> protocol_port(std::string_view protocol,
                                                bool implicit_tls) const = 0;
  /// "imap, pop3 or submission" (messages).
  virtual std::string protocol_names() const = 0;
  /// `mech` (upper-case) is a SASL mechanism portier implements.
  virtual bool mechanism_known(std::string_view mech) const = 0;
  /// "PLAIN, LOGIN" (messages).
  virtual std::string mechanism_names() const = 0;
};

/// [auth]
struct Auth {
  bool allow_cleartext = false;  ///< allow plaintext auth without TLS
  std::vector<std::string> mechanisms{"PLAIN", "LOGIN"};  ///< upper-cased, non-empty
  std::chrono::milliseconds failure_delay{2000};
  bool verbose = true;
  /// Longest wait for one passdb's answer; then that passdb counts as an
  /// internal failure (TempFail). 0 = no limit.
  std::chrono::milliseconds passdb_timeout{10000};
  /// [auth.cache]: the auth cache (passdb/cache.hpp). size 0 = off.
  struct Cache {
    uint64_t size = 0;  ///< bytes ("16M" = 16 MiB)
    std::chrono::milliseconds ttl{3600 * 1000};
    std::chrono::milliseconds negative_ttl{3600 * 1000};  ///< 0 = unknown users not cached
  } cache;
};

/// [login]
struct Login {
  std::vector<Cidr> trusted_networks;
  std::chrono::milliseconds proxy_timeout{30000};
  unsigned proxy_max_reconnects = 3;
  std::string greeting = "portier ready.";  ///< must not contain CR/LF
  std::chrono::milliseconds client_timeout{180000};
  /// After one side of a relayed session ends its stream (half-close), how
  /// long the other direction may stay silent before the session ends.
  std::chrono::milliseconds relay_linger{30000};
  size_t max_line_length = 8192;    ///< > 0
  size_t max_literal_size = 65536;
  size_t max_command_size = 16384;  ///< all bytes of one pre-login command, literals included
  unsigned max_invalid_commands = 3;
  unsigned proxy_ttl = 5;
  /// On a backend referral, ask the passdb chain again (mechanism EXTERNAL,
  /// lookup only, %{proxy_redirect_host_next} / %{proxy_redirect_host_attempts})
  /// instead of connecting straight to the referred IP (Dovecot 2.4).
  bool proxy_redirect_reauth = false;
  /// Fail new logins at once for a backend failing longer than this while
  /// another login already waits on it (Dovecot's fast fail). 0 = off.
  std::chrono::milliseconds proxy_host_immediate_failure_after{30000};
  unsigned max_connections = 0;         ///< pre-login + relayed, whole process; 0 = unlimited
  unsigned max_connections_per_ip = 0;  ///< per client IP; 0 = unlimited
  unsigned max_sessions_per_user = 0;   ///< concurrent proxied sessions per user; 0 = unlimited
  unsigned max_auth_attempts = 3;       ///< failed logins per connection before disconnect
  /// Per-IP auth-failure penalty: each recent failure from an IP doubles the
  /// failure delay for that IP, up to this cap. 0 = off (flat failure_delay).
  std::chrono::milliseconds auth_penalty_max{15000};
  /// IPv6 clients are counted and penalised per network of this prefix
  /// length (1..128); IPv4 (and IPv4-mapped IPv6) per address.
  unsigned ipv6_prefix = 64;
  /// Who may send a PROXY header to a `haproxy = true` listener.
  std::vector<Cidr> haproxy_trusted_networks;
  /// The PROXY header must be complete within this time.
  std::chrono::milliseconds haproxy_timeout{3000};
};

/// [lmtp]: the LMTP proxy (listeners with protocol = "lmtp", docs/LMTP.md).
struct Lmtp {
  /// Characters that start a recipient detail (user+detail@domain); "" = none.
  std::string recipient_delimiter = "+";
  /// A passdb entry without `proxy`: "refuse" (550) or "default" (default_host).
  std::string unproxied = "refuse";
  std::string default_host;          ///< an IP address; required for unproxied = "default"
  uint16_t default_port = 24;
  std::string default_protocol = "lmtp";  ///< lmtp | smtp
  /// Backend timeout when the passdb gives no proxy_timeout (Dovecot: 125 s).
  std::chrono::milliseconds proxy_timeout{125000};
  unsigned max_recipients = 1000;  ///< per transaction
};

/// [log]
struct Log {
  std::string level = "info";  ///< trace | debug | info | warn | error | off
  std::string format = "text";  ///< text (Dovecot-shaped lines) | json (one object per line)
  std::string target = "stderr";  ///< stderr | syslog
  std::string syslog_socket = "/dev/log";  ///< target = "syslog": the datagram socket
  std::string syslog_ident = "portier";    ///< target = "syslog": the tag (ident)
};

/// [doveadm]: the doveadm proxy (docs/DOVEADM.md). Off while `listen` is unset.
struct Doveadm {
  std::string listen_address;  ///< from listen = "ip:port"; "" = no doveadm listener
  uint16_t listen_port = 0;    ///< 0 = any free port (logged)
  std::string password;        ///< clients authenticate with it (Dovecot's doveadm_password)
  std::string backend_password;  ///< sent to the backends; "" = password
  uint16_t port = 2425;        ///< the backends' doveadm port (Dovecot's doveadm_port)
  /// A passdb `port` field wins over `port`, as in Dovecot's doveadm proxy.
  bool passdb_port = true;
  /// Backend connect limit and the longest silence of a backend or client.
  std::chrono::milliseconds timeout{30000};
  unsigned max_connections = 64;  ///< concurrent doveadm clients
  /// The backends' doveadm HTTP API port, for HTTP API commands
  /// (Service::http_command); the passdb `port` is never used for it.
  uint16_t http_port = 8080;
  std::string backend_api_key;  ///< the backends' doveadm_api_key; "" = no HTTP forwarding
  int line = 0;
};

/// [admin]: the control plane (docs/ADMIN.md). Both listeners are off by default.
struct Admin {
  std::string listen;       ///< "127.0.0.1:9143" / "[::1]:9143" (HTTP); empty = off; port 0 allowed
  uint16_t listen_port = 0;  ///< parsed from `listen`
  std::string listen_address;  ///< parsed from `listen`
  std::string api_key;      ///< required with `listen`; moved into a core::Secret by the admin server
  std::string cert;         ///< optional TLS for `listen` (with `key`)
  std::string key;
  std::string socket;       ///< unix socket for `portier ctl` (mode 0600); empty = off
  unsigned max_connections = 16;
  std::chrono::milliseconds timeout{10000};  ///< per request (read + answer)
  size_t max_request_size = 1024 * 1024;     ///< headers + body
};

/// The whole configuration.
struct Config {
  std::string path;  ///< the config file path as given to load_*
  Server server;
  std::vector<Listener> listeners;  ///< at least one
  Tls tls;
  Backend backend;
  std::vector<Passdb> passdbs;  ///< at least one
  Auth auth;
  Login login;
  Lmtp lmtp;
  Log log;
  Doveadm doveadm;
  Admin admin;
};

/// One configuration problem. line/column are 1-based; 0 when unknown
/// (e.g. the file could not be read).
struct Error {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  /// "file:line:col: message" (":line:col" omitted when line is 0).
  std::string to_string() const;
};

/// Result of loading: `config` is set only when `errors` is empty.
struct LoadResult {
  std::optional<Config> config;
  std::vector<Error> errors;
};

/// Reads and validates the TOML file at `path`. Protocol, mechanism and
/// [[passdb]] driver names are looked up in `registries` (the app passes
/// app::registries()).
LoadResult load_file(const std::string& path, const Registries& registries);

/// Validates TOML text. `path_for_errors_and_relative_paths` is used as the
/// file name in errors and its directory to resolve relative paths.
LoadResult load_string(std::string_view toml_text, const std::string& path_for_errors_and_relative_paths,
                       const Registries& registries);

/// Dovecot's names: "never" | "authenticated" | "unauthenticated".
std::optional<PassdbSkip> parse_passdb_skip(std::string_view text);
/// Dovecot's names: "return-ok" | "return-fail" | "return" | "continue" | "continue-ok" | "continue-fail".
std::optional<PassdbAction> parse_passdb_action(std::string_view text);

}  // namespace portier::config

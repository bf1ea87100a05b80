#pragma once
// The boundary between the protocol-independent login engine and the protocol
// plug-ins. A plug-in is sans-I/O: it gets bytes or lines and returns what the
// engine must do next; only the engine touches sockets, TLS and timers.
//
// Per client connection the engine creates one Frontend (pre-login server
// dialogue). When the client has given credentials and the passdb says
// `proxy`, the engine asks the Frontend for a BackendLogin (the proxy-client
// machine for one backend connection attempt; a fresh one per retry).
//
// Threading: every object here lives on the session's worker thread.

#include <asio/ip/address.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/secret.hpp"
#include "core/secure.hpp"
#include "login/failure.hpp"
#include "sasl/sasl.hpp"

namespace portier::login {

/// What the engine knows about the client connection. Owned by the session;
/// the Frontend holds a reference and may update it (a trusted client's ID or
/// XCLIENT can override addresses, session id and TTL).
struct ClientInfo {
  asio::ip::address remote_ip;
  uint16_t remote_port = 0;
  asio::ip::address local_ip;
  uint16_t local_port = 0;
  bool tls = false;            // TLS active on the client leg now
  bool tls_configured = false; // listener is tls=starttls and a cert is loaded
  bool trusted = false;        // remote_ip in login.trusted_networks
  bool end_client_tls = false; // the *end* client used TLS (inherited from a trusted hop)
  std::string session_id;
  unsigned proxy_ttl = 5;      // incoming TTL (default or from a trusted upstream)
  std::string local_name;      // TLS SNI name the client asked for (PROXY v2 AUTHORITY)
  bool cert_valid = false;     // the client presented a certificate we verified (%{cert})
  std::string cert_user;       // its user name (cert_username_field); "" = none: no EXTERNAL
  bool health_check = false;   // a load balancer's own connection (PROXY v2 LOCAL)

  /// Dovecot's "secured": TLS active, or local connection (remote == local IP),
  /// or a trusted network.
  bool secured() const { return tls || trusted || (remote_ip == local_ip); }
  /// STARTTLS may be offered.
  bool starttls_available() const { return tls_configured && !tls; }
};

/// Settings a Frontend needs, taken from the config snapshot at accept time.
struct FrontendSettings {
  std::string hostname;
  std::string greeting;
  bool allow_cleartext = false;
  std::vector<std::string> mechanisms;  // upper-case SASL names, e.g. PLAIN, LOGIN
  size_t max_line_length = 8192;
  size_t max_literal_size = 65536;
  size_t max_command_size = 16384;  // all bytes of one command, literals included
  unsigned max_invalid_commands = 3;
};

/// What the Frontend wants the engine to do next.
enum class FrontendEvent {
  NeedInput,     // flush output(), then read more client bytes and feed() them
  StartTls,      // flush output(), TLS handshake on the client leg, then tls_started()
  Authenticate,  // flush output(), then verify take_credentials() and proxy
  Close,         // flush output(), then close the connection
};

/// Local (engine-side) authentication failures the Frontend renders.
enum class AuthFailure {
  Failed,          // wrong password or unknown user
  TempFail,        // passdb unavailable, bad proxy fields
  Disabled,        // nologin without referral
  CleartextDenied, // cleartext mechanism on an insecure connection
  Limit,           // too many concurrent sessions for this user
};

/// A login referral (RFC 2221; Dovecot's passdb `host` without `proxy`):
/// the client is told where to log in instead.
struct Referral {
  std::string user;    // destuser, or the login user
  std::string host;    // a host name or IP (checked: no characters that break the reply)
  uint16_t port = 0;   // `port`, or the protocol's default
  std::string mech;    // the client's SASL mechanism (IMAP's `;AUTH=`)
  bool nologin = true; // refused; otherwise "logged in, but use that server" and closed
  std::string reason;  // the passdb's `reason`, or Dovecot's default text
};

/// Everything a BackendLogin needs for one backend connection. Move-only
/// (the password is a core::Secret); the engine keeps one per login and lends
/// it to each attempt's BackendLogin, which copies the password into its own
/// Secret.
struct BackendLoginParams {
  std::string user;       // destuser (or the login user)
  core::Secret password;  // pass (or the client's password)
  std::string master;     // master user: SASL authid, forces AUTHENTICATE PLAIN
  std::string mech;       // proxy_mech, upper-case; empty = protocol default
  bool starttls = false;  // upgrade the backend leg with the protocol's STARTTLS
  bool tls = false;       // any TLS on the backend leg (ssl or starttls)
  bool nopipelining = false;
  bool not_trusted = false;  // never send ID / XCLIENT
  bool noauth = false;       // Submission proxy_noauth: XCLIENT LOGIN=, no AUTH
  std::vector<std::pair<std::string, std::string>> forward;  // forward_<k>=<v>, k without prefix
  std::string hostname;   // our own host name (EHLO)
  std::string host;       // the passdb's backend `host` (OAUTHBEARER's host pair)
  uint16_t port = 0;      // the backend port (OAUTHBEARER's port pair)
  const ClientInfo* client = nullptr;  // addresses, session id, TTL, transport
};

/// What the BackendLogin wants after a line or a TLS handshake.
enum class BackendEvent {
  Continue,  // flush output(); read the next backend line
  StartTls,  // flush output(); TLS handshake on the backend leg, then on_tls_ready()
  Success,   // flush output(); send client_reply() to the client; start relaying
  Failure,   // see failure(); engine decides retry or final reply
};

/// The proxy-client machine for one backend connection attempt.
class BackendLogin {
 public:
  virtual ~BackendLogin() = default;
  /// One backend line, without CR LF (at most 4096 bytes; the engine enforces it).
  virtual BackendEvent on_line(std::string_view line) = 0;
  /// The TLS handshake requested with StartTls has completed.
  virtual BackendEvent on_tls_ready() = 0;
  /// Bytes to write to the backend before acting on the last event. They may
  /// hold the password (`L LOGIN "u" "p"`, `PASS p`, SASL payloads): after
  /// writing them the engine calls wipe_output(), never output().clear().
  std::string& output() { return output_; }
  /// Zero and clear output() (the buffer is kept for the next command).
  void wipe_output() { core::secure_zero(output_); }
  /// After Success: the complete reply for the client (CRLF-terminated lines).
  const std::string& client_reply() const { return client_reply_; }
  /// After Failure.
  const ProxyFailure& failure() const { return failure_; }
  /// The proxy state for log lines, e.g. `id+login/banner` or `login1`.
  virtual std::string state() const = 0;

 protected:
  std::string output_;
  std::string client_reply_;
  ProxyFailure failure_;
};

/// The pre-login server dialogue with one client.
class Frontend {
 public:
  virtual ~Frontend() = default;
  /// Queue the greeting (called once, after any implicit TLS handshake).
  virtual void start() = 0;
  /// Client bytes as read from the socket (decrypted).
  virtual void feed(std::string_view data) = 0;
  /// Parse buffered input and return the next thing to do; may queue output.
  virtual FrontendEvent next() = 0;
  /// Bytes for the client; the engine writes and clears it.
  std::string& output() { return output_; }
  /// The TLS handshake after StartTls completed (ClientInfo::tls is already true).
  virtual void tls_started() = 0;
  /// After Authenticate: the credentials the client gave (moved out).
  virtual sasl::Credentials take_credentials() = 0;
  /// The local passdb refused the login; render the reply. `reason` may be
  /// empty. A non-empty `sasl_challenge` (base64; an OAuth mechanism's
  /// failure JSON) goes out first as a SASL continuation; the reply follows
  /// the client's answer to it (any line).
  virtual void auth_failed(AuthFailure kind, std::string_view reason,
                           std::string_view sasl_challenge = {}) = 0;
  /// A failure challenge (auth_failed, ProxyFailure::sasl_challenge) waits
  /// for the client's answer: next() reads it, then queues the reply.
  virtual bool failure_answer_pending() const { return false; }
  /// The passdb referred the client elsewhere; render the protocol's
  /// referral reply (and close, for a referral without `nologin` where the
  /// protocol has an OK form).
  virtual void referred(const Referral& r) = 0;
  /// A BackendLogin for the current login attempt.
  virtual std::unique_ptr<BackendLogin> make_backend_login(const BackendLoginParams& p) = 0;
  /// The backend login finally failed: render the client reply for `f`
  /// (uses f.client_reply where the machine already rendered one); with
  /// f.sasl_challenge that challenge first, as auth_failed() does.
  virtual void proxy_failed(const ProxyFailure& f) = 0;
  /// The pre-login timeout fired; queue the protocol's goodbye (e.g. `* BYE Timeout...`).
  virtual void timed_out() = 0;
  /// Client bytes received after the login command (pipelined); moved out at relay start.
  virtual std::string take_pending_input() = 0;
  /// The engine is closing the connection for `reason` (limits, shutdown):
  /// queue the protocol's last words (IMAP `* BYE <reason>`, POP3 `-ERR`,
  /// SMTP `421 4.7.0`, ManageSieve `BYE "<reason>"`). `reason` has no CR/LF.
  virtual void goodbye(std::string_view reason) { (void)reason; }
  /// Why the frontend asked to Close, for the engine's `Disconnected: <reason>`
  /// log line (e.g. "Too many invalid IMAP commands"); empty for a client logout.
  std::string_view close_reason() const { return close_reason_; }
  /// A remark for the engine's log (e.g. an upstream value that was ignored),
  /// moved out; empty when there is none. The engine sanitizes it.
  std::string take_log_note() { return std::exchange(log_note_, {}); }

 protected:
  /// Record a close reason from a protocol reply text: CR/LF and one trailing
  /// '.' are dropped.
  void set_close_reason(std::string_view text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
    if (!text.empty() && text.back() == '.') text.remove_suffix(1);
    close_reason_.assign(text);
  }
  std::string output_;
  std::string close_reason_;
  std::string log_note_;
};

/// A protocol plug-in: one entry per protocol in the registry.
struct Protocol {
  std::string_view name;     // config name: "imap"
  std::string_view service;  // log prefix: "imap-login"
  uint16_t default_port = 0;
  uint16_t default_tls_port = 0;
  std::unique_ptr<Frontend> (*make_frontend)(const FrontendSettings&, ClientInfo&) = nullptr;
};

}  // namespace portier::login

#pragma once
// Backend login failures as data: one closed enum decides retry, log prefix and
// (in exactly one switch per protocol) the reply the client gets.
// Mapping: ../shared/spec/dovecot-proxy-reference.md §2.4 and §8.

#include <array>
#include <string>
#include <string_view>

namespace portier::login {

enum class FailureType {
  Connect,         // connect() failed, timed out, backend disconnected mid-login
  Internal,        // local bug, TLS/SASL init failure
  InternalConfig,  // local misconfiguration (bad certificate, bad mechanism)
  Remote,          // backend command failed unexpectedly (STARTTLS refused...)
  RemoteConfig,    // backend set up wrong (no STARTTLS, LOGINDISABLED, SERVERBUG, TTL)
  Protocol,        // backend broke the protocol (bad banner, too long line)
  AuthReplied,     // backend rejected credentials; client reply already rendered
  AuthNotReplied,  // our SASL client gave up; nothing sent yet
  AuthTempfail,    // backend temporary auth failure (retried)
  AuthRedirect,    // backend referral: followed to an IP (BackendDriver), else a failure
  LimitReached,    // backend connection limit; client reply already rendered
  kCount,
};

inline constexpr std::array<std::string_view, static_cast<size_t>(FailureType::kCount)>
    kFailureTypeNames = {"connect",      "internal",         "internal-config", "remote",
                         "remote-config", "protocol",        "auth-replied",    "auth-not-replied",
                         "auth-tempfail", "auth-redirect",   "limit-reached"};
static_assert(kFailureTypeNames.size() == static_cast<size_t>(FailureType::kCount));

constexpr std::string_view failure_type_name(FailureType t) {
  return kFailureTypeNames[static_cast<size_t>(t)];
}

/// Whether a failure of this type may be retried on a new backend connection (§2.4).
constexpr bool failure_retryable(FailureType t) {
  switch (t) {
    case FailureType::Connect:
    case FailureType::Remote:
    case FailureType::Protocol:
    case FailureType::AuthTempfail:
      return true;
    default:
      return false;
  }
}

/// Prefix Dovecot puts before the reason in the final error log line.
constexpr std::string_view failure_log_prefix(FailureType t) {
  switch (t) {
    case FailureType::Internal:
      return "Aborting due to internal error: ";
    case FailureType::Remote:
    case FailureType::RemoteConfig:
      return "Aborting due to remote server: ";
    case FailureType::Protocol:
      return "Remote server sent invalid input: ";
    default:
      return "";
  }
}

/// Whether the failure is an authentication result (logged as `Login failed: ...` at info).
constexpr bool failure_is_auth(FailureType t) {
  return t == FailureType::AuthReplied || t == FailureType::AuthNotReplied ||
         t == FailureType::AuthTempfail || t == FailureType::LimitReached;
}

/// The backend refused the forwarded credentials: a failed login (delay,
/// per-IP penalty, max_auth_attempts), like a local password mismatch.
constexpr bool failure_is_refusal(FailureType t) {
  return t == FailureType::AuthReplied || t == FailureType::AuthNotReplied;
}

/// Code used in `Login aborted`/finished events: proxy_dest_<...>.
constexpr std::string_view failure_dest_code(FailureType t) {
  switch (t) {
    case FailureType::Connect:
      return "proxy_dest_connect_failed";
    case FailureType::Internal:
    case FailureType::InternalConfig:
      return "proxy_dest_internal_failure";
    case FailureType::Remote:
    case FailureType::RemoteConfig:
    case FailureType::AuthRedirect:
      return "proxy_dest_remote_failure";
    case FailureType::Protocol:
      return "proxy_dest_protocol_failure";
    case FailureType::AuthReplied:
    case FailureType::AuthNotReplied:
      return "proxy_dest_auth_failed";
    case FailureType::AuthTempfail:
      return "proxy_dest_auth_temp_failed";
    case FailureType::LimitReached:
      return "proxy_dest_connection_limit";
    case FailureType::kCount:
      break;
  }
  return "proxy_dest_internal_failure";
}

/// One backend login failure.
struct ProxyFailure {
  ProxyFailure() = default;
  ProxyFailure(FailureType t, std::string why, std::string reply = {})
      : type(t), reason(std::move(why)), client_reply(std::move(reply)) {}

  FailureType type = FailureType::Internal;
  /// Human-readable reason for the log (never contains secrets).
  std::string reason;
  /// For AuthReplied / AuthTempfail / LimitReached: the complete client reply
  /// (with CRLF) that the protocol machine rendered from the backend's answer.
  std::string client_reply;
  /// AuthRedirect: the referral's `[user@]host[:port]` as the backend sent it.
  std::string redirect;
  /// AuthReplied after an OAuth mechanism (OAUTHBEARER, XOAUTH2): the
  /// backend's failure challenge (base64 JSON, as sent). The frontend relays it
  /// to the client as its own SASL continuation, reads the client's answer,
  /// then sends client_reply. Empty = no challenge to relay.
  std::string sasl_challenge;
};

}  // namespace portier::login

#pragma once
// Typed LMTP session events, as login/events.hpp is for logins: the session
// reports what it counts as one of these, and EventSink::emit() renders the
// event's log line (docs/LMTP.md "Log lines") and feeds this thread's
// login::Counters (docs/METRICS.md, portier_lmtp_*) from the same call.
// Diagnostics that count nothing (a backend's invalid reply line, a refused
// XCLIENT, why a connect failed) are plain log lines of the session.
//
// Owns: the LMTP event vocabulary and its rendering. Uses: log, login counters.
// Threading: the sink counts into the calling thread's counters (the worker
// that runs the session).

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "login/counters.hpp"

namespace portier::lmtp::events {

/// A client connected.
struct Connected {
  std::string_view rip;
};
/// The client connection ended.
struct Disconnected {
  std::string_view rip;
  std::string_view reason;
};
/// A recipient refused at RCPT time: by portier (`why` says what decided,
/// `detail` is the log text, empty = no line) or by its backend
/// (why = Backend, the backend's reply went to the client).
struct RcptRefused {
  std::string_view addr;
  login::DeliveryReason why = login::DeliveryReason::Backend;
  int code = 0;                // the reply code the client got (4xx, 5xx)
  std::string_view detail;     // "user doesn't exist", "Proxy failed (connect)", …
  std::string_view dest;       // "ip:port" when a backend was involved
};
/// A backend connection was opened for a transaction (connected, greeted,
/// LHLO/EHLO, STARTTLS, XCLIENT done) or failed to be.
struct BackendOpened {
  std::string_view dest;
  bool ok = false;
};
/// One accepted recipient's final reply after the message's final dot.
struct RcptDone {
  std::string_view addr;
  std::string_view dest;
  std::string_view backend_reply;  // the backend's reply, or portier's when it failed
  int code = 0;                    // the reply code the client got
  login::DeliveryReason why = login::DeliveryReason::Backend;
  size_t index = 0, total = 0;     // 1-based position among the transaction's recipients
  long long ms = 0;                // since DATA
};
/// A message received whole and answered for every recipient.
struct MessageDone {
  uint64_t bytes = 0;  // as received: dot-stuffed, the final dot line included
  size_t recipients = 0;
  std::chrono::microseconds took{0};  // DATA command -> the replies sent
};

using Event = std::variant<Connected, Disconnected, RcptRefused, BackendOpened, RcptDone, MessageDone>;

/// 2xx delivered, 4xx tempfail, anything else permfail.
login::DeliveryResult result_of(int code);

/// Renders and counts one session's events (`sid` outlives the sink's use).
class EventSink {
 public:
  explicit EventSink(const std::string& sid) : sid_(sid) {}
  void emit(const Event& ev) const;

 private:
  const std::string& sid_;
};

}  // namespace portier::lmtp::events

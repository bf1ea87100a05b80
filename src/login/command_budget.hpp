#pragma once
// One byte budget per pre-login command (issue 8): every byte of a client
// command - its line bytes and the bytes of its literals - is charged against
// `login.max_command_size` BEFORE it is buffered, so one open command can
// never hold more than that, whatever it announces. A literal announcement
// is checked with fits() before a single byte of it is read.
//
// The one place this rule lives; the IMAP and ManageSieve parsers charge
// every byte they consume, the line-based protocols (POP3, Submission) cap
// their line with line_limit().
//
// Threading: one per parser (per connection); not thread-safe.

#include <algorithm>
#include <cstddef>

#include "login/protocol.hpp"

namespace portier::login {

class CommandBudget {
 public:
  explicit CommandBudget(size_t limit) : limit_(limit) {}

  /// Whether `n` more bytes fit in what is left of the budget.
  bool fits(size_t n) const { return n <= limit_ - used_; }
  /// Charges `n` bytes; false (and nothing charged) when they do not fit.
  bool take(size_t n) {
    if (!fits(n)) return false;
    used_ += n;
    return true;
  }
  /// Undoes a take() of `n` bytes (a byte handed back to the input).
  void give_back(size_t n) { used_ -= std::min(n, used_); }
  /// A new command starts.
  void reset() { used_ = 0; }
  /// A command whose kind allows a different size (a SASL message): what
  /// it used so far stays charged.
  void set_limit(size_t limit) { limit_ = limit; }

  size_t used() const { return used_; }
  size_t limit() const { return limit_; }

 private:
  size_t limit_;
  size_t used_ = 0;
};

/// The longest line a line-based frontend may buffer: a line is a whole
/// command, so the command budget caps it too.
inline size_t line_limit(const FrontendSettings& s) {
  return std::min(s.max_line_length, s.max_command_size);
}

/// The longest SASL message (decoded) a client may send: 64 KiB, room for an
/// OAuth bearer token (Dovecot's SASL maximum).
inline constexpr size_t kMaxSaslMessage = 65536;
/// The one larger limit, for a line (or string) that carries one SASL
/// message in base64: the response to a challenge, or the AUTHENTICATE /
/// AUTH command with an initial response (room for tag, verb, mechanism,
/// quotes). Every other command keeps line_limit().
inline size_t sasl_line_limit(const FrontendSettings& s) {
  constexpr size_t kSaslLine = 4 * ((kMaxSaslMessage + 2) / 3) + 256;
  return std::max(line_limit(s), kSaslLine);
}

}  // namespace portier::login

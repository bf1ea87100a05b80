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

}  // namespace portier::login

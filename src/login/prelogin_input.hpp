#pragma once
// The pre-login input buffer of one client connection, shared by every
// protocol's Frontend: client bytes are appended as read, parsers consume
// them from the front, and every byte that leaves the buffer (consumed,
// compacted, moved by a reallocation, dropped at STARTTLS or close) is zeroed
// first - the buffer holds passwords and SASL payloads.
//
// Owns: the buffer and a scratch line (take_line), both wiped on reuse and
// destruction. Uses: core/secure. Threading: the session's worker only.

#include <cstddef>
#include <string>
#include <string_view>

#include "core/secure.hpp"

namespace portier::login {

class PreloginInput {
 public:
  PreloginInput() = default;
  PreloginInput(const PreloginInput&) = delete;
  PreloginInput& operator=(const PreloginInput&) = delete;
  ~PreloginInput();

  /// Client bytes as read (a reallocation wipes the old buffer).
  void append(std::string_view data);
  /// What is buffered and not yet consumed.
  std::string_view avail() const { return std::string_view(buf_).substr(pos_); }
  /// `n` bytes of avail() were parsed; compacts (wiping) now and then.
  void consume(size_t n);
  /// Zero and drop everything (STARTTLS, TLS started, close, destruction).
  void wipe();
  /// After a login command: the unparsed rest (pipelined commands for the
  /// backend), moved out; the buffer is wiped.
  std::string take_rest();

  enum class Line { NeedMore, TooLong, Ready };
  /// One CRLF/LF-terminated line for the line-based dialogues (POP3,
  /// Submission, SASL responses). Ready: line() holds it without CR LF and it
  /// is consumed. TooLong: the line is longer than `limit` bytes - the LF
  /// counts when `lf_counts` - or no LF came within `limit` bytes.
  Line take_line(size_t limit, bool lf_counts = false);
  /// The last line take_line() returned; wiped by the next take_line()/wipe().
  std::string_view line() const { return line_; }
  /// Wipe line() now.
  void forget_line() { core::secure_zero(line_); }

 private:
  std::string buf_;
  size_t pos_ = 0;
  std::string line_;
};

/// Zeros every byte `s` owns (its whole capacity) and clears it.
void wipe_capacity(std::string& s) noexcept;

}  // namespace portier::login

#pragma once
// The doveadm server protocol (Dovecot's TCP doveadm protocol, 1.0 and 1.1+),
// sans-I/O: what the doveadm proxy (service.hpp) reads and writes, with no
// sockets. Wire facts (checked against Dovecot 2.3.19's doveadm CLI and
// doveadm server, docs/DOVEADM.md):
//   C: VERSION\tdoveadm-server\t1\t<minor>
//   S: VERSION\tdoveadm-client\t1\t<minor>   (only when the client's minor >= 1)
//   S: -                                      (authentication required)
//   C: PLAIN\t<base64(\0doveadm\0<password>)>
//   S: + | -                                  ("-": refused, connection closed)
//   C: <flags>\t<user>\t<command name>[\t<arg>...]   (tab-escaped fields)
//   S: <output>\n<status>\n   status "+", "-", "-NOUSER", "-<code>" ...
// With minor >= 1 the server's replies to commands are framed by Dovecot's
// multiplex stream: packets of <channel byte><32-bit big-endian length><data>,
// channel 0 the reply, channel 'L' forwarded log lines (<log type + 1><text>).
// The output's values are tab-escaped, so the first raw LF of channel 0 ends
// the output and the next line is the status.
//
// Owns: parsing of the client's handshake, authentication and command lines;
// the backend's handshake lines; the reply scanner; portier's own error replies.
// May use: core (base64, tab escaping, secrets).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/secret.hpp"

namespace portier::doveadm {

/// The longest line portier reads from a client or a backend handshake.
inline constexpr size_t kMaxLine = 64 * 1024;
/// The highest protocol minor portier speaks (1 = multiplexed logs; 2 would
/// add STARTTLS, which portier does not offer on this listener).
inline constexpr unsigned kMaxMinor = 1;
/// Log channel id of the multiplex stream.
inline constexpr char kLogChannel = 'L';

/// The minor version of a client's "VERSION\tdoveadm-server\t1\t<minor>"
/// line; nullopt when the line is not that (wrong service or major).
std::optional<unsigned> parse_version(std::string_view line);
/// What the server sends after the client's VERSION line, `minor` being the
/// one agreed: the VERSION line (minor >= 1) and "-" (authenticate first).
std::string server_greeting(unsigned minor);
/// The client's VERSION line towards a backend.
std::string client_version(unsigned minor);

/// True when `line` is "PLAIN\t<base64(\0doveadm\0<password>)>": Dovecot's
/// rule (no authzid, authcid "doveadm"); the password compared in constant time.
bool check_plain(std::string_view line, std::string_view password);
/// "PLAIN\t<base64(\0doveadm\0password)>\n" (a Secret: it holds the password).
core::Secret plain_line(std::string_view password);

/// One command line, split.
struct Command {
  std::string flags;    ///< "", "v", "D" ...
  std::string user;     ///< tab-unescaped; "" = a command without a user
  std::string name;     ///< e.g. "mailbox list"
  std::vector<std::string> args;  ///< tab-unescaped
};
/// Splits a command line (without its LF); nullopt when it has fewer than
/// three fields.
std::optional<Command> parse_command(std::string_view line);
/// The command line again, with `user` as its user field (LF-terminated).
std::string render_command(const Command& c, std::string_view user);

/// Dovecot's tab unescaping (\001 0/1/t/r/n).
std::string tab_unescape(std::string_view s);

/// Finds the end of one command's reply in the backend's byte stream, fed
/// as it arrives. Multiplexed (minor >= 1): packets are passed whole; the
/// reply ends with the packet holding the status line's LF.
class ReplyScanner {
 public:
  explicit ReplyScanner(bool multiplex) : multiplex_(multiplex) {}
  /// Scans `data`; returns how many bytes of it belong to the reply (all of
  /// them until done() turns true). A malformed frame sets failed().
  size_t feed(std::string_view data);
  bool done() const { return state_ == State::Done; }
  bool failed() const { return failed_; }
  /// portier may still end the reply itself (error_reply) after what was
  /// passed on: between packets, and before the status line started.
  bool can_append() const { return state_ == State::Output && header_have_ == 0; }
  /// The status line ("+", "-NOUSER" ...), valid when done().
  const std::string& status() const { return status_; }

 private:
  enum class State { Output, Status, Done };
  void scan_payload(std::string_view d);
  bool multiplex_;
  State state_ = State::Output;
  bool failed_ = false;
  std::string status_;
  // multiplex framing
  unsigned char header_[5]{};
  size_t header_have_ = 0;
  uint32_t payload_left_ = 0;
  bool payload_main_ = false;
};

/// portier's own failure reply to a command: with multiplexing, `log_text`
/// as an error log line (the CLI prints it), then "\n-<code>\n" (`code` ""
/// gives the bare "-").
std::string error_reply(bool multiplex, std::string_view log_text, std::string_view code);

/// The exit code the doveadm CLI derives from a status line ("+" = 0,
/// "-NOUSER" = 67, ...) — for logs and the HTTP side.
int exit_code(std::string_view status);

}  // namespace portier::doveadm

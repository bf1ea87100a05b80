#pragma once
// The IMAP proxy state (§7.1): the set of commands sent to the backend and not
// yet answered, plus the last reply kind received. Renders e.g.
// `id+login/banner`, `capability+login/banner`, `/none`.
// These names are a log format operators grep for: keep them stable.

#include <array>
#include <string_view>

#include "login/proxy_state.hpp"

namespace portier::protocols::imap {

struct ProxyStateTraits {
  /// Bit order = render order (Dovecot's imap_proxy_sent_state).
  enum class Sent { Id, Starttls, Capability, Authenticate, AuthContinue, Login, kCount };
  enum class Received { None, Banner, Id, Starttls, Capability, AuthContinue, Login, kCount };

  static constexpr std::array<std::string_view, 6> kSentNames{
      "id", "starttls", "capability", "authenticate", "auth-continue", "login"};
  static constexpr std::array<std::string_view, 7> kReceivedNames{
      "none", "banner", "id", "starttls", "capability", "auth-continue", "login"};
};

using ProxyState = login::SentReceivedState<ProxyStateTraits>;
using Sent = ProxyStateTraits::Sent;
using Received = ProxyStateTraits::Received;

}  // namespace portier::protocols::imap

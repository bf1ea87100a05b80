#pragma once
// The Submission proxy state (§5.3, §7.3): one value naming the command sent
// last and still waiting for its reply (`banner` = nothing received yet).
// These names are a log format operators grep for: keep them stable.

#include <array>
#include <string_view>

#include "login/proxy_state.hpp"

namespace portier::protocols::submission {

struct ProxyStateTraits {
  enum class State { Banner, Ehlo, Starttls, TlsEhlo, Xclient, XclientEhlo, Authenticate, kCount };
  static constexpr std::array<std::string_view, 7> kNames{
      "banner", "ehlo", "starttls", "tls-ehlo", "xclient", "xclient-ehlo", "authenticate"};
};

using ProxyState = login::SingleState<ProxyStateTraits>;
using State = ProxyStateTraits::State;

}  // namespace portier::protocols::submission

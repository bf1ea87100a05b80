#pragma once
// The POP3 proxy state (§4.1, §7.3): one value naming the command sent last
// and still waiting for its reply (`banner` = nothing received yet).
// These names are a log format operators grep for: keep them stable.

#include <array>
#include <string_view>

#include "login/proxy_state.hpp"

namespace portier::protocols::pop3 {

struct ProxyStateTraits {
  enum class State { Banner, Starttls, Xclient, Login1, Login2, kCount };
  static constexpr std::array<std::string_view, 5> kNames{"banner", "starttls", "xclient",
                                                          "login1", "login2"};
};

using ProxyState = login::SingleState<ProxyStateTraits>;
using State = ProxyStateTraits::State;

}  // namespace portier::protocols::pop3

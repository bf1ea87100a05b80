#pragma once
// The ManageSieve proxy state (§6.1, §7.3): one value, the command sent last
// and still waiting for its reply. `none` = the greeting is being read.
// These names are a log format operators grep for: keep them stable.

#include <array>
#include <string_view>

#include "login/proxy_state.hpp"

namespace portier::protocols::managesieve {

struct ProxyStateTraits {
  enum class State { None, TlsStart, TlsReady, Xclient, Auth, kCount };
  static constexpr std::array<std::string_view, 5> kNames{"none", "tls-start", "tls-ready",
                                                          "xclient", "auth"};
};

using ProxyState = login::SingleState<ProxyStateTraits>;
using State = ProxyStateTraits::State;

}  // namespace portier::protocols::managesieve

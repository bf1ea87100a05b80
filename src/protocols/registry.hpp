#pragma once
// The protocol registry: the one list that names every protocol plug-in.
// Adding a protocol = its own folder + one line in registry.cpp.

#include <span>
#include <string_view>

#include "login/protocol.hpp"

namespace portier::protocols {

/// All compiled-in protocols.
std::span<const login::Protocol* const> all();
/// The protocol with this config name, or nullptr.
const login::Protocol* find(std::string_view name);

}  // namespace portier::protocols

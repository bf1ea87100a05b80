#pragma once
// Small string helpers shared by all modules.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portier::core {

/// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b) noexcept;

/// ASCII case-insensitive prefix test.
bool istarts_with(std::string_view s, std::string_view prefix) noexcept;

/// Returns `s` converted to ASCII lower / upper case.
std::string to_lower(std::string_view s);
std::string to_upper(std::string_view s);

/// Splits on runs of ASCII whitespace (space, tab, CR, LF, VT, FF); no empty
/// tokens are produced. The views point into `s`.
std::vector<std::string_view> split_ws(std::string_view s);

/// Strips leading and trailing ASCII whitespace.
std::string_view trim(std::string_view s) noexcept;

/// Parses an unsigned decimal integer (digits only, no sign, no spaces) that
/// fits in uint64_t.
std::optional<unsigned long long> parse_uint(std::string_view s) noexcept;

/// Parses a duration: a non-negative integer followed by an optional unit
/// (optionally separated by whitespace), case-insensitive:
///   ms, msec, msecs, millisecond(s)  -> milliseconds
///   s, sec, secs, second(s)          -> seconds
///   m, min, mins, minute(s)          -> minutes
///   h, hour(s)                       -> hours
/// A bare number means SECONDS (Dovecot proxy_timeout semantics).
/// Fractions ("1.5s"), negative numbers, empty input and overflow are
/// rejected (std::nullopt).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) noexcept;

}  // namespace portier::core

#pragma once
// A passdb lookup reply: the user name and its extra fields.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portier::passdb {

/// What a passdb returned for a user.
struct Reply {
  std::string user;  ///< the user name as found in the passdb
  /// Extra fields in order; each key appears at most once. A bare key
  /// (e.g. "nopassword") has the value "".
  std::vector<std::pair<std::string, std::string>> fields;

  /// True when `key` is present (with any value, including "").
  bool has(std::string_view key) const;
  /// The value of `key`, or std::nullopt when absent.
  std::optional<std::string_view> get(std::string_view key) const;
  /// Sets `key` to `value`: replaces the value in place when present,
  /// otherwise appends.
  void set(std::string_view key, std::string_view value);
};

/// Parses space-separated extra fields ("k=v k2 k3=v=3") into (key, value)
/// pairs in order. A bare key gets value "". Tokens with an empty key
/// ("=v") are skipped.
std::vector<std::pair<std::string, std::string>> parse_extra_fields(std::string_view text);


}  // namespace portier::passdb

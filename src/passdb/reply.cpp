#include "passdb/reply.hpp"

#include "core/strings.hpp"

namespace portier::passdb {

bool Reply::has(std::string_view key) const { return get(key).has_value(); }

std::optional<std::string_view> Reply::get(std::string_view key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return std::string_view(v);
  return std::nullopt;
}

void Reply::set(std::string_view key, std::string_view value) {
  for (auto& [k, v] : fields) {
    if (k == key) {
      v.assign(value);
      return;
    }
  }
  fields.emplace_back(std::string(key), std::string(value));
}

std::vector<std::pair<std::string, std::string>> parse_extra_fields(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  for (std::string_view tok : core::split_ws(text)) {
    auto eq = tok.find('=');
    std::string_view k = tok.substr(0, eq);
    std::string_view v = eq == std::string_view::npos ? std::string_view() : tok.substr(eq + 1);
    if (k.empty()) continue;
    out.emplace_back(std::string(k), std::string(v));
  }
  return out;
}

}  // namespace portier::passdb

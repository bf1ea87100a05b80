#pragma once
// The `fields = { name = "value" }` table of a driver's [[passdb]] entry,
// each entry parsed by the driver's own field parser (ldap's attribute
// mappings, oauth2's claim templates), errors reported at the key.
// May use: config, core.

#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/result.hpp"

namespace portier::passdb {

/// Appends the parsed `fields` entries to `out` (absent key: nothing).
/// False when the table or an entry was invalid (already reported).
template <typename Field, typename Parse>
bool parse_field_table(config::PassdbSection& section, Parse parse, std::vector<Field>& out) {
  if (!section.has("fields")) return true;
  auto table = section.string_table("fields");
  if (!table) return false;
  bool ok = true;
  for (const auto& entry : *table) {
    core::Result<Field> f = parse(entry.first, entry.second);
    if (!f) {
      section.error("fields", "passdb.fields: " + f.error().message);
      ok = false;
      continue;
    }
    out.push_back(std::move(*f));
  }
  return ok;
}

}  // namespace portier::passdb

#include "net/preface.hpp"

namespace portier::net {

namespace {
struct Entry {
  std::string_view name;
  std::unique_ptr<Preface> (*make)(PrefaceSettings);
};
// The one list of prefaces.
constexpr Entry kPrefaces[] = {
    {"haproxy", &make_haproxy_preface},
};
}  // namespace

std::unique_ptr<Preface> make_preface(std::string_view name, PrefaceSettings settings) {
  for (const auto& e : kPrefaces)
    if (e.name == name) return e.make(std::move(settings));
  return nullptr;
}

}  // namespace portier::net

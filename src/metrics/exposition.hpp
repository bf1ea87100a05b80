#pragma once
// Prometheus text exposition format 0.0.4 (what Prometheus and promtool read):
// `# HELP` / `# TYPE` once per family, then its samples, label values escaped
// (backslash, double quote, newline), histograms as cumulative `_bucket{le=…}`
// series plus `_sum` and `_count`. Sans-I/O: appends to a string.
//
// Owns: nothing but the text being built. Uses: nothing.

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace portier::metrics {

/// The HTTP Content-Type of the exposition.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

using Label = std::pair<std::string_view, std::string_view>;
using Labels = std::initializer_list<Label>;

/// A label value escaped for the exposition: `\` → `\\`, `"` → `\"`, newline → `\n`.
std::string escape_label_value(std::string_view v);
/// HELP text escaped: `\` → `\\`, newline → `\n`.
std::string escape_help(std::string_view v);
/// A sample value: integers exactly, others in the shortest round-trip form.
std::string format_value(double v);

class Writer {
 public:
  /// Start a family: `type` is "counter", "gauge" or "histogram".
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, Labels labels, double value);
  /// One histogram series: `buckets[i]` counts observations in (bounds[i-1],
  /// bounds[i]] (not cumulative); buckets has bounds.size() + 1 entries, the
  /// last one past every bound (+Inf).
  void histogram(std::string_view name, Labels labels,
                 std::span<const double> bounds, std::span<const uint64_t> buckets, double sum);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void series(std::string_view name, Labels labels, std::string_view extra_name = {},
              std::string_view extra_value = {});
  std::string out_;
};

}  // namespace portier::metrics

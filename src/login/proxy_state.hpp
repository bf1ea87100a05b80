#pragma once
// The proxy state as data (../shared/spec/seed-login-proxy-states.txt).
//
// A protocol describes its state with a traits type:
//   struct Traits {
//     enum class Sent { A, B, kCount };        // bit order = render order
//     enum class Received { None, X, kCount };
//     static constexpr std::array<std::string_view, N> kSentNames{...};
//     static constexpr std::array<std::string_view, M> kReceivedNames{...};
//   };
// `SentReceivedState<Traits>` renders `sent1+sent2/received` (IMAP style);
// `SingleState<Names>` renders one current name (POP3, Submission, ManageSieve).
// Name tables are checked against the enums at compile time.

#include <array>
#include <bitset>
#include <cstddef>
#include <string>
#include <string_view>

namespace portier::login {

template <typename Traits>
class SentReceivedState {
 public:
  using Sent = typename Traits::Sent;
  using Received = typename Traits::Received;
  static constexpr size_t kSentCount = static_cast<size_t>(Sent::kCount);
  static constexpr size_t kReceivedCount = static_cast<size_t>(Received::kCount);
  static_assert(Traits::kSentNames.size() == kSentCount, "sent name table out of sync");
  static_assert(Traits::kReceivedNames.size() == kReceivedCount,
                "received name table out of sync");

  void set_sent(Sent s) { sent_.set(static_cast<size_t>(s)); }
  void clear_sent(Sent s) { sent_.reset(static_cast<size_t>(s)); }
  bool is_sent(Sent s) const { return sent_.test(static_cast<size_t>(s)); }
  void set_received(Received r) { received_ = r; }
  Received received() const { return received_; }
  void reset() {
    sent_.reset();
    received_ = Received{};
  }

  /// `capability+login/banner`; `/none` when nothing is outstanding.
  std::string render() const {
    std::string out;
    for (size_t i = 0; i < kSentCount; ++i) {
      if (!sent_.test(i)) continue;
      if (!out.empty()) out += '+';
      out += Traits::kSentNames[i];
    }
    out += '/';
    out += Traits::kReceivedNames[static_cast<size_t>(received_)];
    return out;
  }

 private:
  std::bitset<kSentCount> sent_;
  Received received_{};
};

/// A single-valued state (POP3, Submission, ManageSieve).
template <typename Traits>
class SingleState {
 public:
  using State = typename Traits::State;
  static_assert(Traits::kNames.size() == static_cast<size_t>(State::kCount),
                "state name table out of sync");
  void set(State s) { state_ = s; }
  State get() const { return state_; }
  void reset() { state_ = State{}; }
  std::string render() const { return std::string(Traits::kNames[static_cast<size_t>(state_)]); }

 private:
  State state_{};
};

}  // namespace portier::login

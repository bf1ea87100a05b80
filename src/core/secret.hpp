#pragma once
// A secret (password, token, SASL payload): move-only, heap-held, zeroed when
// it is cleared, reassigned, grown or destroyed. Unlike std::string it has no
// small-string buffer, so a move steals the pointer and leaves no copy behind.
// Header-only; depends only on core/secure.hpp.

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "core/secure.hpp"

namespace portier::core {

class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string_view v) { assign(v); }
  ~Secret() { release(); }
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  Secret(Secret&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)),
        cap_(std::exchange(o.cap_, 0)) {}
  Secret& operator=(Secret&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
      cap_ = std::exchange(o.cap_, 0);
    }
    return *this;
  }

  /// Copy `s` into a Secret and wipe `s` (the usual way in: a parser's buffer).
  static Secret take(std::string& s) {
    Secret out(s);
    secure_zero(s);
    return out;
  }

  /// Replace the contents (the old ones are overwritten in place or wiped).
  Secret& operator=(std::string_view v) {
    assign(v);
    return *this;
  }

  std::string_view view() const { return {p_ ? p_ : "", n_}; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  bool operator==(std::string_view v) const { return view() == v; }

  void assign(std::string_view v) {
    n_ = 0;
    append(v);
  }
  void append(std::string_view v) {
    if (n_ + v.size() > cap_) grow(n_ + v.size());
    if (!v.empty()) std::memcpy(p_ + n_, v.data(), v.size());
    n_ += v.size();
  }
  void push_back(char c) { append(std::string_view(&c, 1)); }
  /// Wipe the contents; the buffer is kept (and wiped again on release).
  void clear() {
    if (p_) secure_zero(p_, cap_);
    n_ = 0;
  }

 private:
  void grow(size_t need) {
    size_t cap = cap_ ? cap_ : 32;
    while (cap < need) cap *= 2;
    char* np = new char[cap];
    if (n_) std::memcpy(np, p_, n_);
    size_t keep = n_;
    release();
    p_ = np;
    n_ = keep;
    cap_ = cap;
  }
  void release() {
    if (p_) {
      secure_zero(p_, cap_);
      delete[] p_;
    }
    p_ = nullptr;
    n_ = cap_ = 0;
  }

  char* p_ = nullptr;
  size_t n_ = 0;
  size_t cap_ = 0;
};

}  // namespace portier::core

#include "login/prelogin_input.hpp"

#include <algorithm>
#include <cstring>

#include "core/secure.hpp"

namespace portier::login {

namespace {
// Compact the buffer once this much of it has been consumed.
constexpr size_t kCompactThreshold = 4096;
}  // namespace

void wipe_capacity(std::string& s) noexcept {
  // resize() fills the tail with NULs; the volatile wipe covers the rest.
  s.resize(s.capacity());
  core::secure_zero(s.data(), s.size());
  s.clear();
}

PreloginInput::~PreloginInput() {
  wipe_capacity(buf_);
  wipe_capacity(line_);
}

void PreloginInput::append(std::string_view data) {
  const size_t need = buf_.size() + data.size();
  if (need > buf_.capacity()) {
    // Grow by hand: std::string would free the old buffer unwiped.
    std::string bigger;
    bigger.reserve(std::max(need, 2 * buf_.capacity()));
    bigger.append(buf_);
    wipe_capacity(buf_);
    buf_.swap(bigger);
  }
  buf_.append(data);
}

void PreloginInput::consume(size_t n) {
  pos_ += n;
  if (pos_ >= buf_.size()) {
    wipe();
  } else if (pos_ >= kCompactThreshold) {
    const size_t rest = buf_.size() - pos_;
    std::memmove(buf_.data(), buf_.data() + pos_, rest);
    core::secure_zero(buf_.data() + rest, buf_.size() - rest);
    buf_.resize(rest);
    pos_ = 0;
  }
}

void PreloginInput::wipe() {
  core::secure_zero(buf_);
  pos_ = 0;
}

std::string PreloginInput::take_rest() {
  std::string rest(avail());
  wipe();
  return rest;
}

PreloginInput::Line PreloginInput::take_line(size_t limit, bool lf_counts) {
  core::secure_zero(line_);
  std::string_view a = avail();
  const size_t lf = a.find('\n');
  if (lf == std::string_view::npos) return a.size() > limit ? Line::TooLong : Line::NeedMore;
  if (lf + (lf_counts ? 1 : 0) > limit) return Line::TooLong;
  std::string_view l = a.substr(0, lf);
  if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  line_.assign(l);
  consume(lf + 1);
  return Line::Ready;
}

}  // namespace portier::login

#include "net/deadline.hpp"

#include <asio/error.hpp>

namespace portier::net {

asio::execution_context::id Wheel::id;

Wheel::Wheel(asio::execution_context& ctx) : asio::execution_context::service(ctx) {}

Wheel::~Wheel() { shutdown(); }

Wheel& Wheel::of(const asio::any_io_executor& ex) {
  auto& ctx = asio::query(ex, asio::execution::context);
  Wheel& w = asio::use_service<Wheel>(ctx);
  if (!w.ex_) w.ex_ = ex;
  return w;
}

void Wheel::shutdown() {
  if (shut_) return;
  shut_ = true;
  // Deadlines still armed are owned elsewhere: forget them, run nothing.
  for (Deadline* d : heap_) {
    d->index_ = Deadline::kNone;
    d->fn_ = nullptr;
  }
  heap_.clear();
  timer_.reset();
}

int64_t Wheel::now_tick_floor() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
             .count() /
         tick_.count();
}

void Wheel::place(size_t i, Deadline* d) {
  heap_[i] = d;
  d->index_ = i;
}

void Wheel::sift_up(size_t i) {
  Deadline* d = heap_[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (heap_[p]->tick_ <= d->tick_) break;
    place(i, heap_[p]);
    i = p;
  }
  place(i, d);
}

void Wheel::sift_down(size_t i) {
  Deadline* d = heap_[i];
  size_t n = heap_.size();
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_[c + 1]->tick_ < heap_[c]->tick_) ++c;
    if (d->tick_ <= heap_[c]->tick_) break;
    place(i, heap_[c]);
    i = c;
  }
  place(i, d);
}

void Wheel::insert(Deadline* d) {
  heap_.push_back(d);
  sift_up(heap_.size() - 1);
  // Only an earlier expiry than the armed one touches the timer.
  if (armed_tick_ == 0 || d->tick_ < armed_tick_) arm_timer(d->tick_);
}

void Wheel::remove(Deadline* d) {
  size_t i = d->index_;
  d->index_ = Deadline::kNone;
  Deadline* last = heap_.back();
  heap_.pop_back();
  if (heap_.empty() && draining_) release_timer();
  if (last == d) return;
  place(i, last);
  if (i > 0 && heap_[(i - 1) / 2]->tick_ > last->tick_) sift_up(i);
  else sift_down(i);
  // Otherwise the timer stays armed: it fires once for nothing and re-arms
  // then.
}

void Wheel::drain() {
  draining_ = true;
  if (heap_.empty()) release_timer();
}

void Wheel::release_timer() {
  // Cancelling an Asio timer makes no system call.
  if (armed_tick_ == 0 || !timer_) return;
  armed_tick_ = 0;
  timer_->cancel();
}

void Wheel::arm_timer(int64_t tick) {
  if (shut_) return;
  if (!timer_) timer_ = std::make_unique<asio::steady_timer>(ex_);
  armed_tick_ = tick;
  ++stats_.timer_arms;
  timer_->expires_at(Clock::time_point(std::chrono::milliseconds(tick * tick_.count())));
  timer_->async_wait([this, tick](const asio::error_code& ec) {
    if (ec) return;  // re-armed (cancelled) or shut down
    on_timer(tick);
  });
}

void Wheel::on_timer(int64_t armed_tick) {
  if (armed_tick != armed_tick_) return;
  ++stats_.wakeups;
  armed_tick_ = 0;
  int64_t now = now_tick_floor();
  if (now < armed_tick) now = armed_tick;
  while (!heap_.empty() && heap_[0]->tick_ <= now) {
    Deadline* d = heap_[0];
    remove(d);
    auto fn = std::move(d->fn_);
    d->fn_ = nullptr;
    ++stats_.fired;
    fn();  // may arm or cancel deadlines, destroy their owners
  }
  if (!heap_.empty() && (armed_tick_ == 0 || heap_[0]->tick_ < armed_tick_))
    arm_timer(heap_[0]->tick_);
}

void Deadline::arm_at(Clock::time_point when, std::function<void()> fn) {
  cancel();
  if (wheel_->shut_) return;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(when.time_since_epoch()).count();
  int64_t t = wheel_->tick_.count();
  tick_ = (ms + t - 1) / t;  // never early
  if (tick_ <= 0) tick_ = 1;
  fn_ = std::move(fn);
  wheel_->insert(this);
}

void Deadline::cancel() {
  if (index_ == kNone) return;
  wheel_->remove(this);
  fn_ = nullptr;
}

}  // namespace portier::net

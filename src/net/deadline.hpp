#pragma once
// Coarse per-worker deadlines: one Asio timer per io_context (the Wheel, an
// io_context service) drives every Deadline of that worker.
//
// Why not one asio::steady_timer per deadline: Asio re-arms its timerfd
// (timerfd_settime) whenever a new timer becomes the earliest of its queue,
// and a cancelled timer leaves its queue at once — so with sessions whose
// deadlines are almost always cancelled long before they expire, nearly
// every login re-armed the timerfd (2.2 timerfd_settime per IMAP login,
// docs/BENCHMARKS.md). The Wheel remembers when its one timer is armed: a
// new deadline later than that costs no system call, a cancelled one leaves
// the timer armed (it then fires once for nothing and re-arms to the next
// live deadline, or stays unarmed when none is left). Steady state: about one
// timerfd_settime per armed period (tens of seconds) per worker, not per login.
// An armed timer is work for the io_context: a worker that is to run out of
// work (shutdown) calls drain() first, after which the timer is released as
// soon as no deadline is left.
//
// A Deadline is "timer + generation + alive check" once: its callback runs
// only while it is armed, never after cancel(), re-arm or destruction, so the
// owner needs no weak_ptr or generation counter of its own. Deadlines fire
// no earlier than asked and at most one `tick` (10 ms) later.
//
// Owns: the worker's one timer and the heap of armed deadlines (pointers
// into their owners). May use: asio.
// Threading: a Deadline and its Wheel belong to one worker thread.

#include <asio/any_io_executor.hpp>
#include <asio/execution_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

namespace portier::net {

class Deadline;

class Wheel : public asio::execution_context::service {
 public:
  using Clock = std::chrono::steady_clock;
  static asio::execution_context::id id;

  explicit Wheel(asio::execution_context& ctx);
  ~Wheel() override;

  /// The wheel of the io_context that runs `ex` (created on first use).
  static Wheel& of(const asio::any_io_executor& ex);

  /// Granularity (default 10 ms); only for tests, before any arm().
  void set_tick(std::chrono::milliseconds tick) { tick_ = tick; }

  /// From now on release the timer whenever no deadline is armed, so that
  /// io_context::run() can return (worker shutdown).
  void drain();

  /// Counters for tests and benchmarks.
  struct Stats {
    uint64_t timer_arms = 0;  // asio timer (re-)armed: at most one timerfd_settime each
    uint64_t wakeups = 0;     // the timer fired
    uint64_t fired = 0;       // deadline callbacks run
  };
  const Stats& stats() const { return stats_; }
  size_t armed() const { return heap_.size(); }

 private:
  friend class Deadline;
  void shutdown() override;
  void insert(Deadline* d);
  void remove(Deadline* d);
  void sift_up(size_t i);
  void sift_down(size_t i);
  void place(size_t i, Deadline* d);
  void arm_timer(int64_t tick);
  void release_timer();
  void on_timer(int64_t armed_tick);
  int64_t now_tick_floor() const;

  asio::any_io_executor ex_;
  std::unique_ptr<asio::steady_timer> timer_;
  std::vector<Deadline*> heap_;  // min-heap on Deadline::tick_
  std::chrono::milliseconds tick_{10};
  int64_t armed_tick_ = 0;       // the timer's expiry (in ticks); 0 = not armed
  Stats stats_;
  bool shut_ = false;
  bool draining_ = false;
};

class Deadline {
 public:
  using Clock = Wheel::Clock;

  explicit Deadline(const asio::any_io_executor& ex) : wheel_(&Wheel::of(ex)) {}
  explicit Deadline(Wheel& w) : wheel_(&w) {}
  ~Deadline() { cancel(); }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  /// Run `fn` (on the worker thread) at `when`, replacing any earlier arm.
  void arm_at(Clock::time_point when, std::function<void()> fn);
  void arm_after(std::chrono::steady_clock::duration d, std::function<void()> fn) {
    arm_at(Clock::now() + d, std::move(fn));
  }
  /// The callback will not run (no-op when not armed).
  void cancel();
  bool armed() const { return index_ != kNone; }

 private:
  friend class Wheel;
  static constexpr size_t kNone = static_cast<size_t>(-1);
  Wheel* wheel_;
  std::function<void()> fn_;
  int64_t tick_ = 0;
  size_t index_ = kNone;  // position in the wheel's heap
};

}  // namespace portier::net

// net::Deadline / net::Wheel: one Asio timer per worker drives every deadline.

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "net/deadline.hpp"

using namespace portier;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(Deadline, FiresNotEarlyAndAboutOnTime) {
  asio::io_context io;
  net::Deadline d(io.get_executor());
  auto t0 = Clock::now();
  Clock::time_point fired{};
  d.arm_after(50ms, [&] { fired = Clock::now(); });
  EXPECT_TRUE(d.armed());
  io.run();
  EXPECT_FALSE(d.armed());
  ASSERT_NE(fired, Clock::time_point{});
  EXPECT_GE(fired - t0, 50ms);
  EXPECT_LT(fired - t0, 500ms);
}

TEST(Deadline, CancelledOrDestroyedNeverRuns) {
  asio::io_context io;
  int runs = 0;
  net::Deadline a(io.get_executor());
  a.arm_after(10ms, [&] { ++runs; });
  a.cancel();
  EXPECT_FALSE(a.armed());
  {
    net::Deadline b(io.get_executor());
    b.arm_after(10ms, [&] { ++runs; });
  }  // destroyed while armed
  net::Deadline c(io.get_executor());
  c.arm_after(10ms, [&] { ++runs; });
  c.arm_after(20ms, [&] { runs += 10; });  // re-arm replaces
  io.run();
  EXPECT_EQ(runs, 10);
}

TEST(Deadline, FiresInOrderAndMayReArmFromItsCallback) {
  asio::io_context io;
  std::vector<int> order;
  net::Deadline d1(io.get_executor()), d2(io.get_executor()), d3(io.get_executor());
  d3.arm_after(60ms, [&] { order.push_back(3); });
  d1.arm_after(20ms, [&] {
    order.push_back(1);
    d1.arm_after(80ms, [&] { order.push_back(4); });
  });
  d2.arm_after(40ms, [&] { order.push_back(2); });
  io.run();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4}));
}

TEST(Deadline, LaterDeadlinesAndCancelsDoNotTouchTheTimer) {
  asio::io_context io;
  auto& w = net::Wheel::of(io.get_executor());
  // Many sessions: each arms a long deadline and cancels it soon after (the
  // common case of login/proxy timeouts).
  std::vector<std::unique_ptr<net::Deadline>> ds;
  for (int i = 0; i < 1000; ++i) {
    ds.push_back(std::make_unique<net::Deadline>(io.get_executor()));
    ds.back()->arm_after(std::chrono::seconds(30) + std::chrono::milliseconds(i), [] {});
    if (i >= 10) ds[i - 10]->cancel();
  }
  EXPECT_EQ(w.armed(), 10u);
  // One arm for the first deadline; all later ones are later than it.
  EXPECT_EQ(w.stats().timer_arms, 1u);
  ds.clear();
  EXPECT_EQ(w.armed(), 0u);
  // The timer stays armed for the next session's deadlines; drain() (worker
  // shutdown) releases it, and the io_context has no work left.
  w.drain();
  auto t0 = Clock::now();
  io.run();
  EXPECT_LT(Clock::now() - t0, 1s);
}

TEST(Deadline, ACancelledEarliestDeadlineCostsOneSpuriousWakeup) {
  asio::io_context io;
  auto& w = net::Wheel::of(io.get_executor());
  int runs = 0;
  net::Deadline early(io.get_executor()), late(io.get_executor());
  early.arm_after(20ms, [&] { runs += 100; });
  late.arm_after(60ms, [&] { ++runs; });
  early.cancel();
  io.run();
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(w.stats().wakeups, 2u);     // 20 ms (nothing due), 60 ms
  EXPECT_EQ(w.stats().timer_arms, 2u);  // armed at 20 ms, re-armed at 60 ms
  EXPECT_EQ(w.stats().fired, 1u);
}

TEST(Deadline, AfterTheLastCancelTheTimerStaysArmedUntilDrained) {
  asio::io_context io;
  auto& w = net::Wheel::of(io.get_executor());
  {
    net::Deadline login(io.get_executor());
    login.arm_after(std::chrono::seconds(180), [] {});
    net::Deadline proxy(io.get_executor());
    proxy.arm_after(std::chrono::seconds(30), [] {});  // earlier: re-arms
    EXPECT_EQ(w.stats().timer_arms, 2u);
  }
  // The next login's deadlines are later than the armed (stale) 30 s: free.
  net::Deadline login2(io.get_executor()), proxy2(io.get_executor());
  login2.arm_after(std::chrono::seconds(180), [] {});
  proxy2.arm_after(std::chrono::seconds(31), [] {});
  EXPECT_EQ(w.stats().timer_arms, 2u);
  login2.cancel();
  proxy2.cancel();
  asio::post(io, [&] { w.drain(); });
  auto t0 = Clock::now();
  io.run();
  EXPECT_LT(Clock::now() - t0, 1s);
}

TEST(Deadline, EachIoContextHasItsOwnWheel) {
  asio::io_context a, b;
  EXPECT_NE(&net::Wheel::of(a.get_executor()), &net::Wheel::of(b.get_executor()));
  EXPECT_EQ(&net::Wheel::of(a.get_executor()), &net::Wheel::of(a.get_executor()));
}

TEST(Deadline, OwnersDestroyedAfterTheIoContextAreSafe) {
  auto io = std::make_unique<asio::io_context>();
  auto d = std::make_unique<net::Deadline>(io->get_executor());
  d->arm_after(1h, [] { FAIL(); });
  io.reset();  // wheel shut down: forgets the deadline
  EXPECT_FALSE(d->armed());
  d.reset();
}

#include <gtest/gtest.h>

#include <string>

#include "core/secret.hpp"

using portier::core::Secret;

TEST(Secret, HoldsAndMoves) {
  Secret a("hunter2");
  EXPECT_EQ(a.view(), "hunter2");
  Secret b(std::move(a));
  EXPECT_EQ(b.view(), "hunter2");
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
  Secret c;
  c = std::move(b);
  EXPECT_EQ(c, "hunter2");
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
}

TEST(Secret, TakeWipesTheSource) {
  std::string s = "a-long-password-beyond-sso-size";
  const char* buf = s.data();
  size_t n = s.size();
  Secret k = Secret::take(s);
  EXPECT_EQ(k.view(), "a-long-password-beyond-sso-size");
  EXPECT_TRUE(s.empty());
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(buf[i], '\0') << i;  // same buffer, zeroed
}

TEST(Secret, GrowsAndClears) {
  Secret s;
  for (int i = 0; i < 100; ++i) s.push_back('x');
  s.append("yz");
  EXPECT_EQ(s.size(), 102u);
  EXPECT_EQ(s.view().substr(100), "yz");
  const char* p = s.view().data();
  s.clear();
  EXPECT_TRUE(s.empty());
  for (int i = 0; i < 102; ++i) EXPECT_EQ(p[i], '\0');  // kept buffer, zeroed
  s.assign("again");
  EXPECT_EQ(s, "again");
}

#include <gtest/gtest.h>

#include "core/strings.hpp"

using namespace portier::core;
using namespace std::chrono_literals;

namespace {

TEST(CoreStrings, IEquals) {
  EXPECT_TRUE(iequals("PLAIN", "plain"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("PLAIN", "PLAI"));
  EXPECT_FALSE(iequals("a", "b"));
  EXPECT_TRUE(istarts_with("AUTHENTICATE PLAIN", "authenticate"));
  EXPECT_TRUE(istarts_with("x", ""));
  EXPECT_FALSE(istarts_with("au", "auth"));
  EXPECT_EQ(to_lower("AbC-1"), "abc-1");
  EXPECT_EQ(to_upper("AbC-1"), "ABC-1");
}

TEST(CoreStrings, SplitAndTrim) {
  EXPECT_EQ(split_ws("  a b\t\tc \r\n"), (std::vector<std::string_view>{"a", "b", "c"}));
  EXPECT_TRUE(split_ws("").empty());
  EXPECT_TRUE(split_ws(" \t ").empty());
  EXPECT_EQ(split_ws("one"), (std::vector<std::string_view>{"one"}));
  EXPECT_EQ(trim("  x y \t"), "x y");
  EXPECT_EQ(trim("   "), "");
  EXPECT_EQ(trim(""), "");
}

TEST(CoreStrings, ParseUint) {
  EXPECT_EQ(parse_uint("0"), 0u);
  EXPECT_EQ(parse_uint("65535"), 65535u);
  EXPECT_EQ(parse_uint("18446744073709551615"), 18446744073709551615ull);
  EXPECT_FALSE(parse_uint("18446744073709551616"));
  EXPECT_FALSE(parse_uint(""));
  EXPECT_FALSE(parse_uint("-1"));
  EXPECT_FALSE(parse_uint("+1"));
  EXPECT_FALSE(parse_uint("1 "));
  EXPECT_FALSE(parse_uint("0x10"));
}

struct DurCase { const char* in; std::optional<std::chrono::milliseconds> out; };

TEST(CoreStrings, ParseDuration) {
  const DurCase cases[] = {
      {"30", 30s},       {"30s", 30s},        {"500ms", 500ms},   {"2m", 2min},
      {"1h", 1h},        {"0", 0ms},          {"5 sec", 5s},      {"5secs", 5s},
      {"5 seconds", 5s}, {"3min", 3min},      {"3 mins", 3min},   {"2 hours", 2h},
      {"10MS", 10ms},    {" 7s ", 7s},        {"1msec", 1ms},     {"1 minute", 1min},
      {"", std::nullopt},     {"s", std::nullopt},      {"1.5s", std::nullopt},
      {"-1", std::nullopt},   {"10x", std::nullopt},    {"10 s s", std::nullopt},
      {"99999999999999999999", std::nullopt}, {"9999999999999999h", std::nullopt},
      {"1d", std::nullopt},
  };
  for (const auto& c : cases) EXPECT_EQ(parse_duration(c.in), c.out) << "'" << c.in << "'";
}

}  // namespace

// ManageSieve syntax: client commands (quoted strings, literals {n}/{n+},
// limits), backend responses, quoting.

#include <gtest/gtest.h>

#include <string>

#include "protocols/managesieve/parser.hpp"

using namespace portier::protocols::managesieve;
using namespace std::string_literals;
using R = CommandParser::Result;

namespace {
CommandParser parser(size_t line = 100, size_t literal = 50) {
  return CommandParser(CommandParser::Limits{line, literal});
}
}  // namespace

TEST(ManagesieveParser, CommandWithStringsAndAtoms) {
  auto p = parser();
  size_t used = 0;
  const std::string in = "AUTHENTICATE \"PLAIN\" \"AHVzZXIzAHBhc3M=\"\r\nNOOP\r\n";
  ASSERT_EQ(p.parse(in, used), R::Command);
  EXPECT_EQ(used, in.find("NOOP"));
  EXPECT_EQ(p.command().name, "AUTHENTICATE");
  ASSERT_EQ(p.command().args.size(), 2u);
  EXPECT_EQ(p.command().args[0].type, Arg::Type::String);
  EXPECT_EQ(p.command().args[0].value, "PLAIN");
  EXPECT_EQ(p.command().args[1].value, "AHVzZXIzAHBhc3M=");

  ASSERT_EQ(p.parse("XCLIENT ADDR=1.2.3.4 PORT=5\n", used), R::Command);
  ASSERT_EQ(p.command().args.size(), 2u);
  EXPECT_EQ(p.command().args[0].type, Arg::Type::Atom);
  EXPECT_EQ(p.command().args[1].value, "PORT=5");
}

TEST(ManagesieveParser, QuotedEscapes) {
  auto p = parser();
  size_t used = 0;
  ASSERT_EQ(p.parse(R"(NOOP "a\"b\\c")"s + "\r\n", used), R::Command);
  EXPECT_EQ(p.command().args[0].value, "a\"b\\c");
  EXPECT_EQ(p.parse(R"(NOOP "a\nb")"s + "\r\n", used), R::Error);
  EXPECT_EQ(p.error(), ParseError::Syntax);
}

TEST(ManagesieveParser, Literals) {
  auto p = parser();
  size_t used = 0;
  for (std::string marker : {"{5+}", "{5}"}) {
    const std::string in = "NOOP " + marker + "\r\na\r\nbc\r\n";
    ASSERT_EQ(p.parse(in, used), R::Command) << marker;
    EXPECT_EQ(used, in.size());
    EXPECT_TRUE(p.command().args[0].literal);
    EXPECT_EQ(p.command().args[0].value, "a\r\nbc");
  }
}

TEST(ManagesieveParser, NeedMoreAtEveryCut) {
  const std::string in = "AUTHENTICATE \"PLAIN\" {8+}\r\nAGEAYgBj\r\n";
  for (size_t cut = 0; cut < in.size(); ++cut) {
    auto p = parser();
    size_t used = 0;
    EXPECT_EQ(p.parse(std::string_view(in).substr(0, cut), used), R::NeedMore) << cut;
    EXPECT_EQ(used, cut);  // incremental: every byte given is consumed
  }
  auto p = parser();
  size_t used = 0;
  EXPECT_EQ(p.parse(in, used), R::Command);
  EXPECT_EQ(p.command().args[1].value, "AGEAYgBj");
}

TEST(ManagesieveParser, Limits) {
  {
    auto p = parser(20, 50);
    size_t used = 0;
    EXPECT_EQ(p.parse(std::string(21, 'A'), used), R::Error);
    EXPECT_EQ(p.error(), ParseError::LineTooLong);
  }
  {
    // Literal data does not count towards the line limit.
    auto p = parser(20, 50);
    size_t used = 0;
    EXPECT_EQ(p.parse("NOOP {40+}\r\n" + std::string(40, 'x') + "\r\n", used), R::Command);
  }
  {
    auto p = parser(20, 50);
    size_t used = 0;
    EXPECT_EQ(p.parse("NOOP {51+}\r\n", used), R::Error);
    EXPECT_EQ(p.error(), ParseError::LiteralTooLarge);
  }
  {
    auto p = parser(40, 50);
    size_t used = 0;
    EXPECT_EQ(p.parse("NOOP {99999999999+}\r\n", used), R::Error);
    EXPECT_EQ(p.error(), ParseError::Syntax);
  }
}

TEST(ManagesieveParser, SyntaxErrorsSkipTheLine) {
  for (std::string bad : {"(bad)\r\n", "NOOP  x\r\n", "NOOP \"x\"y\r\n", "NOOP {x}\r\n",
                          "NOOP {3}x\r\n", "\x01\r\n"}) {
    auto p = parser();
    size_t used = 0;
    const std::string in = bad + "NOOP\r\n";
    EXPECT_EQ(p.parse(in, used), R::Error) << bad;
    EXPECT_EQ(p.error(), ParseError::Syntax) << bad;
    EXPECT_EQ(used, bad.size()) << bad;
  }
}

TEST(ManagesieveParser, EmptyLine) {
  auto p = parser();
  size_t used = 0;
  EXPECT_EQ(p.parse("\r\nNOOP\r\n", used), R::EmptyLine);
  EXPECT_EQ(used, 2u);
}

TEST(ManagesieveParser, StringLine) {
  auto p = parser();
  size_t used = 0;
  EXPECT_EQ(p.parse_string_line("\"dXNlcg==\"\r\nrest", used), R::Command);
  EXPECT_EQ(used, 12u);
  EXPECT_EQ(p.command().args[0].value, "dXNlcg==");
  EXPECT_EQ(p.parse_string_line("{4+}\r\nabcd\r\n", used), R::Command);
  EXPECT_EQ(p.command().args[0].value, "abcd");
  EXPECT_EQ(p.parse_string_line("\"*\"\r\n", used), R::Command);
  EXPECT_EQ(p.command().args[0].value, "*");
  EXPECT_EQ(p.parse_string_line("\"ab", used), R::NeedMore);
  EXPECT_EQ(p.parse_string_line("dXNlcg==\r\n", used), R::Error);
  EXPECT_EQ(p.parse_string_line("\"a\" \"b\"\r\n", used), R::Error);
  EXPECT_EQ(used, 9u);
}

TEST(ManagesieveParser, Responses) {
  auto r = parse_response(R"(NO (TRYLATER/NORETRY) "Try \"later\".")");
  EXPECT_EQ(r.kind, Response::Kind::No);
  EXPECT_EQ(r.code, "TRYLATER/NORETRY");
  EXPECT_EQ(r.text, "Try \"later\".");
  r = parse_response(R"(OK (SASL "a)b") "x")");
  EXPECT_EQ(r.kind, Response::Kind::Ok);
  EXPECT_EQ(r.code, R"(SASL "a)b")");
  EXPECT_EQ(code_name(r.code), "SASL");
  r = parse_response("ok");
  EXPECT_EQ(r.kind, Response::Kind::Ok);
  EXPECT_FALSE(r.has_text);
  r = parse_response("BYE {3}\r\nabc");
  EXPECT_EQ(r.kind, Response::Kind::Bye);
  EXPECT_EQ(r.text, "abc");
  r = parse_response(R"("SASL" "PLAIN LOGIN")");
  EXPECT_EQ(r.kind, Response::Kind::Strings);
  ASSERT_EQ(r.strings.size(), 2u);
  EXPECT_EQ(r.strings[1], "PLAIN LOGIN");
  for (std::string bad : {"", "* OK", "OK text", "OK (x", R"("a"b)", R"("a" )", "NO \"x\" y"})
    EXPECT_EQ(parse_response(bad).kind, Response::Kind::Invalid) << bad;
}

TEST(ManagesieveParser, LiteralMarkers) {
  size_t n = 0;
  EXPECT_TRUE(ends_with_literal("NO {12}", n));
  EXPECT_EQ(n, 12u);
  EXPECT_TRUE(ends_with_literal("\"a\" {3+}", n));
  EXPECT_EQ(n, 3u);
  EXPECT_FALSE(ends_with_literal("OK \"{3}\"", n));
  EXPECT_FALSE(ends_with_literal("{}", n));
  EXPECT_FALSE(ends_with_literal("{x}", n));
}

TEST(ManagesieveParser, Quoting) {
  std::string s;
  append_string(s, "a\"b\\");
  EXPECT_EQ(s, R"("a\"b\\")");
  s.clear();
  append_string(s, "a\r\nb");
  EXPECT_EQ(s, "{4}\r\na\r\nb");
  s.clear();
  append_string(s, "a\nb", /*to_server=*/true);
  EXPECT_EQ(s, "{3+}\r\na\nb");
}

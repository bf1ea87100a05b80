// IMAP command parser and backend string quoting.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocols/imap/parser.hpp"
#include "protocols/imap/quote.hpp"

using namespace portier::protocols::imap;
using namespace std::string_literals;
using R = CommandParser::Result;

namespace {

// One parser outcome, flattened for comparison.
struct Outcome {
  R result;
  std::string text;  // Command: "tag|NAME|arg1|arg2..."; Error: "kind tag"
  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << static_cast<int>(o.result) << ":" << o.text;
}

std::string render_arg(const Arg& a) {
  switch (a.type) {
    case Arg::Type::Atom:
      return "A:" + a.value;
    case Arg::Type::String:
      return "S:" + a.value;
    case Arg::Type::Nil:
      return "NIL";
    case Arg::Type::List: {
      std::string s = "(";
      for (size_t i = 0; i < a.list.size(); ++i) s += (i ? " " : "") + render_arg(a.list[i]);
      return s + ")";
    }
  }
  return "?";
}

std::string render(CommandParser& p, R r) {
  if (r == R::Command) {
    std::string s = p.command().tag + "|" + p.command().name;
    for (const auto& a : p.command().args) s += "|" + render_arg(a);
    return s;
  }
  if (r == R::Error) {
    static const char* kinds[] = {"none", "syntax", "too-long", "literal-too-large"};
    return std::string(kinds[static_cast<int>(p.error())]) + (p.fatal() ? "!" : "") + " " +
           p.error_tag();
  }
  return {};
}

// Feeds `input` in chunks of `chunk` bytes (0 = all at once) and collects every
// non-NeedMore outcome, as the Frontend would.
std::vector<Outcome> run(std::string_view input, size_t chunk = 0,
                         CommandParser::Limits limits = {8192, 65536}) {
  CommandParser p(limits);
  std::vector<Outcome> out;
  std::string buf;
  size_t fed = 0;
  if (chunk == 0) chunk = input.size();
  while (fed < input.size() || !buf.empty()) {
    if (fed < input.size()) {
      size_t n = std::min(chunk, input.size() - fed);
      buf.append(input.substr(fed, n));
      fed += n;
    }
    for (;;) {
      size_t used = 0;
      R r = p.parse(buf, used);
      buf.erase(0, used);
      if (r == R::NeedMore) break;
      out.push_back({r, render(p, r)});
      if (r == R::Error && p.fatal()) return out;
    }
    if (fed >= input.size()) break;
  }
  return out;
}

Outcome cmd(std::string text) { return {R::Command, std::move(text)}; }
Outcome err(std::string text) { return {R::Error, std::move(text)}; }
Outcome cont() { return {R::Continuation, ""}; }
Outcome empty() { return {R::EmptyLine, ""}; }

TEST(ImapParser, SimpleCommands) {
  EXPECT_EQ(run("a1 CAPABILITY\r\n"), std::vector<Outcome>{cmd("a1|CAPABILITY")});
  EXPECT_EQ(run("a1 noop\n"), std::vector<Outcome>{cmd("a1|noop")});  // bare LF accepted
  EXPECT_EQ(run("x LOGIN alice secret\r\n"), std::vector<Outcome>{cmd("x|LOGIN|A:alice|A:secret")});
  EXPECT_EQ(run("x LOGIN  alice   secret \r\n"),  // runs of SP tolerated
            std::vector<Outcome>{cmd("x|LOGIN|A:alice|A:secret")});
}

TEST(ImapParser, QuotedStringsAndEscapes) {
  EXPECT_EQ(run("a LOGIN \"al ice\" \"se\\\"cr\\\\et\"\r\n"),
            std::vector<Outcome>{cmd("a|LOGIN|S:al ice|S:se\"cr\\et")});
  EXPECT_EQ(run("a LOGIN \"\" \"\"\r\n"), std::vector<Outcome>{cmd("a|LOGIN|S:|S:")});
  // Only \" and \\ are escapes.
  EXPECT_EQ(run("a LOGIN \"a\\nb\" x\r\n"), std::vector<Outcome>{err("syntax a")});
  // Unterminated quoted string at end of line.
  EXPECT_EQ(run("a LOGIN \"abc\r\nb NOOP\r\n"),
            (std::vector<Outcome>{err("syntax a"), cmd("b|NOOP")}));
  // 8-bit bytes inside quotes are data.
  EXPECT_EQ(run("a LOGIN \"p\xc3\xa4ss\" x\r\n"),
            std::vector<Outcome>{cmd("a|LOGIN|S:p\xc3\xa4ss|A:x")});
}

TEST(ImapParser, NilAndLists) {
  EXPECT_EQ(run("a X NIL\r\n"), std::vector<Outcome>{cmd("a|X|NIL")});
  EXPECT_EQ(run("a X nil\r\n"), std::vector<Outcome>{cmd("a|X|NIL")});
  EXPECT_EQ(run("a X \"NIL\"\r\n"), std::vector<Outcome>{cmd("a|X|S:NIL")});
  EXPECT_EQ(run("a X (\"name\" \"x\" \"v\" NIL)\r\n"),
            std::vector<Outcome>{cmd("a|X|(S:name S:x S:v NIL)")});
  EXPECT_EQ(run("a X (a (b c) ()) d\r\n"), std::vector<Outcome>{cmd("a|X|(A:a (A:b A:c) ())|A:d")});
  EXPECT_EQ(run("a ID (\"name\"\r\n"), std::vector<Outcome>{err("syntax a")});  // unclosed
  EXPECT_EQ(run("a ID )\r\n"), std::vector<Outcome>{err("syntax a")});
  // Depth limit.
  EXPECT_EQ(run("a X ((((((((((x))))))))))\r\n"), std::vector<Outcome>{err("syntax a")});
}

TEST(ImapParser, SynchronizingLiteral) {
  const std::string t = "a LOGIN {5}\r\nalice {6}\r\nsecret\r\n";
  std::vector<Outcome> want{cont(), cont(), cmd("a|LOGIN|S:alice|S:secret")};
  EXPECT_EQ(run(t), want);
  for (size_t chunk = 1; chunk < t.size(); ++chunk) EXPECT_EQ(run(t, chunk), want) << chunk;
}

TEST(ImapParser, LiteralPlusAndBinaryData) {
  const std::string t = "a LOGIN {5+}\r\nalice {4+}\r\nx\r\ny\r\n";
  std::vector<Outcome> want{cmd("a|LOGIN|S:alice|S:x\r\ny")};
  EXPECT_EQ(run(t), want);
  for (size_t chunk = 1; chunk < t.size(); ++chunk) EXPECT_EQ(run(t, chunk), want) << chunk;
  EXPECT_EQ(run("a LOGIN {0}\r\n x\r\n"), (std::vector<Outcome>{cont(), cmd("a|LOGIN|S:|A:x")}));
  // Literal with LF only after the size.
  EXPECT_EQ(run("a LOGIN {1+}\nu p\r\n"), std::vector<Outcome>{cmd("a|LOGIN|S:u|A:p")});
}

TEST(ImapParser, BadLiteralHeaders) {
  EXPECT_EQ(run("a LOGIN {}\r\nb NOOP\r\n"),
            (std::vector<Outcome>{err("syntax a"), cmd("b|NOOP")}));
  EXPECT_EQ(run("a LOGIN {+}\r\n"), std::vector<Outcome>{err("syntax a")});
  EXPECT_EQ(run("a LOGIN {5x}\r\n"), std::vector<Outcome>{err("syntax a")});
  EXPECT_EQ(run("a LOGIN {5} x\r\n"), std::vector<Outcome>{err("syntax a")});
}

TEST(ImapParser, LiteralLimits) {
  CommandParser::Limits lim{100, 10};
  // Synchronizing: reported at once, the line is over, the next command parses.
  EXPECT_EQ(run("a LOGIN {11}\r\nb NOOP\r\n", 0, lim),
            (std::vector<Outcome>{err("literal-too-large a"), cmd("b|NOOP")}));
  EXPECT_EQ(run("a LOGIN {10}\r\n0123456789 x\r\n", 0, lim),
            (std::vector<Outcome>{cont(), cmd("a|LOGIN|S:0123456789|A:x")}));
  // LITERAL+: fatal, the bytes are already coming.
  EXPECT_EQ(run("a LOGIN {11+}\r\n01234567890\r\n", 0, lim),
            std::vector<Outcome>{err("literal-too-large! a")});
  // Huge numbers saturate instead of overflowing.
  EXPECT_EQ(run("a LOGIN {99999999999999999999999999}\r\n", 0, lim),
            std::vector<Outcome>{err("literal-too-large a")});
}

TEST(ImapParser, LineLengthLimit) {
  CommandParser::Limits lim{20, 100};
  EXPECT_EQ(run("a LOGIN aaaaaaaaaa\r\n", 0, lim),  // exactly 20 bytes with CRLF
            std::vector<Outcome>{cmd("a|LOGIN|A:aaaaaaaaaa")});
  EXPECT_EQ(run("a LOGIN aaaaaaaaaaa\r\n", 0, lim), std::vector<Outcome>{err("too-long! a")});
  // Literal bytes do not count against the line, the rest of the line does.
  EXPECT_EQ(run("a LOGIN {30+}\r\n" + std::string(30, 'x') + " y\r\n", 0, lim),
            std::vector<Outcome>{cmd("a|LOGIN|S:" + std::string(30, 'x') + "|A:y")});
  // No line end at all: fatal once the limit is passed, even while skipping.
  EXPECT_EQ(run(std::string(21, '*'), 1, lim), std::vector<Outcome>{err("too-long! ")});
  EXPECT_EQ(run("a \x01" + std::string(30, 'b'), 0, lim), std::vector<Outcome>{err("too-long! a")});
}

TEST(ImapParser, EmptyLinesAndMissingParts) {
  EXPECT_EQ(run("\r\n\n"), (std::vector<Outcome>{empty(), empty()}));
  EXPECT_EQ(run("a1\r\n"), std::vector<Outcome>{err("syntax a1")});  // no command
  EXPECT_EQ(run("a1 \r\n"), std::vector<Outcome>{err("syntax a1")});
  EXPECT_EQ(run(" NOOP\r\n"), std::vector<Outcome>{err("syntax ")});   // no tag
  EXPECT_EQ(run("+ NOOP\r\n"), std::vector<Outcome>{err("syntax ")});  // + is not a tag
  EXPECT_EQ(run("* NOOP\r\n"), std::vector<Outcome>{err("syntax ")});
  EXPECT_EQ(run("a+b NOOP\r\n"), std::vector<Outcome>{err("syntax ")});    // bad tag char
  EXPECT_EQ(run("a\rb NOOP\r\n"), std::vector<Outcome>{err("syntax a")});  // stray CR
}

TEST(ImapParser, GarbageAndNulBytes) {
  EXPECT_EQ(run("\x00\x01\xff\r\nb NOOP\r\n"s),
            (std::vector<Outcome>{err("syntax "), cmd("b|NOOP")}));
  EXPECT_EQ(run("a LOGIN \"x\x00y\" z\r\n"s), std::vector<Outcome>{err("syntax a")});
  EXPECT_EQ(run("a LOGIN x\x00y z\r\n"s), std::vector<Outcome>{err("syntax a")});
  // NUL in a literal: the literal is consumed whole, then the line is rejected.
  EXPECT_EQ(run("a LOGIN {3+}\r\nx\x00y z\r\nb NOOP\r\n"s),
            (std::vector<Outcome>{err("syntax a"), cmd("b|NOOP")}));
  // Non-atom bytes right after an atom.
  EXPECT_EQ(run("a LOGIN ab\"c\" d\r\n"), std::vector<Outcome>{err("syntax a")});
  // An error line followed by more commands in the same chunk.
  EXPECT_EQ(run("a LOGIN \x01\r\nb NOOP\r\nc LOGOUT\r\n"),
            (std::vector<Outcome>{err("syntax a"), cmd("b|NOOP"), cmd("c|LOGOUT")}));
}

TEST(ImapParser, ByteByByteEqualsAllAtOnce) {
  const std::string t =
      "a0 CAPABILITY\r\n\r\nb1 ID (\"name\" \"x\\\"y\" \"v\" NIL)\r\nbad\x01line\r\n"
      "c2 LOGIN {3}\r\nabc {2+}\r\n\r\n\r\nd3 AUTHENTICATE PLAIN =\r\ne4 X {1\r\n";
  auto all = run(t);
  ASSERT_GE(all.size(), 6u);
  for (size_t chunk = 1; chunk <= 7; ++chunk) EXPECT_EQ(run(t, chunk), all) << chunk;
}

TEST(ImapQuote, QuotedOrLiteral) {
  EXPECT_EQ(quote_string("user1"), "\"user1\"");
  EXPECT_EQ(quote_string(""), "\"\"");
  EXPECT_EQ(quote_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(quote_string("\"\"\\\\"), "\"\\\"\\\"\\\\\\\\\"");  // four specials: still quoted
  EXPECT_EQ(quote_string("\"\"\\\\\""), "{5}\r\n\"\"\\\\\"");   // five: literal
  EXPECT_EQ(quote_string("p\xc3\xa4ss"), "{5}\r\np\xc3\xa4ss");
  EXPECT_EQ(quote_string("a\r\nb"), "{4}\r\na\r\nb");
  EXPECT_EQ(quote_string("a\nb"), "{3}\r\na\nb");
  EXPECT_EQ(quote_string("a\0b"s), "{3}\r\na\0b"s);
  EXPECT_EQ(quote_string("sp ace (x) {y} %*"), "\"sp ace (x) {y} %*\"");
  EXPECT_FALSE(needs_literal("a\"b\"c\"d\""));
  EXPECT_TRUE(needs_literal("a\"b\"c\"d\"\\"));
  std::string out;
  append_quoted(out, "x\r\ny\"");
  EXPECT_EQ(out, "\"xy\\\"\"");
}

}  // namespace

// Issue 8 items 2-3: one byte budget per pre-login command (literals
// included, checked before a literal is buffered), incremental parsing that
// never looks at consumed input again, and IMAP ID parsed as a stream.

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "login/command_budget.hpp"
#include "protocols/imap/parser.hpp"
#include "protocols/managesieve/parser.hpp"
#include "protocols/registry.hpp"

using namespace portier;
namespace imap = portier::protocols::imap;
namespace sieve = portier::protocols::managesieve;
using namespace std::string_literals;

namespace {

// ---------------------------------------------------------------- helpers
// Feeds `in` in pieces of `step` bytes, as the engine does, and returns one
// token per outcome: C<args...>, E (empty), + (continuation), X<err>[!].
std::string imap_trace(std::string_view in, size_t step, imap::CommandParser::Limits lim,
                       size_t* examined = nullptr) {
  imap::CommandParser p(lim);
  std::string trace, buf;
  size_t fed = 0, total_used = 0;
  for (int guard = 0; guard < (1 << 24); ++guard) {
    size_t used = 0;
    auto r = p.parse(buf, used);
    total_used += used;
    buf.erase(0, used);
    using R = imap::CommandParser::Result;
    if (r == R::NeedMore) {
      if (fed >= in.size()) break;
      size_t n = std::min(step, in.size() - fed);
      buf.append(in.substr(fed, n));
      fed += n;
      continue;
    }
    if (r == R::Continuation) trace += "+;";
    if (r == R::EmptyLine) trace += "E;";
    if (r == R::Command) {
      auto& c = p.command();
      trace += "C" + c.tag + " " + c.name + "[" + std::to_string(c.args.size()) + "]";
      for (auto& a : c.args) trace += std::to_string(a.value.size()) + ",";
      if (c.id) {
        trace += "id(" + std::to_string(c.id->valid) + std::to_string(c.id->nil) + " " +
                 std::to_string(c.id->pairs_seen) + " " + std::to_string(c.id->pairs.size());
        for (auto& pr : c.id->pairs)
          trace += " " + pr.key + "=" + std::to_string(pr.value.size()) + (pr.truncated ? "t" : "");
        trace += ")";
      }
      trace += ";";
    }
    if (r == R::Error) {
      trace += "X" + std::to_string(static_cast<int>(p.error())) + (p.fatal() ? "!" : "") + ";";
      if (p.fatal()) break;
    }
  }
  if (examined) *examined = total_used;
  return trace;
}

std::string sieve_trace(std::string_view in, size_t step, sieve::CommandParser::Limits lim,
                        size_t* examined = nullptr, bool string_line = false) {
  sieve::CommandParser p(lim);
  std::string trace, buf;
  size_t fed = 0, total_used = 0;
  for (int guard = 0; guard < (1 << 24); ++guard) {
    size_t used = 0;
    auto r = string_line ? p.parse_string_line(buf, used) : p.parse(buf, used);
    EXPECT_LE(used, buf.size());
    total_used += used;
    buf.erase(0, used);
    using R = sieve::CommandParser::Result;
    if (r == R::NeedMore) {
      EXPECT_TRUE(buf.empty()) << "NeedMore must consume everything";
      if (fed >= in.size()) break;
      size_t n = std::min(step, in.size() - fed);
      buf.append(in.substr(fed, n));
      fed += n;
      continue;
    }
    if (r == R::EmptyLine) trace += "E;";
    if (r == R::Command) {
      auto& c = p.command();
      trace += "C" + c.name + "[";
      for (auto& a : c.args) trace += (a.literal ? "L" : "") + a.value.substr(0, 16) + "/" +
                                      std::to_string(a.value.size()) + ",";
      trace += "];";
    }
    if (r == R::Error) {
      trace += "X" + std::to_string(static_cast<int>(p.error())) + ":" + p.error_text() + ";";
      if (p.error() != sieve::ParseError::Syntax) break;
    }
  }
  if (examined) *examined = total_used;
  return trace;
}

std::string literal(size_t n, char fill = 'x', bool nonsync = true) {
  return "{" + std::to_string(n) + (nonsync ? "+" : "") + "}\r\n" + std::string(n, fill);
}

}  // namespace

// ---------------------------------------------------------- CommandBudget
TEST(CommandBudget, TakeFitsGiveBack) {
  login::CommandBudget b(10);
  EXPECT_TRUE(b.fits(10));
  EXPECT_FALSE(b.fits(11));
  EXPECT_TRUE(b.take(4));
  EXPECT_FALSE(b.take(7));
  EXPECT_EQ(b.used(), 4u);  // a refused take charges nothing
  EXPECT_TRUE(b.take(6));
  EXPECT_FALSE(b.take(1));
  b.give_back(1);
  EXPECT_TRUE(b.fits(1));
  b.reset();
  EXPECT_EQ(b.used(), 0u);
  login::FrontendSettings s;
  s.max_line_length = 8192;
  s.max_command_size = 1000;
  EXPECT_EQ(login::line_limit(s), 1000u);
  s.max_command_size = 20000;
  EXPECT_EQ(login::line_limit(s), 8192u);
}

// ------------------------------------------------------------ IMAP budget
TEST(ImapBudget, LiteralOverBudgetRefusedBeforeItsBytes) {
  const imap::CommandParser::Limits lim{8192, 65536, 4096};
  for (bool nonsync : {true, false}) {
    imap::CommandParser p(lim);
    const std::string head = "a LOGIN "s + (nonsync ? "{65536+}\r\n" : "{65536}\r\n");
    const std::string in = head + std::string(65536, 'x');
    size_t used = 0;
    ASSERT_EQ(p.parse(in, used), imap::CommandParser::Result::Error) << nonsync;
    EXPECT_EQ(p.error(), imap::ParseError::LineTooLong);
    EXPECT_TRUE(p.fatal());
    EXPECT_EQ(used, head.size()) << "no literal byte may be read";
  }
}

TEST(ImapBudget, ManyLiteralsShareOneBudget) {
  const imap::CommandParser::Limits lim{8192, 65536, 4096};
  // Two 1500-byte literals fit; the third would not.
  std::string in = "a LOGIN " + literal(1500) + " " + literal(1500) + "\r\n";
  EXPECT_EQ(imap_trace(in, in.size(), lim), "Ca LOGIN[2]1500,1500,;");
  in = "a LOGIN " + literal(1500) + " " + literal(1500) + " " + literal(1500) + "\r\n";
  EXPECT_EQ(imap_trace(in, in.size(), lim), "X2!;");
  // The flood of issue 8: {65536+} literals with default limits; the first
  // one is already over the default budget.
  std::string flood = "a LOGIN ";
  for (int i = 0; i < 20; ++i) flood += literal(65536);
  size_t examined = 0;
  EXPECT_EQ(imap_trace(flood, 4096, imap::CommandParser::Limits{}, &examined), "X2!;");
  EXPECT_LT(examined, 64u);
}

TEST(ImapBudget, LineBytesCountToo) {
  const imap::CommandParser::Limits lim{8192, 65536, 1000};
  std::string in = "a LOGIN " + std::string(990, 'u') + " p\r\n";
  EXPECT_EQ(imap_trace(in, 7, lim), "X2!;");
  in = "a LOGIN " + std::string(980, 'u') + " p\r\n";  // 993 bytes
  EXPECT_EQ(imap_trace(in, 7, lim), "Ca LOGIN[2]980,1,;");
  // Each command has its own budget.
  EXPECT_EQ(imap_trace(in + in + in, 13, lim), "Ca LOGIN[2]980,1,;Ca LOGIN[2]980,1,;Ca LOGIN[2]980,1,;");
}

TEST(ImapBudget, SplitAtEveryByteSameResult) {
  const imap::CommandParser::Limits lim{8192, 65536, 4096};
  const std::string in = "a LOGIN " + literal(300) + " {5}\r\nsecre\r\n" +
                         "b ID (\"name\" {3}\r\nabc \"x-proxy-ttl\" \"3\")\r\n" +
                         "c LOGIN " + literal(3000) + " " + literal(3000) + "\r\n";
  const std::string whole = imap_trace(in, in.size(), lim);
  EXPECT_EQ(whole, "+;Ca LOGIN[2]300,5,;+;Cb ID[0]id(10 2 1 x-proxy-ttl=1);X2!;");
  for (size_t step = 1; step < 64; ++step) EXPECT_EQ(imap_trace(in, step, lim), whole) << step;
}

// ------------------------------------------------------- IMAP streamed ID
TEST(ImapId, LongIdIsStreamedAndBounded) {
  // 30 pairs of long keys and 1000-byte values: ~32 KiB, 4x the line limit.
  std::string in = "i1 ID (";
  for (int i = 0; i < 30; ++i) {
    char key[32];
    snprintf(key, sizeof key, "x-long-key-number-%02d-padding", i);  // 29 bytes
    in += (i ? " \"" : "\"") + std::string(key) + "\" \"" + std::string(1000, 'v') + "\"";
  }
  in += ")\r\nn NOOP\r\n";
  ASSERT_GT(in.size(), 30000u);
  const imap::CommandParser::Limits lim{};  // defaults: 8192 line, 16384 command
  const std::string whole = imap_trace(in, in.size(), lim);
  std::string want = "Ci1 ID[0]id(10 30 16";
  for (int i = 0; i < 16; ++i) {
    char key[32];
    snprintf(key, sizeof key, "x-long-key-number-%02d-padding", i);
    want += " "s + key + "=256t";
  }
  want += ");Cn NOOP[0];";
  EXPECT_EQ(whole, want);
  for (size_t step : {1u, 7u, 4096u}) EXPECT_EQ(imap_trace(in, step, lim), whole) << step;
  // The same with literal values.
  std::string lit = "i2 ID (";
  for (int i = 0; i < 30; ++i) lit += "\"k" + std::to_string(i) + "\" " + literal(1000) + " ";
  lit += "\"x-a\" NIL)\r\n";
  EXPECT_EQ(imap_trace(lit, 4096, lim), "Ci2 ID[0]id(10 31 1 x-a=0);");
}

TEST(ImapId, DovecotValidity) {
  const imap::CommandParser::Limits lim{};
  EXPECT_EQ(imap_trace("a ID NIL\r\n", 99, lim), "Ca ID[0]id(11 0 0);");
  EXPECT_EQ(imap_trace("a ID ()\r\n", 99, lim), "Ca ID[0]id(10 0 0);");
  EXPECT_EQ(imap_trace("a ID (\"k\")\r\n", 99, lim), "Ca ID[0]id(10 0 0);");  // odd: ignored
  EXPECT_EQ(imap_trace("a ID (\"k\" \"v\") extra\r\n", 99, lim), "Ca ID[0]id(10 1 0);");
  EXPECT_EQ(imap_trace("a ID (a b)\r\n", 99, lim), "Ca ID[0]id(00 0 0);");     // atom key
  EXPECT_EQ(imap_trace("a ID (\"k\" b)\r\n", 99, lim), "Ca ID[0]id(00 0 0);");  // atom value
  EXPECT_EQ(imap_trace("a ID (\"k\" (\"b\"))\r\n", 99, lim), "Ca ID[0]id(00 0 0);");
  EXPECT_EQ(imap_trace("a ID \"foo\"\r\n", 99, lim), "Ca ID[0]id(00 0 0);");
  EXPECT_EQ(imap_trace("a ID (\"" + std::string(31, 'k') + "\" \"v\")\r\n", 99, lim),
            "Ca ID[0]id(00 0 0);");
  EXPECT_EQ(imap_trace("a ID (\"" + std::string(30, 'k') + "\" \"v\")\r\n", 99, lim),
            "Ca ID[0]id(10 1 0);");
  // The line limit still bounds each item.
  EXPECT_EQ(imap_trace("a ID (\"k\" \"" + std::string(9000, 'v') + "\")\r\n", 512, lim), "X2!;");
  // Syntax errors are still syntax errors.
  EXPECT_EQ(imap_trace("a ID (\"k\r\n", 99, lim), "X1;");
}

// ------------------------------------------------------ ManageSieve budget
TEST(ManagesieveBudget, LiteralOverBudgetRefusedBeforeItsBytes) {
  const sieve::CommandParser::Limits lim{8192, 65536, 4096};
  sieve::CommandParser p(lim);
  const std::string head = "AUTHENTICATE \"PLAIN\" {60000+}\r\n";
  const std::string in = head + std::string(60000, 'x');
  size_t used = 0;
  ASSERT_EQ(p.parse(in, used), sieve::CommandParser::Result::Error);
  EXPECT_EQ(p.error(), sieve::ParseError::LineTooLong);
  EXPECT_EQ(used, head.size());
}

TEST(ManagesieveBudget, HundredsOfLiteralsEndAtTheBudget) {
  const sieve::CommandParser::Limits lim{};  // defaults
  std::string in = "NOOP";
  for (int i = 0; i < 400; ++i) in += " " + literal(100);
  in += "\r\n";
  size_t examined = 0;
  EXPECT_EQ(sieve_trace(in, 4096, lim, &examined), "X2:;");
  EXPECT_LE(examined, lim.max_command_size);
}

TEST(ManagesieveBudget, ParseWorkIsLinear) {
  // Issue 8: 400 x 64 KiB literals took 3.5 s when every 4 KiB read
  // re-parsed the whole command. With a budget big enough to allow them,
  // the incremental parser must look at each byte once.
  sieve::CommandParser::Limits lim{8192, 65536, size_t{64} << 20};
  std::string in = "NOOP";
  for (int i = 0; i < 400; ++i) in += " " + literal(65536);
  in += "\r\n";
  size_t examined = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string trace = sieve_trace(in, 4096, lim, &examined);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(examined, in.size());  // every byte consumed exactly once
  EXPECT_EQ(trace.substr(0, 5), "CNOOP");
  EXPECT_LT(secs, 1.0) << "parse of " << in.size() << " bytes took " << secs << " s";
}

TEST(ManagesieveBudget, SplitAtEveryByteSameResult) {
  const sieve::CommandParser::Limits lim{8192, 65536, 4096};
  const std::string in = "AUTHENTICATE \"PLAIN\" {8+}\r\nAGEAYgBj\r\n\r\nNOOP \"a\\\"b\" atom " +
                         literal(100, 'y', false) + "\r\nBAD@ \x01\r\nNOOP " + literal(3000) +
                         " " + literal(3000) + "\r\n";
  const std::string whole = sieve_trace(in, in.size(), lim);
  EXPECT_EQ(whole,
            "CAUTHENTICATE[PLAIN/5,LAGEAYgBj/8,];E;CNOOP[a\"b/3,atom/4,Lyyyyyyyyyyyyyyyy/100,];"
            "X1:Invalid argument;X2:;");
  for (size_t step = 1; step < 40; ++step) EXPECT_EQ(sieve_trace(in, step, lim), whole) << step;
  // String lines (SASL responses), split everywhere too.
  const std::string sl = "\"dXNlcjM=\"\r\n{4+}\r\nabcd\r\n\r\n";
  const std::string sl_whole = sieve_trace(sl, sl.size(), lim, nullptr, true);
  EXPECT_EQ(sl_whole, "C[dXNlcjM=/8,];C[Labcd/4,];X1:Expected a string;");
  for (size_t step = 1; step < 12; ++step)
    EXPECT_EQ(sieve_trace(sl, step, lim, nullptr, true), sl_whole) << step;
}

// ------------------------------------------------ through the frontends
namespace {
std::string drive(std::string_view proto, std::string_view input, size_t chunk,
                  login::FrontendEvent* last = nullptr, size_t max_command_size = 16384) {
  login::FrontendSettings s;
  s.max_command_size = max_command_size;
  s.greeting = "ready.";
  s.mechanisms = {"PLAIN"};
  s.allow_cleartext = true;
  login::ClientInfo ci;
  ci.remote_ip = asio::ip::make_address("192.0.2.7");
  ci.local_ip = asio::ip::make_address("192.0.2.1");
  auto fe = protocols::find(proto)->make_frontend(s, ci);
  fe->start();
  fe->output().clear();
  login::FrontendEvent ev = login::FrontendEvent::NeedInput;
  for (size_t off = 0; off < input.size() && ev == login::FrontendEvent::NeedInput; off += chunk) {
    fe->feed(input.substr(off, chunk));
    ev = fe->next();
  }
  if (last) *last = ev;
  return fe->output();
}
}  // namespace

TEST(PreloginBudget, EveryFrontendEndsAnOverlongCommandWithItsTooLongError) {
  std::string imap_flood = "a LOGIN ";
  std::string sieve_flood = "AUTHENTICATE \"PLAIN\"";
  for (int i = 0; i < 50; ++i) {
    imap_flood += literal(65536);
    sieve_flood += " " + literal(1000);
  }
  const std::string line(20000, 'A');
  struct Case {
    const char* proto;
    std::string input;
    std::string reply;
  } cases[] = {
      {"imap", imap_flood, "* BYE Too long command line.\r\n"},
      {"managesieve", sieve_flood, "BYE \"Too long command line.\"\r\n"},
      {"pop3", "USER " + line + "\r\n", "-ERR Input buffer full, aborting\r\n"},
      {"submission", "EHLO " + line + "\r\n", "500 5.5.2 Line too long\r\n"},
  };
  for (const auto& c : cases) {
    login::FrontendEvent ev;
    EXPECT_EQ(drive(c.proto, c.input, 4096, &ev), c.reply) << c.proto;
    EXPECT_EQ(ev, login::FrontendEvent::Close) << c.proto;
  }
  // A command budget below the line limit caps the lines of POP3 and Submission.
  const std::string auth = "AUTH PLAIN " + std::string(3000, 'A') + "\r\n";
  login::FrontendEvent ev;
  EXPECT_EQ(drive("pop3", auth, 4096, &ev, 2048), "-ERR Input buffer full, aborting\r\n");
  const std::string sub = drive("submission", "EHLO x\r\n" + auth, 4096, &ev, 2048);
  EXPECT_EQ(sub.substr(sub.size() - 25), "500 5.5.2 Line too long\r\n") << sub;
  EXPECT_EQ(ev, login::FrontendEvent::Close);
}

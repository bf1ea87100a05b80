// The LMTP proxy's sans-I/O pieces (src/lmtp/smtp.hpp).
#include <gtest/gtest.h>

#include "lmtp/smtp.hpp"

using namespace portier::lmtp;

TEST(LmtpSmtp, ParseCommand) {
  auto c = parse_command("mail FROM:<a@b> SIZE=10");
  EXPECT_EQ(c.verb, "MAIL");
  EXPECT_EQ(c.arg, "FROM:<a@b> SIZE=10");
  EXPECT_EQ(parse_command("QUIT").verb, "QUIT");
  EXPECT_EQ(parse_command("").verb, "");
}

TEST(LmtpSmtp, ParsePath) {
  auto p = parse_path("FROM:<a@b> BODY=8BITMIME SIZE=12  ", "FROM:");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->path, "a@b");
  EXPECT_EQ(p->params, "BODY=8BITMIME SIZE=12");
  auto n = parse_path("from: <>", "FROM:");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->path, "");
  auto r = parse_path("TO:<\"x>y\"@b> ORCPT=rfc822;x@b", "TO:");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->path, "\"x>y\"@b");
  EXPECT_TRUE(r->has_orcpt);
  EXPECT_FALSE(parse_path("TO:a@b", "TO:"));
  EXPECT_FALSE(parse_path("TO:<a@b", "TO:"));
  EXPECT_FALSE(parse_path("TO:<a@b>x", "TO:"));
  EXPECT_FALSE(parse_path("FROM:<a@b>", "TO:"));
  EXPECT_FALSE(parse_path(std::string_view("TO:<a\0b>", 8), "TO:"));
  EXPECT_FALSE(parse_path("TO:<a b@c>", "TO:"));
}

TEST(LmtpSmtp, ReplyParserMultiLine) {
  ReplyParser p;
  EXPECT_EQ(p.feed("250-b1.test"), ReplyParser::Status::More);
  EXPECT_EQ(p.feed("250-XCLIENT ADDR PORT TTL"), ReplyParser::Status::More);
  EXPECT_EQ(p.feed("250 PIPELINING"), ReplyParser::Status::Done);
  Reply r = p.take();
  EXPECT_EQ(r.code, 250);
  ASSERT_EQ(r.lines.size(), 3u);
  auto caps = parse_capabilities(r);
  EXPECT_TRUE(caps.xclient);
  EXPECT_TRUE(caps.pipelining);
  EXPECT_EQ(caps.xclient_attrs, (std::vector<std::string>{"ADDR", "PORT", "TTL"}));
  EXPECT_EQ(p.feed("451 4.3.0 <a@b> Temporary failure"), ReplyParser::Status::Done);
  r = p.take();
  EXPECT_EQ(r.enhanced, "4.3.0");
  EXPECT_EQ(r.text, "<a@b> Temporary failure");
  EXPECT_EQ(r.render(), "451 4.3.0 <a@b> Temporary failure");
  EXPECT_EQ(p.feed("250"), ReplyParser::Status::Done);
  EXPECT_EQ(p.take().render(), "250");
}

TEST(LmtpSmtp, ReplyParserRejectsGarbage) {
  ReplyParser p;
  EXPECT_EQ(p.feed("hello"), ReplyParser::Status::Bad);
  EXPECT_EQ(p.feed("199 x"), ReplyParser::Status::Bad);
  EXPECT_EQ(p.feed("250x"), ReplyParser::Status::Bad);
  ReplyParser q;
  EXPECT_EQ(q.feed("250-a"), ReplyParser::Status::More);
  EXPECT_EQ(q.feed("251 b"), ReplyParser::Status::Bad);  // code changed mid-reply
  ReplyParser m;
  for (int i = 0; i < 100; ++i) ASSERT_EQ(m.feed("250-x"), ReplyParser::Status::More);
  EXPECT_EQ(m.feed("250-x"), ReplyParser::Status::Bad);  // bounded
}

TEST(LmtpSmtp, DataScannerFindsTheEndAtEverySplit) {
  const std::string body = "Subject: x\r\n\r\n..stuffed\r\n.x\r\nline\r\n.\r\nQUIT\r\n";
  const size_t want = body.find("\r\n.\r\n") + 5;
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    DataScanner s;
    size_t a = s.feed(std::string_view(body).substr(0, std::min(cut, want)));
    size_t got;
    if (cut >= want) {
      got = a;
    } else {
      ASSERT_EQ(a, std::string::npos) << cut;
      size_t b = s.feed(std::string_view(body).substr(cut));
      ASSERT_NE(b, std::string::npos) << cut;
      got = cut + b;
    }
    EXPECT_EQ(got, want) << "split at " << cut;
  }
}

TEST(LmtpSmtp, DataScannerEdgeCases) {
  DataScanner s;
  EXPECT_EQ(s.feed(".\r\n"), 3u);  // empty body
  DataScanner t;
  EXPECT_EQ(t.feed("a\n.\nb\r\n..\r\n"), std::string::npos);  // bare LF is no line end
  EXPECT_EQ(t.feed(".\r\n"), 3u);
  DataScanner u;
  EXPECT_EQ(u.feed("x\r\r\n.\r\n"), 7u);
}

TEST(LmtpSmtp, Detail) {
  EXPECT_EQ(split_detail("user+news@dom", "+"), (std::pair<std::string, std::string>{"user@dom", "news"}));
  EXPECT_EQ(split_detail("user-a+b@dom", "+-"), (std::pair<std::string, std::string>{"user@dom", "a+b"}));
  EXPECT_EQ(split_detail("user@dom", "+"), (std::pair<std::string, std::string>{"user@dom", ""}));
  EXPECT_EQ(split_detail("+x@dom", "+"), (std::pair<std::string, std::string>{"+x@dom", ""}));
  EXPECT_EQ(split_detail("a+b@c+d", ""), (std::pair<std::string, std::string>{"a+b@c+d", ""}));
  EXPECT_EQ(split_detail("u+d", "+"), (std::pair<std::string, std::string>{"u", "d"}));
  EXPECT_EQ(join_detail("carol@dom", '+', "news"), "carol+news@dom");
  EXPECT_EQ(join_detail("carol@dom", '+', ""), "carol@dom");
}

TEST(LmtpSmtp, Xtext) {
  EXPECT_EQ(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
  EXPECT_EQ(xtext_decode("a+2Bb+3Dc+20d"), "a+b=c d");
  EXPECT_EQ(xtext_decode("bad+2"), "bad+2");
}

TEST(LmtpSmtp, ParseXclient) {
  auto a = parse_xclient("ADDR=127.0.0.2 port=1234 TTL=4 HELO=a+20b");
  ASSERT_TRUE(a);
  ASSERT_EQ(a->size(), 4u);
  EXPECT_EQ((*a)[1].first, "PORT");
  EXPECT_EQ((*a)[3].second, "a b");
  EXPECT_FALSE(parse_xclient(""));
  EXPECT_FALSE(parse_xclient("ADDR"));
  EXPECT_FALSE(parse_xclient("A1=x"));
}

TEST(LmtpSmtp, XclientLinesOnlyAdvertisedAndSplit) {
  std::vector<std::pair<std::string, std::string>> attrs = {
      {"ADDR", "10.0.0.1"}, {"PORT", "25"}, {"LOGIN", "x"}, {"HELO", std::string(300, 'h')},
      {"TTL", "4"}, {"SESSION", std::string(300, 's')}};
  auto lines = xclient_lines(attrs, {"ADDR", "PORT", "HELO", "TTL", "SESSION"});
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& l : lines) {
    EXPECT_LE(l.size(), 512u);
    EXPECT_EQ(l.substr(0, 8), "XCLIENT ");
    EXPECT_EQ(l.find("LOGIN="), std::string::npos);
  }
  EXPECT_NE(lines[0].find("ADDR=10.0.0.1 PORT=25 HELO="), std::string::npos);
  EXPECT_NE(lines[1].find("SESSION="), std::string::npos);
  EXPECT_TRUE(xclient_lines(attrs, {}).empty());
}

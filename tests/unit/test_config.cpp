#include <gtest/gtest.h>

#include <algorithm>

#include "app/registries.hpp"
#include "config/config.hpp"
#include "passdb/drivers/passwd_file/passwd_file.hpp"
#include "passdb/registry.hpp"

using namespace portier::config;
using namespace std::chrono_literals;

namespace {

const std::string kPath = "/etc/portier/portier.toml";

// Minimal valid base, to which tests append.
const std::string kListener = "[[listener]]\nprotocol = \"imap\"\nport = 143\n";
const std::string kPassdb = "[[passdb]]\ndriver = \"passwd-file\"\npath = \"users\"\n";

std::string dump(const LoadResult& r) {
  std::string s;
  for (const auto& e : r.errors) s += e.to_string() + "\n";
  return s;
}

Config load_ok(const std::string& text) {
  auto r = load_string(text, kPath, portier::app::registries());
  EXPECT_TRUE(r.config.has_value()) << dump(r);
  EXPECT_TRUE(r.errors.empty()) << dump(r);
  return r.config.value_or(Config{});
}

// Asserts exactly one error, at `line`, whose message contains `needle`.
void expect_error(const std::string& text, int line, const std::string& needle) {
  auto r = load_string(text, kPath, portier::app::registries());
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 1u) << text << "\n" << dump(r);
  EXPECT_EQ(r.errors[0].line, line) << dump(r);
  EXPECT_NE(r.errors[0].message.find(needle), std::string::npos) << dump(r);
  EXPECT_EQ(r.errors[0].file, kPath);
}

TEST(Config, ExampleFile) {
  std::string path = std::string(PORTIER_TEST_DATA) + "/portier.toml";
  auto r = load_file(path, portier::app::registries());
  ASSERT_TRUE(r.config) << dump(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.path, path);
  EXPECT_EQ(c.server.hostname, "proxy.example.org");
  EXPECT_EQ(c.server.workers, 0u);
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].protocol, "imap");
  EXPECT_EQ(c.listeners[0].address, "127.0.0.1");
  EXPECT_EQ(c.listeners[0].port, 10143);
  EXPECT_EQ(c.listeners[0].tls, TlsMode::None);
  EXPECT_EQ(c.listeners[0].line, 4);
  EXPECT_EQ(c.tls.cert, std::string(PORTIER_TEST_DATA) + "/cert.pem");
  EXPECT_EQ(c.tls.key, std::string(PORTIER_TEST_DATA) + "/key.pem");
  ASSERT_EQ(c.passdbs.size(), 1u);
  EXPECT_EQ(c.passdbs[0].driver, "passwd-file");
  EXPECT_EQ(portier::passdb::passwd_file_settings(c.passdbs[0]).path, std::string(PORTIER_TEST_DATA) + "/users.passwd");
  EXPECT_EQ(c.passdbs[0].protocols, std::vector<std::string>{"imap"});
  EXPECT_EQ(c.passdbs[0].line, 12);
  EXPECT_FALSE(c.auth.allow_cleartext);
  EXPECT_EQ(c.auth.mechanisms, (std::vector<std::string>{"PLAIN", "LOGIN"}));
  EXPECT_EQ(c.auth.failure_delay, 2s);
  ASSERT_EQ(c.login.trusted_networks.size(), 2u);
  EXPECT_TRUE(c.login.trusted_networks[0].contains(asio::ip::make_address("127.1.2.3")));
  EXPECT_TRUE(c.login.trusted_networks[1].contains(asio::ip::make_address("::1")));
  EXPECT_EQ(c.login.proxy_timeout, 30s);
  EXPECT_EQ(c.login.proxy_max_reconnects, 3u);
  EXPECT_EQ(c.login.greeting, "portier ready.");
}

TEST(Config, Defaults) {
  auto c = load_ok(kListener + kPassdb);
  EXPECT_FALSE(c.server.hostname.empty());  // gethostname()
  EXPECT_EQ(c.listeners[0].address, "0.0.0.0");
  EXPECT_EQ(c.tls.cert, "");
  EXPECT_EQ(c.backend.ca_file, "");
  EXPECT_EQ(portier::passdb::passwd_file_settings(c.passdbs[0]).path, "/etc/portier/users");
  EXPECT_TRUE(c.passdbs[0].protocols.empty());
  EXPECT_EQ(c.auth.mechanisms, (std::vector<std::string>{"PLAIN", "LOGIN"}));
  EXPECT_EQ(c.auth.failure_delay, 2000ms);
  EXPECT_TRUE(c.auth.verbose);
  EXPECT_EQ(c.login.proxy_timeout, 30s);
  EXPECT_EQ(c.login.client_timeout, 180s);
  EXPECT_EQ(c.login.max_line_length, 8192u);
  EXPECT_EQ(c.login.max_literal_size, 65536u);
  EXPECT_EQ(c.login.max_command_size, 16384u);
  EXPECT_EQ(c.login.max_invalid_commands, 3u);
  EXPECT_EQ(c.login.proxy_ttl, 5u);
  EXPECT_EQ(c.log.level, "info");
}

TEST(Config, FullFeatured) {
  auto c = load_ok(R"(
[server]
workers = 256
user = "portier"
[tls]
cert = "/abs/cert.pem"
key = "sub/key.pem"
[backend]
ca_file = "ca.pem"
cert = "bc.pem"
key = "/x/bk.pem"
[[listener]]
protocol = "imap"
address = "::"
tls = "implicit"
[[listener]]
protocol = "pop3"
tls = "starttls"
[[listener]]
protocol = "submission"
[[listener]]
protocol = "managesieve"
address = "::1"
[[listener]]
protocol = "imap"
port = 0
[[listener]]
protocol = "imap"
port = 0
[[passdb]]
driver = "passwd-file"
path = "../users"
protocols = ["imap", "pop3"]
default_fields = "proxy host=10.0.0.1"
override_fields = "port=143"
default_pass_scheme = "PLAIN"
[[passdb]]
driver = "passwd-file"
path = "/var/lib/portier/other"
[auth]
allow_cleartext = true
mechanisms = ["plain", "PLAIN"]
failure_delay = 0
verbose = false
[login]
trusted_networks = ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]
proxy_timeout = 45
proxy_max_reconnects = 0
greeting = "Hello there"
client_timeout = "3m"
max_line_length = 65536
max_literal_size = 0
max_command_size = 4096
max_invalid_commands = 10
proxy_ttl = 2
[log]
level = "debug"
)");
  EXPECT_EQ(c.server.workers, 256u);
  EXPECT_EQ(c.server.user, "portier");
  EXPECT_EQ(c.tls.cert, "/abs/cert.pem");
  EXPECT_EQ(c.tls.key, "/etc/portier/sub/key.pem");
  EXPECT_EQ(c.backend.ca_file, "/etc/portier/ca.pem");
  EXPECT_EQ(c.backend.cert, "/etc/portier/bc.pem");
  EXPECT_EQ(c.backend.key, "/x/bk.pem");
  ASSERT_EQ(c.listeners.size(), 6u);
  EXPECT_EQ(c.listeners[0].address, "::");
  EXPECT_EQ(c.listeners[0].port, 993);
  EXPECT_EQ(c.listeners[0].tls, TlsMode::Implicit);
  EXPECT_EQ(c.listeners[1].port, 110);
  EXPECT_EQ(c.listeners[1].tls, TlsMode::StartTls);
  EXPECT_EQ(c.listeners[2].port, 587);
  EXPECT_EQ(c.listeners[3].port, 4190);
  EXPECT_EQ(c.listeners[4].port, 0);
  EXPECT_EQ(c.listeners[5].port, 0);  // port 0 may repeat
  ASSERT_EQ(c.passdbs.size(), 2u);
  EXPECT_EQ(portier::passdb::passwd_file_settings(c.passdbs[0]).path, "/etc/users");
  EXPECT_EQ(c.passdbs[0].protocols, (std::vector<std::string>{"imap", "pop3"}));
  EXPECT_EQ(c.passdbs[0].default_fields, "proxy host=10.0.0.1");
  EXPECT_EQ(c.passdbs[0].override_fields, "port=143");
  EXPECT_EQ(c.passdbs[0].default_pass_scheme, "PLAIN");
  EXPECT_EQ(c.passdbs[1].default_pass_scheme, "CRYPT");  // Dovecot's default
  EXPECT_TRUE(c.auth.allow_cleartext);
  EXPECT_EQ(c.auth.mechanisms, std::vector<std::string>{"PLAIN"});
  EXPECT_EQ(c.auth.failure_delay, 0ms);
  EXPECT_FALSE(c.auth.verbose);
  ASSERT_EQ(c.login.trusted_networks.size(), 3u);
  EXPECT_EQ(c.login.trusted_networks[1].prefix, 32u);
  EXPECT_EQ(c.login.proxy_timeout, 45s);
  EXPECT_EQ(c.login.proxy_max_reconnects, 0u);
  EXPECT_EQ(c.login.greeting, "Hello there");
  EXPECT_EQ(c.login.client_timeout, 3min);
  EXPECT_EQ(c.login.max_line_length, 65536u);
  EXPECT_EQ(c.login.max_literal_size, 0u);
  EXPECT_EQ(c.login.max_command_size, 4096u);
  EXPECT_EQ(c.login.max_invalid_commands, 10u);
  EXPECT_EQ(c.login.proxy_ttl, 2u);
  EXPECT_EQ(c.log.level, "debug");
}

TEST(Config, RelativePathWithoutDirectory) {
  auto r = load_string(kListener + kPassdb, "portier.toml", portier::app::registries());
  ASSERT_TRUE(r.config) << dump(r);
  EXPECT_EQ(portier::passdb::passwd_file_settings(r.config->passdbs[0]).path, "users");
}

struct ErrCase {
  std::string text;
  int line;
  const char* needle;
};

TEST(Config, SingleErrors) {
  const std::string base = kListener + kPassdb;  // 6 lines
  const ErrCase cases[] = {
      // Syntax error from toml++.
      {base + "[auth\n", 7, ""},
      {base + "x = = 1\n", 7, ""},
      // Unknown tables and keys.
      {base + "[serverr]\nhostname = \"x\"\n", 7, "unknown top-level"},
      {base + "[server]\nhostnme = \"x\"\n", 8, "unknown key 'hostnme' in [server]"},
      {base + "[auth]\nmechanism = [\"PLAIN\"]\n", 8, "unknown key 'mechanism'"},
      {base + "[login]\n\n trusted_network = []\n", 9, "unknown key 'trusted_network'"},
      {base + "[tls]\ncert = \"c\"\nkey = \"k\"\npassword = \"x\"\n", 10, "unknown key 'password'"},
      {base + "[backend]\nca = \"c\"\n", 8, "unknown key 'ca'"},
      {base + "[log]\nfile = \"x\"\n", 8, "unknown key 'file'"},
      {"[[listener]]\nprotocol = \"imap\"\nprot = 1\n" + kPassdb, 3, "unknown key 'prot' in [[listener]]"},
      {kListener + "[[passdb]]\ndriver = \"passwd-file\"\npath = \"u\"\nargs = \"x\"\n", 7, "unknown key 'args'"},
      // Wrong types.
      {base + "[server]\nworkers = \"4\"\n", 8, "expected an integer, got string"},
      {base + "[server]\nhostname = 5\n", 8, "expected a string"},
      {base + "[auth]\nallow_cleartext = \"yes\"\n", 8, "expected a boolean"},
      {base + "[auth]\nmechanisms = \"PLAIN\"\n", 8, "expected an array of strings"},
      {base + "[auth]\nmechanisms = [\"PLAIN\", 1]\n", 8, "element"},
      {base + "[login]\ngreeting = [\"x\"]\n", 8, "expected a string"},
      {"server = 1\n" + base, 1, "expected a table"},
      {base + "[login]\nproxy_timeout = 1.5\n", 8, "duration"},
      {"listener = 5\n" + kPassdb, 1, "array of tables"},
      // Listener validation.
      {"[[listener]]\nprotocol = \"smtp\"\n" + kPassdb, 2, "unknown protocol 'smtp'"},
      {"[[listener]]\nprotocol = \"IMAP\"\n" + kPassdb, 2, "unknown protocol"},
      {"[[listener]]\nport = 143\n" + kPassdb, 1, "missing required key 'protocol'"},
      {"[[listener]]\nprotocol = \"imap\"\ntls = \"ssl\"\n" + kPassdb, 3, "unknown mode 'ssl'"},
      {"[[listener]]\nprotocol = \"imap\"\nport = 65536\n" + kPassdb, 3, "out of range"},
      {"[[listener]]\nprotocol = \"imap\"\nport = -1\n" + kPassdb, 3, "out of range"},
      {"[[listener]]\nprotocol = \"imap\"\naddress = \"localhost\"\n" + kPassdb, 3, "not an IP address"},
      {"[[listener]]\nprotocol = \"imap\"\ntls = \"starttls\"\n" + kPassdb, 3, "requires [tls] cert and key"},
      {"[tls]\ncert = \"c\"\nkey = \"k\"\n[[listener]]\nprotocol = \"imap\"\ntls = \"implicit\"\n" + kPassdb +
           "[[listener]]\nprotocol = \"imap\"\nport = 993\n",
       12, "duplicate address 0.0.0.0 port 993"},
      {kListener + "[[listener]]\nprotocol = \"pop3\"\nport = 143\n" + kPassdb, 6,
       "already used by the listener at line 1"},
      // [tls] / [backend] pairs.
      {base + "[tls]\ncert = \"c\"\n", 7, "cert and key must be given together"},
      {base + "[backend]\nkey = \"k\"\n", 7, "cert and key must be given together"},
      // Listener / passdb presence.
      {kPassdb, 0, "no [[listener]]"},
      {kListener, 0, "no [[passdb]]"},
      {"listener = []\n" + kPassdb, 0, "no [[listener]]"},
      // Passdb validation.
      {kListener + "[[passdb]]\ndriver = \"nosuch\"\npath = \"x\"\n", 5, "unknown driver 'nosuch'"},
      {kListener + "[[passdb]]\ndriver = \"passwd-file\"\npath = \"\"\n", 6, "must not be empty"},
      {kListener + "[[passdb]]\ndriver = \"passwd-file\"\n", 4, "missing required key 'path'"},
      {kListener + "[[passdb]]\npath = \"p\"\n", 4, "missing required key 'driver'"},
      {kListener + "[[passdb]]\ndriver = \"passwd-file\"\npath = \"p\"\nprotocols = [\"imap\", \"nntp\"]\n", 7,
       "unknown protocol 'nntp'"},
      // Auth.
      {base + "[auth]\nmechanisms = [\"PLAIN\", \"CRAM-MD5\"]\n", 8, "unknown mechanism 'CRAM-MD5'"},
      {base + "[auth]\nmechanisms = []\n", 8, "at least one mechanism"},
      {base + "[auth]\nfailure_delay = \"2 parsecs\"\n", 8, "invalid duration '2 parsecs'"},
      {base + "[auth]\nfailure_delay = -1\n", 8, "invalid duration"},
      // Login.
      {base + "[login]\ntrusted_networks = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n", 8, "invalid network '10.0.0.0/33'"},
      {base + "[login]\ntrusted_networks = [\"nonsense\"]\n", 8, "invalid network"},
      {base + "[login]\nproxy_timeout = \"soon\"\n", 8, "invalid duration"},
      {base + "[login]\nclient_timeout = \"1.5s\"\n", 8, "invalid duration"},
      {base + "[login]\ngreeting = \"a\\r\\nb\"\n", 8, "CR, LF"},
      {base + "[login]\nmax_line_length = 0\n", 8, "out of range"},
      {base + "[login]\nproxy_max_reconnects = -3\n", 8, "out of range"},
      // Server / log.
      {base + "[server]\nworkers = 257\n", 8, "out of range 0..256"},
      {base + "[server]\nhostname = \"\"\n", 8, "hostname"},
      {base + "[log]\nlevel = \"loud\"\n", 8, "unknown level 'loud'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    expect_error(c.text, c.line, c.needle);
  }
}

TEST(Config, LogFormatAndTarget) {
  const std::string base = kListener + kPassdb;  // 6 lines
  auto d = load_ok(base);
  EXPECT_EQ(d.log.format, "text");
  EXPECT_EQ(d.log.target, "stderr");
  EXPECT_EQ(d.log.syslog_socket, "/dev/log");
  EXPECT_EQ(d.log.syslog_ident, "portier");
  auto c = load_ok(base + "[log]\nformat = \"json\"\ntarget = \"syslog\"\n"
                          "syslog_socket = \"/run/x.sock\"\nsyslog_ident = \"dovecot\"\n");
  EXPECT_EQ(c.log.format, "json");
  EXPECT_EQ(c.log.target, "syslog");
  EXPECT_EQ(c.log.syslog_socket, "/run/x.sock");
  EXPECT_EQ(c.log.syslog_ident, "dovecot");
  const ErrCase cases[] = {
      {base + "[log]\nformat = \"xml\"\n", 8, "log.format: expected \"text\" or \"json\""},
      {base + "[log]\ntarget = \"file\"\n", 8, "log.target: expected \"stderr\" or \"syslog\""},
      {base + "[log]\ntarget = 1\n", 8, "expected a string"},
      {base + "[log]\nsyslog_socket = \"\"\n", 8, "log.syslog_socket"},
      {base + "[log]\nsyslog_socket = \"/" + std::string(120, 'x') + "\"\n", 8, "1..107 bytes"},
      {base + "[log]\nsyslog_ident = \"my tag\"\n", 8, "log.syslog_ident"},
      {base + "[log]\nsyslog_ident = \"a:b\"\n", 8, "log.syslog_ident"},
  };
  for (const auto& e : cases) {
    SCOPED_TRACE(e.text);
    expect_error(e.text, e.line, e.needle);
  }
}

TEST(Config, ErrorColumnsAndFormat) {
  auto r = load_string(kListener + kPassdb + "[server]\n  workers = 1000\n", "/x/p.toml", portier::app::registries());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 8);
  EXPECT_EQ(r.errors[0].column, 13);
  EXPECT_EQ(r.errors[0].to_string().substr(0, 16), "/x/p.toml:8:13: ");
  Error e{"f", 0, 0, "msg"};
  EXPECT_EQ(e.to_string(), "f: msg");
  Error e2{"f", 3, 0, "msg"};
  EXPECT_EQ(e2.to_string(), "f:3: msg");
}

TEST(Config, CollectsAllErrors) {
  auto r = load_string(R"([server]
workers = 999
colour = "blue"
[[listener]]
protocol = "nntp"
port = 70000
[[passdb]]
driver = "sql"
[auth]
mechanisms = ["SCRAM-SHA-1"]
failure_delay = "forever"
[login]
trusted_networks = ["1.2.3.4/99"]
)",
                       kPath, portier::app::registries());
  EXPECT_FALSE(r.config);
  std::vector<int> lines;
  for (const auto& e : r.errors) lines.push_back(e.line);
  // Sorted by position; 0 = "no [[listener]]" (all listeners invalid still counts as configured).
  // Line 7 ("missing required key 'path'") is gone since issue 9: `path` is
  // passwd-file's own key, and an unknown driver's keys are not checked.
  EXPECT_EQ(lines, (std::vector<int>{2, 3, 5, 6, 8, 10, 11, 13})) << dump(r);
}

TEST(Config, LoadFileErrors) {
  auto r = load_file("/nonexistent/portier.toml", portier::app::registries());
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 0);
  EXPECT_NE(r.errors[0].message.find("cannot open"), std::string::npos);
  EXPECT_EQ(r.errors[0].file, "/nonexistent/portier.toml");
}

// ---- CIDR -------------------------------------------------------------------

struct CidrCase {
  const char* cidr;
  const char* addr;
  bool inside;
};

TEST(ConfigCidr, Contains) {
  const CidrCase cases[] = {
      {"127.0.0.0/8", "127.0.0.1", true},
      {"127.0.0.0/8", "127.255.255.255", true},
      {"127.0.0.0/8", "128.0.0.1", false},
      {"127.0.0.0/8", "::ffff:127.0.0.1", true},  // v4-mapped client address
      {"127.0.0.0/8", "::1", false},
      {"::1/128", "::1", true},
      {"::1/128", "::2", false},
      {"::1/128", "127.0.0.1", false},
      {"10.1.2.3/16", "10.1.200.1", true},  // host bits ignored
      {"10.1.2.3/16", "10.2.0.1", false},
      {"192.0.2.7", "192.0.2.7", true},  // bare IP = host
      {"192.0.2.7", "192.0.2.8", false},
      {"0.0.0.0/0", "203.0.113.9", true},
      {"0.0.0.0/0", "::ffff:203.0.113.9", true},
      {"0.0.0.0/0", "2001:db8::1", false},
      {"::/0", "2001:db8::1", true},
      {"::/0", "::ffff:1.2.3.4", true},  // mapped address is also in ::/0
      {"2001:db8::/32", "2001:db8:ffff::1", true},
      {"2001:db8::/32", "2001:db9::1", false},
      {"2001:db8::/33", "2001:db8:8000::1", false},
      {"2001:db8::/33", "2001:db8:7fff::1", true},
      {"::ffff:10.0.0.0/104", "10.20.30.40", true},  // mapped network == 10.0.0.0/8
      {"::ffff:10.0.0.0/104", "::ffff:10.20.30.40", true},
      {"::ffff:10.0.0.0/104", "11.0.0.1", false},
      {"10.0.0.0/8", "::ffff:11.0.0.1", false},
      {"192.168.1.0/31", "192.168.1.1", true},
      {"192.168.1.0/31", "192.168.1.2", false},
  };
  for (const auto& c : cases) {
    auto cidr = parse_cidr(c.cidr);
    ASSERT_TRUE(cidr) << c.cidr;
    EXPECT_EQ(cidr->contains(asio::ip::make_address(c.addr)), c.inside) << c.cidr << " ∋ " << c.addr;
  }
}

TEST(ConfigCidr, Parse) {
  auto c = parse_cidr("10.1.2.3/8");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->net.to_string(), "10.0.0.0");
  EXPECT_EQ(c->prefix, 8u);
  c = parse_cidr("::1");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->prefix, 128u);
  c = parse_cidr("::ffff:10.0.0.0/104");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->net.is_v4());
  EXPECT_EQ(c->prefix, 8u);
  const char* bad[] = {"",          "/8",        "10.0.0.0/",  "10.0.0.0/33", "::/129",     "10.0.0.0/-1",
                       "10.0.0/8",  "example.org", "10.0.0.0/8/8", "10.0.0.0/ 8", "1.2.3.4/99999999999999999999"};
  for (const char* b : bad) EXPECT_FALSE(parse_cidr(b)) << b;
}

}  // namespace

// Protocol and mechanism names come from the registries (issue 9): config
// keeps no list of its own, and its messages list what the registries hold.
TEST(ConfigRegistries, NamesComeFromTheRegistries) {
  const auto& r = portier::app::registries();
  EXPECT_EQ(r.protocol_port("imap", false), 143);
  EXPECT_EQ(r.protocol_port("imap", true), 993);
  EXPECT_EQ(r.protocol_port("managesieve", true), 4190);  // no implicit-TLS port of its own
  EXPECT_FALSE(r.protocol_port("nntp", false));
  EXPECT_TRUE(r.mechanism_known("PLAIN"));
  EXPECT_FALSE(r.mechanism_known("CRAM-MD5"));
  EXPECT_EQ(r.mechanism_names(), "PLAIN, LOGIN, EXTERNAL, OAUTHBEARER, XOAUTH2");
  EXPECT_EQ(r.protocol_names(), "imap, submission, pop3, managesieve or lmtp");
}

TEST(Config, LmtpListenerAndSection) {
  Config c = load_ok("[[listener]]\nprotocol = \"lmtp\"\n" + kPassdb +
                     "[lmtp]\nrecipient_delimiter = \"+-\"\nunproxied = \"default\"\n"
                     "default_host = \"10.0.0.5\"\ndefault_port = 2424\ndefault_protocol = \"smtp\"\n"
                     "proxy_timeout = \"30s\"\nmax_recipients = 50\n");
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].protocol, "lmtp");
  EXPECT_EQ(c.listeners[0].port, 24);  // the sibling service's default port
  EXPECT_EQ(c.lmtp.recipient_delimiter, "+-");
  EXPECT_EQ(c.lmtp.unproxied, "default");
  EXPECT_EQ(c.lmtp.default_host, "10.0.0.5");
  EXPECT_EQ(c.lmtp.default_port, 2424);
  EXPECT_EQ(c.lmtp.default_protocol, "smtp");
  EXPECT_EQ(c.lmtp.proxy_timeout, 30s);
  EXPECT_EQ(c.lmtp.max_recipients, 50u);
  Config d = load_ok(kListener + kPassdb);
  EXPECT_EQ(d.lmtp.recipient_delimiter, "+");
  EXPECT_EQ(d.lmtp.unproxied, "refuse");
  EXPECT_EQ(d.lmtp.proxy_timeout, 125s);
}

TEST(Config, LmtpErrors) {
  const std::string base = kListener + kPassdb;  // 6 lines
  expect_error(base + "[lmtp]\nunproxied = \"drop\"\n", 8, "expected refuse or default");
  expect_error(base + "[lmtp]\ndefault_host = \"mail.example\"\n", 8, "is not an IP address");
  expect_error(base + "[lmtp]\ndefault_protocol = \"imap\"\n", 8, "expected lmtp or smtp");
  expect_error(base + "[lmtp]\nrecipient_delimiter = \"@\"\n", 8, "must not contain");
  expect_error(base + "[lmtp]\nunproxied = \"default\"\n", 7, "requires lmtp.default_host");
  expect_error(base + "[lmtp]\nmax_recipient = 1\n", 8, "unknown key 'max_recipient' in [lmtp]");
}

// ---- issue 13: SNI certificates and client certificates ----

TEST(Config, TlsCertificatesAndClientVerify) {
  auto c = load_ok(kListener + kPassdb +
                   "[tls]\nverify_client = \"optional\"\nclient_ca = \"ca.pem\"\ncrl = \"crl.pem\"\n"
                   "cert_username_field = \"emailAddress\"\n"
                   "[[tls.certificate]]\nnames = [\"Mail.Example.org\", \"*.example.net\"]\n"
                   "cert = \"m.pem\"\nkey = \"m.key\"\n"
                   "[[tls.certificate]]\ncert = \"d.pem\"\nkey = \"/k/d.key\"\n");
  ASSERT_EQ(c.tls.certificates.size(), 2u);
  EXPECT_EQ(c.tls.certificates[0].names,
            (std::vector<std::string>{"mail.example.org", "*.example.net"}));
  EXPECT_EQ(c.tls.certificates[0].cert, "/etc/portier/m.pem");
  EXPECT_TRUE(c.tls.certificates[1].names.empty());
  EXPECT_EQ(c.tls.certificates[1].key, "/k/d.key");
  EXPECT_EQ(c.tls.verify_client, portier::config::Tls::VerifyClient::Optional);
  EXPECT_EQ(c.tls.client_ca, "/etc/portier/ca.pem");
  EXPECT_EQ(c.tls.crl, "/etc/portier/crl.pem");
  EXPECT_EQ(c.tls.cert_username_field, "emailAddress");
  EXPECT_TRUE(c.tls.has_cert());
  // A [[tls.certificate]] alone is enough for a TLS listener.
  load_ok("[[listener]]\nprotocol = \"imap\"\ntls = \"implicit\"\n" + kPassdb +
          "[[tls.certificate]]\ncert = \"d.pem\"\nkey = \"d.key\"\n");
}

TEST(Config, TlsCertificateErrors) {
  expect_error(kListener + kPassdb + "[[tls.certificate]]\nnames = [\"a b\"]\ncert = \"c\"\nkey = \"k\"\n",
               8, "'a b' is not a host name");
  expect_error(kListener + kPassdb + "[[tls.certificate]]\nnames = [\"*.*.x\"]\ncert = \"c\"\nkey = \"k\"\n",
               8, "is not a host name");
  expect_error(kListener + kPassdb + "[[tls.certificate]]\nnames = [\"x\"]\ncert = \"c\"\n", 7,
               "cert and key are required");
  expect_error(kListener + kPassdb + "[tls]\nverify_client = \"maybe\"\n", 8,
               "expected none, optional or required");
  expect_error(kListener + kPassdb + "[tls]\nverify_client = \"required\"\n", 7,
               "verify_client needs client_ca");
}

TEST(Config, ListenerClientCertificates) {
  const std::string tls = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\ncrl = \"crl.pem\"\n";
  auto c = load_ok("[[listener]]\nprotocol = \"imap\"\ntls = \"implicit\"\nverify_client = \"required\"\n"
                   "[[listener]]\nprotocol = \"imap\"\ntls = \"starttls\"\n"
                   "[[listener]]\nprotocol = \"pop3\"\ntls = \"implicit\"\nverify_client = \"optional\"\n"
                   "client_ca = \"/other/ca.pem\"\n" +
                   kPassdb + tls);
  using VC = portier::config::VerifyClient;
  ASSERT_EQ(c.listeners.size(), 3u);
  auto a = c.tls.client_cert(c.listeners[0]);
  EXPECT_EQ(a.verify, VC::Required);
  EXPECT_EQ(a.client_ca, "/etc/portier/ca.pem");
  EXPECT_EQ(a.crl, "/etc/portier/crl.pem");
  auto b = c.tls.client_cert(c.listeners[1]);
  EXPECT_EQ(b.verify, VC::None);  // [tls]'s
  auto p = c.tls.client_cert(c.listeners[2]);
  EXPECT_EQ(p.verify, VC::Optional);
  EXPECT_EQ(p.client_ca, "/other/ca.pem");
  EXPECT_EQ(p.crl, "");  // a CRL belongs to its CA: not inherited with an own client_ca
  expect_error("[[listener]]\nprotocol = \"imap\"\nverify_client = \"required\"\n" + kPassdb + tls, 1,
               "need tls = \"starttls\" or \"implicit\"");
  expect_error("[[listener]]\nprotocol = \"imap\"\ntls = \"implicit\"\nverify_client = \"required\"\n" +
                   kPassdb + "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
               1, "verify_client needs client_ca (here or in [tls])");
  expect_error("[[listener]]\nprotocol = \"imap\"\ntls = \"implicit\"\nverify_client = \"always\"\n" +
                   kPassdb + tls,
               4, "listener.verify_client: unknown value 'always'");
}

TEST(Config, ProxyRedirectReauth) {
  EXPECT_FALSE(load_ok(kListener + kPassdb).login.proxy_redirect_reauth);
  EXPECT_TRUE(load_ok(kListener + kPassdb + "[login]\nproxy_redirect_reauth = true\n").login.proxy_redirect_reauth);
}

TEST(Config, ListenerUnixSocketPath) {
  Config c = load_ok("[[listener]]\nprotocol = \"lmtp\"\npath = \"/run/portier/lmtp\"\n" + kPassdb);
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].path, "/run/portier/lmtp");
  EXPECT_EQ(c.listeners[0].port, 0);
  expect_error("[[listener]]\nprotocol = \"lmtp\"\npath = \"/x\"\nport = 24\n" + kPassdb, 4,
               "path and port exclude each other");
  expect_error("[[listener]]\nprotocol = \"lmtp\"\npath = \"/" + std::string(120, 'x') + "\"\n" +
                   kPassdb,
               3, "a unix socket path of 1..107 bytes");
}

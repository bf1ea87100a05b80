// Service::http_command against a REAL Dovecot doveadm HTTP API. The backend
// is started by tests/integration/test_doveadm.py::test_http_api_forwarding,
// which runs this test with PORTIER_TEST_DOVEADM_HTTP="<passwd file> <api key>";
// without it the test is skipped. The checks that need no backend (bad
// commands) always run.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <future>
#include <sstream>

#include "app/registries.hpp"
#include "config/config.hpp"
#include "doveadm/service.hpp"

using nlohmann::json;

namespace {

std::shared_ptr<const portier::login::Snapshot> snapshot(const std::string& passwd, const std::string& key,
                                                         unsigned http_port) {
  std::string toml = "[[listener]]\nprotocol = \"imap\"\nport = 0\n[[passdb]]\ndriver = \"passwd-file\"\npath = \"" +
                     passwd + "\"\n[doveadm]\nbackend_api_key = \"" + key + "\"\nhttp_port = " +
                     std::to_string(http_port) + "\ntimeout = \"3s\"\n";
  auto r = portier::config::load_string(toml, "/tmp/t.toml", portier::app::registries());
  EXPECT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0].to_string());
  if (!r.config) return nullptr;
  std::vector<std::string> errors;
  auto snap = portier::login::Snapshot::build(*r.config, errors);
  EXPECT_TRUE(snap) << (errors.empty() ? "" : errors[0]);
  return snap;
}

json run(portier::doveadm::Service& svc, json cmd) {
  std::promise<json> p;
  auto f = p.get_future();
  svc.http_command(std::move(cmd), [&p](json j) { p.set_value(std::move(j)); });
  EXPECT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  return f.get();
}

}  // namespace

TEST(DoveadmHttp, BadCommandsNeedNoBackend) {
  std::string path = ::testing::TempDir() + "doveadm-http-users";
  std::ofstream(path) << "user1:{PLAIN}x::::::proxy host=127.0.0.1 port=1\n";
  auto snap = snapshot(path, "", 9);
  ASSERT_TRUE(snap);
  portier::doveadm::Service svc(snap);
  svc.start();
  json nouser = run(svc, json::array({"mailboxList", json::object(), "t1"}));
  EXPECT_EQ(nouser[0], "error");
  EXPECT_EQ(nouser[1]["exitCode"], 64);
  EXPECT_EQ(nouser[2], "t1");
  json garbage = run(svc, json("nonsense"));
  EXPECT_EQ(garbage[1]["exitCode"], 64);
  json unknown = run(svc, json::array({"mailboxList", {{"user", "nobody"}}, "t2"}));
  EXPECT_EQ(unknown[1]["exitCode"], 67);
  json nokey = run(svc, json::array({"mailboxList", {{"user", "user1"}}, "t3"}));
  EXPECT_EQ(nokey[1]["exitCode"], 75);
  svc.shutdown();
}

TEST(DoveadmHttp, ForwardsToRealBackend) {
  const char* env = std::getenv("PORTIER_TEST_DOVEADM_HTTP");
  if (!env) GTEST_SKIP() << "PORTIER_TEST_DOVEADM_HTTP not set (run by tests/integration/test_doveadm.py)";
  std::istringstream in(env);
  std::string passwd, key;
  unsigned port = 0, dead = 0;
  in >> passwd >> key >> port >> dead;
  auto snap = snapshot(passwd, key, port);
  ASSERT_TRUE(snap);
  portier::doveadm::Service svc(snap);
  svc.start();
  json list = run(svc, json::array({"mailboxList", {{"user", "user1"}}, "tag1"}));
  ASSERT_EQ(list[0], "doveadmResponse") << list.dump();
  EXPECT_EQ(list[2], "tag1");
  bool found = false;
  for (const auto& row : list[1]) found = found || row["mailbox"] == "OnlyOnA";
  EXPECT_TRUE(found) << list.dump();
  // The backend's own error element passes through (a missing mailbox).
  json missing = run(svc, json::array({"mailboxStatus",
                                       {{"user", "user1"}, {"field", {"messages"}}, {"mailboxMask", {"NoSuchBox"}}},
                                       "tag2"}));
  EXPECT_EQ(missing[0], "error") << missing.dump();
  EXPECT_EQ(missing[1]["type"], "exitCode") << missing.dump();
  json unknown = run(svc, json::array({"mailboxList", {{"user", "nobody"}}, "tag3"}));
  EXPECT_EQ(unknown[1]["exitCode"], 67);
  svc.shutdown();
  // A wrong API key: the backend's 401 becomes exit code 75 with a reason.
  auto bad = snapshot(passwd, "wrong-key", port);
  portier::doveadm::Service svc2(bad);
  svc2.start();
  json refused = run(svc2, json::array({"mailboxList", {{"user", "user1"}}, "tag4"}));
  EXPECT_EQ(refused[1]["exitCode"], 75);
  EXPECT_NE(refused[1]["message"].get<std::string>().find("refused portier's API key"), std::string::npos);
  svc2.shutdown();
  // Nothing listening: a clear error, no hang.
  auto down = snapshot(passwd, key, dead);
  portier::doveadm::Service svc3(down);
  svc3.start();
  json gone = run(svc3, json::array({"mailboxList", {{"user", "user1"}}, "tag5"}));
  EXPECT_EQ(gone[1]["exitCode"], 75);
  EXPECT_NE(gone[1]["message"].get<std::string>().find("connect("), std::string::npos) << gone.dump();
  svc3.shutdown();
}

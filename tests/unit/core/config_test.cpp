#include <gtest/gtest.h>

#include <fstream>

#include "core/config.hpp"
#include "support/test_support.hpp"

namespace harmar::config {
namespace {

std::string write_file(const std::string& name, const std::string& text) {
  std::string path = harmar::testing::temp_dir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(Config, defaults_then_file_then_env_then_flags) {
  auto file = write_file("a.yaml", "listen: 127.0.0.1:9000\nworkers: 3\nlimits:\n  body_bytes: 2MiB\nlog:\n  levels: {http: debug}\n");
  char env1[] = "HARMAR_WORKERS=5";
  char env2[] = "HARMAR_LIMITS_IDLE_TIMEOUT=5s";
  char* envp[] = {env1, env2, nullptr};
  auto c = Config::load(core_schema(), file, {{"listen", "127.0.0.1:0"}}, envp);
  ASSERT_TRUE(c.ok()) << c.error().detail;
  EXPECT_EQ(c->get_string("listen"), "127.0.0.1:0");
  EXPECT_EQ(c->source("listen"), "flag");
  EXPECT_EQ(c->get_int("workers"), 5);
  EXPECT_EQ(c->source("workers"), "env");
  EXPECT_EQ(c->get_size("limits.body_bytes"), 2 << 20);
  EXPECT_EQ(c->get_duration_ms("limits.idle_timeout"), 5000);
  EXPECT_EQ(c->get_duration_ms("limits.header_timeout"), 10000);
  EXPECT_EQ(c->source("limits.header_timeout"), "default");
  EXPECT_EQ(c->get_map("log.levels").at("http"), "debug");
}

TEST(Config, check_names_every_bad_key_with_its_line) {
  auto file = write_file("bad.yaml", "listen: x\nworkerz: 2\nlimits:\n  body_bytes: lots\nlog:\n  format: xml\n");
  auto st = Config::check_file(core_schema(), file);
  ASSERT_FALSE(st.ok());
  const auto& d = st.error().detail;
  EXPECT_NE(d.find("workerz is not a known key (line 2)"), std::string::npos) << d;
  EXPECT_NE(d.find("limits.body_bytes"), std::string::npos) << d;
  EXPECT_NE(d.find("log.format"), std::string::npos) << d;
  EXPECT_EQ(st.error().errors.size(), 3u);
}

TEST(Config, bad_environment_value_names_the_variable) {
  char env1[] = "HARMAR_WORKERS=many";
  char* envp[] = {env1, nullptr};
  auto c = Config::load(core_schema(), "", {}, envp);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().detail.find("HARMAR_WORKERS"), std::string::npos);
}

TEST(Config, out_of_range_and_unknown_flags_are_refused) {
  EXPECT_FALSE(Config::load(core_schema(), "", {{"workers", "100000"}}).ok());
  EXPECT_FALSE(Config::load(core_schema(), "", {{"no.such.key", "1"}}).ok());
  EXPECT_FALSE(Config::load(core_schema(), "/nonexistent/harmar.yaml", {}).ok());
}

}  // namespace
}  // namespace harmar::config

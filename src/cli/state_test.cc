#include "cli/state.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

class StateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "cli_state_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    for (const char* v : {"GANTRY_HOME", "GANTRY_CACHE", "HOME"}) {
      if (const char* old = std::getenv(v)) saved_.emplace_back(v, old);
      ::unsetenv(v);
    }
    ::setenv("HOME", dir_.c_str(), 1);
  }
  void TearDown() override {
    for (const char* v : {"GANTRY_HOME", "GANTRY_CACHE", "HOME"}) ::unsetenv(v);
    for (const auto& [k, v] : saved_) ::setenv(k.c_str(), v.c_str(), 1);
    fs::remove_all(dir_);
  }

  fs::path dir_;
  std::vector<std::pair<std::string, std::string>> saved_;
};

TEST_F(StateTest, FlagThenVariableThenHome) {
  EXPECT_EQ(StateDir(""), dir_ / ".config/gantry");
  EXPECT_EQ(CacheDir(""), dir_ / ".cache/gantry");
  ::setenv("GANTRY_HOME", (dir_ / "home").c_str(), 1);
  ::setenv("GANTRY_CACHE", (dir_ / "cache").c_str(), 1);
  EXPECT_EQ(StateDir(""), dir_ / "home");
  EXPECT_EQ(CacheDir(""), dir_ / "cache");
  EXPECT_EQ(StateDir("/srv/state"), "/srv/state");
  EXPECT_EQ(CacheDir("/srv/cache"), "/srv/cache");
}

// `gantry server` used to keep gantry.db in its working directory while the CLI read the state
// directory's: both now default to the state directory's.
TEST_F(StateTest, TheDefaultStoreIsTheStateDirectorysGantryDb) {
  ::setenv("GANTRY_HOME", (dir_ / "home").c_str(), 1);
  auto url = StoreUrl("", "");
  ASSERT_TRUE(url.ok()) << url.status().ToString();
  EXPECT_EQ(*url, "sqlite://" + (dir_ / "home" / "gantry.db").string());
  struct stat st{};
  ASSERT_EQ(::stat((dir_ / "home").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(*StoreUrl("", (dir_ / "flag").string()), "sqlite://" + (dir_ / "flag" / "gantry.db").string());
  EXPECT_EQ(*StoreUrl("postgresql://db/gantry", ""), "postgresql://db/gantry");
  EXPECT_FALSE(fs::exists(dir_ / ".config")) << "an explicit URL or directory creates nothing else";
}

TEST_F(StateTest, AStateDirectoryThatCannotBeCreatedIsAnError) {
  std::ofstream(dir_ / "file") << "x";
  auto url = StoreUrl("", (dir_ / "file" / "state").string());
  ASSERT_FALSE(url.ok());
  EXPECT_NE(url.status().message().find("create " + (dir_ / "file" / "state").string()), std::string::npos)
      << url.status().message();
}

}  // namespace
}  // namespace gantry::cli

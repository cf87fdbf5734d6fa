#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "git/git.h"

namespace gantry::git {
namespace {

namespace fs = std::filesystem;

// A directory shaped like a mounted Secret: one file per key.
class SecretDir {
 public:
  SecretDir() {
    std::string tmpl = (fs::temp_directory_path() / "gantry-secret-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~SecretDir() { fs::remove_all(path_); }
  void Set(const std::string& key, const std::string& value) { std::ofstream(path_ / key) << value; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(ReadRepositorySecretTest, SshUrlGivesTheKeyFileInPlaceBoundToTheHostAndPort) {
  SecretDir d;
  d.Set("type", "git");
  d.Set("url", "ssh://git@git.example.com:2222/platform/config.git\n");
  d.Set("sshPrivateKey", "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n");
  auto c = ReadRepositorySecret(d.path(), "/etc/ssh/known_hosts");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->host, "git.example.com:2222");
  EXPECT_EQ(c->ssh_private_key_path, (d.path() / "sshPrivateKey").string());
  EXPECT_EQ(c->ssh_known_hosts_path, "/etc/ssh/known_hosts");
  EXPECT_TRUE(c->password.empty());

  d.Set("url", "git@github.com:acme/config.git");
  c = ReadRepositorySecret(d.path(), "/k");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->host, "github.com");
}

TEST(ReadRepositorySecretTest, HttpsUrlGivesUserAndPassword) {
  SecretDir d;
  d.Set("url", "https://git.example.com/platform/config.git");
  d.Set("username", "bot\n");
  d.Set("password", "s3cret\n");
  auto c = ReadRepositorySecret(d.path(), "");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->host, "git.example.com");
  EXPECT_EQ(c->username, "bot");
  EXPECT_EQ(c->password, "s3cret");
}

TEST(ReadRepositorySecretTest, RefusesWhatCannotWorkNamingTheDirectoryAndNeverTheSecret) {
  SecretDir d;
  auto expect_refused = [&](const std::string& known_hosts, const std::string& needle) {
    auto c = ReadRepositorySecret(d.path(), known_hosts);
    ASSERT_FALSE(c.ok()) << needle;
    EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
    std::string msg(c.status().message());
    EXPECT_NE(msg.find(d.path().string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_EQ(msg.find("s3cret"), std::string::npos) << msg;
  };
  expect_refused("/k", "no url key");
  d.Set("url", "ssh://git@git.example.com/config.git");
  expect_refused("/k", "no sshPrivateKey");
  d.Set("sshPrivateKey", "s3cret");
  expect_refused("", "known_hosts");
  d.Set("url", "https://git.example.com/config.git");
  expect_refused("/k", "is not SSH");
  fs::remove(d.path() / "sshPrivateKey");
  expect_refused("/k", "no password");
  d.Set("url", "ftp://git.example.com/config.git");
  expect_refused("/k", "not supported");
  EXPECT_EQ(ReadRepositorySecret(d.path() / "missing", "/k").status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace gantry::git

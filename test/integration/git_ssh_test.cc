// Git over SSH against Debian's sshd (test/env/ssh-git-server.sh: key auth, git-shell): fetching
// ssh:// and scp-like URLs with a private key, host key checking against known_hosts (unknown and
// changed keys refused), a key the server does not know refused, commit-and-push, and the
// user-facing ways to configure SSH: `gantry render --repo ssh://... --ssh-key --ssh-known-hosts`,
// `gantry update` pushing a config commit, and an agent's repository Secret (Argo CD's shape,
// mounted as files) with --ssh-known-hosts.

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "agent/agent.h"
#include "base/process.h"
#include "git/git.h"
#include "test/env/testenv.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;

void WriteText(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

Result<std::string> Git(const std::string& cwd, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"git", "-c", "user.name=Gantry Test", "-c", "user.email=test@gantry.invalid"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessOptions options{.cwd = cwd, .timeout = std::chrono::minutes(1)};
  const char* path = std::getenv("PATH");
  options.env = {{"PATH", path != nullptr ? path : "/usr/bin:/bin"}, {"HOME", cwd}, {"LANG", "C"},
                 {"GIT_CONFIG_NOSYSTEM", "1"}, {"GIT_CONFIG_GLOBAL", "/dev/null"}};
  GANTRY_ASSIGN_OR_RETURN(ProcessResult r, RunChecked(argv, options));
  while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
  return r.out;
}

struct Repo {
  std::string url;   // ssh://USER@127.0.0.1:PORT/.../NAME.git
  std::string path;  // the bare repository on disk
};

class GitSshTest : public ::testing::Test {
 protected:
  testenv::Server& server_ = testenv::Shared("ssh-git-server.sh");
  testenv::ScopedTempDir cache_;
  git::Mirrors mirrors_{cache_.path()};

  // A new bare repository with one commit (pushed over file://, the fast way in); its id.
  Repo CreateRepo(const std::string& name, const std::map<std::string, std::string>& files, std::string* commit) {
    static std::atomic<int> counter{0};
    auto out = server_.Command("create", {name + "-" + std::to_string(++counter)});
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    auto values = testenv::ParseValues(out.value_or(""));
    Repo repo{values["REPO_URL"], values["REPO_PATH"]};
    testenv::ScopedTempDir work;
    EXPECT_TRUE(Git(work.path(), {"init", "-q", "-b", "main"}).ok());
    for (const auto& [file, content] : files) WriteText(fs::path(work.path()) / file, content);
    EXPECT_TRUE(Git(work.path(), {"add", "-A"}).ok());
    EXPECT_TRUE(Git(work.path(), {"commit", "-q", "-m", "first"}).ok());
    EXPECT_TRUE(Git(work.path(), {"push", "-q", "file://" + repo.path, "main"}).ok());
    if (commit != nullptr) *commit = Git(work.path(), {"rev-parse", "HEAD"}).value_or("");
    return repo;
  }

  git::Credentials Key(const std::string& host) const {
    return git::Credentials{.host = host, .ssh_private_key_path = server_.Get("SSH_KEY"),
                            .ssh_known_hosts_path = server_.Get("SSH_KNOWN_HOSTS")};
  }
  std::string HostPort() const { return "127.0.0.1:" + server_.Get("SSH_PORT"); }

  Result<std::shared_ptr<git::Repository>> Open(const std::string& url, const git::Credentials& creds) {
    return mirrors_.Open(url, {.credentials = creds, .timeout = std::chrono::seconds(20)});
  }
};

TEST_F(GitSshTest, FetchesOverSshWithAKeyAndReadsTheTree) {
  std::string commit;
  Repo remote = CreateRepo("fetch", {{"apps/web/cm.yaml", "kind: ConfigMap\n"}}, &commit);
  ASSERT_TRUE(remote.url.starts_with("ssh://")) << remote.url;
  auto repo = Open(remote.url, Key(HostPort()));
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto fetched = (*repo)->Fetch();
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  EXPECT_EQ((*repo)->Resolve("HEAD").value_or("?"), commit);
  auto tree = (*repo)->ReadTree(commit, "apps/web");
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  ASSERT_EQ(tree->files.size(), 1u);
  EXPECT_EQ(tree->files[0].content, "kind: ConfigMap\n");
  // Credentials bound to the host without a port match too.
  auto again = Open(remote.url, Key("127.0.0.1"));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)->Fetch().ok());
}

TEST_F(GitSshTest, FetchesAnScpLikeUrl) {
  std::string host = server_.Get("SSH_SCP_HOST");
  if (host.empty()) GTEST_SKIP() << "port 22 of a loopback address cannot be bound by this user (not root)";
  std::string commit;
  Repo remote = CreateRepo("scp", {{"a.yaml", "kind: ConfigMap\n"}}, &commit);
  std::string url = server_.Get("SSH_USER") + "@" + host + ":" + remote.path;
  auto repo = Open(url, Key(host));
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto fetched = (*repo)->Fetch();
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  EXPECT_EQ((*repo)->Resolve("main").value_or("?"), commit);
}

TEST_F(GitSshTest, AnUnknownHostIsRefusedNamingTheHostAndTheKnownHostsFile) {
  Repo remote = CreateRepo("unknown", {{"a", "a\n"}}, nullptr);
  testenv::ScopedTempDir dir;
  std::string known_hosts = dir.path() + "/known_hosts";
  WriteText(known_hosts, "# nobody yet\ngit.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n");
  git::Credentials creds = Key(HostPort());
  creds.ssh_known_hosts_path = known_hosts;
  auto repo = Open(remote.url, creds);
  ASSERT_TRUE(repo.ok());
  auto fetched = (*repo)->Fetch();
  ASSERT_FALSE(fetched.ok());
  EXPECT_EQ(fetched.status().code(), Code::kPermissionDenied) << fetched.status().ToString();
  std::string msg(fetched.status().message());
  EXPECT_NE(msg.find("[127.0.0.1]:" + server_.Get("SSH_PORT")), std::string::npos) << msg;
  EXPECT_NE(msg.find("not in"), std::string::npos) << msg;
  EXPECT_NE(msg.find(known_hosts), std::string::npos) << msg;
}

TEST_F(GitSshTest, AChangedHostKeyIsRefused) {
  Repo remote = CreateRepo("changed", {{"a", "a\n"}}, nullptr);
  git::Credentials creds = Key(HostPort());
  creds.ssh_known_hosts_path = server_.Get("SSH_OTHER_KNOWN_HOSTS");
  auto repo = Open(remote.url, creds);
  ASSERT_TRUE(repo.ok());
  auto fetched = (*repo)->Fetch();
  ASSERT_FALSE(fetched.ok());
  EXPECT_EQ(fetched.status().code(), Code::kPermissionDenied) << fetched.status().ToString();
  std::string msg(fetched.status().message());
  EXPECT_NE(msg.find("differs"), std::string::npos) << msg;
  EXPECT_NE(msg.find(creds.ssh_known_hosts_path), std::string::npos) << msg;
}

TEST_F(GitSshTest, AKeyTheServerDoesNotKnowIsRefusedClearly) {
  Repo remote = CreateRepo("wrongkey", {{"a", "a\n"}}, nullptr);
  git::Credentials creds = Key(HostPort());
  creds.ssh_private_key_path = server_.Get("SSH_OTHER_KEY");
  auto repo = Open(remote.url, creds);
  ASSERT_TRUE(repo.ok());
  auto fetched = (*repo)->Fetch();
  ASSERT_FALSE(fetched.ok());
  EXPECT_EQ(fetched.status().code(), Code::kUnauthenticated) << fetched.status().ToString();
  std::string msg(fetched.status().message());
  EXPECT_NE(msg.find("rejected"), std::string::npos) << msg;
  EXPECT_NE(msg.find(HostPort()), std::string::npos) << msg;
  EXPECT_EQ(msg.find("BEGIN OPENSSH"), std::string::npos) << msg;

  // No key at all for an SSH URL: the error says so.
  git::Credentials none = Key(HostPort());
  none.ssh_private_key_path.clear();
  auto bare = Open(remote.url, none);
  ASSERT_TRUE(bare.ok());
  auto refused = (*bare)->Fetch();
  EXPECT_EQ(refused.status().code(), Code::kUnauthenticated) << refused.status().ToString();

  // No credentials for the host at all: the error says what an SSH URL needs.
  auto anonymous = mirrors_.Open(remote.url, {.timeout = std::chrono::seconds(20)});
  ASSERT_TRUE(anonymous.ok());
  auto no_creds = (*anonymous)->Fetch();
  EXPECT_EQ(no_creds.status().code(), Code::kUnauthenticated) << no_creds.status().ToString();
  EXPECT_NE(no_creds.status().message().find("private key and a known_hosts file"), std::string::npos)
      << no_creds.status().ToString();
}

TEST_F(GitSshTest, CommitAndPushOverSsh) {
  std::string base;
  Repo remote = CreateRepo("push", {{"apps/web/image", "web:1\n"}}, &base);
  auto repo = Open(remote.url, Key(HostPort()));
  ASSERT_TRUE(repo.ok());
  git::PushRequest request{.branch = "main",
                           .recompute = [](const std::string&) -> Result<git::Changes> {
                             git::Changes c;
                             c.files["apps/web/image"] = "web:2\n";
                             return c;
                           },
                           .author = {"Gantry", "gantry@example.com"},
                           .message = "web to 2"};
  auto pushed = (*repo)->CommitAndPush(request);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_NE(*pushed, base);
  EXPECT_EQ(Git(remote.path, {"--git-dir", remote.path, "rev-parse", "main"}).value_or("?"), *pushed);
  EXPECT_EQ(Git(remote.path, {"--git-dir", remote.path, "show", "main:apps/web/image"}).value_or("?"), "web:2");
}

const char kConfigMap[] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: over-ssh\ndata:\n  k: v\n";

TEST_F(GitSshTest, GantryRenderReadsAnSshRepositoryWithTheKeyAndKnownHostsFlags) {
  const char* binary = std::getenv("GANTRY_BINARY");
  ASSERT_NE(binary, nullptr);
  Repo remote = CreateRepo("render", {{"app/cm.yaml", kConfigMap}}, nullptr);
  testenv::ScopedTempDir home;
  ProcessOptions options{.timeout = std::chrono::seconds(30)};
  options.env = {{"HOME", home.path()}, {"PATH", "/usr/bin:/bin"}};
  auto r = gantry::Run({binary, "render", "app", "--repo", remote.url, "--cache-dir", home.path() + "/cache",
                "--ssh-key", server_.Get("SSH_KEY"), "--ssh-known-hosts", server_.Get("SSH_KNOWN_HOSTS")},
               options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 0) << r->err;
  EXPECT_NE(r->out.find("name: over-ssh"), std::string::npos) << r->out;

  // Without known_hosts (none in HOME): refused, naming the host and the file it looked in.
  auto refused = gantry::Run({binary, "render", "app", "--repo", remote.url, "--cache-dir", home.path() + "/cache2",
                      "--ssh-key", server_.Get("SSH_KEY")},
                     options);
  ASSERT_TRUE(refused.ok());
  EXPECT_NE(refused->exit_code, 0);
  EXPECT_NE(refused->err.find("127.0.0.1:" + server_.Get("SSH_PORT")), std::string::npos) << refused->err;
  EXPECT_NE(refused->err.find(home.path() + "/.ssh/known_hosts"), std::string::npos) << refused->err;
}

TEST_F(GitSshTest, GantryUpdatePushesAConfigCommitOverSsh) {
  const char* binary = std::getenv("GANTRY_BINARY");
  ASSERT_NE(binary, nullptr);
  std::string base;
  const std::string deployment =
      "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n"
      "      containers:\n      - name: web\n        image: registry.example.com/team/web:1.0.0\n";
  Repo remote = CreateRepo("update", {{"envs/dev/web.yaml", deployment}}, &base);
  testenv::ScopedTempDir home;
  ProcessOptions options{.timeout = std::chrono::seconds(30)};
  options.env = {{"HOME", home.path()}, {"PATH", "/usr/bin:/bin"}};
  auto r = gantry::Run({binary, "update", "--repo", remote.url, "--branch", "main", "--path", "envs/dev",
                        "--image", "registry.example.com/team/web=registry.example.com/team/web:1.0.1",
                        "--cache-dir", home.path() + "/cache", "--ssh-key", server_.Get("SSH_KEY"),
                        "--ssh-known-hosts", server_.Get("SSH_KNOWN_HOSTS")},
                       options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 0) << r->err;
  EXPECT_NE(Git(remote.path, {"--git-dir", remote.path, "rev-parse", "main"}).value_or(base), base);
  EXPECT_NE(Git(remote.path, {"--git-dir", remote.path, "show", "main:envs/dev/web.yaml"}).value_or("?")
                .find("image: registry.example.com/team/web:1.0.1"), std::string::npos) << r->out << r->err;
}

TEST_F(GitSshTest, AnAgentRendersFromAnSshRepositoryThroughItsRepositorySecret) {
  std::string commit;
  Repo remote = CreateRepo("agent", {{"app/cm.yaml", kConfigMap}}, &commit);
  // An Argo CD repository Secret mounted as a volume: one file per key.
  testenv::ScopedTempDir secret;
  WriteText(secret.path() + "/type", "git");
  WriteText(secret.path() + "/url", remote.url);
  std::ifstream key_in(server_.Get("SSH_KEY"));
  WriteText(secret.path() + "/sshPrivateKey", std::string(std::istreambuf_iterator<char>(key_in), {}));
  auto creds = git::ReadRepositorySecret(secret.path(), server_.Get("SSH_KNOWN_HOSTS"));
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->host, HostPort());

  agent::AgentOptions options{.cache_dir = cache_.path() + "/agent"};
  options.git_repo_credentials.push_back(*creds);
  auto source = agent::NewSource(options, {});
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  api::Application app{.name = "over-ssh", .namespace_ = "gantry-system"};
  app.source = {.repo_url = remote.url, .target_revision = "main", .path = "app"};
  auto resolved = (*source)->Resolve(app, {});
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  EXPECT_EQ(*resolved, commit);
  auto rendered = (*source)->Render(app, *resolved, {});
  ASSERT_TRUE(rendered.ok()) << rendered.status().ToString();
  ASSERT_EQ(rendered->objects.size(), 1u);

  // gantry agent and gantry server refuse such a secret at start, naming the flag to give.
  const char* binary = std::getenv("GANTRY_BINARY");
  ASSERT_NE(binary, nullptr);
  for (std::vector<std::string> argv : {std::vector<std::string>{binary, "agent", "--git-repo-secret", secret.path()},
                                        std::vector<std::string>{binary, "server", "--webhook-secret-env", "WS", "--repo",
                                                                 "https://git.example.com/o/app.git",
                                                                 "--git-repo-secret", secret.path()}}) {
    ProcessOptions po{.timeout = std::chrono::seconds(10)};
    po.env = {{"HOME", secret.path()}, {"PATH", "/usr/bin:/bin"}, {"WS", "x"}};
    auto r = gantry::Run(argv, po);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->exit_code, 2) << argv[1] << ": " << r->err;
    EXPECT_NE(r->err.find("--git-repo-secret: repository secret " + secret.path()), std::string::npos) << r->err;
    EXPECT_NE(r->err.find("--ssh-known-hosts"), std::string::npos) << r->err;
  }

  // A secret without a known_hosts file for its SSH URL is refused when read, saying what to give.
  auto missing = git::ReadRepositorySecret(secret.path(), "");
  EXPECT_EQ(missing.status().code(), Code::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("known_hosts"), std::string::npos) << missing.status().ToString();
}

}  // namespace
}  // namespace gantry

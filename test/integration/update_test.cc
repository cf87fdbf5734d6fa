// update::UpdateRepository against the Git server of test/env/git-server.sh (smart HTTP with auth):
// ten concurrent writers, each with its own mirror cache, updating different images of one config
// repository all land exactly once; a no-op update makes no commit; the review-branch option; and
// `gantry update` in local and Git mode.

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/base64.h"
#include "base/process.h"
#include "git/git.h"
#include "sign/sshsig.h"
#include "test/env/testenv.h"
#include "update/update.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int kWriters = 10;

Result<std::string> Git(const std::string& cwd, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"git", "-c", "user.name=Gantry Test", "-c", "user.email=test@gantry.invalid"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessOptions options;
  options.cwd = cwd;
  options.timeout = std::chrono::minutes(2);
  const char* path = std::getenv("PATH");
  options.env = {{"PATH", path != nullptr ? path : "/usr/bin:/bin"}, {"HOME", cwd}, {"LANG", "C"},
                 {"GIT_CONFIG_NOSYSTEM", "1"}, {"GIT_CONFIG_GLOBAL", "/dev/null"}, {"GIT_TERMINAL_PROMPT", "0"}};
  GANTRY_ASSIGN_OR_RETURN(ProcessResult r, RunChecked(argv, options));
  while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
  return r.out;
}

std::string MustGit(const std::string& cwd, const std::vector<std::string>& args) {
  auto r = Git(cwd, args);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.value_or("");
}

void WriteText(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The config repository: a kustomization with one entry per writer, and a Deployment.
std::string Kustomization(const std::vector<std::string>& tags) {
  std::string out = "# dev overlay\nresources:\n  - deploy.yaml\nimages:\n";
  for (size_t i = 0; i < tags.size(); ++i) {
    out += "  - name: registry.local:5000/team/app" + std::to_string(i) + "  # writer " + std::to_string(i) +
           "\n    newTag: \"" + tags[i] + "\"\n";
  }
  return out;
}

const char kDeploy[] = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: app0
spec:
  template:
    spec:
      containers:
        - name: app
          image: registry.local:5000/team/app0:1.0.0 # pinned by CI
)";

class UpdateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    auto out = server_.Command("create", {"config-" + std::to_string(++counter)});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    auto values = testenv::ParseValues(*out);
    url_ = values["REPO_URL"];
    bare_ = values["REPO_PATH"];
    MustGit(work_.path(), {"init", "-q", "-b", "main"});
    WriteText(fs::path(work_.path()) / "envs/dev/kustomization.yaml",
              Kustomization(std::vector<std::string>(kWriters, "1.0.0")));
    WriteText(fs::path(work_.path()) / "envs/dev/deploy.yaml", kDeploy);
    WriteText(fs::path(work_.path()) / "README.md", "config\n");
    MustGit(work_.path(), {"add", "-A"});
    MustGit(work_.path(), {"commit", "-q", "-m", "initial"});
    MustGit(work_.path(), {"push", "-q", "file://" + bare_, "main"});
  }

  std::shared_ptr<git::Repository> Open(git::Mirrors& mirrors) {
    std::string host = server_.Get("GIT_URL").substr(std::string("http://").size());
    git::OpenOptions options;
    options.credentials = git::Credentials{.host = host, .username = server_.Get("GIT_USER"),
                                           .password = server_.Get("GIT_PASSWORD")};
    auto repo = mirrors.Open(url_, options);
    EXPECT_TRUE(repo.ok()) << repo.status().ToString();
    return repo.value_or(nullptr);
  }

  std::string ServerGit(const std::vector<std::string>& args) {
    std::vector<std::string> full = {"--git-dir", bare_};
    full.insert(full.end(), args.begin(), args.end());
    return MustGit(bare_, full);
  }
  int CommitCount(const std::string& ref) { return std::stoi(ServerGit({"rev-list", "--count", ref})); }
  std::string Show(const std::string& ref, const std::string& path) { return ServerGit({"show", ref + ":" + path}); }

  static update::ImageRule Rule(int i, const std::string& tag) {
    return update::ImageRule{.image = "registry.local:5000/team/app" + std::to_string(i), .new_tag = tag};
  }

  testenv::Server& server_ = testenv::Shared("git-server.sh");
  testenv::ScopedTempDir work_;
  std::string url_;
  std::string bare_;
};

TEST_F(UpdateTest, TenConcurrentWritersAllLandOnceEach) {
  std::vector<Result<update::GitUpdateResult>> results(kWriters, InternalError("not run"));
  std::vector<std::unique_ptr<testenv::ScopedTempDir>> caches;
  for (int i = 0; i < kWriters; ++i) caches.push_back(std::make_unique<testenv::ScopedTempDir>());
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kWriters; ++i) {
    threads.emplace_back([&, i] {
      git::Mirrors mirrors(caches[static_cast<size_t>(i)]->path());  // one writer = one machine
      auto repo = Open(mirrors);
      if (!repo) return;
      update::GitUpdateOptions options;
      options.path = "envs/dev";
      options.rules = {Rule(i, "2.0." + std::to_string(i))};
      options.message_template = "app" + std::to_string(i) + ": {{images}}\n\n{{changes}}\n";
      options.author = {"Writer " + std::to_string(i), "writer" + std::to_string(i) + "@gantry.invalid"};
      options.max_attempts = 30;  // ten writers racing for one branch at the same instant
      ready.fetch_add(1);
      while (ready.load() < kWriters) std::this_thread::yield();
      results[static_cast<size_t>(i)] = update::UpdateRepository(*repo, options);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kWriters; ++i) {
    ASSERT_TRUE(results[static_cast<size_t>(i)].ok()) << i << ": " << results[static_cast<size_t>(i)].status().ToString();
    EXPECT_TRUE(results[static_cast<size_t>(i)]->committed) << i;
  }
  // Exactly one commit per writer on top of the initial one, each writer's subject exactly once.
  EXPECT_EQ(CommitCount("main"), kWriters + 1);
  std::string subjects = ServerGit({"log", "--format=%s|%an <%ae>", "main"});
  for (int i = 0; i < kWriters; ++i) {
    std::string s = "app" + std::to_string(i) + ": registry.local:5000/team/app" + std::to_string(i) + ":2.0." +
                    std::to_string(i) + "|Writer " + std::to_string(i) + " <writer" + std::to_string(i) +
                    "@gantry.invalid>";
    size_t first = subjects.find(s);
    EXPECT_NE(first, std::string::npos) << s << " missing from\n" << subjects;
    EXPECT_EQ(subjects.find(s, first + 1), std::string::npos) << s << " twice";
  }
  // Nothing lost: every writer's tag is in the final file, and only those bytes changed.
  std::vector<std::string> tags;
  for (int i = 0; i < kWriters; ++i) tags.push_back("2.0." + std::to_string(i));
  EXPECT_EQ(Show("main", "envs/dev/kustomization.yaml"), Kustomization(tags).substr(0, Kustomization(tags).size() - 1));
  std::string deploy = kDeploy;
  deploy.replace(deploy.find("app0:1.0.0"), 10, "app0:2.0.0");
  EXPECT_EQ(Show("main", "envs/dev/deploy.yaml") + "\n", deploy);
  EXPECT_EQ(Show("main", "README.md"), "config");
}

TEST_F(UpdateTest, NoOpUpdateMakesNoCommit) {
  testenv::ScopedTempDir cache;
  git::Mirrors mirrors(cache.path());
  auto repo = Open(mirrors);
  ASSERT_TRUE(repo);
  std::string before = ServerGit({"rev-parse", "main"});
  update::GitUpdateOptions options;
  options.path = "envs/dev";
  options.rules = {Rule(3, "1.0.0")};  // already there
  auto r = update::UpdateRepository(*repo, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->committed);
  EXPECT_EQ(r->commit, before);
  EXPECT_TRUE(r->changes.empty());
  EXPECT_EQ(ServerGit({"rev-parse", "main"}), before);

  // A real update, then the same update again: one commit, not two.
  options.rules = {Rule(3, "1.1.0")};
  r = update::UpdateRepository(*repo, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->committed);
  ASSERT_EQ(r->changes.size(), 1u);
  EXPECT_EQ(r->changes[0].ToString(), "envs/dev/kustomization.yaml:12:13: newTag: 1.0.0 → 1.1.0");
  r = update::UpdateRepository(*repo, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->committed);
  EXPECT_EQ(CommitCount("main"), 2);

  // A path that is not there is an error, not a silent no-op.
  options.path = "envs/nope";
  EXPECT_EQ(update::UpdateRepository(*repo, options).status().code(), Code::kNotFound);
}

// issue 18: a commit signed with an SSH key (gpgsig holding an SSHSIG, namespace git) is accepted
// by the real `git verify-commit` with gpg.format=ssh and the key in gpg.ssh.allowedSignersFile;
// the same signature on a tampered commit, a commit signed by a key not listed, and an unsigned
// commit are refused.
TEST_F(UpdateTest, SignedCommitsAreAcceptedByGitVerifyCommit) {
  const std::string dir = work_.path() + "/keys";
  fs::create_directories(dir);
  ProcessOptions po;
  po.inherit_env = true;
  auto keygen = RunChecked({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gantry", "-f", dir + "/commit-key"}, po);
  ASSERT_TRUE(keygen.ok()) << keygen.status().ToString();
  auto signer = sign::SshSigner::Parse(ReadText(dir + "/commit-key"), "commit-key");
  ASSERT_TRUE(signer.ok()) << signer.status().ToString();
  auto other = sign::SshSigner::Parse(sign::GenerateKey(sign::KeyType::kEd25519)->Pem(), "other");
  ASSERT_TRUE(other.ok());
  WriteText(dir + "/allowed_signers", "gantry@gantry.invalid namespaces=\"git\" " + signer->PublicKeyLine() + "\n");
  // git verify-commit's exit status (gantry::Run: RunChecked's error path trips over base/process.cc's
  // LastLines on this output, a bug of its own).
  auto verify = [&](const std::string& commit) -> Status {
    ProcessOptions o;
    o.cwd = bare_;
    o.timeout = std::chrono::minutes(1);
    const char* path = std::getenv("PATH");
    o.env = {{"PATH", path != nullptr ? path : "/usr/bin:/bin"}, {"HOME", bare_}, {"GIT_CONFIG_NOSYSTEM", "1"},
             {"GIT_CONFIG_GLOBAL", "/dev/null"}};
    auto r = gantry::Run({"git", "-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile=" + dir + "/allowed_signers",
                          "--git-dir", bare_, "verify-commit", commit}, o);
    if (!r.ok()) return r.status();
    return r->success() ? OkStatus() : PermissionDeniedError("verify-commit {}: {}", commit, r->err);
  };

  testenv::ScopedTempDir cache;
  git::Mirrors mirrors(cache.path());
  auto repo = Open(mirrors);
  ASSERT_TRUE(repo);
  update::GitUpdateOptions options;
  options.path = "envs/dev";
  options.author = {"Gantry", "gantry@gantry.invalid"};
  options.rules = {Rule(1, "3.0.0")};
  options.sign = [&](std::string_view commit) { return signer->Sign(commit, "git"); };
  auto r = update::UpdateRepository(*repo, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->committed);
  auto good = verify(r->commit);
  EXPECT_TRUE(good.ok()) << good.ToString();
  EXPECT_THAT(ServerGit({"cat-file", "commit", r->commit}), HasSubstr("gpgsig -----BEGIN SSH SIGNATURE-----\n "));

  // The signed commit with another message, same signature: refused.
  std::string object = ServerGit({"cat-file", "commit", r->commit}) + "\n";
  object.replace(object.find("app1:3.0.0"), 10, "app1:6.6.6");
  WriteText(dir + "/tampered", object);
  std::string tampered = ServerGit({"hash-object", "-t", "commit", "-w", dir + "/tampered"});
  EXPECT_FALSE(verify(tampered).ok()) << "a tampered commit verified";

  // Signed, but by a key the allowed signers do not list; and the unsigned initial commit.
  options.rules = {Rule(2, "3.0.0")};
  options.sign = [&](std::string_view commit) { return other->Sign(commit, "git"); };
  r = update::UpdateRepository(*repo, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(verify(r->commit).ok()) << "a commit signed by an unknown key verified";
  EXPECT_FALSE(verify(ServerGit({"rev-list", "--max-parents=0", "main"})).ok()) << "an unsigned commit verified";

  // A signer that fails fails the update, and nothing is pushed.
  const std::string before = ServerGit({"rev-parse", "main"});
  options.rules = {Rule(3, "3.0.0")};
  options.sign = [](std::string_view) -> Result<std::string> { return InternalError("the key is gone"); };
  r = update::UpdateRepository(*repo, options);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("sign the commit: the key is gone"));
  EXPECT_EQ(ServerGit({"rev-parse", "main"}), before);
}

TEST_F(UpdateTest, PushBranchForReview) {
  testenv::ScopedTempDir cache;
  git::Mirrors mirrors(cache.path());
  auto repo = Open(mirrors);
  ASSERT_TRUE(repo);
  std::string main_before = ServerGit({"rev-parse", "main"});
  update::GitUpdateOptions options;
  options.path = "envs/dev";
  options.push_branch = "gantry/app0-2.0.0";

  // Nothing to change: no branch is created.
  options.rules = {Rule(0, "1.0.0")};
  auto r = update::UpdateRepository(*repo, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->committed);
  EXPECT_FALSE(Git(bare_, {"--git-dir", bare_, "rev-parse", "--verify", "refs/heads/gantry/app0-2.0.0"}).ok());

  options.rules = {Rule(0, "2.0.0")};
  r = update::UpdateRepository(*repo, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->committed);
  EXPECT_EQ(r->branch, "gantry/app0-2.0.0");
  EXPECT_EQ(r->changes.size(), 2u);  // the kustomization entry and the Deployment's image
  EXPECT_EQ(ServerGit({"rev-parse", "main"}), main_before);  // main untouched
  EXPECT_EQ(ServerGit({"rev-parse", "gantry/app0-2.0.0^"}), main_before);  // one commit on top of main
  EXPECT_THAT(Show("gantry/app0-2.0.0", "envs/dev/deploy.yaml"), HasSubstr("app0:2.0.0 # pinned by CI"));

  // Again: the branch already has it, so nothing new.
  r = update::UpdateRepository(*repo, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->committed);
  EXPECT_EQ(CommitCount("gantry/app0-2.0.0"), 2);
}

Result<ProcessResult> RunGantry(const std::vector<std::string>& args, const std::string& home) {
  const char* binary = std::getenv("GANTRY_BINARY");
  if (binary == nullptr) return FailedPreconditionError("GANTRY_BINARY is not set");
  std::vector<std::string> argv = {binary};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessOptions options;
  options.timeout = std::chrono::minutes(2);
  const char* path = std::getenv("PATH");
  options.env = {{"PATH", path != nullptr ? path : "/usr/bin:/bin"}, {"HOME", home}};
  return Run(argv, options);
}

TEST_F(UpdateTest, CommandLineLocalAndGitModes) {
  testenv::ScopedTempDir home;
  // Local mode on a clone: the files change in place, exit 0; a dry run writes nothing.
  std::string dir = work_.path() + "/envs";
  auto dry = RunGantry({"update", "--dir", dir, "--image", "registry.local:5000/team/app0=registry.local:5000/team/app0:3.0.0",
                        "--dry-run"}, home.path());
  ASSERT_TRUE(dry.ok()) << dry.status().ToString();
  EXPECT_EQ(dry->exit_code, 0) << dry->err;
  EXPECT_THAT(dry->out, HasSubstr("dev/deploy.yaml:10:18: image: registry.local:5000/team/app0:1.0.0 → "
                                  "registry.local:5000/team/app0:3.0.0"));
  EXPECT_THAT(ReadText(dir + "/dev/deploy.yaml"), HasSubstr("app0:1.0.0"));
  auto local = RunGantry({"update", "--dir", dir, "--image", "registry.local:5000/team/app0=registry.local:5000/team/app0:3.0.0"},
                         home.path());
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  EXPECT_EQ(local->exit_code, 0) << local->err;
  EXPECT_THAT(ReadText(dir + "/dev/deploy.yaml"), HasSubstr("app0:3.0.0 # pinned by CI"));
  EXPECT_THAT(ReadText(dir + "/dev/kustomization.yaml"), HasSubstr("app0  # writer 0\n    newTag: \"3.0.0\""));

  // Git mode dry run: the change is printed, nothing is pushed.
  std::string tip = ServerGit({"rev-parse", "main"});
  auto git_dry = RunGantry({"update", "--repo", "file://" + bare_, "--allow-file-repo", "--path", "envs/dev",
                            "--image", "registry.local:5000/team/app6=registry.local:5000/team/app6:6.6.6", "--dry-run"},
                           home.path());
  ASSERT_TRUE(git_dry.ok()) << git_dry.status().ToString();
  EXPECT_EQ(git_dry->exit_code, 0) << git_dry->err;
  EXPECT_THAT(git_dry->out, HasSubstr("envs/dev/kustomization.yaml:18:13: newTag: 1.0.0 → 6.6.6"));
  EXPECT_EQ(ServerGit({"rev-parse", "main"}), tip);

  // Git mode over file://, author and message from flags.
  auto git = RunGantry({"update", "--repo", "file://" + bare_, "--allow-file-repo", "--path", "envs/dev", "--image",
                        "registry.local:5000/team/app5=registry.local:5000/team/app5:5.5.5", "--author",
                        "Release Bot <bot@gantry.invalid>", "--message", "release {{images}} ({{count}})"},
                       home.path());
  ASSERT_TRUE(git.ok()) << git.status().ToString();
  EXPECT_EQ(git->exit_code, 0) << git->err;
  EXPECT_THAT(git->err, HasSubstr("committed"));
  EXPECT_EQ(ServerGit({"log", "-1", "--format=%an <%ae>|%s", "main"}),
            "Release Bot <bot@gantry.invalid>|release registry.local:5000/team/app5:5.5.5 (1)");

  // Usage errors exit 2.
  auto usage = RunGantry({"update", "--dir", dir, "--image", "no-equals-sign"}, home.path());
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->exit_code, 2);
}

}  // namespace
}  // namespace gantry

// The Git server of test/env/git-server.sh serves smart HTTP to the real git CLI and to libgit2:
// push with basic auth (including the chunked requests git sends for large packs and libgit2 for
// every push), clone and fetch, 401 without credentials, and the same repositories over file://.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <git2.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include "base/process.h"
#include "test/env/testenv.h"

namespace gantry {
namespace {

std::string Base64(const std::string& data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Runs the git CLI in `cwd` without any user or system configuration. `auth` (user:password)
// travels as an http.extraHeader in the environment, so it never shows in argv or in errors.
Result<std::string> Git(const std::string& cwd, const std::vector<std::string>& args,
                        const std::string& auth = "") {
  std::vector<std::string> argv = {"git", "-c", "user.name=Gantry Test", "-c",
                                   "user.email=test@gantry.invalid"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessOptions options;
  options.cwd = cwd;
  options.timeout = std::chrono::minutes(2);
  const char* path = std::getenv("PATH");
  options.env = {{"PATH", path != nullptr ? path : "/usr/bin:/bin"},
                 {"HOME", cwd},
                 {"LANG", "C"},
                 {"GIT_CONFIG_NOSYSTEM", "1"},
                 {"GIT_CONFIG_GLOBAL", "/dev/null"},
                 {"GIT_TERMINAL_PROMPT", "0"}};
  if (!auth.empty()) {
    options.env["GIT_CONFIG_COUNT"] = "1";
    options.env["GIT_CONFIG_KEY_0"] = "http.extraHeader";
    options.env["GIT_CONFIG_VALUE_0"] = "Authorization: Basic " + Base64(auth);
  }
  GANTRY_ASSIGN_OR_RETURN(ProcessResult r, RunChecked(argv, options));
  while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
  return r.out;
}

// Like Git(), for a command expected to fail: its stderr (empty when it succeeded).
std::string GitError(const std::string& cwd, const std::vector<std::string>& args) {
  auto r = Git(cwd, args);
  return r.ok() ? "" : r.status().message();
}

std::string RandomBytes(size_t size) {
  std::random_device seed;
  std::mt19937_64 random(seed());
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  return bytes;
}

// A unique repository on `server`: its URL and its path on disk.
struct Repo {
  std::string url;
  std::string path;
};

Repo CreateRepo(const testenv::Server& server, const std::string& name) {
  static int counter = 0;
  std::string unique = name + "-" + std::to_string(++counter);
  auto out = server.Command("create", {unique});
  if (!out.ok()) ADD_FAILURE() << out.status().ToString();
  auto values = testenv::ParseValues(out.value_or(""));
  EXPECT_EQ(values["REPO_URL"], server.Get("GIT_URL") + "/" + unique + ".git");
  EXPECT_EQ(values["REPO_PATH"], server.Get("GIT_ROOT") + "/" + unique + ".git");
  return Repo{values["REPO_URL"], values["REPO_PATH"]};
}

// A work tree with one commit of `files`; returns the commit id.
std::string CommitFiles(const std::string& work, const std::map<std::string, std::string>& files,
                        const std::string& message) {
  for (const auto& [name, content] : files) WriteText(std::filesystem::path(work) / name, content);
  EXPECT_TRUE(Git(work, {"add", "-A"}).ok());
  auto committed = Git(work, {"commit", "-q", "-m", message});
  EXPECT_TRUE(committed.ok()) << committed.status().ToString();
  return Git(work, {"rev-parse", "HEAD"}).value_or("");
}

std::string Credentials(const testenv::Server& server) {
  return server.Get("GIT_USER") + ":" + server.Get("GIT_PASSWORD");
}

class GitSmokeTest : public ::testing::Test {
 protected:
  GitSmokeTest() { git_libgit2_init(); }
  ~GitSmokeTest() override { git_libgit2_shutdown(); }
};

// The payload of libgit2's remote callbacks: answers credential requests with one user/password
// pair, once (a second request means the server rejected it), and records refs a push rejected.
struct UserPass {
  std::string user;
  std::string password;
  int calls = 0;
  std::string rejected;
};

int AnswerCredentials(git_credential** out, const char* /*url*/, const char* /*username*/,
                      unsigned int allowed, void* payload) {
  auto* creds = static_cast<UserPass*>(payload);
  if (++creds->calls > 1 || (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) == 0) return GIT_EAUTH;
  return git_credential_userpass_plaintext_new(out, creds->user.c_str(), creds->password.c_str());
}

UserPass CredsOf(const testenv::Server& server) {
  UserPass creds;
  creds.user = server.Get("GIT_USER");
  creds.password = server.Get("GIT_PASSWORD");
  return creds;
}

int RecordRejection(const char* ref, const char* status, void* payload) {
  if (status != nullptr) {
    static_cast<UserPass*>(payload)->rejected += std::string(ref) + ": " + status;
  }
  return 0;
}

std::string LastGitError() {
  const git_error* e = git_error_last();
  return e != nullptr ? e->message : "(no libgit2 error)";
}

struct RepoDeleter {
  void operator()(git_repository* r) const { git_repository_free(r); }
};
using RepoPtr = std::unique_ptr<git_repository, RepoDeleter>;

// Clones `url` into `dir` with libgit2 (with `creds` when not null); the error text on failure.
std::pair<RepoPtr, std::string> Clone(const std::string& url, const std::string& dir,
                                      UserPass* creds) {
  git_clone_options options = GIT_CLONE_OPTIONS_INIT;
  if (creds != nullptr) {
    options.fetch_opts.callbacks.credentials = AnswerCredentials;
    options.fetch_opts.callbacks.payload = creds;
  }
  git_repository* repo = nullptr;
  int err = git_clone(&repo, url.c_str(), dir.c_str(), &options);
  if (err != 0) {
    return {nullptr, "git_clone " + url + ": error " + std::to_string(err) + ": " + LastGitError()};
  }
  return {RepoPtr(repo), ""};
}

std::string HeadId(git_repository* repo) {
  git_oid oid;
  if (git_reference_name_to_id(&oid, repo, "HEAD") != 0) return "(no HEAD: " + LastGitError() + ")";
  return git_oid_tostr_s(&oid);
}

std::string ServerMain(const Repo& repo) {
  auto id = Git(repo.path, {"--git-dir", repo.path, "rev-parse", "refs/heads/main"});
  return id.value_or("(none)");
}

TEST_F(GitSmokeTest, CliPushesAndLibgit2ClonesOverHttp) {
  auto& server = testenv::Shared("git-server.sh");
  ASSERT_TRUE(server.Get("GIT_URL").starts_with("http://127.0.0.1:"));
  Repo repo = CreateRepo(server, "smoke");
  testenv::ScopedTempDir tmp;
  const std::string& work = tmp.path();
  ASSERT_TRUE(Git(work, {"init", "-q", "-b", "main"}).ok());
  std::string commit = CommitFiles(work, {{"README.md", "hello from gantry\n"}}, "first");
  ASSERT_EQ(commit.size(), 40u);

  auto pushed = Git(work, {"push", "-q", repo.url, "main:main"}, Credentials(server));
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(ServerMain(repo), commit);

  UserPass creds = CredsOf(server);
  std::string clone_dir = work + "/clone";
  auto [clone, error] = Clone(repo.url, clone_dir, &creds);
  ASSERT_TRUE(clone) << error;
  EXPECT_EQ(HeadId(clone.get()), commit);
  EXPECT_EQ(ReadText(clone_dir + "/README.md"), "hello from gantry\n");
}

TEST_F(GitSmokeTest, Libgit2PushesWithChunkedRequests) {
  auto& server = testenv::Shared("git-server.sh");
  Repo repo = CreateRepo(server, "libgit2-push");
  testenv::ScopedTempDir tmp;
  const std::string& work = tmp.path();
  ASSERT_TRUE(Git(work, {"init", "-q", "-b", "main"}).ok());
  CommitFiles(work, {{"a.txt", "one\n"}}, "first");
  ASSERT_TRUE(Git(work, {"push", "-q", repo.url, "main"}, Credentials(server)).ok());

  UserPass creds = CredsOf(server);
  std::string clone_dir = work + "/clone";
  auto [clone, error] = Clone(repo.url, clone_dir, &creds);
  ASSERT_TRUE(clone) << error;
  // A second commit, made by the CLI in libgit2's clone, pushed by libgit2 (a chunked POST).
  std::string second =
      CommitFiles(clone_dir, {{"a.txt", "two\n"}, {"big.bin", RandomBytes(1 << 20)}}, "second");
  git_remote* remote = nullptr;
  ASSERT_EQ(git_remote_lookup(&remote, clone.get(), "origin"), 0) << LastGitError();
  git_push_options options = GIT_PUSH_OPTIONS_INIT;
  UserPass push_creds = creds;
  push_creds.calls = 0;
  options.callbacks.credentials = AnswerCredentials;
  options.callbacks.push_update_reference = RecordRejection;
  options.callbacks.payload = &push_creds;
  char refspec[] = "refs/heads/main:refs/heads/main";
  char* refspecs[] = {refspec};
  git_strarray specs = {refspecs, 1};
  int err = git_remote_push(remote, &specs, &options);
  git_remote_free(remote);
  ASSERT_EQ(err, 0) << LastGitError();
  EXPECT_EQ(push_creds.rejected, "");
  EXPECT_EQ(ServerMain(repo), second);

  // The CLI sees it too.
  auto remote_refs = Git(work, {"ls-remote", repo.url, "refs/heads/main"}, Credentials(server));
  ASSERT_TRUE(remote_refs.ok()) << remote_refs.status().ToString();
  EXPECT_EQ(remote_refs->substr(0, 40), second);
}

TEST_F(GitSmokeTest, CliPushesALargePackAndFetches) {
  auto& server = testenv::Shared("git-server.sh");
  Repo repo = CreateRepo(server, "large");
  testenv::ScopedTempDir tmp;
  const std::string& work = tmp.path();
  ASSERT_TRUE(Git(work, {"init", "-q", "-b", "main"}).ok());
  // Incompressible and above http.postBuffer (1 MiB): git sends the pack chunked.
  std::string big = RandomBytes(3 << 20);
  std::string commit = CommitFiles(work, {{"big.bin", big}}, "large");
  auto pushed = Git(work, {"push", "-q", repo.url, "main"}, Credentials(server));
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(ServerMain(repo), commit);

  std::string other = work + "/other";
  auto cloned = Git(work, {"clone", "-q", repo.url, other}, Credentials(server));
  ASSERT_TRUE(cloned.ok()) << cloned.status().ToString();
  EXPECT_TRUE(ReadText(other + "/big.bin") == big) << "big.bin came back different";
  std::string next = CommitFiles(work, {{"small.txt", "x\n"}}, "small");
  ASSERT_TRUE(Git(work, {"push", "-q", repo.url, "main"}, Credentials(server)).ok());
  ASSERT_TRUE(Git(other, {"fetch", "-q", "origin"}, Credentials(server)).ok());
  EXPECT_EQ(Git(other, {"rev-parse", "origin/main"}).value_or(""), next);
}

TEST_F(GitSmokeTest, WithoutCredentialsCloneFailsWithAuthError) {
  auto& server = testenv::Shared("git-server.sh");
  Repo repo = CreateRepo(server, "private");
  testenv::ScopedTempDir tmp;
  const std::string& dir = tmp.path();

  auto [clone, error] = Clone(repo.url, dir + "/libgit2", nullptr);
  EXPECT_FALSE(clone);
  EXPECT_NE(error.find("error " + std::to_string(GIT_EAUTH)), std::string::npos) << error;

  UserPass wrong = CredsOf(server);
  wrong.password = "not-the-password";
  auto [clone2, error2] = Clone(repo.url, dir + "/wrong", &wrong);
  EXPECT_FALSE(clone2);
  EXPECT_EQ(wrong.calls, 2) << "libgit2 should have asked again after a 401: " << error2;

  // git asks for a user name only after a 401.
  EXPECT_NE(GitError(dir, {"ls-remote", repo.url}).find("could not read Username"),
            std::string::npos);
  // A wrong password in the URL (a real credential, unlike http.extraHeader) is rejected.
  std::string wrong_url = repo.url;
  wrong_url.insert(std::string("http://").size(), server.Get("GIT_USER") + ":wrong-password@");
  auto wrong_cli = Git(dir, {"ls-remote", wrong_url});
  ASSERT_FALSE(wrong_cli.ok());
  EXPECT_NE(wrong_cli.status().message().find("Authentication failed"), std::string::npos)
      << wrong_cli.status().ToString();

  // Unknown repositories are not created on demand.
  auto missing = Git(dir, {"ls-remote", server.Get("GIT_URL") + "/nope.git"}, Credentials(server));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("not found"), std::string::npos)
      << missing.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(server.Get("GIT_ROOT") + "/nope.git"));
}

TEST_F(GitSmokeTest, Libgit2ClonesOverFileUrl) {
  auto& server = testenv::Shared("git-server.sh");
  Repo repo = CreateRepo(server, "local");
  testenv::ScopedTempDir tmp;
  const std::string& work = tmp.path();
  ASSERT_TRUE(Git(work, {"init", "-q", "-b", "main"}).ok());
  std::string commit = CommitFiles(work, {{"f.txt", "via file\n"}}, "first");
  ASSERT_TRUE(Git(work, {"push", "-q", "file://" + repo.path, "main"}).ok());

  std::string url = "file://" + server.Get("GIT_ROOT") + "/" +
                    std::filesystem::path(repo.path).filename().string();
  auto [clone, error] = Clone(url, work + "/clone", nullptr);
  ASSERT_TRUE(clone) << error;
  EXPECT_EQ(HeadId(clone.get()), commit);
  EXPECT_EQ(ReadText(work + "/clone/f.txt"), "via file\n");
}

TEST_F(GitSmokeTest, AnonymousModeServesReadsButNotPushes) {
  auto& server = testenv::Shared("git-server.sh", {"--anonymous"});
  Repo repo = CreateRepo(server, "public");
  testenv::ScopedTempDir tmp;
  const std::string& work = tmp.path();
  ASSERT_TRUE(Git(work, {"init", "-q", "-b", "main"}).ok());
  std::string commit = CommitFiles(work, {{"p.txt", "public\n"}}, "first");
  std::string no_push = GitError(work, {"push", "-q", repo.url, "main"});
  EXPECT_NE(no_push.find("could not read Username"), std::string::npos) << no_push;
  ASSERT_TRUE(Git(work, {"push", "-q", repo.url, "main"}, Credentials(server)).ok());

  auto [clone, error] = Clone(repo.url, work + "/clone", nullptr);
  ASSERT_TRUE(clone) << error;
  EXPECT_EQ(HeadId(clone.get()), commit);
}

}  // namespace
}  // namespace gantry

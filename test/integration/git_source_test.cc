// gantry::git against the Git server of test/env/git-server.sh: fetching over smart HTTP (with and
// without auth) and file://, revision resolution, changed paths, shared concurrent fetches,
// hostile repository content, and commit-and-push races with a concurrent writer.

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/base64.h"
#include "base/mutex.h"
#include "base/process.h"
#include "git/git.h"
#include "test/env/testenv.h"

namespace gantry {
namespace {

namespace fs = std::filesystem;

// Runs the git CLI in `cwd` without user or system configuration; `auth` (user:password) travels
// as an http.extraHeader in the environment, never in argv.
Result<std::string> Git(const std::string& cwd, const std::vector<std::string>& args,
                        const std::string& auth = "", std::optional<std::string> stdin_data = {}) {
  std::vector<std::string> argv = {"git", "-c", "user.name=Gantry Test", "-c",
                                   "user.email=test@gantry.invalid"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessOptions options;
  options.cwd = cwd;
  options.timeout = std::chrono::minutes(5);
  options.stdin_data = std::move(stdin_data);
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
    options.env["GIT_CONFIG_VALUE_0"] = "Authorization: Basic " + Base64Encode(auth);
  }
  GANTRY_ASSIGN_OR_RETURN(ProcessResult r, RunChecked(argv, options));
  while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
  return r.out;
}

void MustGit(const std::string& cwd, const std::vector<std::string>& args, const std::string& auth = "") {
  auto r = Git(cwd, args, auth);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

void WriteText(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

struct Repo {
  std::string url;   // http://127.0.0.1:PORT/NAME.git
  std::string path;  // the bare repository on disk
  std::string file_url() const { return "file://" + path; }
};

Repo CreateRepo(const testenv::Server& server, const std::string& name) {
  static std::atomic<int> counter{0};
  std::string unique = name + "-" + std::to_string(++counter);
  auto out = server.Command("create", {unique});
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  auto values = testenv::ParseValues(out.value_or(""));
  return Repo{values["REPO_URL"], values["REPO_PATH"]};
}

git::Credentials CredentialsOf(const testenv::Server& server) {
  std::string host = server.Get("GIT_URL").substr(std::string("http://").size());
  return git::Credentials{.host = host, .username = server.Get("GIT_USER"),
                          .password = server.Get("GIT_PASSWORD")};
}

// A work tree whose commits the test pushes to `repo` (over file://, the fast way in).
class Work {
 public:
  explicit Work(const Repo& repo) : repo_(repo) { MustGit(dir(), {"init", "-q", "-b", "main"}); }
  const std::string& dir() const { return tmp_.path(); }

  // Writes `files` (empty content: delete), commits, and returns the commit id.
  std::string Commit(const std::map<std::string, std::string>& files, const std::string& message) {
    for (const auto& [name, content] : files) {
      if (content.empty()) fs::remove(fs::path(dir()) / name);
      else WriteText(fs::path(dir()) / name, content);
    }
    EXPECT_TRUE(Git(dir(), {"add", "-A"}).ok());
    auto c = Git(dir(), {"commit", "-q", "--allow-empty", "-m", message});
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return Head();
  }
  std::string Head() { return Git(dir(), {"rev-parse", "HEAD"}).value_or(""); }
  void Push(const std::vector<std::string>& refs = {"main"}) {
    std::vector<std::string> args = {"push", "-q", "-f", repo_.file_url()};
    args.insert(args.end(), refs.begin(), refs.end());
    MustGit(dir(), args);
  }

 private:
  testenv::ScopedTempDir tmp_;
  Repo repo_;
};

std::string ServerRef(const Repo& repo, const std::string& ref) {
  return Git(repo.path, {"--git-dir", repo.path, "rev-parse", ref}).value_or("(none)");
}

class GitSourceTest : public ::testing::Test {
 protected:
  testenv::Server& server_ = testenv::Shared("git-server.sh");
  testenv::ScopedTempDir cache_;
  git::Mirrors mirrors_{cache_.path()};

  std::shared_ptr<git::Repository> Open(const std::string& url, git::OpenOptions options = {}) {
    if (!options.credentials && url.starts_with("http")) options.credentials = CredentialsOf(server_);
    auto repo = mirrors_.Open(url, options);
    EXPECT_TRUE(repo.ok()) << repo.status().ToString();
    return repo.ok() ? *repo : nullptr;
  }
};

TEST_F(GitSourceTest, FetchesOverHttpWithAuthIncrementallyAndPrunes) {
  Repo remote = CreateRepo(server_, "fetch");
  Work work(remote);
  std::string first = work.Commit({{"README.md", "hello\n"}, {"apps/web/deploy.yaml", "kind: Deployment\n"}}, "first");
  MustGit(work.dir(), {"branch", "doomed"});
  work.Push({"main", "doomed"});

  auto repo = Open(remote.url);
  ASSERT_TRUE(repo);
  auto fetched = repo->Fetch();
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  EXPECT_EQ(fetched->fetch_number, 1u);
  EXPECT_EQ(repo->Resolve("HEAD").value_or("?"), first);
  EXPECT_EQ(repo->Resolve("doomed").value_or("?"), first);
  auto tree = repo->ReadTree(first, "apps/web");
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  ASSERT_EQ(tree->files.size(), 1u);
  EXPECT_EQ(tree->files[0].path, "deploy.yaml");
  EXPECT_EQ(tree->files[0].content, "kind: Deployment\n");
  EXPECT_EQ(tree->files[0].mode, 0100644u);

  // A new commit and a deleted branch: the next fetch brings the one and prunes the other.
  std::string second = work.Commit({{"README.md", "hello again\n"}}, "second");
  work.Push();
  MustGit(work.dir(), {"push", "-q", remote.file_url(), ":doomed"});
  ASSERT_TRUE(repo->Fetch().ok());
  EXPECT_EQ(repo->Resolve("main").value_or("?"), second);
  EXPECT_EQ(repo->Resolve("doomed").status().code(), Code::kNotFound);
  // Nothing changed: fetching again succeeds and keeps the state.
  ASSERT_TRUE(repo->Fetch().ok());
  EXPECT_EQ(repo->Resolve("HEAD").value_or("?"), second);
  // A whole file by its path; the old commit is still readable.
  auto readme = repo->ReadTree(first, "README.md");
  ASSERT_TRUE(readme.ok()) << readme.status().ToString();
  EXPECT_EQ(readme->files.at(0).content, "hello\n");
  EXPECT_EQ(repo->ReadTree(first, "nope").status().code(), Code::kNotFound);
  EXPECT_EQ(repo->ReadTree(first, "../etc").status().code(), Code::kInvalidArgument);
  // Tree ids are stable cache keys: the same for equal content, different otherwise.
  EXPECT_EQ(repo->TreeId(first, "apps").value_or("a"), repo->TreeId(second, "apps").value_or("b"));
  EXPECT_NE(repo->TreeId(first, "").value_or("a"), repo->TreeId(second, "").value_or("a"));
}

TEST_F(GitSourceTest, AuthenticationFailuresAreClearAndNeverShowTheSecret) {
  Repo remote = CreateRepo(server_, "auth");
  Work work(remote);
  work.Commit({{"a", "1\n"}}, "first");
  work.Push();

  auto none = mirrors_.Open(remote.url, git::OpenOptions{});
  ASSERT_TRUE(none.ok());
  auto fetched = (*none)->Fetch();
  EXPECT_EQ(fetched.status().code(), Code::kUnauthenticated) << fetched.status().ToString();

  git::Credentials wrong = CredentialsOf(server_);
  wrong.password = "wrong-password-4f2a";
  auto bad = Open(remote.url, {.credentials = wrong});
  auto rejected = bad->Fetch();
  EXPECT_EQ(rejected.status().code(), Code::kUnauthenticated) << rejected.status().ToString();
  EXPECT_EQ(rejected.status().message().find("wrong-password-4f2a"), std::string::npos);

  // Credentials bound to another host are not sent to this one.
  git::Credentials elsewhere = CredentialsOf(server_);
  elsewhere.host = "git.example.com";
  auto other = Open(remote.url, {.credentials = elsewhere});
  auto refused = other->Fetch();
  EXPECT_EQ(refused.status().code(), Code::kUnauthenticated) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("bound to host \"git.example.com\""), std::string::npos)
      << refused.status().ToString();
  EXPECT_EQ(refused.status().message().find(server_.Get("GIT_PASSWORD")), std::string::npos);

  // URLs with embedded credentials are refused before anything is sent.
  std::string embedded = remote.url;
  embedded.insert(std::string("http://").size(), "user:" + server_.Get("GIT_PASSWORD") + "@");
  auto open = mirrors_.Open(embedded, {});
  EXPECT_EQ(open.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(open.status().message().find(server_.Get("GIT_PASSWORD")), std::string::npos)
      << open.status().ToString();
}

TEST_F(GitSourceTest, FetchesAnonymouslyWhenTheServerAllowsIt) {
  auto& anonymous = testenv::Shared("git-server.sh", {"--anonymous"});
  Repo remote = CreateRepo(anonymous, "public");
  Work work(remote);
  std::string commit = work.Commit({{"p.txt", "public\n"}}, "first");
  work.Push();
  auto repo = mirrors_.Open(remote.url, {});
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto fetched = (*repo)->Fetch();
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  EXPECT_EQ((*repo)->Resolve("HEAD").value_or("?"), commit);
}

TEST_F(GitSourceTest, FetchesOverFileOnlyWhenAllowed) {
  Repo remote = CreateRepo(server_, "file");
  Work work(remote);
  std::string commit = work.Commit({{"f.txt", "via file\n"}}, "first");
  work.Push();
  EXPECT_EQ(mirrors_.Open(remote.file_url(), {}).status().code(), Code::kInvalidArgument);
  auto repo = Open(remote.file_url(), {.allow_file = true});
  ASSERT_TRUE(repo);
  auto fetched = repo->Fetch();
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  EXPECT_EQ(repo->Resolve("HEAD").value_or("?"), commit);
  auto tree = repo->ReadTree(commit, "");
  ASSERT_TRUE(tree.ok());
  EXPECT_EQ(tree->files.at(0).content, "via file\n");

  // A submodule (gitlink) is reported and skipped: its content lives in another repository.
  MustGit(work.dir(), {"update-index", "--add", "--cacheinfo", "160000," + commit + ",vendor/sub"});
  MustGit(work.dir(), {"commit", "-q", "-m", "submodule"});
  std::string with_sub = work.Head();
  work.Push();
  ASSERT_TRUE(repo->Fetch().ok());
  auto sub = repo->ReadTree(with_sub, "");
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  EXPECT_EQ(sub->submodules, (std::vector<std::string>{"vendor/sub"}));
  EXPECT_EQ(sub->files.size(), 1u);
}

TEST_F(GitSourceTest, MissingRepositoryIsNotFoundAndAnEmptyOneHasNoHead) {
  auto repo = Open(server_.Get("GIT_URL") + "/does-not-exist.git");
  auto fetched = repo->Fetch();
  EXPECT_EQ(fetched.status().code(), Code::kNotFound) << fetched.status().ToString();

  Repo remote = CreateRepo(server_, "empty");
  auto empty = Open(remote.url);
  auto fetched_empty = empty->Fetch();
  ASSERT_TRUE(fetched_empty.ok()) << fetched_empty.status().ToString();
  EXPECT_EQ(empty->Resolve("HEAD").status().code(), Code::kNotFound);
}

TEST_F(GitSourceTest, ATimeoutAbortsTheFetch) {
  Repo remote = CreateRepo(server_, "slow");
  Work work(remote);
  std::string blob(2 << 20, 'x');
  for (int i = 0; i < 8; ++i) blob[static_cast<size_t>(i) * 1000] = static_cast<char>('a' + i);
  work.Commit({{"big.txt", blob}}, "first");
  work.Push();
  auto repo = Open(remote.url, {.credentials = CredentialsOf(server_), .timeout = std::chrono::milliseconds(1)});
  auto fetched = repo->Fetch();
  EXPECT_EQ(fetched.status().code(), Code::kDeadlineExceeded) << fetched.status().ToString();
}

TEST_F(GitSourceTest, ResolvesRevisions) {
  Repo remote = CreateRepo(server_, "revisions");
  Work work(remote);
  std::map<std::string, std::string> at;
  auto tag = [&](const std::string& name, bool annotated) {
    at[name] = work.Commit({{"version", name + "\n"}}, "release " + name);
    if (annotated) MustGit(work.dir(), {"tag", "-a", "-m", "release " + name, name});
    else MustGit(work.dir(), {"tag", name});
  };
  tag("v1.2.0", false);
  tag("v1.4.2", true);
  tag("1.4.10", true);
  tag("v1.5.0", false);
  tag("v2.0.0", true);
  tag("v2.1.0-rc.1", false);
  tag("not-a-version", false);
  MustGit(work.dir(), {"branch", "feature", at["v1.4.2"]});
  // A branch and a tag of one name on different commits.
  MustGit(work.dir(), {"branch", "twin", at["v1.2.0"]});
  MustGit(work.dir(), {"tag", "twin", at["v1.5.0"]});
  std::string head = work.Commit({{"extra", "x\n"}}, "after the tags");
  MustGit(work.dir(), {"push", "-q", remote.file_url(), "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"});

  auto repo = Open(remote.url);
  ASSERT_TRUE(repo->Fetch().ok());
  struct Row {
    std::string revision;
    std::string want;  // a commit, or "error:<Code name>"
  };
  const std::vector<Row> table = {
      {"HEAD", head},
      {"main", head},
      {"refs/heads/main", head},
      {"feature", at["v1.4.2"]},
      {"v1.2.0", at["v1.2.0"]},                 // lightweight tag
      {"v2.0.0", at["v2.0.0"]},                 // annotated tag, peeled
      {"refs/tags/v1.4.2", at["v1.4.2"]},
      {head, head},                              // full SHA
      {head.substr(0, 7), head},                 // short SHA
      {">=1.2.0 <2.0.0", at["v1.5.0"]},
      {"~1.4", at["1.4.10"]},                    // numeric, not textual order
      {"^1", at["v1.5.0"]},
      {"^2", at["v2.0.0"]},                      // the rc is not a release
      {">=2.1.0-rc.0", at["v2.1.0-rc.1"]},
      {"1.2.x || ~1.4.2", at["1.4.10"]},
      {"^3", "error:NotFound"},
      {"no-such-branch", "error:NotFound"},
      {"twin", "error:InvalidArgument"},
      {"refs/heads/twin", at["v1.2.0"]},
      {"refs/tags/twin", at["v1.5.0"]},
      {std::string(40, '0'), "error:NotFound"},
      {"", "error:InvalidArgument"},
      {"main\n", "error:InvalidArgument"},
  };
  for (const Row& row : table) {
    auto got = repo->Resolve(row.revision);
    std::string text = got.ok() ? *got : "error:" + std::string(CodeName(got.status().code()));
    EXPECT_EQ(text, row.want) << "revision \"" << row.revision << "\": " << got.status().ToString();
  }
}

TEST_F(GitSourceTest, ReportsChangedPathsIncludingBothSidesOfRenames) {
  Repo remote = CreateRepo(server_, "changes");
  Work work(remote);
  std::string a = work.Commit({{"apps/web/deploy.yaml", "web: 1\n"}, {"apps/api/deploy.yaml", "api: 1\n"},
                               {"docs/readme.md", "docs\n"}}, "a");
  MustGit(work.dir(), {"mv", "apps/api", "apps/backend"});
  std::string b = work.Commit({{"apps/web/deploy.yaml", "web: 2\n"}}, "b");
  work.Push();
  auto repo = Open(remote.url);
  ASSERT_TRUE(repo->Fetch().ok());
  auto changed = repo->ChangedPaths(a, b);
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  EXPECT_EQ(*changed, (std::vector<std::string>{"apps/api/deploy.yaml", "apps/backend/deploy.yaml",
                                                "apps/web/deploy.yaml"}));
  EXPECT_TRUE(git::PathChanged(*changed, "apps/api"));
  EXPECT_TRUE(git::PathChanged(*changed, "apps/backend/"));
  EXPECT_FALSE(git::PathChanged(*changed, "docs"));
  EXPECT_TRUE(repo->ChangedPaths(b, b)->empty());
  EXPECT_EQ(repo->ChangedPaths(a, std::string(40, 'f')).status().code(), Code::kNotFound);
}

TEST_F(GitSourceTest, ConcurrentFetchesOfOneRepositoryShareAFetch) {
  Repo remote = CreateRepo(server_, "concurrent");
  Work work(remote);
  std::string commit = work.Commit({{"a", std::string(1 << 20, 'a')}}, "first");
  work.Push();
  std::vector<std::shared_ptr<git::Repository>> handles;
  for (int i = 0; i < 8; ++i) handles.push_back(Open(remote.url));
  std::vector<Result<git::FetchResult>> results(8, Status(Code::kUnknown, "not run"));
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      ++ready;
      while (ready.load() < 8) std::this_thread::yield();
      results[static_cast<size_t>(i)] = handles[static_cast<size_t>(i)]->Fetch();
    });
  }
  for (auto& t : threads) t.join();
  std::set<uint64_t> fetches;
  int shared = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    fetches.insert(r->fetch_number);
    shared += r->shared ? 1 : 0;
  }
  EXPECT_LE(fetches.size(), 2u) << "8 simultaneous callers need at most two fetches";
  EXPECT_GE(shared, 6);
  EXPECT_EQ(handles[3]->Resolve("HEAD").value_or("?"), commit);
}

// The pack files of every mirror under `cache`.
int PackFiles(const fs::path& cache) {
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(cache)) n += e.path().extension() == ".pack" ? 1 : 0;
  return n;
}

// Found by the soak (bench/soak/run.sh): every fetch adds a pack file to the mirror, never merged,
// and libgit2 keeps every pack it has seen in memory (its index mapped) and searches them one by
// one, so an agent's memory grew by the commit. 40 commits fetched one by one over smart HTTP (a
// pack each; 41 before the fix) now leave at most 17 packs (the first, the merged one and those
// since), while another thread reads every commit fetched so far, with handles opened before the
// packs it reads were merged: not one read fails, and the mirror passes `git fsck`.
TEST_F(GitSourceTest, ManyFetchesLeaveFewPackFilesAndEveryCommitReadable) {
  Repo remote = CreateRepo(server_, "packs");
  Work work(remote);
  auto repo = Open(remote.url);
  auto reader = Open(remote.url);
  ASSERT_TRUE(repo && reader);
  Mutex mu;
  std::vector<std::pair<std::string, std::string>> fetched;  // commit, content of config.yaml
  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  std::string failure;
  std::thread read_all([&] {
    while (!done.load() && failure.empty()) {
      std::vector<std::pair<std::string, std::string>> commits;
      {
        MutexLock lock(mu);
        commits = fetched;
      }
      for (const auto& [commit, content] : commits) {
        auto tree = reader->ReadTree(commit, "config.yaml");
        ++reads;
        if (!tree.ok() || tree->files.at(0).content != content) {
          failure = commit + ": " + (tree.ok() ? tree->files.at(0).content : tree.status().ToString());
          break;
        }
      }
    }
  });
  for (int i = 0; i < 40; ++i) {
    const std::string content = "version: " + std::to_string(i) + "\n";
    std::string commit = work.Commit({{"config.yaml", content}}, "version " + std::to_string(i));
    work.Push();
    auto f = repo->Fetch();
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_EQ(repo->Resolve("HEAD").value_or("?"), commit);
    MutexLock lock(mu);
    fetched.emplace_back(commit, content);
  }
  done = true;
  read_all.join();
  EXPECT_EQ(failure, "") << "a read failed while the packs were merged";
  EXPECT_GT(reads.load(), 40);
  EXPECT_LE(PackFiles(cache_.path()), 17) << "packs are not merged";
  for (const auto& [commit, content] : fetched) {
    auto tree = repo->ReadTree(commit, "config.yaml");
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    EXPECT_EQ(tree->files.at(0).content, content);
  }
  for (const auto& e : fs::directory_iterator(cache_.path())) {
    auto fsck = Git(cache_.path(), {"--git-dir", e.path().string(), "fsck", "--no-dangling"});
    EXPECT_TRUE(fsck.ok()) << fsck.status().ToString();
  }
}

TEST_F(GitSourceTest, HostileSymlinksComeBackAsLinksAndAreNeverMaterializedOutside) {
  Repo remote = CreateRepo(server_, "symlinks");
  Work work(remote);
  fs::path w = work.dir();
  WriteText(w / "app/config.yaml", "ok: true\n");
  fs::create_symlink("/etc/passwd", w / "app/passwd");
  fs::create_symlink("../../../..", w / "app/escape");
  fs::create_symlink("config.yaml", w / "app/inside");
  WriteText(w / "safe/a.yaml", "a\n");
  fs::create_symlink("a.yaml", w / "safe/b.yaml");
  std::string commit = work.Commit({}, "hostile");
  work.Push();
  auto repo = Open(remote.url);
  ASSERT_TRUE(repo->Fetch().ok());

  auto tree = repo->ReadTree(commit, "app");
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  std::map<std::string, git::File> by_path;
  for (const auto& f : tree->files) by_path[f.path] = f;
  ASSERT_EQ(by_path.size(), 4u);
  EXPECT_TRUE(by_path["passwd"].is_symlink());
  EXPECT_EQ(by_path["passwd"].content, "/etc/passwd") << "the link target, never the file it names";
  EXPECT_TRUE(by_path["escape"].is_symlink());
  EXPECT_EQ(by_path["escape"].content, "../../../..");

  testenv::ScopedTempDir out;
  fs::path dest = fs::path(out.path()) / "app";
  Status refused = repo->Materialize(commit, "app", dest);
  EXPECT_EQ(refused.code(), Code::kPermissionDenied) << refused.ToString();
  EXPECT_NE(refused.message().find("outside the directory"), std::string::npos) << refused.ToString();
  EXPECT_FALSE(fs::exists(fs::symlink_status(dest))) << "a refused materialization leaves nothing";

  // Links that stay inside are created; files get sane modes in a private directory.
  fs::path safe = fs::path(out.path()) / "safe";
  Status ok = repo->Materialize(commit, "safe", safe);
  ASSERT_TRUE(ok.ok()) << ok.ToString();
  EXPECT_EQ(fs::read_symlink(safe / "b.yaml"), "a.yaml");
  struct stat st;
  ASSERT_EQ(::stat(safe.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((safe / "a.yaml").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_EQ(repo->Materialize(commit, "safe", safe).code(), Code::kAlreadyExists);
}

TEST_F(GitSourceTest, AChainOfInsideLinksThatLeadsOutsideIsRefused) {
  // Each link looks harmless lexically; followed physically, "up/.." leaves the directory.
  Repo remote = CreateRepo(server_, "chain");
  Work work(remote);
  fs::path w = work.dir();
  WriteText(w / "d/file", "x\n");
  fs::create_symlink("..", w / "d/deep");  // d/deep -> the root
  fs::create_symlink("d/deep", w / "up");  // up -> the root
  fs::create_symlink("up/..", w / "out");  // lexically the root, physically its parent
  std::string commit = work.Commit({}, "chain");
  work.Push();
  auto repo = Open(remote.url);
  ASSERT_TRUE(repo->Fetch().ok());
  testenv::ScopedTempDir out;
  Status s = repo->Materialize(commit, "", fs::path(out.path()) / "m");
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("\"out\""), std::string::npos) << s.ToString();
}

TEST_F(GitSourceTest, AHugeFileHitsThePerFileLimit) {
  Repo remote = CreateRepo(server_, "huge");
  Work work(remote);
  fs::path big = fs::path(work.dir()) / "big.bin";
  { std::ofstream(big).close(); }
  fs::resize_file(big, 200u << 20);  // sparse zeros: git compresses them to almost nothing
  WriteText(fs::path(work.dir()) / "small.txt", "small\n");
  std::string commit = work.Commit({}, "huge");
  work.Push();
  auto repo = Open(remote.url);
  ASSERT_TRUE(repo->Fetch().ok());
  auto tree = repo->ReadTree(commit, "");
  EXPECT_EQ(tree.status().code(), Code::kResourceExhausted);
  EXPECT_NE(tree.status().message().find("\"big.bin\" is 209715200 bytes, above the limit max_file_bytes of 8388608"),
            std::string::npos) << tree.status().ToString();
  testenv::ScopedTempDir out;
  EXPECT_EQ(repo->Materialize(commit, "", fs::path(out.path()) / "m").code(), Code::kResourceExhausted);
  // The total limit holds too, and a raised per-file limit lets the small file through.
  auto total = repo->ReadTree(commit, "", {.max_file_bytes = 300u << 20, .max_total_bytes = 1 << 20});
  EXPECT_NE(total.status().message().find("max_total_bytes of 1048576"), std::string::npos)
      << total.status().ToString();
  auto small = repo->ReadTree(commit, "small.txt");
  ASSERT_TRUE(small.ok()) << small.status().ToString();
}

TEST_F(GitSourceTest, AHundredThousandFilesHitTheFileCountLimitQuickly) {
  Repo remote = CreateRepo(server_, "many");
  Work work(remote);
  // One blob, 100,000 paths, one commit, built by git fast-import.
  std::string stream = "blob\nmark :1\ndata 3\nhi\n\ncommit refs/heads/main\n"
                       "committer T <t@gantry.invalid> 1700000000 +0000\ndata 4\nmany\n";
  for (int i = 0; i < 100'000; ++i) {
    stream += fmt::format("M 100644 :1 d{:03}/f{:05}\n", i / 1000, i);
  }
  stream += "\n";
  auto imported = Git(work.dir(), {"fast-import", "--quiet"}, "", stream);
  ASSERT_TRUE(imported.ok()) << imported.status().ToString();
  work.Push();
  std::string commit = ServerRef(remote, "refs/heads/main");
  auto repo = Open(remote.url);
  ASSERT_TRUE(repo->Fetch().ok());
  auto start = std::chrono::steady_clock::now();
  auto tree = repo->ReadTree(commit, "");
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(tree.status().code(), Code::kResourceExhausted);
  EXPECT_NE(tree.status().message().find("more than 10000 files (the limit max_files)"), std::string::npos)
      << tree.status().ToString();
  std::cout << "100k-file tree refused in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
  auto one_dir = repo->ReadTree(commit, "d042");
  ASSERT_TRUE(one_dir.ok()) << one_dir.status().ToString();
  EXPECT_EQ(one_dir->files.size(), 1000u);
}

// Regression: reading a tree recursed as deep as the repository's directories went.
TEST_F(GitSourceTest, DeeplyNestedTreeIsRefusedWithAClearError) {
  Repo remote = CreateRepo(server_, "deep");
  Work work(remote);
  std::string deep, ok;
  for (int i = 0; i < 200; ++i) deep += "d/";
  for (int i = 0; i < 64; ++i) ok += "d/";
  std::string stream = "blob\nmark :1\ndata 3\nhi\n\ncommit refs/heads/main\n"
                       "committer T <t@gantry.invalid> 1700000000 +0000\ndata 5\ndeep\n"
                       "M 100644 :1 " + deep + "f\nM 100644 :1 ok/" + ok + "f\n\n";
  auto imported = Git(work.dir(), {"fast-import", "--quiet"}, "", stream);
  ASSERT_TRUE(imported.ok()) << imported.status().ToString();
  work.Push();
  std::string commit = ServerRef(remote, "refs/heads/main");
  auto repo = Open(remote.url);
  ASSERT_TRUE(repo->Fetch().ok());
  auto tree = repo->ReadTree(commit, "");
  EXPECT_EQ(tree.status().code(), Code::kResourceExhausted) << tree.status().ToString();
  EXPECT_NE(tree.status().message().find("nested more than 64 deep"), std::string::npos) << tree.status().ToString();
  // 64 directories below the path read are fine.
  auto shallow = repo->ReadTree(commit, "ok");
  ASSERT_TRUE(shallow.ok()) << shallow.status().ToString();
  ASSERT_EQ(shallow->files.size(), 1u);
  EXPECT_EQ(shallow->files[0].path, ok + "f");
}

git::PushRequest SetFile(const std::string& path, const std::string& content, const std::string& message) {
  git::PushRequest request;
  request.branch = "main";
  request.author = {"Gantry Bot", "bot@gantry.invalid"};
  request.message = message;
  request.recompute = [path, content](const std::string&) -> Result<git::Changes> {
    git::Changes changes;
    changes.files[path] = content;
    return changes;
  };
  return request;
}

TEST_F(GitSourceTest, LogListsTheCommitsSinceAnotherNewestFirstWithTheirMessages) {
  Repo remote = CreateRepo(server_, "log");
  Work work(remote);
  std::string a = work.Commit({{"a", "1\n"}}, "first");
  std::string b = work.Commit({{"a", "2\n"}}, "second\n\nGantry-Run: 7");
  std::string c = work.Commit({{"a", "3\n"}}, "third");
  work.Push();
  auto repo = Open(remote.url);
  ASSERT_TRUE(repo->Fetch().ok());
  auto since_a = repo->Log(c, a, 10);
  ASSERT_TRUE(since_a.ok()) << since_a.status().ToString();
  ASSERT_EQ(since_a->size(), 2u);
  EXPECT_EQ((*since_a)[0].id, c);
  EXPECT_EQ((*since_a)[0].parent, b);
  EXPECT_EQ((*since_a)[0].message, "third\n");
  EXPECT_EQ((*since_a)[1].id, b);
  EXPECT_EQ((*since_a)[1].message, "second\n\nGantry-Run: 7\n");
  auto all = repo->Log(c, "", 10);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ(all->back().id, a);
  EXPECT_EQ(all->back().parent, "");
  EXPECT_EQ(repo->Log(c, "", 1)->size(), 1u);
  EXPECT_TRUE(repo->Log(a, c, 10)->empty());
  EXPECT_EQ(repo->Log(std::string(40, 'f'), a, 10).status().code(), Code::kNotFound);
  EXPECT_EQ(repo->Log(c, a, 0).status().code(), Code::kInvalidArgument);
}

TEST_F(GitSourceTest, CommitAndPushRecomputesAfterLosingARaceToAnotherWriter) {
  Repo remote = CreateRepo(server_, "race");
  Work work(remote);
  std::string base = work.Commit({{"apps/web/image", "web:1\n"}, {"apps/api/image", "api:1\n"}}, "base");
  work.Push();
  auto repo = Open(remote.url);

  // The other writer pushes while Gantry computes its change: Gantry's first push must lose.
  int calls = 0;
  std::vector<std::string> tips;
  std::string other;
  git::PushRequest request = SetFile("apps/web/image", "web:2\n", "web to 2");
  request.recompute = [&](const std::string& tip) -> Result<git::Changes> {
    tips.push_back(tip);
    if (++calls == 1) {
      other = work.Commit({{"apps/api/image", "api:2\n"}}, "api to 2 (the other writer)");
      work.Push();
    }
    git::Changes changes;
    changes.files["apps/web/image"] = "web:2\n";
    return changes;
  };
  auto pushed = repo->CommitAndPush(request);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(tips, (std::vector<std::string>{base, other}));
  EXPECT_EQ(ServerRef(remote, "refs/heads/main"), *pushed);
  EXPECT_EQ(ServerRef(remote, *pushed + "^"), other) << "built on the other writer's commit";
  EXPECT_EQ(Git(remote.path, {"--git-dir", remote.path, "show", "main:apps/api/image"}).value_or(""), "api:2");
  EXPECT_EQ(Git(remote.path, {"--git-dir", remote.path, "show", "main:apps/web/image"}).value_or(""), "web:2");
  EXPECT_EQ(Git(remote.path, {"--git-dir", remote.path, "log", "-1", "--format=%an <%ae>|%s", "main"}).value_or(""),
            "Gantry Bot <bot@gantry.invalid>|web to 2");

  // The same change again: nothing to commit, the tip comes back.
  auto again = repo->CommitAndPush(SetFile("apps/web/image", "web:2\n", "web to 2"));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, *pushed);
  EXPECT_EQ(ServerRef(remote, "refs/heads/main"), *pushed);

  // A deletion.
  git::PushRequest remove = SetFile("apps/api/image", "", "drop api");
  remove.recompute = [](const std::string&) -> Result<git::Changes> {
    git::Changes c;
    c.files["apps/api/image"] = std::nullopt;
    return c;
  };
  auto removed = repo->CommitAndPush(remove);
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_FALSE(Git(remote.path, {"--git-dir", remote.path, "show", "main:apps/api/image"}).ok());
}

TEST_F(GitSourceTest, ConcurrentWritersLoseNoUpdateAndDuplicateNoCommit) {
  Repo remote = CreateRepo(server_, "writers");
  Work work(remote);
  std::string base = work.Commit({{"README.md", "base\n"}}, "base");
  work.Push();
  // Two independent writers (separate caches, as two Gantry servers would be).
  testenv::ScopedTempDir other_cache;
  git::Mirrors other_mirrors(other_cache.path());
  auto a = Open(remote.url);
  auto b_open = other_mirrors.Open(remote.url, {.credentials = CredentialsOf(server_)});
  ASSERT_TRUE(b_open.ok());
  auto b = *b_open;
  constexpr int kEach = 4;
  std::vector<Status> errors;
  std::mutex mu;
  auto writer = [&](git::Repository* repo, const std::string& name) {
    for (int i = 0; i < kEach; ++i) {
      git::PushRequest r = SetFile(name + "/" + std::to_string(i), name + std::to_string(i) + "\n",
                                   name + " " + std::to_string(i));
      r.max_attempts = 10;
      auto pushed = repo->CommitAndPush(r);
      if (!pushed.ok()) {
        std::lock_guard lock(mu);
        errors.push_back(pushed.status());
      }
    }
  };
  std::thread ta(writer, a.get(), "a");
  std::thread tb(writer, b.get(), "b");
  ta.join();
  tb.join();
  for (const Status& s : errors) ADD_FAILURE() << s.ToString();
  auto count = Git(remote.path, {"--git-dir", remote.path, "rev-list", "--count", "main"});
  EXPECT_EQ(count.value_or(""), std::to_string(1 + 2 * kEach)) << "one commit per change, no more";
  auto files = Git(remote.path, {"--git-dir", remote.path, "ls-tree", "-r", "--name-only", "main"});
  for (const char* name : {"a", "b"}) {
    for (int i = 0; i < kEach; ++i) {
      EXPECT_NE(files.value_or("").find(std::string(name) + "/" + std::to_string(i)), std::string::npos)
          << name << i << " lost:\n" << files.value_or("");
    }
  }
}

TEST_F(GitSourceTest, CommitAndPushValidatesItsInputs) {
  Repo remote = CreateRepo(server_, "validate");
  Work work(remote);
  work.Commit({{"a", "1\n"}}, "base");
  work.Push();
  auto repo = Open(remote.url);
  git::PushRequest bad_branch = SetFile("a", "2\n", "m");
  bad_branch.branch = "-evil";
  EXPECT_EQ(repo->CommitAndPush(bad_branch).status().code(), Code::kInvalidArgument);
  git::PushRequest bad_path = SetFile("../escape", "2\n", "m");
  EXPECT_EQ(repo->CommitAndPush(bad_path).status().code(), Code::kInvalidArgument);
  git::PushRequest bad_author = SetFile("a", "2\n", "m");
  bad_author.author.email = "x>\nevil";
  EXPECT_EQ(repo->CommitAndPush(bad_author).status().code(), Code::kInvalidArgument);
  // A new branch starts where it is told.
  git::PushRequest branch = SetFile("b", "new\n", "new branch");
  branch.branch = "deploy/prod";
  branch.start_point = "main";
  auto pushed = repo->CommitAndPush(branch);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(ServerRef(remote, "refs/heads/deploy/prod"), *pushed);
  EXPECT_EQ(ServerRef(remote, *pushed + "^"), ServerRef(remote, "refs/heads/main"));
}

}  // namespace
}  // namespace gantry

#pragma once
// fakes::FakeRepository: an in-memory git::Repository for unit tests of code that reads or writes a
// Git repository (the release pipeline's config update), so they run without a Git server.
//
// What it models: commits with a first parent, a message and the full set of files (path →
// content); branches; Resolve of a branch ("main", "refs/heads/main") or a full commit id;
// ReadTree of a directory ("" for the root) or a file; TreeId; ChangedPaths; Contains; ReadSignature (never signed); Log along
// first parents; CommitAndPush with recompute on the branch tip, a lost race when another writer
// committed in between (AfterRecompute lets a test be that writer), and the tip returned
// unchanged when there is nothing to commit. What it does NOT model: merges, tags, symlinks,
// submodules, Materialize (Unimplemented), limits, credentials.
//
// Failures: FailFetch(status, after) fails the fetch after the next `after` ones; FailAfterPush(status) lands the next push on the branch and
// then returns `status` (the answer to a push that was lost: the caller cannot know it landed).
// Counting: pushes() counts commits that landed through CommitAndPush.
//
// Thread-safe; callbacks (recompute, AfterRecompute) run without the lock held.

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/hash.h"
#include "git/git.h"

namespace gantry::fakes {

class FakeRepository final : public git::Repository {
 public:
  using Files = std::map<std::string, std::string>;

  explicit FakeRepository(std::string url = "https://git.example/config.git") : url_(std::move(url)) {}

  // Commits `files` (replacing the whole tree) on `branch` (created when missing) as another
  // writer would; returns the commit id.
  std::string Commit(const std::string& branch, Files files, const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    return CommitLocked(branch, std::move(files), message);
  }
  // Changes some files on `branch` (an empty content deletes one).
  std::string Change(const std::string& branch, const Files& changes, const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    Files files;
    if (auto b = branches_.find(branch); b != branches_.end()) files = commits_.at(b->second).files;
    for (const auto& [path, content] : changes) {
      if (content.empty()) files.erase(path);
      else files[path] = content;
    }
    return CommitLocked(branch, std::move(files), message);
  }

  std::string Tip(const std::string& branch) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = branches_.find(branch);
    return it == branches_.end() ? "" : it->second;
  }
  std::string FileAt(const std::string& commit, const std::string& path) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto c = commits_.find(commit);
    if (c == commits_.end()) return "";
    auto f = c->second.files.find(path);
    return f == c->second.files.end() ? "" : f->second;
  }
  std::string MessageOf(const std::string& commit) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto c = commits_.find(commit);
    return c == commits_.end() ? "" : c->second.message;
  }
  int pushes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pushes_;
  }
  void FailFetch(Status s, int after = 0) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_fetch_ = std::move(s);
    fail_fetch_after_ = after;
  }
  void FailAfterPush(Status s) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_after_push_ = std::move(s);
  }
  // Called after each recompute of a CommitAndPush, before the push: a test commits there to make
  // the push lose a race.
  void AfterRecompute(std::function<void()> f) {
    std::lock_guard<std::mutex> lock(mu_);
    after_recompute_ = std::move(f);
  }

  // git::Repository

  const std::string& url() const override { return url_; }

  Result<git::FetchResult> Fetch() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!fail_fetch_.ok() && fail_fetch_after_-- == 0) {
      Status s = std::move(fail_fetch_);
      fail_fetch_ = OkStatus();
      return s;
    }
    return git::FetchResult{.fetch_number = ++fetches_};
  }

  Result<std::string> Resolve(std::string_view revision) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::string rev(revision);
    if (rev.starts_with("refs/heads/")) rev = rev.substr(11);
    if (auto b = branches_.find(rev); b != branches_.end()) return b->second;
    if (commits_.count(rev) != 0) return rev;
    return NotFoundError("revision {:?} not found in {}", std::string(revision), url_);
  }

  Result<bool> Contains(std::string_view descendant, std::string_view ancestor) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::string c(descendant); !c.empty(); c = commits_.at(c).parent) {
      if (commits_.count(c) == 0) return NotFoundError("commit {} is not in {}", c, url_);
      if (c == ancestor) return true;
    }
    return false;
  }

  Result<git::ReadResult> ReadTree(std::string_view commit, std::string_view path, const git::Limits&) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto c = commits_.find(std::string(commit));
    if (c == commits_.end()) return NotFoundError("commit {} is not in {}", commit, url_);
    git::ReadResult out;
    std::string p(path);
    if (auto f = c->second.files.find(p); f != c->second.files.end()) {
      out.files.push_back({.path = p.substr(p.rfind('/') + 1), .mode = 0100644, .content = f->second});
      return out;
    }
    std::string prefix = p.empty() ? "" : p + "/";
    for (const auto& [name, content] : c->second.files) {
      if (name.starts_with(prefix)) out.files.push_back({.path = name.substr(prefix.size()), .mode = 0100644, .content = content});
    }
    if (out.files.empty() && !p.empty()) return NotFoundError("path {} does not exist in {}", p, commit);
    return out;
  }

  Result<std::string> TreeId(std::string_view commit, std::string_view path) override {
    GANTRY_ASSIGN_OR_RETURN(git::ReadResult tree, ReadTree(commit, path, {}));
    std::string all;
    for (const auto& f : tree.files) all += f.path + '\0' + f.content + '\0';
    return Sha256Hex(all).substr(0, 40);
  }

  Status Materialize(std::string_view, std::string_view, const std::filesystem::path&, const git::Limits&) override {
    return UnimplementedError("FakeRepository does not materialize trees");
  }

  Result<std::vector<std::string>> ChangedPaths(std::string_view from, std::string_view to) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto a = commits_.find(std::string(from));
    auto b = commits_.find(std::string(to));
    if (a == commits_.end() || b == commits_.end()) return NotFoundError("changed paths {}..{}: unknown commit", from, to);
    std::vector<std::string> out;
    for (const auto& [name, content] : a->second.files) {
      auto other = b->second.files.find(name);
      if (other == b->second.files.end() || other->second != content) out.push_back(name);
    }
    for (const auto& [name, _] : b->second.files) {
      if (a->second.files.count(name) == 0) out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Commits of the fake are never signed.
  Result<std::optional<git::CommitSignature>> ReadSignature(std::string_view commit) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (commits_.count(std::string(commit)) == 0) return NotFoundError("commit {} is not in {}", commit, url_);
    return std::optional<git::CommitSignature>();
  }
  Result<std::vector<git::CommitInfo>> Log(std::string_view tip, std::string_view since, int max) override {
    if (max < 1) return InvalidArgumentError("log: max must be at least 1");
    std::lock_guard<std::mutex> lock(mu_);
    for (std::string_view id : {tip, since}) {
      if (!id.empty() && commits_.count(std::string(id)) == 0) return NotFoundError("log: commit {} is not in {}", id, url_);
    }
    std::vector<git::CommitInfo> out;
    for (std::string c(tip); !c.empty() && c != since && static_cast<int>(out.size()) < max; c = commits_.at(c).parent) {
      const Stored& s = commits_.at(c);
      out.push_back({.id = c, .parent = s.parent, .message = s.message});
    }
    return out;
  }

  Result<std::string> CommitAndPush(const git::PushRequest& request) override {
    for (int attempt = 0; attempt < std::max(1, request.max_attempts); ++attempt) {
      std::string tip;
      Files base;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (auto b = branches_.find(request.branch); b != branches_.end() && !request.force) tip = b->second;
        else tip = request.start_point;
        if (!tip.empty()) base = commits_.at(tip).files;
      }
      GANTRY_ASSIGN_OR_RETURN(git::Changes changes, request.recompute(tip));
      std::function<void()> hook;
      {
        std::lock_guard<std::mutex> lock(mu_);
        hook = after_recompute_;
      }
      if (hook) hook();
      Files files = base;
      for (const auto& [path, content] : changes.files) {
        if (content) files[path] = *content;
        else files.erase(path);
      }
      std::lock_guard<std::mutex> lock(mu_);
      std::string now;
      if (auto b = branches_.find(request.branch); b != branches_.end() && !request.force) now = b->second;
      else now = request.start_point;
      if (now != tip) continue;  // lost the race: recompute on the new tip
      if (files == base && !tip.empty()) return tip;
      // Forced: a branch that already is this change on the start point stays.
      if (auto b = branches_.find(request.branch); request.force && b != branches_.end()) {
        const Stored& held = commits_.at(b->second);
        if (held.parent == tip && held.files == files) return b->second;
      }
      std::string commit = CommitLocked(request.branch, std::move(files), request.message, tip);
      ++pushes_;
      if (!fail_after_push_.ok()) {
        Status s = std::move(fail_after_push_);
        fail_after_push_ = OkStatus();
        return s;
      }
      return commit;
    }
    return AbortedError("push to {}: lost every race", request.branch);
  }

 private:
  struct Stored {
    std::string parent;
    std::string message;
    Files files;
  };

  std::string CommitLocked(const std::string& branch, Files files, const std::string& message,
                           std::optional<std::string> parent = std::nullopt) {
    std::string p = parent ? *parent : (branches_.count(branch) != 0 ? branches_[branch] : "");
    std::string id = Sha256Hex(std::to_string(++counter_) + "\n" + p + "\n" + message).substr(0, 40);
    commits_[id] = Stored{p, message, std::move(files)};
    branches_[branch] = id;
    return id;
  }

  const std::string url_;
  mutable std::mutex mu_;
  std::map<std::string, Stored> commits_;       // GUARDED_BY(mu_)
  std::map<std::string, std::string> branches_;  // GUARDED_BY(mu_)
  uint64_t counter_ = 0;                         // GUARDED_BY(mu_)
  uint64_t fetches_ = 0;                         // GUARDED_BY(mu_)
  int pushes_ = 0;                               // GUARDED_BY(mu_)
  Status fail_fetch_;                            // GUARDED_BY(mu_)
  int fail_fetch_after_ = 0;                     // GUARDED_BY(mu_)
  Status fail_after_push_;                       // GUARDED_BY(mu_)
  std::function<void()> after_recompute_;        // GUARDED_BY(mu_)
};

}  // namespace gantry::fakes

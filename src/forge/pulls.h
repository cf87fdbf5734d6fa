#pragma once
// forge/pulls: pull requests (GitLab: merge requests) on a forge, for releases in pull-request mode
// (docs/forges.md): open one for a branch or update the open one, read it, read the checks of its
// head, and merge it.
//
//   Gitea   GET   {api}/repos/{o}/{r}/pulls?state=open&page=N&limit=50    (the head's found by head.ref)
//           POST  {api}/repos/{o}/{r}/pulls          {"head", "base", "title", "body"}
//           PATCH {api}/repos/{o}/{r}/pulls/{n}      {"title", "body"}
//           GET   {api}/repos/{o}/{r}/pulls/{n}
//           GET   {api}/repos/{o}/{r}/commits/{sha}/status   {"statuses": [{"context", "status"}]}
//           POST  {api}/repos/{o}/{r}/pulls/{n}/merge  {"Do": merge|squash|rebase, "head_commit_id"}
//   GitHub  the same paths, except: the list asks head=OWNER:BRANCH&base=BASE; statuses carry
//           "state"; the merge is PUT .../merge {"merge_method", "sha"}
//   GitLab  GET  {api}/projects/{id}/merge_requests?state=opened&source_branch=H&target_branch=B
//           POST {api}/projects/{id}/merge_requests  {"source_branch", "target_branch", "title",
//                "description"}
//           PUT  {api}/projects/{id}/merge_requests/{iid}  {"title", "description"}
//           GET  {api}/projects/{id}/merge_requests/{iid}
//           GET  {api}/projects/{id}/repository/commits/{sha}/statuses   [{"name", "status"}]
//           PUT  {api}/projects/{id}/merge_requests/{iid}/merge  {"sha", "squash"}
// The token's header is the one of forge.h. A pull request's number is GitHub's and Gitea's
// number, GitLab's iid.
//
// Errors, each naming the forge, the repository and the pull request: those of forge.h
// (PermissionDenied names the missing scope; Unavailable and DeadlineExceeded are Retryable()),
// and for Merge: FailedPrecondition when the forge will not merge now (not mergeable, conflicts,
// checks the forge itself requires: GitHub and Gitea 405, GitLab 405/406/422), Aborted when the
// head moved past `sha` (409); InvalidArgument for GitLab and rebase (GitLab rebases by project
// setting, not per merge).
//
// Thread-safety: immutable after construction; every method may be called from any thread.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "forge/forge.h"
#include "http/client.h"

namespace gantry::forge {

struct PullRequestSpec {
  std::string head;   // the branch with the change ("gantry/web/prod")
  std::string base;   // the branch it goes into ("main")
  std::string title;  // one line
  std::string body;   // markdown
};

struct PullRequest {
  int64_t number = 0;    // GitHub/Gitea number, GitLab iid
  std::string url;       // the page on the forge (html_url, web_url)
  std::string head_sha;  // the head commit the forge knows
  bool open = true;
  bool merged = false;
  bool created = false;  // OpenOrUpdate: true when it was opened now, false when an open one was updated
};

// One check of a commit: a commit status's context (GitLab: its name) and its state.
struct Check {
  std::string context;
  State state = State::kPending;  // GitLab's failed/canceled are failure/error, running is running
};

enum class MergeMethod { kMerge, kSquash, kRebase };
std::string_view Name(MergeMethod method);  // "merge", "squash", "rebase"
std::optional<MergeMethod> ParseMergeMethod(std::string_view name);

// What the checks of a head say about merging it.
struct Verdict {
  enum Kind { kWait, kMerge, kFail } kind = kWait;
  std::string reason;  // kWait, kFail: one line ("ci/test is failure", "waiting for ci/test")
};
// With `required` contexts: each must be success (one that failed or errored fails, one missing or
// pending waits). Without: every check reported must be success, and there must be at least one.
// A context reported several times counts by its first entry (forges list the newest first).
Verdict Evaluate(const std::vector<Check>& checks, const std::vector<std::string>& required);

// The pull-request API of one forge (file comment).
class PullRequests {
 public:
  // InvalidArgument as forge::New.
  static Result<std::unique_ptr<PullRequests>> New(Options options);

  // The open pull request from `spec.head` into `spec.base` of `repo` ("owner/name"; GitLab: the
  // project's full path), its title and body rewritten; none open → one is opened. The head
  // branch must exist on the forge (pushed first).
  Result<PullRequest> OpenOrUpdate(std::string_view repo, const PullRequestSpec& spec) const;
  // Pull request `number` as the forge has it now.
  Result<PullRequest> Get(std::string_view repo, int64_t number) const;
  // The checks reported on commit `sha` (all of them; newest first per forge).
  Result<std::vector<Check>> Checks(std::string_view repo, std::string_view sha) const;
  // Merges pull request `number` when its head is still `sha`. OK when merged (or already merged).
  Status Merge(std::string_view repo, int64_t number, std::string_view sha, MergeMethod method) const;

 private:
  explicit PullRequests(Options options);
  Result<http::ClientResponse> Call(std::string method, std::string url, std::string body) const;
  Result<std::vector<PullRequest>> ListOpen(std::string_view repo, const PullRequestSpec& spec) const;
  std::string Repo(std::string_view repo) const;  // the URL of the repository or project

  const Options options_;
  const http::Client client_;
};

}  // namespace gantry::forge

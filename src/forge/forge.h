#pragma once
// forge: what Gantry tells the forge that hosts a repository (Gitea, GitHub, GitLab) through its
// REST API: commit statuses, one per context ("gantry/ci", "gantry/deploy/prod") on a commit,
// each pending → success | failure | error as a run or deploy moves; one comment per pull
// request found again by a marker (PutComment: the preview, server/previews.h); and the pull
// requests of releases in pull-request mode (open or update, read, checks, merge).
//
//   Gitea   POST {api}/repos/{owner}/{repo}/statuses/{sha}    token in "Authorization: token T"
//           {"state": pending|success|failure|error, "context", "description", "target_url"}
//   GitHub  POST {api}/repos/{owner}/{repo}/statuses/{sha}    "Authorization: Bearer T"
//           the same body and states
//   GitLab  POST {api}/projects/{url-encoded path}/statuses/{sha}   "PRIVATE-TOKEN: T"
//           {"state": pending|running|success|failed|canceled, "name", "description", "target_url"}
// `api` is the API root: https://gitea.example/api/v1, https://api.github.com (GitHub Enterprise:
// https://HOST/api/v3), https://gitlab.com/api/v4. A running state is "pending" on Gitea and GitHub;
// an error is "failed" on GitLab, which has no error state (the description says what broke).
// GitLab refuses to post the state a commit already has for that name (HTTP 400 "Cannot
// transition status"); that counts as done.
//
// Errors of SetCommitStatus, each naming the forge, the repository and the commit:
//   PermissionDenied  the token lacks a scope or permission: the message names it (Gitea's 403
//                     message, GitHub's X-Accepted-OAuth-Scopes / X-Accepted-GitHub-Permissions,
//                     GitLab's insufficient_scope);
//   Unauthenticated   the token is refused (401);
//   NotFound          no such repository or commit, or the token cannot see it (404, GitHub 422);
//   InvalidArgument   the forge refused the request otherwise (4xx), with its message;
//   Unavailable, DeadlineExceeded   the forge cannot be reached or answered 5xx/429: try again.
// Retryable() tells the last two from the rest.
//
// Thread-safety: a Forge is immutable after construction; its calls may come from any thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace gantry::forge {

enum class Kind { kGitea, kGitHub, kGitLab };
std::string_view Name(Kind kind);  // "gitea", "github", "gitlab"
std::optional<Kind> ParseKind(std::string_view name);

enum class State { kPending, kRunning, kSuccess, kFailure, kError };
std::string_view Name(State state);  // "pending", "running", "success", "failure", "error"
std::optional<State> ParseState(std::string_view name);

struct CommitStatus {
  std::string sha;  // the full commit id
  State state = State::kPending;
  std::string context;      // "gantry/ci"; GitLab's "name"
  std::string description;  // one line; cut to 140 characters (GitHub's limit) when longer
  std::string target_url;   // "" : none
};

struct Options {
  Kind kind = Kind::kGitea;
  std::string api_url;  // the API root (file comment), without a trailing '/'
  std::string token;
  std::string ca_file;  // PEM bundle for https ("" : the system's)
  std::chrono::seconds timeout{15};
};

// The pull request of a release (forge::Forge::OpenOrUpdatePullRequest).
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
  bool created = false;  // OpenOrUpdatePullRequest: true when opened now, false when an open one was updated
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
  std::string reason;  // kWait, kFail: one line ("check ci/test is failure", "waiting for ci/test")
};
// With `required` contexts: each must be success (one that failed or errored fails, one missing or
// pending waits). Without: every check reported must be success, and there must be at least one.
// A context reported several times counts by its first entry (forges list the newest first).
Verdict Evaluate(const std::vector<Check>& checks, const std::vector<std::string>& required);

// The API of one forge. Implementations: Gitea, GitHub, GitLab over http::Client (New()).
class Forge {
 public:
  virtual ~Forge() = default;
  // Sets `status` on commit status.sha of repository `repo` ("owner/name"; GitLab: the project's
  // full path "group/sub/name"). OK once the forge has it; the errors are in the file comment.
  virtual Status SetCommitStatus(std::string_view repo, const CommitStatus& status) const = 0;

  // Pull-request comments (comments.cc). Puts `body` into the comment of pull request `number`
  // (GitLab: merge request iid) of `repo` whose body contains `marker`: the first such comment is
  // edited, or a comment is created when none has it; returns the comment's id. `body` must
  // contain `marker` (InvalidArgument otherwise), so the next put finds it again. Errors as
  // SetCommitStatus's; NotFound also for no such pull request.
  //   Gitea, GitHub  GET  {api}/repos/{o}/{r}/issues/{n}/comments?page=P&{limit|per_page}=50
  //                  POST {api}/repos/{o}/{r}/issues/{n}/comments        {"body"}
  //                  PATCH {api}/repos/{o}/{r}/issues/comments/{id}      {"body"}
  //   GitLab         GET  {api}/projects/{path}/merge_requests/{n}/notes?page=P&per_page=50&sort=asc
  //                  POST {api}/projects/{path}/merge_requests/{n}/notes {"body"}
  //                  PUT  {api}/projects/{path}/merge_requests/{n}/notes/{id} {"body"}
  // Needs token scopes: Gitea write:issue, GitHub issues=write or pull_requests=write (classic:
  // repo / public_repo), GitLab api.
  virtual Result<int64_t> PutComment(std::string_view repo, int64_t number, std::string_view marker,
                                     std::string_view body) const = 0;

  // Pull requests (pulls.cc), for releases in pull-request mode (docs/forges.md):
  //   Gitea   GET   {api}/repos/{o}/{r}/pulls?state=open&page=N&limit=50  (the head found by head.ref)
  //           POST  {api}/repos/{o}/{r}/pulls          {"head", "base", "title", "body"}
  //           PATCH {api}/repos/{o}/{r}/pulls/{n}      {"title", "body"}
  //           GET   {api}/repos/{o}/{r}/pulls/{n}
  //           GET   {api}/repos/{o}/{r}/commits/{sha}/status   {"statuses": [{"context", "status"}]}
  //           POST  {api}/repos/{o}/{r}/pulls/{n}/merge  {"Do": merge|squash|rebase, "head_commit_id"}
  //   GitHub  the same paths, except: the list asks head=OWNER:BRANCH&base=BASE; statuses carry
  //           "state"; the merge is PUT .../merge {"merge_method", "sha"}
  //   GitLab  GET  {api}/projects/{path}/merge_requests?state=opened&source_branch=H&target_branch=B
  //           POST {api}/projects/{path}/merge_requests  {"source_branch", "target_branch", "title",
  //                "description"}
  //           PUT  {api}/projects/{path}/merge_requests/{iid}  {"title", "description"}
  //           GET  {api}/projects/{path}/merge_requests/{iid}
  //           GET  {api}/projects/{path}/repository/commits/{sha}/statuses   [{"name", "status"}]
  //           PUT  {api}/projects/{path}/merge_requests/{iid}/merge  {"sha", "squash"}
  // Needs token scopes: Gitea write:repository, GitHub pull_requests=write and contents=write
  // (classic: repo), GitLab api. Errors as SetCommitStatus's, naming the pull request.

  // The open pull request from `spec.head` into `spec.base` of `repo`, its title and body
  // rewritten; none open → one is opened. The head branch must exist on the forge (pushed first).
  virtual Result<PullRequest> OpenOrUpdatePullRequest(std::string_view repo, const PullRequestSpec& spec) const = 0;
  // Pull request `number` as the forge has it now.
  virtual Result<PullRequest> GetPullRequest(std::string_view repo, int64_t number) const = 0;
  // The checks reported on commit `sha` (all of them; newest first per forge).
  virtual Result<std::vector<Check>> Checks(std::string_view repo, std::string_view sha) const = 0;
  // Merges pull request `number` when its head is still `sha`. OK when merged (or already merged);
  // FailedPrecondition when the forge will not merge it now (not mergeable, conflicts, checks the
  // forge itself requires: GitHub and Gitea 405, GitLab 405/406/422); Aborted when the head moved
  // past `sha` (409); InvalidArgument for GitLab and rebase (GitLab rebases by project setting).
  virtual Status MergePullRequest(std::string_view repo, int64_t number, std::string_view sha,
                                  MergeMethod method) const = 0;
};

// The forge `options` describe. InvalidArgument when the API URL is not http(s) or the token is empty.
Result<std::unique_ptr<Forge>> New(Options options);

// True for the failures worth trying again (Unavailable, DeadlineExceeded).
bool Retryable(const Status& status);

// The repository path of `repo_url` on a forge whose repositories live under `prefix` (both as
// given, e.g. "https://gitea.example/" and "https://gitea.example/shop/web.git" → "shop/web"), a
// trailing ".git" and slashes dropped. nullopt when `repo_url` is not under `prefix` or names no
// path.
std::optional<std::string> RepoPath(std::string_view prefix, std::string_view repo_url);

}  // namespace gantry::forge

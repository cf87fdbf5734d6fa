#pragma once
// forge: what Gantry tells the forge that hosts a repository (Gitea, GitHub, GitLab) through its
// REST API: commit statuses, one per context ("gantry/ci", "gantry/deploy/prod") on a commit,
// each pending → success | failure | error as a run or deploy moves; and one comment per pull
// request found again by a marker (PutComment: the preview, server/previews.h).
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

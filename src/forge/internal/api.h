#pragma once
// forge/internal/api: one authenticated call of a forge's REST API and the reading of its answer
// into the errors of forge.h. Shared by forge.cc (commit statuses), comments.cc (pull-request
// comments) and pulls.cc (pull requests); private to the forge module.
//
// Thread-safety: an Api is immutable after construction; Call may be called from any thread.

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "forge/forge.h"
#include "http/client.h"

namespace gantry::forge::internal {

class Api {
 public:
  explicit Api(Options options);

  const Options& options() const { return options_; }

  // `method` on `url` (absolute, under options().api_url) with the forge's credentials and, when
  // `json` is not empty, that JSON body. The response of a 2xx answer; otherwise the error of
  // forge.h the answer means (a transport failure as http::Client's), each with context `what`.
  Result<http::ClientResponse> Call(std::string_view method, std::string url, std::string json,
                                    std::string_view what) const;
  // The same call, its answer whatever its HTTP status (for callers that read some refusals
  // themselves); only a transport failure is an error.
  Result<http::ClientResponse> Send(std::string_view method, std::string url, std::string json,
                                    std::string_view what) const;

  // The error of a non-2xx answer (forge.h); OK for GitLab's 400 "Cannot transition status".
  Status Refusal(const http::ClientResponse& r) const;

 private:
  // The scope or permission a 403 says is missing, "" when it does not say.
  std::string Scope(const http::ClientResponse& r) const;

  const Options options_;
  const http::Client client_;
};

// The "message" (Gitea, GitHub, GitLab), "error_description" or "error" of a JSON error body, else
// at most 300 bytes of it on one line.
std::string ForgeMessage(std::string_view body);

// Forge::PutComment over `api` (comments.cc).
Result<int64_t> PutComment(const Api& api, std::string_view repo, int64_t number, std::string_view marker,
                           std::string_view body);

// The pull-request calls of Forge over `api` (pulls.cc).
Result<PullRequest> OpenOrUpdatePullRequest(const Api& api, std::string_view repo, const PullRequestSpec& spec);
Result<PullRequest> GetPullRequest(const Api& api, std::string_view repo, int64_t number);
Result<std::vector<Check>> Checks(const Api& api, std::string_view repo, std::string_view sha);
Status MergePullRequest(const Api& api, std::string_view repo, int64_t number, std::string_view sha, MergeMethod method);

}  // namespace gantry::forge::internal

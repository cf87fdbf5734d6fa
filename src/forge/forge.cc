// The three forges over http::Client: internal::Api makes each call with the forge's credentials,
// and one reading of the answer turns HTTP statuses into the errors of forge.h; HttpForge builds
// the commit-status requests (pull-request comments: comments.cc; pull requests: pulls.cc).

#include "forge/forge.h"

#include <algorithm>
#include <array>
#include <cctype>

#include <fmt/format.h>

#include "base/percent.h"
#include "forge/internal/api.h"
#include "http/client.h"
#include "value/value.h"

namespace gantry::forge {
namespace {

constexpr std::array<std::string_view, 5> kStateNames = {"pending", "running", "success", "failure", "error"};

// At most 300 bytes of a body, on one line, for a message.
std::string Excerpt(std::string_view body) {
  std::string out(body.substr(0, 300));
  std::replace_if(out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  if (body.size() > 300) out += "...";
  return out;
}

// The description as forges take it: one line, at most 140 characters (cut on a UTF-8 boundary).
std::string OneLine(std::string_view text) {
  std::string out(text.substr(0, text.find('\n')));
  if (out.size() > 140) {
    size_t cut = 137;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out = out.substr(0, cut) + "...";
  }
  return out;
}

}  // namespace

namespace internal {

// The "message" (Gitea, GitHub, GitLab) or "error_description" of a JSON error body, else the excerpt.
std::string ForgeMessage(std::string_view body) {
  auto v = value::ParseJson(body, "response");
  if (v.ok()) {
    for (const char* key : {"message", "error_description", "error"}) {
      std::string m = value::StringAt(&*v, {key});
      if (!m.empty()) return m;
    }
  }
  return Excerpt(body);
}

Api::Api(Options options)
    : options_(std::move(options)),
      client_({.connect_timeout = std::min<std::chrono::milliseconds>(options_.timeout, std::chrono::seconds(10)),
               .timeout = options_.timeout,
               .ca_file = options_.ca_file,
               .max_response_bytes = 8 * 1024 * 1024}) {}  // a page of comments, each up to 64 KiB

Result<http::ClientResponse> Api::Send(std::string_view method, std::string url, std::string json,
                                       std::string_view what) const {
  http::ClientRequest req{.method = std::string(method), .url = std::move(url), .body = std::move(json)};
  if (!req.body.empty()) req.headers["content-type"] = "application/json";
  switch (options_.kind) {
    case Kind::kGitea: req.headers["authorization"] = "token " + options_.token; break;
    case Kind::kGitHub:
      req.headers["authorization"] = "Bearer " + options_.token;
      req.headers["accept"] = "application/vnd.github+json";
      req.headers["x-github-api-version"] = "2022-11-28";
      break;
    case Kind::kGitLab: req.headers["private-token"] = options_.token; break;
  }
  auto r = client_.Send(req);
  if (!r.ok()) return r.status().WithContext(what);
  return r;
}

Result<http::ClientResponse> Api::Call(std::string_view method, std::string url, std::string json,
                                       std::string_view what) const {
  GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r, Send(method, std::move(url), std::move(json), what));
  if (r.status >= 200 && r.status < 300) return r;
  GANTRY_RETURN_IF_ERROR(Refusal(r).WithContext(what));
  return r;
}

Status Api::Refusal(const http::ClientResponse& r) const {
  const std::string message = ForgeMessage(r.body);
  const std::string_view forge = Name(options_.kind);
  if (r.status == 401) return UnauthenticatedError("{} refused the token (HTTP 401): {}", forge, message);
  if (r.status == 403) {
    std::string scope = Scope(r);
    if (!scope.empty()) {
      return PermissionDeniedError("the {} token lacks the scope {} (HTTP 403: {})", forge, scope, message);
    }
    return PermissionDeniedError("{} refused (HTTP 403): {}", forge, message);
  }
  // GitLab answers the state the commit already has with 400 "Cannot transition status via ...".
  if (options_.kind == Kind::kGitLab && r.status == 400 && message.find("Cannot transition status") != std::string::npos) {
    return OkStatus();
  }
  if (r.status == 404) return NotFoundError("{} has no such repository, commit or pull request, or the token cannot see it (HTTP 404): {}", forge, message);
  // GitHub: 422 "No commit found for SHA".
  if (r.status == 422 && message.find("No commit found") != std::string::npos) {
    return NotFoundError("{}: {} (HTTP 422)", forge, message);
  }
  if (r.status >= 500 || r.status == 429 || r.status == 408) {
    return UnavailableError("{} answered HTTP {}: {}", forge, r.status, message);
  }
  return InvalidArgumentError("{} refused the request (HTTP {}): {}", forge, r.status, message);
}

std::string Api::Scope(const http::ClientResponse& r) const {
  switch (options_.kind) {
    case Kind::kGitHub: {
      // Classic tokens: the scopes the endpoint accepts, beside those the token has.
      if (auto it = r.headers.find("x-accepted-oauth-scopes"); it != r.headers.end() && !it->second.empty()) {
        auto has = r.headers.find("x-oauth-scopes");
        return fmt::format("{} (the token has: {})", it->second,
                           has == r.headers.end() || has->second.empty() ? "none" : has->second);
      }
      // Fine-grained tokens and apps: the permission.
      if (auto it = r.headers.find("x-accepted-github-permissions"); it != r.headers.end()) return it->second;
      return "";
    }
    case Kind::kGitea: {
      // "token does not have at least one of required scope(s), required=[write:repository], ..."
      const std::string message = ForgeMessage(r.body);
      const size_t open = message.find('[');
      const size_t close = message.find(']', open == std::string::npos ? 0 : open);
      if (message.find("scope") == std::string::npos || open == std::string::npos || close == std::string::npos) return "";
      return message.substr(open + 1, close - open - 1);
    }
    case Kind::kGitLab: {
      // {"error":"insufficient_scope", ..., "scope":"api"}
      auto v = value::ParseJson(r.body, "response");
      if (v.ok() && value::StringAt(&*v, {"error"}) == "insufficient_scope") return value::StringAt(&*v, {"scope"});
      return "";
    }
  }
  return "";
}

}  // namespace internal

namespace {

class HttpForge : public Forge {
 public:
  explicit HttpForge(Options options) : api_(std::move(options)) {}

  Status SetCommitStatus(std::string_view repo, const CommitStatus& s) const override {
    if (s.sha.empty() || s.context.empty()) {
      return InvalidArgumentError("set a commit status on {}: the commit and the context are required", repo);
    }
    const Options& o = api_.options();
    const std::string what = fmt::format("set status {} of {} on {} commit {} of {}", Name(s.state), s.context,
                                         Name(o.kind), s.sha.substr(0, 12), repo);
    value::Value body = value::Value::Map();
    std::string state(Name(s.state));
    std::string url;
    if (o.kind == Kind::kGitLab) {
      if (s.state == State::kFailure || s.state == State::kError) state = "failed";
      url = fmt::format("{}/projects/{}/statuses/{}", o.api_url, PercentEncode(repo), PercentEncode(s.sha));
      body.Set("name", s.context);
    } else {
      if (s.state == State::kRunning) state = "pending";
      url = fmt::format("{}/repos/{}/statuses/{}", o.api_url, repo, PercentEncode(s.sha));
      body.Set("context", s.context);
    }
    body.Set("state", state);
    body.Set("description", OneLine(s.description));
    if (!s.target_url.empty()) body.Set("target_url", s.target_url);
    return api_.Call("POST", std::move(url), value::ToJson(body), what).status();
  }

  Result<int64_t> PutComment(std::string_view repo, int64_t number, std::string_view marker,
                             std::string_view body) const override {
    return internal::PutComment(api_, repo, number, marker, body);
  }

  Result<PullRequest> OpenOrUpdatePullRequest(std::string_view repo, const PullRequestSpec& spec) const override {
    return internal::OpenOrUpdatePullRequest(api_, repo, spec);
  }
  Result<PullRequest> GetPullRequest(std::string_view repo, int64_t number) const override {
    return internal::GetPullRequest(api_, repo, number);
  }
  Result<std::vector<Check>> Checks(std::string_view repo, std::string_view sha) const override {
    return internal::Checks(api_, repo, sha);
  }
  Status MergePullRequest(std::string_view repo, int64_t number, std::string_view sha, MergeMethod method) const override {
    return internal::MergePullRequest(api_, repo, number, sha, method);
  }

 private:
  const internal::Api api_;
};

}  // namespace

std::string_view Name(Kind kind) {
  switch (kind) {
    case Kind::kGitea: return "gitea";
    case Kind::kGitHub: return "github";
    case Kind::kGitLab: return "gitlab";
  }
  return "?";
}

std::optional<Kind> ParseKind(std::string_view name) {
  for (Kind k : {Kind::kGitea, Kind::kGitHub, Kind::kGitLab}) {
    if (Name(k) == name) return k;
  }
  return std::nullopt;
}

std::string_view Name(State state) { return kStateNames[static_cast<size_t>(state)]; }

std::optional<State> ParseState(std::string_view name) {
  for (size_t i = 0; i < kStateNames.size(); ++i) {
    if (kStateNames[i] == name) return static_cast<State>(i);
  }
  return std::nullopt;
}

Result<std::unique_ptr<Forge>> New(Options options) {
  while (options.api_url.ends_with('/')) options.api_url.pop_back();
  if (!options.api_url.starts_with("https://") && !options.api_url.starts_with("http://")) {
    return InvalidArgumentError("{} API URL {:?}: expected http(s)://HOST/... (e.g. {})", Name(options.kind),
                                options.api_url,
                                options.kind == Kind::kGitHub   ? "https://api.github.com"
                                : options.kind == Kind::kGitLab ? "https://gitlab.com/api/v4"
                                                                : "https://gitea.example/api/v1");
  }
  if (options.token.empty()) return InvalidArgumentError("{} API {}: the token is empty", Name(options.kind), options.api_url);
  return std::unique_ptr<Forge>(std::make_unique<HttpForge>(std::move(options)));
}

bool Retryable(const Status& status) {
  return status.code() == Code::kUnavailable || status.code() == Code::kDeadlineExceeded;
}

std::optional<std::string> RepoPath(std::string_view prefix, std::string_view repo_url) {
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  if (!repo_url.starts_with(prefix) || repo_url.size() == prefix.size() || repo_url[prefix.size()] != '/') {
    return std::nullopt;
  }
  std::string_view path = repo_url.substr(prefix.size());
  while (path.starts_with('/')) path.remove_prefix(1);
  while (path.ends_with('/')) path.remove_suffix(1);
  if (path.ends_with(".git")) path.remove_suffix(4);
  if (path.empty()) return std::nullopt;
  return std::string(path);
}

}  // namespace gantry::forge

// The three forges over http::Client: each builds its request, and one reading of the answer turns
// HTTP statuses into the errors of forge.h.

#include "forge/forge.h"

#include <array>

#include <fmt/format.h>

#include "forge/internal/rest.h"
#include "http/client.h"
#include "value/value.h"

namespace gantry::forge {
namespace {

constexpr std::array<std::string_view, 5> kStateNames = {"pending", "running", "success", "failure", "error"};

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

class HttpForge : public Forge {
 public:
  explicit HttpForge(Options options)
      : options_(std::move(options)),
        client_(internal::ClientOptions(options_)) {}

  Status SetCommitStatus(std::string_view repo, const CommitStatus& s) const override {
    if (s.sha.empty() || s.context.empty()) {
      return InvalidArgumentError("set a commit status on {}: the commit and the context are required", repo);
    }
    http::ClientRequest req = Build(repo, s);
    req.method = "POST";
    const std::string what =
        fmt::format("set status {} of {} on {} commit {} of {}", Name(s.state), s.context, Name(options_.kind),
                    s.sha.substr(0, 12), repo);
    auto r = client_.Send(req);
    if (!r.ok()) return r.status().WithContext(what);
    if (r->status >= 200 && r->status < 300) return OkStatus();
    return Refusal(*r).WithContext(what);
  }

 private:
  http::ClientRequest Build(std::string_view repo, const CommitStatus& s) const {
    http::ClientRequest req;
    value::Value body = value::Value::Map();
    std::string state(Name(s.state));
    switch (options_.kind) {
      case Kind::kGitea:
      case Kind::kGitHub:
        if (s.state == State::kRunning) state = "pending";
        req.url = fmt::format("{}/repos/{}/statuses/{}", options_.api_url, repo, internal::Segment(s.sha));
        body.Set("context", s.context);
        break;
      case Kind::kGitLab:
        if (s.state == State::kFailure || s.state == State::kError) state = "failed";
        req.url = fmt::format("{}/projects/{}/statuses/{}", options_.api_url, internal::Segment(repo), internal::Segment(s.sha));
        body.Set("name", s.context);
        break;
    }
    body.Set("state", state);
    body.Set("description", OneLine(s.description));
    if (!s.target_url.empty()) body.Set("target_url", s.target_url);
    req.body = value::ToJson(body);
    internal::Authorize(options_, req);
    return req;
  }

  // The error of a non-2xx answer.
  Status Refusal(const http::ClientResponse& r) const {
    // GitLab answers the state the commit already has with 400 "Cannot transition status via ...".
    if (options_.kind == Kind::kGitLab && r.status == 400 &&
        internal::ForgeMessage(r.body).find("Cannot transition status") != std::string::npos) {
      return OkStatus();
    }
    // GitHub: 422 "No commit found for SHA".
    if (r.status == 422 && internal::ForgeMessage(r.body).find("No commit found") != std::string::npos) {
      return NotFoundError("{}: {} (HTTP 422)", Name(options_.kind), internal::ForgeMessage(r.body));
    }
    return internal::Refusal(options_.kind, r, "commit");
  }

  const Options options_;
  const http::Client client_;
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

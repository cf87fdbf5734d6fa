// Forge's pull-request calls (forge.h lists them per forge): one request per call and forge over
// internal::Api, the answers read with value::.

#include <array>

#include <fmt/format.h>

#include "base/percent.h"
#include "forge/internal/api.h"
#include "value/value.h"

namespace gantry::forge {
namespace {

constexpr std::array<std::string_view, 3> kMethodNames = {"merge", "squash", "rebase"};
constexpr int kMaxPages = 20;  // Gitea: 20 pages of 50 open pull requests are searched for the head

// A pull request of a GitHub/Gitea answer (number, html_url, head.sha) or a GitLab one (iid,
// web_url, sha).
PullRequest PullFrom(Kind kind, const value::Value& v) {
  PullRequest pr;
  if (kind == Kind::kGitLab) {
    pr.number = value::IntAt(&v, {"iid"});
    pr.url = value::StringAt(&v, {"web_url"});
    pr.head_sha = value::StringAt(&v, {"sha"});
    const std::string state = value::StringAt(&v, {"state"});
    pr.open = state == "opened";
    pr.merged = state == "merged";
  } else {
    pr.number = value::IntAt(&v, {"number"});
    pr.url = value::StringAt(&v, {"html_url"});
    pr.head_sha = value::StringAt(&v, {"head", "sha"});
    pr.open = value::StringAt(&v, {"state"}) == "open";
    pr.merged = value::BoolAt(&v, {"merged"});
  }
  return pr;
}

Result<value::Value> Json(const http::ClientResponse& r, std::string_view what) {
  auto v = value::ParseJson(r.body, "answer");
  if (!v.ok()) return InvalidArgumentError("{}: the forge's answer is not JSON: {}", what, v.status().message());
  return v;
}

// A check state of a forge ("success", GitLab's "failed", "canceled", "skipped", ...).
State CheckState(std::string_view s) {
  if (s == "success" || s == "skipped") return State::kSuccess;
  if (s == "failure" || s == "failed") return State::kFailure;
  if (s == "error" || s == "canceled" || s == "warning") return State::kError;
  if (s == "running") return State::kRunning;
  return State::kPending;
}

// The URL of repository `repo` (GitLab: of its project).
std::string Repo(const Options& o, std::string_view repo) {
  if (o.kind == Kind::kGitLab) return fmt::format("{}/projects/{}", o.api_url, PercentEncode(repo));
  return fmt::format("{}/repos/{}", o.api_url, repo);
}

// The URL of pull request `number` of `repo`.
std::string Pull(const Options& o, std::string_view repo, int64_t number) {
  return fmt::format("{}/{}/{}", Repo(o, repo), o.kind == Kind::kGitLab ? "merge_requests" : "pulls", number);
}

// The open pull requests from spec.head into spec.base.
Result<std::vector<PullRequest>> ListOpen(const internal::Api& api, std::string_view repo, const PullRequestSpec& spec,
                                          std::string_view what) {
  const Options& o = api.options();
  std::vector<PullRequest> out;
  for (int page = 1; page <= kMaxPages; ++page) {
    std::string url;
    switch (o.kind) {
      case Kind::kGitea: url = fmt::format("{}/pulls?state=open&page={}&limit=50", Repo(o, repo), page); break;
      case Kind::kGitHub: {
        const std::string owner(repo.substr(0, repo.find('/')));
        url = fmt::format("{}/pulls?state=open&head={}&base={}&per_page=100", Repo(o, repo),
                          PercentEncode(owner + ":" + spec.head), PercentEncode(spec.base));
        break;
      }
      case Kind::kGitLab:
        url = fmt::format("{}/merge_requests?state=opened&source_branch={}&target_branch={}", Repo(o, repo),
                          PercentEncode(spec.head), PercentEncode(spec.base));
        break;
    }
    GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r, api.Call("GET", std::move(url), "", what));
    GANTRY_ASSIGN_OR_RETURN(value::Value v, Json(r, what));
    if (!v.IsSeq()) return InvalidArgumentError("{}: the forge answered the list of pull requests with {:.80}", what, r.body);
    for (const value::Value& item : v.items()) {
      // Filtered here too: Gitea's list has no head filter.
      const bool gitlab = o.kind == Kind::kGitLab;
      const std::string head = gitlab ? value::StringAt(&item, {"source_branch"}) : value::StringAt(&item, {"head", "ref"});
      const std::string base = gitlab ? value::StringAt(&item, {"target_branch"}) : value::StringAt(&item, {"base", "ref"});
      if (head == spec.head && base == spec.base) out.push_back(PullFrom(o.kind, item));
    }
    if (o.kind != Kind::kGitea || v.items().size() < 50 || !out.empty()) break;
  }
  return out;
}

}  // namespace

std::string_view Name(MergeMethod method) { return kMethodNames[static_cast<size_t>(method)]; }

std::optional<MergeMethod> ParseMergeMethod(std::string_view name) {
  for (size_t i = 0; i < kMethodNames.size(); ++i) {
    if (kMethodNames[i] == name) return static_cast<MergeMethod>(i);
  }
  return std::nullopt;
}

Verdict Evaluate(const std::vector<Check>& checks, const std::vector<std::string>& required) {
  // The first entry per context: forges list the newest first.
  std::vector<const Check*> latest;
  for (const Check& c : checks) {
    bool seen = false;
    for (const Check* l : latest) seen = seen || l->context == c.context;
    if (!seen) latest.push_back(&c);
  }
  auto failed = [](const Check& c) { return c.state == State::kFailure || c.state == State::kError; };
  if (required.empty()) {
    if (latest.empty()) return {Verdict::kWait, "waiting for a check to be reported on the head"};
    for (const Check* c : latest)
      if (failed(*c)) return {Verdict::kFail, fmt::format("check {} is {}", c->context, Name(c->state))};
    for (const Check* c : latest)
      if (c->state != State::kSuccess) return {Verdict::kWait, fmt::format("waiting for check {} ({})", c->context, Name(c->state))};
    return {Verdict::kMerge, ""};
  }
  auto find = [&](const std::string& want) -> const Check* {
    for (const Check* c : latest)
      if (c->context == want) return c;
    return nullptr;
  };
  for (const std::string& want : required) {
    const Check* found = find(want);
    if (found != nullptr && failed(*found)) return {Verdict::kFail, fmt::format("required check {} is {}", want, Name(found->state))};
  }
  for (const std::string& want : required) {
    const Check* found = find(want);
    if (found == nullptr) return {Verdict::kWait, fmt::format("waiting for required check {} (not reported yet)", want)};
    if (found->state != State::kSuccess) return {Verdict::kWait, fmt::format("waiting for required check {} ({})", want, Name(found->state))};
  }
  return {Verdict::kMerge, ""};
}

namespace internal {

Result<PullRequest> OpenOrUpdatePullRequest(const Api& api, std::string_view repo, const PullRequestSpec& spec) {
  const Options& o = api.options();
  const std::string what = fmt::format("open or update the pull request {} → {} on {} {}", spec.head, spec.base,
                                       Name(o.kind), repo);
  if (spec.head.empty() || spec.base.empty() || spec.title.empty()) {
    return InvalidArgumentError("{}: the head, base and title are required", what);
  }
  GANTRY_ASSIGN_OR_RETURN(std::vector<PullRequest> open, ListOpen(api, repo, spec, what));
  const bool gitlab = o.kind == Kind::kGitLab;
  value::Value body = value::Value::Map();
  body.Set("title", spec.title);
  body.Set(gitlab ? "description" : "body", spec.body);
  std::string method = "POST", url = Repo(o, repo) + (gitlab ? "/merge_requests" : "/pulls");
  if (!open.empty()) {
    method = gitlab ? "PUT" : "PATCH";
    url = Pull(o, repo, open.front().number);
  } else {
    body.Set(gitlab ? "source_branch" : "head", spec.head);
    body.Set(gitlab ? "target_branch" : "base", spec.base);
  }
  GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r, api.Call(method, std::move(url), value::ToJson(body), what));
  GANTRY_ASSIGN_OR_RETURN(value::Value v, Json(r, what));
  PullRequest pr = PullFrom(o.kind, v);
  pr.created = open.empty();
  if (pr.number <= 0) return InvalidArgumentError("{}: the forge's answer names no pull request number: {:.80}", what, r.body);
  return pr;
}

Result<PullRequest> GetPullRequest(const Api& api, std::string_view repo, int64_t number) {
  const Options& o = api.options();
  const std::string what = fmt::format("read pull request {} of {} {}", number, Name(o.kind), repo);
  GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r, api.Call("GET", Pull(o, repo, number), "", what));
  GANTRY_ASSIGN_OR_RETURN(value::Value v, Json(r, what));
  return PullFrom(o.kind, v);
}

Result<std::vector<Check>> Checks(const Api& api, std::string_view repo, std::string_view sha) {
  const Options& o = api.options();
  const std::string what = fmt::format("read the checks of commit {} of {} {}", sha.substr(0, 12), Name(o.kind), repo);
  const bool gitlab = o.kind == Kind::kGitLab;
  std::string url = fmt::format("{}/{}/{}{}?per_page=100", Repo(o, repo), gitlab ? "repository/commits" : "commits",
                                PercentEncode(sha), gitlab ? "/statuses" : "/status");
  GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r, api.Call("GET", std::move(url), "", what));
  GANTRY_ASSIGN_OR_RETURN(value::Value v, Json(r, what));
  const value::Value* list = gitlab ? &v : v.Get("statuses");
  std::vector<Check> out;
  if (list == nullptr || !list->IsSeq()) return out;  // GitHub and Gitea: null when there are none
  for (const value::Value& s : list->items()) {
    Check c;
    c.context = value::StringAt(&s, {gitlab ? "name" : "context"});
    // Gitea calls the state "status", GitHub "state", GitLab "status".
    std::string state = value::StringAt(&s, {"status"});
    if (state.empty()) state = value::StringAt(&s, {"state"});
    c.state = CheckState(state);
    out.push_back(std::move(c));
  }
  return out;
}

Status MergePullRequest(const Api& api, std::string_view repo, int64_t number, std::string_view sha, MergeMethod method) {
  const Options& o = api.options();
  const std::string what = fmt::format("merge pull request {} of {} {} at {} ({})", number, Name(o.kind), repo,
                                       sha.substr(0, 12), Name(method));
  value::Value body = value::Value::Map();
  std::string verb = "PUT";
  switch (o.kind) {
    case Kind::kGitea:
      verb = "POST";
      body.Set("Do", std::string(Name(method)));
      body.Set("head_commit_id", std::string(sha));
      break;
    case Kind::kGitHub:
      body.Set("merge_method", std::string(Name(method)));
      body.Set("sha", std::string(sha));
      break;
    case Kind::kGitLab:
      if (method == MergeMethod::kRebase) {
        return InvalidArgumentError("{}: GitLab rebases by the project's merge method, not per merge: use merge or squash", what);
      }
      body.Set("sha", std::string(sha));
      body.Set("squash", method == MergeMethod::kSquash);
      break;
  }
  GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r, api.Send(verb, Pull(o, repo, number) + "/merge", value::ToJson(body), what));
  if (r.status >= 200 && r.status < 300) return OkStatus();
  const std::string message = ForgeMessage(r.body);
  // The head moved: GitHub "Head branch was modified", Gitea "head out of date", GitLab "SHA does not match".
  if (r.status == 409) return AbortedError("{}: the head moved (HTTP 409: {})", what, message);
  if (r.status == 405 || r.status == 406 || (o.kind == Kind::kGitLab && r.status == 422)) {
    // Gitea answers 405 for a merged pull request too.
    if (message.find("already merged") != std::string::npos) return OkStatus();
    return FailedPreconditionError("{}: the forge will not merge it now (HTTP {}: {})", what, r.status, message);
  }
  return api.Refusal(r).WithContext(what);
}

}  // namespace internal
}  // namespace gantry::forge

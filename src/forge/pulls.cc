// Pull requests over http::Client: one request builder per call and forge, the answers read with
// value::, refusals through internal::Refusal (forge.h's errors).

#include "forge/pulls.h"

#include <array>

#include <fmt/format.h>

#include "forge/internal/rest.h"
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
  auto v = value::ParseJson(r.body, what);
  if (!v.ok()) return InternalError("{}: the forge's answer is not JSON: {}", what, v.status().message());
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
  for (const std::string& want : required) {
    const Check* found = nullptr;
    for (const Check* c : latest)
      if (c->context == want) found = c;
    if (found != nullptr && failed(*found)) return {Verdict::kFail, fmt::format("required check {} is {}", want, Name(found->state))};
  }
  for (const std::string& want : required) {
    const Check* found = nullptr;
    for (const Check* c : latest)
      if (c->context == want) found = c;
    if (found == nullptr) return {Verdict::kWait, fmt::format("waiting for required check {} (not reported yet)", want)};
    if (found->state != State::kSuccess) return {Verdict::kWait, fmt::format("waiting for required check {} ({})", want, Name(found->state))};
  }
  return {Verdict::kMerge, ""};
}

PullRequests::PullRequests(Options options)
    : options_(std::move(options)), client_(internal::ClientOptions(options_)) {}

Result<std::unique_ptr<PullRequests>> PullRequests::New(Options options) {
  // The same checks as the status client's.
  GANTRY_RETURN_IF_ERROR(forge::New(options).status());
  while (options.api_url.ends_with('/')) options.api_url.pop_back();
  return std::unique_ptr<PullRequests>(new PullRequests(std::move(options)));
}

std::string PullRequests::Repo(std::string_view repo) const {
  if (options_.kind == Kind::kGitLab) return fmt::format("{}/projects/{}", options_.api_url, internal::Segment(repo));
  return fmt::format("{}/repos/{}", options_.api_url, repo);
}

Result<http::ClientResponse> PullRequests::Call(std::string method, std::string url, std::string body) const {
  http::ClientRequest req{.method = std::move(method), .url = std::move(url), .body = std::move(body)};
  internal::Authorize(options_, req);
  return client_.Send(req);
}

Result<std::vector<PullRequest>> PullRequests::ListOpen(std::string_view repo, const PullRequestSpec& spec) const {
  std::vector<PullRequest> out;
  for (int page = 1; page <= kMaxPages; ++page) {
    std::string url;
    switch (options_.kind) {
      case Kind::kGitea: url = fmt::format("{}/pulls?state=open&page={}&limit=50", Repo(repo), page); break;
      case Kind::kGitHub: {
        const std::string owner = std::string(repo.substr(0, repo.find('/')));
        url = fmt::format("{}/pulls?state=open&head={}&base={}&per_page=100", Repo(repo),
                          internal::Segment(owner + ":" + spec.head), internal::Segment(spec.base));
        break;
      }
      case Kind::kGitLab:
        url = fmt::format("{}/merge_requests?state=opened&source_branch={}&target_branch={}", Repo(repo),
                          internal::Segment(spec.head), internal::Segment(spec.base));
        break;
    }
    GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r, Call("GET", url, ""));
    if (r.status != 200) return internal::Refusal(options_.kind, r, "pull request");
    GANTRY_ASSIGN_OR_RETURN(value::Value v, Json(r, "pull requests"));
    if (!v.IsSeq()) return InternalError("the list of pull requests is not a JSON array");
    for (const value::Value& item : v.items()) {
      // Filtered here too: Gitea's list has no head filter.
      const std::string ref = options_.kind == Kind::kGitLab ? value::StringAt(&item, {"source_branch"})
                                                             : value::StringAt(&item, {"head", "ref"});
      const std::string base = options_.kind == Kind::kGitLab ? value::StringAt(&item, {"target_branch"})
                                                              : value::StringAt(&item, {"base", "ref"});
      if (ref == spec.head && base == spec.base) out.push_back(PullFrom(options_.kind, item));
    }
    if (options_.kind != Kind::kGitea || v.items().size() < 50 || !out.empty()) break;
  }
  return out;
}

Result<PullRequest> PullRequests::OpenOrUpdate(std::string_view repo, const PullRequestSpec& spec) const {
  const std::string what = fmt::format("open or update the pull request {} → {} on {} {}", spec.head, spec.base,
                                       Name(options_.kind), repo);
  if (spec.head.empty() || spec.base.empty() || spec.title.empty()) {
    return InvalidArgumentError("{}: the head, base and title are required", what);
  }
  auto open = ListOpen(repo, spec);
  if (!open.ok()) return open.status().WithContext(what);
  const bool gitlab = options_.kind == Kind::kGitLab;
  value::Value body = value::Value::Map();
  body.Set("title", spec.title);
  body.Set(gitlab ? "description" : "body", spec.body);
  std::string method = "POST", url = Repo(repo) + (gitlab ? "/merge_requests" : "/pulls");
  if (!open->empty()) {
    method = gitlab ? "PUT" : "PATCH";
    url += fmt::format("/{}", open->front().number);
  } else {
    body.Set(gitlab ? "source_branch" : "head", spec.head);
    body.Set(gitlab ? "target_branch" : "base", spec.base);
  }
  auto r = Call(method, url, value::ToJson(body));
  if (!r.ok()) return r.status().WithContext(what);
  if (r->status < 200 || r->status >= 300) return internal::Refusal(options_.kind, *r, "pull request").WithContext(what);
  auto v = Json(*r, "pull request");
  if (!v.ok()) return v.status().WithContext(what);
  PullRequest pr = PullFrom(options_.kind, *v);
  pr.created = open->empty();
  if (pr.number <= 0) return InternalError("{}: the answer names no pull request number", what);
  return pr;
}

Result<PullRequest> PullRequests::Get(std::string_view repo, int64_t number) const {
  const std::string what = fmt::format("read pull request {} of {} {}", number, Name(options_.kind), repo);
  auto r = Call("GET", fmt::format("{}/{}/{}", Repo(repo), options_.kind == Kind::kGitLab ? "merge_requests" : "pulls", number), "");
  if (!r.ok()) return r.status().WithContext(what);
  if (r->status != 200) return internal::Refusal(options_.kind, *r, "pull request").WithContext(what);
  auto v = Json(*r, "pull request");
  if (!v.ok()) return v.status().WithContext(what);
  return PullFrom(options_.kind, *v);
}

Result<std::vector<Check>> PullRequests::Checks(std::string_view repo, std::string_view sha) const {
  const std::string what = fmt::format("read the checks of commit {} of {} {}", sha.substr(0, 12), Name(options_.kind), repo);
  const bool gitlab = options_.kind == Kind::kGitLab;
  std::string url = gitlab ? fmt::format("{}/repository/commits/{}/statuses?per_page=100", Repo(repo), internal::Segment(sha))
                           : fmt::format("{}/commits/{}/status?per_page=100", Repo(repo), internal::Segment(sha));
  auto r = Call("GET", url, "");
  if (!r.ok()) return r.status().WithContext(what);
  if (r->status != 200) return internal::Refusal(options_.kind, *r, "commit").WithContext(what);
  auto v = Json(*r, "statuses");
  if (!v.ok()) return v.status().WithContext(what);
  const value::Value* list = gitlab ? &*v : v->Get("statuses");
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

Status PullRequests::Merge(std::string_view repo, int64_t number, std::string_view sha, MergeMethod method) const {
  const std::string what = fmt::format("merge pull request {} of {} {} at {} ({})", number, Name(options_.kind), repo,
                                       sha.substr(0, 12), Name(method));
  value::Value body = value::Value::Map();
  std::string verb = "PUT";
  std::string url = fmt::format("{}/pulls/{}/merge", Repo(repo), number);
  switch (options_.kind) {
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
      url = fmt::format("{}/merge_requests/{}/merge", Repo(repo), number);
      body.Set("sha", std::string(sha));
      body.Set("squash", method == MergeMethod::kSquash);
      break;
  }
  auto r = Call(verb, url, value::ToJson(body));
  if (!r.ok()) return r.status().WithContext(what);
  if (r->status >= 200 && r->status < 300) return OkStatus();
  const std::string message = internal::ForgeMessage(r->body);
  // The head moved: GitHub "Head branch was modified", Gitea "head out of date", GitLab "SHA does not match".
  if (r->status == 409) return AbortedError("{}: the head moved (HTTP 409: {})", what, message);
  if (r->status == 405 || r->status == 406 || (options_.kind == Kind::kGitLab && r->status == 422)) {
    // Gitea answers 405 for a merged pull request too.
    if (message.find("already merged") != std::string::npos) return OkStatus();
    return FailedPreconditionError("{}: the forge will not merge it now (HTTP {}: {})", what, r->status, message);
  }
  return internal::Refusal(options_.kind, *r, "pull request").WithContext(what);
}

}  // namespace gantry::forge

#pragma once
// webhook: verifies a push or pull-request webhook from GitHub, GitLab, Gitea, Forgejo, Bitbucket
// Cloud or any sender of Gantry's generic signature, and normalises it into an Event.
//
// Verify() is a pure function of the request's headers and raw body (no I/O). In order:
//   1. An empty configured secret → FailedPrecondition: Gantry never accepts unsigned webhooks.
//   2. A body larger than max_body_bytes → ResourceExhausted, reason kBodyTooLarge.
//   3. The provider is the configured one, or detected from the headers (X-Forgejo-Event,
//      X-Gitea-Event, X-Gitlab-Event, X-Event-Key (Bitbucket), X-GitHub-Event, X-Gantry-Event, in
//      this order: Gitea and Forgejo also send X-GitHub-Event); none → InvalidArgument.
//   4. The signature is checked over the raw body, before any parsing, comparing decoded bytes in
//      constant time (CRYPTO_memcmp):
//        GitHub     X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>. The legacy
//                   X-Hub-Signature (HMAC-SHA1) alone, or any other algorithm → PermissionDenied
//                   "only sha256 signatures are accepted".
//        Gitea      X-Gitea-Signature: <hex HMAC-SHA256>, no prefix.
//        Forgejo    X-Forgejo-Signature: <hex HMAC-SHA256>; when absent, X-Gitea-Signature (Forgejo
//                   sends both). A present X-Forgejo-Signature is the only one checked.
//        Bitbucket  X-Hub-Signature: sha256=<hex HMAC-SHA256> (Bitbucket Cloud uses the name
//                   GitHub uses for SHA-1 with SHA-256).
//        GitLab     X-Gitlab-Token: the secret itself, compared in constant time. GitLab signs
//                   nothing: the token proves only that the sender knows the secret, and anyone
//                   who sees one request (a logging proxy, a TLS-terminating load balancer) can
//                   forge any payload. Use HTTPS end to end.
//        Generic    X-Gantry-Signature: sha256=<hex HMAC-SHA256>.
//      A missing header → Unauthenticated naming it; a malformed or wrong signature →
//      Unauthenticated "signature does not match" (the expected value is never in a message).
//   5. Event type from the provider's event header; a type Gantry does not act on → Unimplemented
//      (the server answers 202 and ignores it); a missing header → InvalidArgument.
//   6. Only now the body is parsed as JSON (malformed → InvalidArgument) and normalised; a
//      payload without the fields its event needs → InvalidArgument.
//
// The payload is a hint, Git is the truth: callers fetch the ref rather than trusting `after`,
// and use the delivery id to drop redeliveries (RecentDeliveries). Signatures cover no timestamp,
// so a captured delivery replays; dedupe by delivery id is the defence within its window.
//
// Event types: GitHub push, pull_request, ping; Gitea/Forgejo push, pull_request; GitLab
// "Push Hook", "Tag Push Hook", "Merge Request Hook"; Bitbucket repo:push, pullrequest:created,
// pullrequest:updated, pullrequest:fulfilled, pullrequest:rejected; generic: the GitHub payloads
// under X-Gantry-Event push, pull_request or ping. A push of a tag (refs/tags/...) is kind kTag.
// A Bitbucket push may carry several ref changes; the Event describes the first.
//
// Thread-safety: Verify() and the helpers are pure; RecentDeliveries is thread-safe.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"

namespace gantry::webhook {

enum class Provider { kAuto, kGitHub, kGitLab, kGitea, kForgejo, kBitbucket, kGeneric };

// "auto", "github", "gitlab", "gitea", "forgejo", "bitbucket", "generic".
std::string_view ProviderName(Provider p);
// The inverse of ProviderName; InvalidArgument listing the names for anything else.
Result<Provider> ParseProvider(std::string_view name);

// The reason of the ResourceExhausted a body over Config::max_body_bytes gets (HTTP 413).
inline constexpr std::string_view kBodyTooLarge = "BodyTooLarge";

struct Event;

struct Config {
  Provider provider = Provider::kAuto;
  std::string secret;  // required
  size_t max_body_bytes = size_t{1} << 20;
  // Per-repository secrets: called with the event as the (not yet verified) payload describes it;
  // a non-empty answer is the only secret that event's signature is checked with (a repository
  // with a secret of its own never accepts the shared one), "" falls back to `secret`. With it,
  // the body is parsed before the signature check (bounded by max_body_bytes), to learn which
  // repository it names; nothing of the unverified event is used but its repository.
  std::function<std::string(const Event& unverified)> secret_for;
};

enum class Kind { kPush, kTag, kPullRequest, kPing };
std::string_view KindName(Kind k);  // "push", "tag", "pull_request", "ping"

// What happened to a pull request, across providers' vocabularies.
enum class PrAction {
  kOpened,        // GitHub/Gitea opened, GitLab open, Bitbucket pullrequest:created
  kSynchronized,  // new commits: GitHub synchronize, Gitea synchronized, GitLab update with
                  // oldrev, Bitbucket pullrequest:updated
  kReopened,
  kClosed,        // closed without merging; Bitbucket pullrequest:rejected
  kMerged,        // GitHub/Gitea closed with merged, GitLab merge, Bitbucket pullrequest:fulfilled
  kOther,         // edited, labeled, approved, ...: `action` has the provider's word
};

struct PullRequest {
  std::string action;  // as the provider sent it ("synchronize", "update", "pullrequest:updated")
  PrAction normalized_action = PrAction::kOther;
  int64_t number = 0;  // GitHub/Gitea number, GitLab iid, Bitbucket id
  std::string head_sha;
  std::string head_ref;  // branch name, "feature/x"
  std::string base_ref;  // "main"
  std::string head_repo_full_name;
  std::string head_clone_url;  // https, as given; empty when the provider does not say
  // The head is another repository than the base (a fork). CI withholds secrets from such
  // builds. Also true when the head repository is unknown (GitHub: a deleted fork).
  bool from_fork = false;
};

struct Event {
  Provider provider = Provider::kAuto;  // the one that verified, never kAuto
  std::string delivery_id;              // may be empty (old GitLab, generic without header)
  Kind kind = Kind::kPush;

  std::string repo_full_name;  // "octo/hello", GitLab "group/sub/project"
  std::string clone_url;       // https, as given ("" for Bitbucket, which gives none)
  std::string ssh_url;         // as given
  std::string web_url;

  // Push and tag: the ref ("refs/heads/main", "refs/tags/v1.2.0"), its short name, and the SHAs
  // before and after (40 zeros when the ref was created / deleted). For a pull request, ref is
  // the base ref as "refs/heads/<base>" and after the head SHA.
  std::string ref;
  std::string branch;  // set for branch pushes and pull requests (the base branch)
  std::string tag;     // set for tag pushes
  std::string before;
  std::string after;
  bool deleted = false;  // the push deleted the ref

  std::optional<PullRequest> pull_request;  // kind kPullRequest

  std::string sender;  // login of who pushed / acted

  // Paths added, modified or removed by the pushed commits, sorted and unique, when the payload
  // lists them completely (GitHub, Gitea/Forgejo, GitLab pushes); changed_files_known says so.
  std::vector<std::string> changed_files;
  bool changed_files_known = false;
};

using Headers = std::map<std::string, std::string, std::less<>>;  // lower-case names

// Verifies and normalises one delivery; see the file comment for each outcome.
// `headers` have lower-case names (http::Request::headers), `body` is the raw body.
Result<Event> Verify(const Headers& headers, std::string_view body, const Config& config);

// The hex HMAC-SHA256 of `body` under `secret`, as GitHub, Gitea and Bitbucket send it (without
// "sha256="). For tests and for `gantry webhook test`-like tools.
std::string HmacSha256Hex(std::string_view secret, std::string_view body);

// Remembers the last `capacity` delivery ids per provider, to drop redeliveries. Thread-safe.
class RecentDeliveries {
 public:
  explicit RecentDeliveries(size_t capacity = 4096) : capacity_(capacity) {}
  // True the first time (provider, id) is seen, false for a repeat. An empty id is always new.
  bool Insert(Provider provider, std::string_view id);

 private:
  const size_t capacity_;
  Mutex mu_;
  std::set<std::pair<Provider, std::string>, std::less<>> seen_ GUARDED_BY(mu_);
  std::deque<std::pair<Provider, std::string>> order_ GUARDED_BY(mu_);
};

}  // namespace gantry::webhook

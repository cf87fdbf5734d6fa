#include "webhook/webhook.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <set>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/mutex.h"
#include "value/value.h"

namespace gantry::webhook {
namespace {

using value::Value;

constexpr std::string_view kZeroSha = "0000000000000000000000000000000000000000";
constexpr size_t kSha256Bytes = 32;

std::string_view Header(const Headers& headers, std::string_view name) {
  auto it = headers.find(name);
  return it == headers.end() ? std::string_view() : std::string_view(it->second);
}

bool Has(const Headers& headers, std::string_view name) { return headers.contains(name); }

std::array<unsigned char, kSha256Bytes> Hmac(std::string_view secret, std::string_view body) {
  std::array<unsigned char, kSha256Bytes> out{};
  unsigned len = 0;
  GANTRY_CHECK(HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
                    reinterpret_cast<const unsigned char*>(body.data()), body.size(), out.data(),
                    &len) != nullptr &&
               len == kSha256Bytes);
  return out;
}

std::array<unsigned char, kSha256Bytes> Sha256(std::string_view data) {
  std::array<unsigned char, kSha256Bytes> out{};
  unsigned len = 0;
  GANTRY_CHECK(EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) == 1 &&
               len == kSha256Bytes);
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Whitespace around a header value is not part of it (proxies may add some).
std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Status Mismatch(std::string_view provider) {
  return UnauthenticatedError("{} webhook: signature does not match", provider);
}

// Compares the hex HMAC-SHA256 `hex` with the one of `body` in constant time.
Status CheckHexHmac(std::string_view provider, std::string_view hex, std::string_view secret,
                    std::string_view body) {
  hex = Trim(hex);
  if (hex.size() != 2 * kSha256Bytes) return Mismatch(provider);
  std::array<unsigned char, kSha256Bytes> given{};
  for (size_t i = 0; i < kSha256Bytes; ++i) {
    int hi = HexDigit(hex[2 * i]), lo = HexDigit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return Mismatch(provider);
    given[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  std::array<unsigned char, kSha256Bytes> expected = Hmac(secret, body);
  if (CRYPTO_memcmp(given.data(), expected.data(), kSha256Bytes) != 0) return Mismatch(provider);
  return OkStatus();
}

// "sha256=<hex>" in `header`; any other algorithm is refused.
Status CheckPrefixedHmac(std::string_view provider, std::string_view header_name,
                         std::string_view value, std::string_view secret, std::string_view body) {
  value = Trim(value);
  size_t eq = value.find('=');
  if (eq == std::string_view::npos) return Mismatch(provider);
  std::string_view algorithm = value.substr(0, eq);
  if (algorithm != "sha256") {
    return PermissionDeniedError("{} webhook: {} uses {:?}: only sha256 signatures are accepted",
                                 provider, header_name, algorithm);
  }
  return CheckHexHmac(provider, value.substr(eq + 1), secret, body);
}

Status CheckSignature(Provider provider, const Headers& h, std::string_view secret,
                      std::string_view body) {
  std::string_view name = ProviderName(provider);
  switch (provider) {
    case Provider::kGitHub:
      if (!Has(h, "x-hub-signature-256")) {
        if (Has(h, "x-hub-signature")) {
          return PermissionDeniedError(
              "github webhook: only X-Hub-Signature (HMAC-SHA1) was sent: only sha256 signatures "
              "are accepted; GitHub sends X-Hub-Signature-256 when the webhook has a secret");
        }
        return UnauthenticatedError("github webhook: missing X-Hub-Signature-256 header");
      }
      return CheckPrefixedHmac(name, "X-Hub-Signature-256", Header(h, "x-hub-signature-256"),
                               secret, body);
    case Provider::kBitbucket:
      if (!Has(h, "x-hub-signature")) {
        return UnauthenticatedError("bitbucket webhook: missing X-Hub-Signature header");
      }
      return CheckPrefixedHmac(name, "X-Hub-Signature", Header(h, "x-hub-signature"), secret,
                               body);
    case Provider::kGeneric:
      if (!Has(h, "x-gantry-signature")) {
        return UnauthenticatedError("generic webhook: missing X-Gantry-Signature header");
      }
      return CheckPrefixedHmac(name, "X-Gantry-Signature", Header(h, "x-gantry-signature"), secret,
                               body);
    case Provider::kForgejo:
      if (Has(h, "x-forgejo-signature")) {
        return CheckHexHmac(name, Header(h, "x-forgejo-signature"), secret, body);
      }
      [[fallthrough]];
    case Provider::kGitea:
      if (!Has(h, "x-gitea-signature")) {
        return UnauthenticatedError(
            "{} webhook: missing {} header", name,
            provider == Provider::kForgejo ? "X-Forgejo-Signature" : "X-Gitea-Signature");
      }
      return CheckHexHmac(name, Header(h, "x-gitea-signature"), secret, body);
    case Provider::kGitLab: {
      if (!Has(h, "x-gitlab-token")) {
        return UnauthenticatedError("gitlab webhook: missing X-Gitlab-Token header");
      }
      // Digests of both sides have equal length, so the comparison time says nothing about the
      // secret's length or content.
      auto given = Sha256(Header(h, "x-gitlab-token"));
      auto expected = Sha256(secret);
      if (CRYPTO_memcmp(given.data(), expected.data(), kSha256Bytes) != 0) {
        return UnauthenticatedError("gitlab webhook: X-Gitlab-Token does not match the secret");
      }
      return OkStatus();
    }
    case Provider::kAuto:
      break;
  }
  return InternalError("webhook: no signature check for provider {}", name);
}

Result<Provider> Detect(const Headers& h) {
  if (Has(h, "x-forgejo-event")) return Provider::kForgejo;
  if (Has(h, "x-gitea-event")) return Provider::kGitea;
  if (Has(h, "x-gitlab-event")) return Provider::kGitLab;
  if (Has(h, "x-event-key")) return Provider::kBitbucket;
  if (Has(h, "x-github-event")) return Provider::kGitHub;
  if (Has(h, "x-gantry-event")) return Provider::kGeneric;
  return InvalidArgumentError(
      "webhook: cannot tell the provider from the headers (none of X-GitHub-Event, "
      "X-Gitlab-Event, X-Gitea-Event, X-Forgejo-Event, X-Event-Key, X-Gantry-Event)");
}

// The event header and delivery id of a provider.
struct Envelope {
  std::string_view event_header;  // lower-case name
  std::string_view event;
  std::string_view delivery;
};

Envelope ReadEnvelope(Provider p, const Headers& h) {
  switch (p) {
    case Provider::kGitHub:
      return {"x-github-event", Header(h, "x-github-event"), Header(h, "x-github-delivery")};
    case Provider::kGitea:
      return {"x-gitea-event", Header(h, "x-gitea-event"), Header(h, "x-gitea-delivery")};
    case Provider::kForgejo: {
      bool own = Has(h, "x-forgejo-event");
      return {own ? "x-forgejo-event" : "x-gitea-event",
              Header(h, own ? "x-forgejo-event" : "x-gitea-event"),
              Has(h, "x-forgejo-delivery") ? Header(h, "x-forgejo-delivery")
                                           : Header(h, "x-gitea-delivery")};
    }
    case Provider::kGitLab:
      // Idempotency-Key (GitLab 17.4+) stays the same across retries of one delivery.
      return {"x-gitlab-event", Header(h, "x-gitlab-event"),
              Has(h, "idempotency-key") ? Header(h, "idempotency-key")
                                        : Header(h, "x-gitlab-event-uuid")};
    case Provider::kBitbucket:
      return {"x-event-key", Header(h, "x-event-key"), Header(h, "x-request-uuid")};
    case Provider::kGeneric:
      return {"x-gantry-event", Header(h, "x-gantry-event"), Header(h, "x-gantry-delivery")};
    case Provider::kAuto:
      break;
  }
  return {};
}

// --- Payload helpers: absent or mistyped fields read as empty; required ones are checked. ---

std::string Str(const Value& root, std::initializer_list<Value::PathElem> path) {
  const Value* v = root.Find(path);
  return v != nullptr && v->IsString() ? std::string(v->AsString()) : std::string();
}

int64_t Int(const Value& root, std::initializer_list<Value::PathElem> path) {
  const Value* v = root.Find(path);
  return v != nullptr && v->IsInt() ? v->AsInt() : 0;
}

bool Bool(const Value& root, std::initializer_list<Value::PathElem> path) {
  const Value* v = root.Find(path);
  return v != nullptr && v->IsBool() && v->AsBool();
}

std::string FirstOf(std::initializer_list<std::string> values) {
  for (const auto& v : values) {
    if (!v.empty()) return v;
  }
  return {};
}

bool SameName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

Status Missing(Provider p, std::string_view event, std::string_view field) {
  return InvalidArgumentError("{} webhook: {} payload has no {}", ProviderName(p), event, field);
}

// Sets ref, branch or tag, and kind, from a full ref name.
void SetRef(Event& e, std::string ref) {
  if (ref.starts_with("refs/tags/")) {
    e.kind = Kind::kTag;
    e.tag = ref.substr(10);
  } else {
    e.kind = Kind::kPush;
    if (ref.starts_with("refs/heads/")) e.branch = ref.substr(11);
  }
  e.ref = std::move(ref);
}

// commits[].added/modified/removed, when every commit lists them and the list is complete.
void SetChangedFiles(Event& e, const Value& root, size_t total_commits) {
  const Value* commits = root.Get("commits");
  if (commits == nullptr || !commits->IsSeq() || commits->size() == 0 ||
      commits->size() < total_commits) {
    return;
  }
  std::set<std::string> files;
  for (const Value& c : commits->items()) {
    for (std::string_view list : {"added", "modified", "removed"}) {
      const Value* paths = c.Get(list);
      if (paths == nullptr || !paths->IsSeq()) return;
      for (const Value& p : paths->items()) {
        if (!p.IsString()) continue;
        // No Git path holds a NUL: such a list is not a forge's, so the changed paths stay unknown
        // (path filters then match) rather than reach the store, which cannot keep a NUL in text.
        if (p.AsString().find('\0') != std::string_view::npos) return;
        files.emplace(p.AsString());
      }
    }
  }
  e.changed_files.assign(files.begin(), files.end());
  e.changed_files_known = true;
}

PrAction NormalizeAction(std::string_view action, bool merged) {
  if (action == "opened" || action == "open") return PrAction::kOpened;
  if (action == "synchronize" || action == "synchronized") return PrAction::kSynchronized;
  if (action == "reopened" || action == "reopen") return PrAction::kReopened;
  if (action == "closed" || action == "close") return merged ? PrAction::kMerged : PrAction::kClosed;
  if (action == "merge") return PrAction::kMerged;
  return PrAction::kOther;
}

// GitHub, Gitea, Forgejo and the generic provider share GitHub's payloads.
Status ParseGitHubLike(Provider p, std::string_view type, const Value& root, Event& e) {
  e.repo_full_name = Str(root, {"repository", "full_name"});
  e.clone_url = Str(root, {"repository", "clone_url"});
  e.ssh_url = Str(root, {"repository", "ssh_url"});
  e.web_url = Str(root, {"repository", "html_url"});
  e.sender = FirstOf({Str(root, {"sender", "login"}), Str(root, {"pusher", "login"}),
                      Str(root, {"pusher", "username"}), Str(root, {"pusher", "name"})});
  if (type == "ping") {
    e.kind = Kind::kPing;
    return OkStatus();
  }
  if (e.repo_full_name.empty()) return Missing(p, type, "repository.full_name");
  if (type == "push") {
    std::string ref = Str(root, {"ref"});
    if (ref.empty()) return Missing(p, type, "ref");
    SetRef(e, std::move(ref));
    e.before = Str(root, {"before"});
    e.after = Str(root, {"after"});
    e.deleted = Bool(root, {"deleted"}) || e.after == kZeroSha;
    if (!e.deleted) {
      // GitHub lists at most 2048 commits; Gitea says how many there were.
      int64_t total = Int(root, {"total_commits"});
      const Value* commits = root.Get("commits");
      bool truncated = p == Provider::kGitHub && commits != nullptr && commits->size() >= 2048;
      if (!truncated) SetChangedFiles(e, root, static_cast<size_t>(std::max<int64_t>(total, 0)));
    }
    return OkStatus();
  }
  // pull_request
  const Value* pr = root.Get("pull_request");
  if (pr == nullptr || !pr->IsMap()) return Missing(p, type, "pull_request");
  PullRequest out;
  out.action = Str(root, {"action"});
  out.number = Int(root, {"number"});
  if (out.number == 0) out.number = Int(*pr, {"number"});
  out.head_sha = Str(*pr, {"head", "sha"});
  out.head_ref = Str(*pr, {"head", "ref"});
  out.base_ref = Str(*pr, {"base", "ref"});
  if (out.head_sha.empty() || out.base_ref.empty()) {
    return Missing(p, type, "pull_request.head.sha or pull_request.base.ref");
  }
  out.normalized_action = NormalizeAction(out.action, Bool(*pr, {"merged"}));
  out.head_repo_full_name = Str(*pr, {"head", "repo", "full_name"});
  out.head_clone_url = Str(*pr, {"head", "repo", "clone_url"});
  std::string base_repo = FirstOf({Str(*pr, {"base", "repo", "full_name"}), e.repo_full_name});
  int64_t head_id = Int(*pr, {"head", "repo", "id"}), base_id = Int(*pr, {"base", "repo", "id"});
  if (out.head_repo_full_name.empty()) {
    out.from_fork = true;  // the head repository is gone (a deleted fork) or unknown
  } else if (head_id != 0 && base_id != 0) {
    out.from_fork = head_id != base_id;
  } else {
    out.from_fork = !SameName(out.head_repo_full_name, base_repo);
  }
  e.kind = Kind::kPullRequest;
  e.ref = "refs/heads/" + out.base_ref;
  e.branch = out.base_ref;
  e.before = Str(*pr, {"base", "sha"});
  e.after = out.head_sha;
  e.pull_request = std::move(out);
  return OkStatus();
}

Status ParseGitLab(std::string_view type, const Value& root, Event& e) {
  const Provider p = Provider::kGitLab;
  e.repo_full_name = Str(root, {"project", "path_with_namespace"});
  e.clone_url = Str(root, {"project", "git_http_url"});
  e.ssh_url = Str(root, {"project", "git_ssh_url"});
  e.web_url = Str(root, {"project", "web_url"});
  if (e.repo_full_name.empty()) return Missing(p, type, "project.path_with_namespace");
  if (type == "Push Hook" || type == "Tag Push Hook") {
    e.sender = Str(root, {"user_username"});
    std::string ref = Str(root, {"ref"});
    if (ref.empty()) return Missing(p, type, "ref");
    SetRef(e, std::move(ref));
    e.before = Str(root, {"before"});
    e.after = Str(root, {"after"});
    e.deleted = e.after == kZeroSha;
    if (!e.deleted) {
      // GitLab lists at most 20 commits and gives the total.
      int64_t total = Int(root, {"total_commits_count"});
      SetChangedFiles(e, root, static_cast<size_t>(std::max<int64_t>(total, 0)));
    }
    return OkStatus();
  }
  // Merge Request Hook
  const Value* mr = root.Get("object_attributes");
  if (mr == nullptr || !mr->IsMap()) return Missing(p, type, "object_attributes");
  e.sender = Str(root, {"user", "username"});
  PullRequest out;
  out.action = Str(*mr, {"action"});
  out.number = Int(*mr, {"iid"});
  out.head_sha = Str(*mr, {"last_commit", "id"});
  out.head_ref = Str(*mr, {"source_branch"});
  out.base_ref = Str(*mr, {"target_branch"});
  if (out.head_sha.empty() || out.base_ref.empty()) {
    return Missing(p, type, "object_attributes.last_commit.id or target_branch");
  }
  if (out.action == "update") {
    out.normalized_action = mr->Get("oldrev") != nullptr ? PrAction::kSynchronized : PrAction::kOther;
  } else {
    out.normalized_action = NormalizeAction(out.action, false);
  }
  out.head_repo_full_name = Str(*mr, {"source", "path_with_namespace"});
  out.head_clone_url = Str(*mr, {"source", "git_http_url"});
  int64_t source_id = Int(*mr, {"source_project_id"}), target_id = Int(*mr, {"target_project_id"});
  if (source_id != 0 && target_id != 0) {
    out.from_fork = source_id != target_id;
  } else {
    out.from_fork = out.head_repo_full_name.empty() ||
                    !SameName(out.head_repo_full_name, e.repo_full_name);
  }
  e.kind = Kind::kPullRequest;
  e.ref = "refs/heads/" + out.base_ref;
  e.branch = out.base_ref;
  e.after = out.head_sha;
  e.pull_request = std::move(out);
  return OkStatus();
}

Status ParseBitbucket(std::string_view type, const Value& root, Event& e) {
  const Provider p = Provider::kBitbucket;
  e.repo_full_name = Str(root, {"repository", "full_name"});
  e.web_url = Str(root, {"repository", "links", "html", "href"});
  e.sender = FirstOf({Str(root, {"actor", "nickname"}), Str(root, {"actor", "display_name"})});
  if (e.repo_full_name.empty()) return Missing(p, type, "repository.full_name");
  if (type == "repo:push") {
    const Value* change = root.Find({"push", "changes", 0});
    if (change == nullptr || !change->IsMap()) return Missing(p, type, "push.changes");
    const Value* now = change->Get("new");
    const Value* old = change->Get("old");
    const Value* side = now != nullptr && now->IsMap() ? now : old;
    if (side == nullptr || !side->IsMap()) return Missing(p, type, "push.changes[0].new or old");
    std::string name = Str(*side, {"name"});
    std::string ref_type = Str(*side, {"type"});
    if (name.empty()) return Missing(p, type, "push.changes[0].new.name");
    SetRef(e, (ref_type == "tag" ? "refs/tags/" : "refs/heads/") + name);
    e.deleted = now == nullptr || !now->IsMap();
    e.after = e.deleted ? std::string(kZeroSha) : Str(*now, {"target", "hash"});
    e.before = old != nullptr && old->IsMap() ? Str(*old, {"target", "hash"}) : std::string(kZeroSha);
    return OkStatus();
  }
  const Value* pr = root.Get("pullrequest");
  if (pr == nullptr || !pr->IsMap()) return Missing(p, type, "pullrequest");
  PullRequest out;
  out.action = std::string(type);
  out.normalized_action = type == "pullrequest:created"     ? PrAction::kOpened
                          : type == "pullrequest:updated"   ? PrAction::kSynchronized
                          : type == "pullrequest:fulfilled" ? PrAction::kMerged
                                                            : PrAction::kClosed;
  out.number = Int(*pr, {"id"});
  out.head_sha = Str(*pr, {"source", "commit", "hash"});  // Bitbucket abbreviates it (12 digits)
  out.head_ref = Str(*pr, {"source", "branch", "name"});
  out.base_ref = Str(*pr, {"destination", "branch", "name"});
  if (out.head_sha.empty() || out.base_ref.empty()) {
    return Missing(p, type, "pullrequest.source.commit.hash or destination.branch.name");
  }
  out.head_repo_full_name = Str(*pr, {"source", "repository", "full_name"});
  std::string base_repo =
      FirstOf({Str(*pr, {"destination", "repository", "full_name"}), e.repo_full_name});
  out.from_fork = out.head_repo_full_name.empty() || !SameName(out.head_repo_full_name, base_repo);
  e.kind = Kind::kPullRequest;
  e.ref = "refs/heads/" + out.base_ref;
  e.branch = out.base_ref;
  e.after = out.head_sha;
  e.pull_request = std::move(out);
  return OkStatus();
}

bool Supported(Provider p, std::string_view type) {
  switch (p) {
    case Provider::kGitHub:
    case Provider::kGeneric:
      return type == "push" || type == "pull_request" || type == "ping";
    case Provider::kGitea:
    case Provider::kForgejo:
      return type == "push" || type == "pull_request";
    case Provider::kGitLab:
      return type == "Push Hook" || type == "Tag Push Hook" || type == "Merge Request Hook";
    case Provider::kBitbucket:
      return type == "repo:push" || type == "pullrequest:created" ||
             type == "pullrequest:updated" || type == "pullrequest:fulfilled" ||
             type == "pullrequest:rejected";
    case Provider::kAuto:
      break;
  }
  return false;
}

}  // namespace

std::string_view ProviderName(Provider p) {
  switch (p) {
    case Provider::kAuto: return "auto";
    case Provider::kGitHub: return "github";
    case Provider::kGitLab: return "gitlab";
    case Provider::kGitea: return "gitea";
    case Provider::kForgejo: return "forgejo";
    case Provider::kBitbucket: return "bitbucket";
    case Provider::kGeneric: return "generic";
  }
  return "unknown";
}

Result<Provider> ParseProvider(std::string_view name) {
  for (Provider p : {Provider::kAuto, Provider::kGitHub, Provider::kGitLab, Provider::kGitea,
                     Provider::kForgejo, Provider::kBitbucket, Provider::kGeneric}) {
    if (name == ProviderName(p)) return p;
  }
  return InvalidArgumentError(
      "unknown webhook provider {:?}: expected auto, github, gitlab, gitea, forgejo, bitbucket or "
      "generic",
      name);
}

std::string_view KindName(Kind k) {
  switch (k) {
    case Kind::kPush: return "push";
    case Kind::kTag: return "tag";
    case Kind::kPullRequest: return "pull_request";
    case Kind::kPing: return "ping";
  }
  return "unknown";
}

std::string HmacSha256Hex(std::string_view secret, std::string_view body) {
  static constexpr char kDigits[] = "0123456789abcdef";
  auto mac = Hmac(secret, body);
  std::string out;
  for (unsigned char b : mac) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

namespace {
Result<Event> Parse(Provider provider, const Headers& headers, std::string_view body);
}  // namespace

Result<Event> Verify(const Headers& headers, std::string_view body, const Config& config) {
  if (config.secret.empty()) return FailedPreconditionError("webhook secret not configured");
  if (body.size() > config.max_body_bytes) {
    return ResourceExhaustedError("webhook: body of {} bytes exceeds the limit of {} bytes",
                                  body.size(), config.max_body_bytes).set_reason(kBodyTooLarge);
  }
  Provider provider = config.provider;
  if (provider == Provider::kAuto) {
    GANTRY_ASSIGN_OR_RETURN(provider, Detect(headers));
  }
  if (config.secret_for) {
    // The repository the payload names chooses the secret; the event is trusted only once its
    // signature holds under that secret.
    auto unverified = Parse(provider, headers, body);
    if (!unverified.ok()) {
      // An unused event type or an unreadable payload names no repository: only the shared
      // secret's holders hear why (so nobody learns which events Gantry ignores). Subscribe a
      // repository with a secret of its own to push and pull-request events only.
      GANTRY_RETURN_IF_ERROR(CheckSignature(provider, headers, config.secret, body));
      return unverified.status();
    }
    std::string own = config.secret_for(*unverified);
    GANTRY_RETURN_IF_ERROR(CheckSignature(provider, headers, own.empty() ? config.secret : own, body));
    return unverified;
  }
  GANTRY_RETURN_IF_ERROR(CheckSignature(provider, headers, config.secret, body));
  return Parse(provider, headers, body);
}

namespace {

// Steps 5 and 6 of the file comment: the event type and the normalised payload.
Result<Event> Parse(Provider provider, const Headers& headers, std::string_view body) {
  std::string_view name = ProviderName(provider);
  Envelope env = ReadEnvelope(provider, headers);
  if (env.event.empty()) {
    return InvalidArgumentError("{} webhook: missing {} header", name, env.event_header);
  }
  std::string type(Trim(env.event));
  if (!Supported(provider, type)) {
    return UnimplementedError("{} webhook: event {:?} is not used by Gantry", name, type);
  }
  auto root = value::ParseJson(body, "webhook body");
  if (!root.ok()) return root.status().WithContext(fmt::format("{} webhook", name));
  if (!root->IsMap()) return InvalidArgumentError("{} webhook: body is not a JSON object", name);

  Event e;
  e.provider = provider;
  e.delivery_id = std::string(Trim(env.delivery));
  Status s;
  switch (provider) {
    case Provider::kGitLab:
      s = ParseGitLab(type, *root, e);
      break;
    case Provider::kBitbucket:
      s = ParseBitbucket(type, *root, e);
      break;
    default:
      s = ParseGitHubLike(provider, type, *root, e);
      break;
  }
  if (!s.ok()) return s;
  return e;
}

}  // namespace

bool RecentDeliveries::Insert(Provider provider, std::string_view id) {
  if (id.empty()) return true;
  MutexLock lock(mu_);
  std::pair<Provider, std::string> key(provider, std::string(id));
  if (!seen_.insert(key).second) return false;
  order_.push_back(std::move(key));
  while (order_.size() > capacity_) {
    seen_.erase(order_.front());
    order_.pop_front();
  }
  return true;
}

}  // namespace gantry::webhook

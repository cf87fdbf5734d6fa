#include "server/access.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include "base/hash.h"
#include "base/log.h"
#include "base/percent.h"
#include "value/value.h"

namespace gantry::server {
namespace {

using authz::Permission;
using authz::Principal;
using value::Value;

constexpr std::string_view kAllProjects = authz::kAllProjects;

bool IsHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Three non-empty base64url parts joined by '.'.
bool LooksLikeJwt(std::string_view s) {
  int dots = 0;
  size_t part = 0;
  for (char c : s) {
    if (c == '.') {
      if (part == 0) return false;
      ++dots;
      part = 0;
      continue;
    }
    const bool b64url = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!b64url) return false;
    ++part;
  }
  return dots == 2 && part > 0;
}


std::string OptTime(const std::optional<store::Time>& t) { return t ? Rfc3339(*t) : ""; }

Value LegacyTokenJson(const store::ApiToken& t) {
  Value v = Value::Map();
  v.Set("id", TokenId(t.id));
  v.Set("name", t.name);
  v.Set("kind", std::string(store::Name(t.kind)));
  v.Set("owner", t.owner);
  Value roles = Value::Seq();
  for (const auto& r : t.roles) roles.Append(Value(r));
  v.Set("roles", roles);
  v.Set("created_by", t.created_by);
  v.Set("created_at", Rfc3339(t.created_at));
  v.Set("expires_at", OptTime(t.expires_at));
  v.Set("last_used_at", OptTime(t.last_used_at));
  v.Set("revoked_at", OptTime(t.revoked_at));
  v.Set("revoked_by", t.revoked_by);
  return v;
}

http::Response Json(int status, const Value& v) { return http::Response::Json(status, value::ToJson(v) + "\n"); }

Result<Value> JsonBody(const http::Request& req) {
  auto doc = value::ParseJson(req.body);
  if (!doc.ok() || !doc->IsMap()) {
    return InvalidArgumentError("the request body must be a JSON object{}", doc.ok() ? "" : ": " + doc.status().message());
  }
  return *doc;
}


Result<int64_t> IntParam(const std::map<std::string, std::string>& q, const std::string& key, int64_t fallback) {
  auto it = q.find(key);
  if (it == q.end() || it->second.empty()) return fallback;
  int64_t n = 0;
  const std::string& s = it->second;
  auto [p, err] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (err != std::errc() || p != s.data() + s.size()) return InvalidArgumentError("{}={:?}: expected an integer", key, s);
  return n;
}

std::string Param(const std::map<std::string, std::string>& q, const std::string& key) {
  auto it = q.find(key);
  return it == q.end() ? "" : it->second;
}

// ---------------------------------------------------------------------------------------------
// /api/tokens

// tokens.manage-own: a user's own tokens are not in a project; any role on any project will do.
Status CheckOwn(Access& access, const Principal& who) {
  if (who.robot()) return PermissionDeniedError("{} is a robot token: it has no tokens of its own", who.name);
  GANTRY_ASSIGN_OR_RETURN(authz::Authorizer a, access.LoadAuthorizer());
  if (a.AllowedSomewhere(who, Permission::kTokensManageOwn)) return OkStatus();
  return PermissionDeniedError("user {} lacks tokens.manage-own: they have no role on any project", who.name);
}

Result<http::Response> ServeCreateToken(Access& access, const http::Request& req, const Principal& who, AuditNote& note) {
  GANTRY_ASSIGN_OR_RETURN(Value body, JsonBody(req));
  GANTRY_ASSIGN_OR_RETURN(NewToken created, CreateApiToken(access, body, who, note));
  Value v = LegacyTokenJson(created.token);
  v.Set("token", created.secret);
  return Json(201, v);
}

Result<http::Response> ServeListTokens(Access& access, const http::Request& req, const Principal& who) {
  GANTRY_ASSIGN_OR_RETURN(auto tokens, ListApiTokens(access, ParseQuery(req.query), who));
  Value list = Value::Seq();
  for (const auto& t : tokens) list.Append(LegacyTokenJson(t));
  return Json(200, list);
}

Result<http::Response> ServeRevokeToken(Access& access, std::string_view id_text, const Principal& who, AuditNote& note) {
  GANTRY_ASSIGN_OR_RETURN(int64_t id, ParseTokenId(id_text));
  GANTRY_RETURN_IF_ERROR(RevokeApiToken(access, id_text, who, note));
  return http::Response::Text(200, fmt::format("revoked {}\n", TokenId(id)));
}

}  // namespace

Result<std::string> StringField(const Value& body, std::string_view key, std::string fallback) {
  const Value* v = body.Get(key);
  if (v == nullptr || v->IsNull()) return fallback;
  if (!v->IsString()) return InvalidArgumentError("{:?} must be a string", key);
  return std::string(v->AsString());
}

Result<NewToken> CreateApiToken(Access& access, const Value& body, const Principal& who, AuditNote& note) {
  store::ApiToken t;
  GANTRY_ASSIGN_OR_RETURN(t.name, StringField(body, "name"));
  GANTRY_ASSIGN_OR_RETURN(std::string project, StringField(body, "project"));
  note.object = fmt::format("token {:?}", t.name);
  note.project = project;
  if (t.name.empty()) return InvalidArgumentError("the token needs a name");
  if (t.name.size() > 100) return InvalidArgumentError("the token's name is longer than 100 characters");
  if (const Value* e = body.Get("expires_in_seconds"); e != nullptr && !e->IsNull()) {
    if (!e->IsInt() || e->AsInt() < 1 || e->AsInt() > int64_t{10} * 366 * 24 * 3600) {
      return InvalidArgumentError("expires_in_seconds must be a whole number of seconds from 1 to 10 years");
    }
    t.expires_at = access.clock().WallNow() + std::chrono::seconds(e->AsInt());
  }
  const Value* roles = body.Get("roles");
  if (project.empty()) {
    if (roles != nullptr && !roles->IsNull()) {
      return InvalidArgumentError("roles are for robot tokens (with a project); a user token has its owner's roles");
    }
    GANTRY_RETURN_IF_ERROR(CheckOwn(access, who));
    t.kind = store::TokenKind::kUser;
    t.owner = who.name;
  } else {
    GANTRY_RETURN_IF_ERROR(authz::ValidateProject(project));
    if (roles == nullptr || !roles->IsSeq() || roles->items().empty()) {
      return InvalidArgumentError("a robot token needs \"roles\": a list of viewer, deployer, admin, or worker alone");
    }
    for (const Value& r : roles->items()) {
      if (!r.IsString() || !authz::ParseRole(r.AsString())) {
        return InvalidArgumentError("unknown role {}: expected viewer, deployer, admin or worker", value::ToJson(r));
      }
      t.roles.emplace_back(r.AsString());
    }
    // A worker token (`gantry worker`) claims runs and does nothing else: any project's on "*", one
    // project's on that project (a project's worker pool).
    const bool worker = std::find(t.roles.begin(), t.roles.end(), authz::Name(authz::Role::kWorker)) != t.roles.end();
    if (worker && t.roles.size() != 1) return InvalidArgumentError("a worker token has the worker role alone");
    if (!worker && project == kAllProjects) {
      return InvalidArgumentError("a robot token acts in one project, not \"*\" (only a worker token is cluster-wide)");
    }
    GANTRY_RETURN_IF_ERROR(access.Authorize(who, Permission::kTokensManage, project));
    t.kind = store::TokenKind::kRobot;
    t.owner = project;
  }
  GANTRY_ASSIGN_OR_RETURN(std::string secret, NewTokenSecret());
  t.secret_sha256 = Sha256Hex(secret);
  t.created_by = who.name;
  GANTRY_ASSIGN_OR_RETURN(store::ApiToken created, access.store().CreateToken(t));
  note.object = fmt::format("token {} {:?}", TokenId(created.id), created.name);
  note.details = fmt::format("{} token of {}", store::Name(created.kind), created.owner);
  return NewToken{.token = std::move(created), .secret = std::move(secret)};
}

Result<std::vector<store::ApiToken>> ListApiTokens(Access& access, const std::map<std::string, std::string>& q,
                                                   const Principal& who) {
  std::vector<store::ApiToken> tokens;
  const std::string project = Param(q, "project");
  if (Param(q, "all") == "1") {
    GANTRY_RETURN_IF_ERROR(access.Authorize(who, Permission::kTokensManage, kAllProjects));
    GANTRY_ASSIGN_OR_RETURN(tokens, access.store().ListTokens(""));
  } else if (!project.empty()) {
    GANTRY_RETURN_IF_ERROR(authz::ValidateProject(project, "project="));
    GANTRY_RETURN_IF_ERROR(access.Authorize(who, Permission::kTokensManage, project));
    GANTRY_ASSIGN_OR_RETURN(tokens, access.store().ListTokens(project));
    std::erase_if(tokens, [](const store::ApiToken& t) { return t.kind != store::TokenKind::kRobot; });
  } else {
    GANTRY_RETURN_IF_ERROR(CheckOwn(access, who));
    GANTRY_ASSIGN_OR_RETURN(tokens, access.store().ListTokens(who.name));
    std::erase_if(tokens, [](const store::ApiToken& t) { return t.kind != store::TokenKind::kUser; });
  }
  return tokens;
}

Status RevokeApiToken(Access& access, std::string_view id_text, const Principal& who, AuditNote& note) {
  GANTRY_ASSIGN_OR_RETURN(int64_t id, ParseTokenId(id_text));
  note.object = "token " + TokenId(id);
  auto token = access.store().GetToken(id);
  if (!token.ok() && token.status().code() == Code::kNotFound) return NotFoundError("no token {}", TokenId(id));
  if (!token.ok()) return token.status();
  note.object = fmt::format("token {} {:?}", TokenId(id), token->name);
  const bool own = token->kind == store::TokenKind::kUser && !who.robot() && token->owner == who.name;
  if (token->kind == store::TokenKind::kRobot) {
    note.project = token->owner;
    GANTRY_RETURN_IF_ERROR(access.Authorize(who, Permission::kTokensManage, token->owner));
  } else if (own) {
    GANTRY_RETURN_IF_ERROR(CheckOwn(access, who));
  } else {
    GANTRY_RETURN_IF_ERROR(access.Authorize(who, Permission::kTokensManage, kAllProjects));
  }
  return access.store().RevokeToken(id, who.name);
}

namespace {

// ---------------------------------------------------------------------------------------------
// /api/roles

struct BindingArgs {
  store::SubjectKind kind = store::SubjectKind::kUser;
  std::string subject, role, project;
};

Result<BindingArgs> CheckBinding(std::string user, std::string group, std::string role, std::string project,
                                 AuditNote& note) {
  BindingArgs b;
  if (user.empty() == group.empty()) return InvalidArgumentError("name exactly one of user and group");
  b.kind = user.empty() ? store::SubjectKind::kGroup : store::SubjectKind::kUser;
  b.subject = user.empty() ? std::move(group) : std::move(user);
  b.role = std::move(role);
  b.project = std::move(project);
  note.object = fmt::format("{} {} role {}", store::Name(b.kind), b.subject, b.role);
  note.project = b.project;
  if (!authz::ParseRole(b.role)) return InvalidArgumentError("unknown role {:?}: expected viewer, deployer or admin", b.role);
  if (*authz::ParseRole(b.role) == authz::Role::kWorker) {
    return InvalidArgumentError("the worker role is for worker tokens (gantry token create --project '*' --role worker), "
                                "not for users or groups");
  }
  GANTRY_RETURN_IF_ERROR(authz::ValidateProject(b.project));
  return b;
}

Result<http::Response> Roles(Access& access, const http::Request& req, const Principal& who, AuditNote& note) {
  if (req.method == "GET") {
    GANTRY_ASSIGN_OR_RETURN(authz::Authorizer a, access.LoadAuthorizer());
    if (!a.AllowedSomewhere(who, Permission::kRolesManage)) return a.Check(who, Permission::kRolesManage, kAllProjects);
    GANTRY_ASSIGN_OR_RETURN(auto bindings, access.store().ListRoleBindings());
    Value list = Value::Seq();
    for (const auto& b : bindings) {
      if (!a.Allowed(who, Permission::kRolesManage, b.project)) continue;
      Value v = Value::Map();
      v.Set(std::string(store::Name(b.subject_kind)), b.subject);
      v.Set("role", b.role);
      v.Set("project", b.project);
      v.Set("created_by", b.created_by);
      v.Set("created_at", Rfc3339(b.created_at));
      list.Append(v);
    }
    return Json(200, list);
  }
  BindingArgs b;
  if (req.method == "POST") {
    GANTRY_ASSIGN_OR_RETURN(Value body, JsonBody(req));
    GANTRY_ASSIGN_OR_RETURN(std::string user, StringField(body, "user"));
    GANTRY_ASSIGN_OR_RETURN(std::string group, StringField(body, "group"));
    GANTRY_ASSIGN_OR_RETURN(std::string role, StringField(body, "role"));
    GANTRY_ASSIGN_OR_RETURN(std::string project, StringField(body, "project"));
    GANTRY_ASSIGN_OR_RETURN(b, CheckBinding(user, group, role, project, note));
  } else {
    const auto q = ParseQuery(req.query);
    GANTRY_ASSIGN_OR_RETURN(b, CheckBinding(Param(q, "user"), Param(q, "group"), Param(q, "role"), Param(q, "project"), note));
  }
  GANTRY_RETURN_IF_ERROR(access.Authorize(who, Permission::kRolesManage, b.project));
  if (req.method == "POST") {
    GANTRY_RETURN_IF_ERROR(access.store().GrantRole(
        {.subject_kind = b.kind, .subject = b.subject, .role = b.role, .project = b.project, .created_by = who.name}));
    return http::Response::Text(200, fmt::format("granted {} to {} {} on {}\n", b.role, store::Name(b.kind), b.subject, b.project));
  }
  GANTRY_RETURN_IF_ERROR(access.store().RevokeRole(b.kind, b.subject, b.role, b.project));
  return http::Response::Text(200, fmt::format("revoked {} from {} {} on {}\n", b.role, store::Name(b.kind), b.subject, b.project));
}

// ---------------------------------------------------------------------------------------------
// /api/audit

Result<http::Response> ListAudit(Access& access, const http::Request& req, const Principal& who) {
  const auto q = ParseQuery(req.query);
  store::AuditFilter f;
  f.actor = Param(q, "actor");
  f.action = Param(q, "action");
  f.project = Param(q, "project");
  if (!f.project.empty()) GANTRY_RETURN_IF_ERROR(authz::ValidateProject(f.project, "project="));
  GANTRY_RETURN_IF_ERROR(access.Authorize(who, Permission::kAuditRead, f.project.empty() ? kAllProjects : f.project));
  GANTRY_ASSIGN_OR_RETURN(int64_t limit, IntParam(q, "limit", 100));
  if (limit < 1 || limit > 1000) return InvalidArgumentError("limit={}: expected 1 to 1000", limit);
  f.limit = static_cast<int>(limit);
  GANTRY_ASSIGN_OR_RETURN(f.before_id, IntParam(q, "before", 0));
  GANTRY_ASSIGN_OR_RETURN(int64_t since, IntParam(q, "since", 0));
  GANTRY_ASSIGN_OR_RETURN(int64_t until, IntParam(q, "until", 0));
  if (since > 0) f.since = store::Time(std::chrono::seconds(since));
  if (until > 0) f.until = store::Time(std::chrono::seconds(until));
  GANTRY_ASSIGN_OR_RETURN(auto entries, access.store().ListAudit(f));
  Value list = Value::Seq();
  for (const auto& e : entries) {
    Value v = Value::Map();
    v.Set("id", e.id);
    v.Set("at", Rfc3339(e.at));
    v.Set("actor", e.actor);
    v.Set("action", e.action);
    v.Set("object", e.object);
    v.Set("project", e.project);
    v.Set("source", e.source);
    v.Set("result", e.result);
    v.Set("details", e.details);
    list.Append(v);
  }
  return Json(200, list);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Result<std::string> NewTokenSecret() {
  unsigned char bytes[32];
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) return ErrnoError(errno, "getrandom");
  std::string secret(kTokenPrefix);
  for (unsigned char b : bytes) secret += fmt::format("{:02x}", b);
  return secret;
}

std::string TokenId(int64_t id) { return fmt::format("t-{}", id); }

Result<int64_t> ParseTokenId(std::string_view text) {
  std::string_view digits = text.starts_with("t-") ? text.substr(2) : text;
  int64_t id = 0;
  auto [p, err] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  if (digits.empty() || err != std::errc() || p != digits.data() + digits.size() || id < 1) {
    return InvalidArgumentError("{:?} is not a token id (t-12, or 12)", text);
  }
  return id;
}

Result<std::optional<std::string>> CreateBootstrapAdmin(store::Store& store) {
  GANTRY_ASSIGN_OR_RETURN(std::string secret, NewTokenSecret());
  auto created = store.CreateToken({.name = "bootstrap-admin",
                                    .kind = store::TokenKind::kUser,
                                    .owner = "admin",
                                    .secret_sha256 = Sha256Hex(secret),
                                    .created_by = "gantry server (bootstrap)"},
                                   /*only_if_first=*/true);
  if (!created.ok() && created.status().code() == Code::kAlreadyExists) return std::optional<std::string>();
  if (!created.ok()) return created.status().WithContext("create the bootstrap admin");
  GANTRY_RETURN_IF_ERROR(store.GrantRole({.subject = "admin",
                                          .role = std::string(authz::Name(authz::Role::kAdmin)),
                                          .project = std::string(kAllProjects),
                                          .created_by = "gantry server (bootstrap)"})
                             .WithContext("bind the bootstrap admin"));
  return std::optional<std::string>(std::move(secret));
}

std::map<std::string, std::string> ParseQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(pair.size() + 1, query.size()));
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    out[FormDecode(pair.substr(0, eq))] = eq == std::string_view::npos ? "" : FormDecode(pair.substr(eq + 1));
  }
  return out;
}

Access::Access(store::Store& store, AccessOptions options)
    : store_(store), options_(std::move(options)), clock_(options_.clock != nullptr ? *options_.clock : SystemClock()) {}

Result<Principal> Access::Authenticate(const http::Request& request) {
  std::string_view auth = request.Header("authorization");
  if (auth.empty()) {
    return UnauthenticatedError("no credentials: send Authorization: Bearer <token> (gantry: set GANTRY_TOKEN)");
  }
  if (!auth.starts_with("Bearer ") || auth.size() == 7) {
    return UnauthenticatedError("malformed Authorization header: expected \"Bearer <token>\"");
  }
  std::string_view credential = auth.substr(7);
  if (credential.starts_with(kTokenPrefix)) return FromToken(credential);
  if (LooksLikeJwt(credential)) {
    if (!options_.verify_jwt) return UnauthenticatedError("OIDC is not configured on this server: use an API token (gty_...)");
    GANTRY_ASSIGN_OR_RETURN(Principal p, options_.verify_jwt(credential));
    p.via = authz::Via::kOidc;
    p.robot_project.clear();
    p.robot_roles.clear();
    return p;
  }
  if (!options_.bootstrap_token.empty() && CheckBearer(request, options_.bootstrap_token).ok()) {
    return Principal{.name = "admin", .via = authz::Via::kBootstrap};
  }
  return UnauthenticatedError("unknown token");
}

Result<Principal> Access::FromToken(std::string_view secret) {
  std::string_view hex = secret.substr(kTokenPrefix.size());
  if (hex.size() != 64 || !IsHex(hex)) {
    return UnauthenticatedError("malformed API token: expected gty_ and 64 lowercase hex characters");
  }
  auto token = store_.FindTokenByHash(Sha256Hex(secret));
  if (!token.ok() && token.status().code() == Code::kNotFound) return UnauthenticatedError("unknown token");
  if (!token.ok()) return UnavailableError("cannot check the token: {}", token.status().message());
  const store::ApiToken& t = *token;
  if (t.revoked_at) {
    return UnauthenticatedError("token {} was revoked at {} by {}", TokenId(t.id), Rfc3339(*t.revoked_at),
                                t.revoked_by.empty() ? "unknown" : t.revoked_by);
  }
  if (t.expires_at && *t.expires_at <= clock_.WallNow()) {
    return UnauthenticatedError("token {} expired at {}", TokenId(t.id), Rfc3339(*t.expires_at));
  }
  Touch(t.id);
  Principal p{.via = authz::Via::kToken, .token_id = t.id};
  if (t.kind == store::TokenKind::kRobot) {
    p.name = "robot:" + t.name;
    p.robot_project = t.owner;
    for (const auto& r : t.roles) {
      if (auto role = authz::ParseRole(r)) p.robot_roles.push_back(*role);
    }
  } else {
    p.name = t.owner;
  }
  return p;
}

void Access::Touch(int64_t token_id) {
  const auto now = clock_.Now();
  {
    MutexLock lock(mu_);
    auto [it, inserted] = touched_.try_emplace(token_id, now);
    if (!inserted && now - it->second < options_.touch_interval) return;
    it->second = now;
  }
  if (Status s = store_.TouchToken(token_id); !s.ok()) log::Warn("access: token {}: record its use: {}", TokenId(token_id), s.message());
}

Result<authz::Authorizer> Access::LoadAuthorizer() {
  auto bindings = store_.ListRoleBindings();
  if (!bindings.ok()) return UnavailableError("cannot read the role bindings: {}", bindings.status().message());
  std::vector<authz::Binding> out;
  for (const auto& b : *bindings) {
    auto role = authz::ParseRole(b.role);
    if (!role) continue;  // a role this version does not know grants nothing
    out.push_back({.group = b.subject_kind == store::SubjectKind::kGroup, .subject = b.subject, .role = *role, .project = b.project});
  }
  return authz::Authorizer(std::move(out));
}

Status Access::Authorize(const Principal& principal, Permission permission, std::string_view project) {
  // The bootstrap admin and robot tokens need no bindings.
  if (principal.via == authz::Via::kBootstrap || principal.robot()) {
    return authz::Authorizer().Check(principal, permission, project);
  }
  GANTRY_ASSIGN_OR_RETURN(authz::Authorizer a, LoadAuthorizer());
  return a.Check(principal, permission, project);
}

http::Response Access::Serve(const http::Request& request, AuditNote note, const RouteFn& fn,
                             http::Response (*error)(const Status&)) {
  Result<Principal> who = Authenticate(request);
  Result<http::Response> answer = who.ok() ? fn(*who, note) : Result<http::Response>(who.status());
  const bool mutating = request.method != "GET" && request.method != "HEAD";
  if (mutating) {
    // An answer that is an error response (405) is recorded as the error it stands for.
    const Status outcome = !answer.ok()                ? answer.status()
                           : answer->status >= 400 ? ParseApiError(answer->status, answer->body)
                                                   : OkStatus();
    auto id = store_.Audit({.actor = who.ok() ? who->name : "unauthenticated",
                            .action = note.action,
                            .object = note.object,
                            .details = note.details,
                            .source = request.remote_addr,
                            .result = AuditResult(outcome),
                            .project = note.project});
    if (!id.ok()) log::Warn("access: audit {} {} by {}: {}", note.action, note.object, who.ok() ? who->name : "?", id.status().message());
  }
  if (!answer.ok()) return error(answer.status());
  return *std::move(answer);
}

std::string AuditResult(const Status& s) {
  return s.ok() ? "ok" : fmt::format("{}: {}", CodeName(s.code()), s.message());
}

void ServeAccess(Front& front, Access& access) {
  // Every request goes through Serve (a 405 too), so each mutating one is audited.
  auto tokens = [&access](const http::Request& req) {
    std::string_view rest = std::string_view(req.target).substr(std::string_view("/api/tokens").size());
    const bool collection = rest.empty() || rest == "/";
    std::string_view id = collection ? std::string_view() : rest.substr(1);
    const bool create = collection && req.method == "POST";
    const bool revoke = !collection && req.method == "DELETE";
    AuditNote note{.action = create ? "tokens.create" : revoke ? "tokens.revoke" : "tokens",
                   .object = collection ? "" : fmt::format("token {}", id)};
    return access.Serve(req, note, [&](const Principal& who, AuditNote& n) -> Result<http::Response> {
      if (create) return ServeCreateToken(access, req, who, n);
      if (revoke) return ServeRevokeToken(access, id, who, n);
      if (collection && req.method == "GET") return ServeListTokens(access, req, who);
      return MethodNotAllowed(req, collection ? "GET, POST" : "DELETE");
    });
  };
  for (const char* method : {"GET", "POST", "DELETE"}) {
    front.Handle(method, "/api/tokens", tokens);
    front.Handle(method, "/api/tokens/", tokens);
  }
  auto roles = [&access](const http::Request& req) {
    if (req.target != "/api/roles") return ApiError(NotFoundError("no such resource {}", req.target));
    AuditNote note{.action = req.method == "POST" ? "roles.grant" : req.method == "DELETE" ? "roles.revoke" : ""};
    return access.Serve(req, note, [&](const Principal& who, AuditNote& n) { return Roles(access, req, who, n); });
  };
  for (const char* method : {"GET", "POST", "DELETE"}) front.Handle(method, "/api/roles", roles);
  front.Handle("GET", "/api/audit", [&access](const http::Request& req) {
    return access.Serve(req, {}, [&](const Principal& who, AuditNote&) { return ListAudit(access, req, who); });
  });
}

}  // namespace gantry::server

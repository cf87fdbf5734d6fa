#include "release/release.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#include "base/log.h"
#include "base/path.h"
#include "http/client.h"
#include "oci/build.h"
#include "oci/layout.h"
#include "update/update.h"
#include "value/value.h"
#include "webhook/webhook.h"

namespace gantry::release {
namespace fs = std::filesystem;

namespace {

std::string BranchOf(std::string_view ref) {
  return ref.starts_with("refs/heads/") ? std::string(ref.substr(11)) : std::string();
}
std::string TagOf(std::string_view ref) {
  return ref.starts_with("refs/tags/") ? std::string(ref.substr(10)) : std::string();
}

bool Cancelled(const ReleaseRequest& r) { return r.cancel != nullptr && r.cancel->load(); }

void Log(const ReleaseRequest& r, std::string_view stage, std::string_view line) {
  if (r.log) r.log(stage, line);
  log::Info("release: run {}: {}: {}", r.run_id, stage, line);
}

// A tag as the distribution spec allows it: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
bool ValidTag(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t[0])) return false;
  return std::all_of(t.begin(), t.end(), [&](char c) { return word(c) || c == '.' || c == '-'; });
}

// Replaces {name} placeholders from `vars`; InvalidArgument naming an unknown one.
Result<std::string> Expand(std::string_view tmpl, const std::map<std::string, std::string>& vars, std::string_view what) {
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl[i] != '{' || (i + 1 < tmpl.size() && tmpl[i + 1] == '{')) {
      // "{{…}}" is the update module's own syntax: passed through untouched.
      if (tmpl[i] == '{') {
        size_t end = tmpl.find("}}", i);
        if (end == std::string_view::npos) return InvalidArgumentError("{} {:?}: unterminated {{{{", what, tmpl);
        out.append(tmpl.substr(i, end + 2 - i));
        i = end + 2;
        continue;
      }
      out.push_back(tmpl[i++]);
      continue;
    }
    size_t end = tmpl.find('}', i);
    if (end == std::string_view::npos) return InvalidArgumentError("{} {:?}: unterminated {{", what, tmpl);
    std::string name(tmpl.substr(i + 1, end - i - 1));
    auto it = vars.find(name);
    if (it == vars.end()) {
      std::vector<std::string> known;
      for (const auto& [k, _] : vars) known.push_back("{" + k + "}");
      return InvalidArgumentError("{} {:?}: unknown placeholder {{{}}}; expected one of {}", what, tmpl, name,
                                  fmt::join(known, ", "));
    }
    out += it->second;
    i = end + 1;
  }
  return out;
}

std::map<std::string, std::string> Vars(const ReleaseRequest& r) {
  return {{"commit", r.commit},
          {"short_commit", r.commit.substr(0, 12)},
          {"branch", BranchOf(r.ref)},
          {"tag", TagOf(r.ref)},
          {"run", std::to_string(r.run_id)},
          {"repo", git::ScrubUrl(r.repo)}};
}

// POSTs a signed push event to one agent. Best effort: agents poll anyway.
Status Notify(const NotifyTarget& target, const std::string& body, const std::string& delivery) {
  static const http::Client client({.timeout = std::chrono::seconds(5), .max_response_bytes = 64 << 10,
                                    .user_agent = "gantry-server"});
  GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r,
                          client.Send({.method = "POST",
                                       .url = target.url,
                                       .headers = {{"content-type", "application/json"},
                                                   {"x-github-event", "push"},
                                                   {"x-github-delivery", delivery},
                                                   {"x-hub-signature-256", "sha256=" + webhook::HmacSha256Hex(target.secret, body)}},
                                       .body = body}));
  if (r.status < 200 || r.status >= 300) return UnavailableError("notify {}: HTTP {}", target.url, r.status);
  return OkStatus();
}

// --- package ----------------------------------------------------------------------------------

struct Built {
  std::string reference;  // first tag, with digest
  std::string repository;
  std::string tag;
  std::string digest;
};

Result<Built> Package(const ReleaseServices& s, const ci::ImageSpec& spec, const ReleaseRequest& r) {
  if (s.registry == nullptr) return FailedPreconditionError("no registry client configured");
  GANTRY_ASSIGN_OR_RETURN(oci::Reference repo, oci::ParseReference(spec.repository));
  std::vector<std::string> tags;
  for (const auto& t : spec.tags) {
    GANTRY_ASSIGN_OR_RETURN(std::string tag, ExpandTag(t, r));
    tags.push_back(std::move(tag));
  }
  // One layout per run: the build is reproducible, so a re-run writes the same blobs again.
  fs::path out_dir = s.image_dir / "runs" / std::to_string(r.run_id);
  std::error_code ec;
  fs::remove_all(out_dir, ec);
  GANTRY_ASSIGN_OR_RETURN(oci::Layout out, oci::Layout::Open(out_dir, /*create=*/true));

  oci::BuildOptions b;
  std::optional<oci::Layout> cache;
  if (!spec.platform.empty()) { GANTRY_ASSIGN_OR_RETURN(b.platform, oci::ParsePlatform(spec.platform)); }
  if (spec.from != "scratch") {
    GANTRY_ASSIGN_OR_RETURN(oci::Reference base, oci::ParseReference(spec.from));
    GANTRY_ASSIGN_OR_RETURN(cache, oci::Layout::Open(s.image_dir / "base", /*create=*/true));
    Log(r, kImageStage, fmt::format("pulling base image {}", base.ToString()));
    // The cache layout's index.json has one writer at a time (layout.h): runs pull in turn.
    static std::mutex base_cache_mu;
    std::unique_lock<std::mutex> cache_lock(base_cache_mu);
    auto pulled = oci::PullImage(*s.registry, base, *cache, base.ToString(), b.platform);
    cache_lock.unlock();
    if (!pulled.ok()) return Status(pulled.status().code(), "pull base image " + base.ToString() + ": " + pulled.status().message());
    b.base = &*cache;
    b.base_ref = base.ToString();
  }
  for (const auto& l : spec.layers) {
    GANTRY_ASSIGN_OR_RETURN(fs::path src, LayerSource(r.workspace, l.src));
    b.layers.push_back({.source = src, .destination = l.dest.empty() ? "/" : l.dest, .excludes = l.exclude});
  }
  if (!spec.entrypoint.empty()) b.entrypoint = spec.entrypoint;
  if (!spec.cmd.empty()) b.cmd = spec.cmd;
  for (const auto& [k, v] : spec.env) b.env.push_back(k + "=" + v);
  b.labels = spec.labels;
  b.source_url = git::ScrubUrl(r.repo);
  b.revision = r.commit;
  b.expose = spec.expose;
  if (!spec.workdir.empty()) b.workdir = spec.workdir;
  if (!spec.user.empty()) b.user = spec.user;
  b.compression = spec.compression == "zstd" ? oci::Compression::kZstd : oci::Compression::kGzip;
  Log(r, kImageStage, fmt::format("building {} from {} layer(s) on {}", spec.repository, spec.layers.size(), spec.from));
  GANTRY_ASSIGN_OR_RETURN(oci::BuildResult built, oci::BuildImage(b, out, tags[0]));
  Built result{.repository = spec.repository, .tag = tags[0], .digest = built.image.digest};
  for (const auto& tag : tags) {
    if (Cancelled(r)) return CancelledError("cancelled");
    oci::Reference dest = repo;
    dest.tag = tag;
    dest.digest.clear();
    auto pushed = oci::PushImage(*s.registry, out, tags[0], dest);
    if (!pushed.ok()) return Status(pushed.status().code(), "push " + dest.ToString() + ": " + pushed.status().message());
    Log(r, kImageStage, fmt::format("pushed {}@{}", dest.ToString(), *pushed));
    result.digest = *pushed;
  }
  oci::Reference first = repo;
  first.tag = tags[0];
  first.digest = result.digest;
  result.reference = first.ToString();
  fs::remove_all(out_dir, ec);  // pushed; the registry holds it now
  return result;
}

}  // namespace

Result<fs::path> LayerSource(const fs::path& workspace, std::string_view src) {
  if (src == ".") return workspace;
  auto resolved = ResolveBeneath(workspace, src);
  if (!resolved.ok()) return Status(resolved.status().code(), fmt::format("layer src {}: {}", src, resolved.status().message()));
  std::error_code ec;
  if (!fs::exists(*resolved, ec)) return NotFoundError("layer src {} does not exist in the workspace after the steps", src);
  return *resolved;
}

Result<std::string> ExpandTag(std::string_view tmpl, const ReleaseRequest& request) {
  auto vars = Vars(request);
  vars.erase("repo");
  GANTRY_ASSIGN_OR_RETURN(std::string tag, Expand(tmpl, vars, "image tag"));
  if (!ValidTag(tag)) {
    return InvalidArgumentError("image tag {:?} (from {:?}) is not a valid tag: expected [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}",
                                tag, tmpl);
  }
  return tag;
}

std::string PushEventPayload(std::string_view repo_url, std::string_view branch, std::string_view before,
                             std::string_view after, const std::vector<std::string>& changed_files) {
  using value::Value;
  Value files = Value::Seq();
  for (const auto& f : changed_files) files.Append(Value(f));
  Value commit = Value::Map();
  commit.Set("id", Value(after));
  commit.Set("modified", files);
  Value commits = Value::Seq();
  commits.Append(commit);
  std::string name(repo_url);
  while (name.ends_with('/')) name.pop_back();
  if (name.ends_with(".git")) name.resize(name.size() - 4);
  size_t slash = name.rfind('/');
  size_t slash2 = slash == std::string::npos || slash == 0 ? std::string::npos : name.rfind('/', slash - 1);
  Value repo = Value::Map();
  repo.Set("full_name", Value(slash2 == std::string::npos ? name : name.substr(slash2 + 1)));
  repo.Set("clone_url", Value(repo_url));
  repo.Set("html_url", Value(repo_url));
  Value root = Value::Map();
  root.Set("ref", Value("refs/heads/" + std::string(branch)));
  root.Set("before", Value(before.empty() ? std::string(40, '0') : std::string(before)));
  root.Set("after", Value(after));
  root.Set("repository", repo);
  root.Set("commits", commits);
  Value sender = Value::Map();
  sender.Set("login", Value("gantry"));
  root.Set("sender", sender);
  return value::ToJson(root);
}

Result<ReleaseResult> RunRelease(const ReleaseServices& s, const ci::Pipeline& pipeline, const ReleaseRequest& r) {
  if (!pipeline.image) return InvalidArgumentError("the pipeline has no image: section");
  if (s.store == nullptr) return FailedPreconditionError("release: no store");
  ReleaseResult out;

  // 1. package
  auto built = Package(s, *pipeline.image, r);
  if (!built.ok()) return Status(built.status().code(), std::string(kImageStage) + ": " + built.status().message());
  out.image = built->reference;
  out.digest = built->digest;
  if (!pipeline.release) return out;
  const ci::ReleaseSpec& rel = *pipeline.release;
  if (Cancelled(r)) return CancelledError("cancelled");

  // 2. update the config repository
  if (std::find(s.config_repos.begin(), s.config_repos.end(), rel.repo) == s.config_repos.end()) {
    return PermissionDeniedError("release: config repository {} is not one this server may write to (--config-repo)",
                                 git::ScrubUrl(rel.repo));
  }
  if (s.mirrors == nullptr) return FailedPreconditionError("release: no Git mirrors");
  git::OpenOptions open = s.config_git;
  open.credentials = git::CredentialsFor(s.config_credentials, rel.repo);
  auto config_repo = s.mirrors->Open(rel.repo, open);
  if (!config_repo.ok()) return Status(config_repo.status().code(), "release: " + config_repo.status().message());
  update::GitUpdateOptions uo;
  uo.branch = rel.branch;
  uo.path = rel.path;
  uo.push_branch = rel.push_branch;
  uo.author = s.author;
  auto vars = Vars(r);
  vars["image"] = built->repository;
  vars["digest"] = built->digest;
  vars["tag"] = built->tag;  // the image tag (the ref's tag, if any, is in {branch}/{commit})
  auto message = Expand(rel.message, vars, "release.message");
  if (!message.ok()) return Status(message.status().code(), "release: " + message.status().message());
  uo.message_template = *message;
  update::ImageRule rule;
  rule.image = built->repository;
  rule.name = built->repository.substr(built->repository.rfind('/') + 1);
  rule.new_tag = built->tag;
  uo.rules.push_back(rule);
  Log(r, kReleaseStage, fmt::format("rewriting {} in {} ({}{})", built->repository, git::ScrubUrl(rel.repo),
                                    rel.branch, rel.path.empty() ? "" : ":" + rel.path));
  auto updated = update::UpdateRepository(**config_repo, uo);
  if (!updated.ok()) return Status(updated.status().code(), "release: update " + git::ScrubUrl(rel.repo) + ": " + updated.status().message());
  for (const auto& c : updated->changes) Log(r, kReleaseStage, c.ToString());
  for (const auto& sk : updated->skipped) Log(r, kReleaseStage, "skipped " + sk);
  out.config_commit = updated->commit;
  out.committed = updated->committed;
  Log(r, kReleaseStage, updated->committed ? fmt::format("committed {} to {}", updated->commit.substr(0, 12), updated->branch)
                                           : fmt::format("{} already at {}: no commit", updated->branch, built->tag));

  // 3. tell pull agents (best effort: they poll as well)
  if (updated->committed && rel.push_branch.empty()) {
    std::vector<std::string> files;
    for (const auto& c : updated->changes) {
      if (std::find(files.begin(), files.end(), c.file) == files.end()) files.push_back(c.file);
    }
    std::string body = PushEventPayload(rel.repo, updated->branch, "", updated->commit, files);
    for (const auto& n : s.notify) {
      Status st = Notify(n, body, fmt::format("gantry-{}-{}", r.run_id, updated->commit.substr(0, 12)));
      Log(r, kReleaseStage, st.ok() ? "notified " + n.url : "could not notify agent: " + st.message());
    }
  }

  // 4. deploy (push mode) and record
  std::string app = rel.app.empty() ? built->repository.substr(built->repository.rfind('/') + 1) : rel.app;
  std::map<std::string, std::string> digests{{built->repository, built->digest}};
  bool deploy = !rel.app.empty() && s.deliver_config && !s.deliver_config->environments.empty() && rel.push_branch.empty();
  if (!deploy) {
    store::Release ledger{.app = app,
                          .source_revision = r.commit,
                          .config_revision = out.config_commit,
                          .image_digests = digests,
                          .started_by = "ci",
                          .run_id = r.run_id,
                          .note = rel.push_branch.empty() ? "" : "proposed on branch " + rel.push_branch};
    auto id = s.store->CreateRelease(ledger);
    if (!id.ok()) return Status(id.status().code(), "release: ledger: " + id.status().message());
    out.release_id = *id;
    Status a = s.store->Audit({.actor = "ci", .action = "release", .object = fmt::format("app/{} release/{}", app, *id),
                               .details = fmt::format("{} → {}", r.commit.substr(0, 12), out.image)})
                   .status();
    if (!a.ok()) log::Warn("release: audit: {}", a.message());
    Log(r, kReleaseStage, fmt::format("release {} of {} recorded", *id, app));
    return out;
  }
  auto git_render = deliver::GitRenderFn(*config_repo, s.render);
  deliver::DeployOptions d;
  d.app = rel.app;
  d.revision = out.config_commit;
  d.config_revision = out.config_commit;
  d.source_revision = r.commit;
  d.run_id = r.run_id;
  d.image_digests = digests;
  d.through = rel.through;
  d.path_template = s.path_template;
  d.started_by = "ci";
  d.prune = s.prune;
  d.health_timeout = s.health_timeout;
  auto progress = [&](std::string_view line) { Log(r, kDeployStage, line); };
  auto started = deliver::Deployment::Start(*s.store, *s.deliver_config, git_render, s.connect, d, progress);
  if (!started.ok()) return Status(started.status().code(), "deploy: " + started.status().message());
  deliver::Deployment& dep = **started;
  out.release_id = dep.state().release_id;
  while (dep.Step()) {
    if (Cancelled(r)) dep.Terminate();
  }
  out.deploy_phase = std::string(deliver::Name(dep.state().phase));
  Log(r, kDeployStage, fmt::format("release {}: {}{}", out.release_id, out.deploy_phase,
                                   dep.state().message.empty() ? "" : ": " + dep.state().message));
  return out;
}

}  // namespace gantry::release

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
#include "sign/sbom.h"
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

// The application a release is recorded under in the ledger (and named by in its pull request's
// branch): release.app, else the image's name.
std::string LedgerApp(const ci::Pipeline& pipeline) {
  if (pipeline.release && !pipeline.release->app.empty()) return pipeline.release->app;
  const std::string& repository = pipeline.image->repository;
  return repository.substr(repository.rfind('/') + 1);
}

// --- package ----------------------------------------------------------------------------------

struct Built {
  std::string reference;  // first tag, with digest
  std::string repository;
  std::string tag;
  std::string digest;
  std::string signature;    // manifest digests, with a signing key
  std::string attestation;
  std::string sbom;
};

// The digest of the manifest tagged `tag` in image's repository.
Result<std::string> TagDigest(oci::Registry& registry, const oci::Reference& image, std::string tag) {
  oci::Reference at = image;
  at.tag = std::move(tag);
  at.digest.clear();
  GANTRY_ASSIGN_OR_RETURN(auto head, registry.HeadManifest(at));
  if (!head) return NotFoundError("{} vanished", at.ToString());
  return head->digest;
}

// Whether `found` (VerifyImage's or VerifyAttestations' result) holds one that `match` accepts;
// false when there is none at all or none with this key; the registry's other errors.
template <typename T, typename Match>
Result<bool> Already(const Result<std::vector<T>>& found, Match match) {
  if (!found.ok()) {
    Code c = found.status().code();
    if (c == Code::kNotFound || c == Code::kPermissionDenied) return false;
    return found.status();
  }
  return std::any_of(found->begin(), found->end(), match);
}

// Signs `image` (by digest), attests its provenance and, when `sbom` is not empty, its SBOM, with
// the services' key. What this key already did for this run (a release resumed after a crash
// re-runs the package stage) is not done again: a signature whose "run" annotation is this run, a
// provenance whose invocationId is this run, any SBOM of the digest.
Status SignBuilt(const ReleaseServices& s, const oci::Reference& image, const sign::Provenance& provenance,
                 const std::string& sbom, const ReleaseRequest& r, Built& result) {
  const sign::PublicKey pub = s.signing_key->Public();
  const std::string run = std::to_string(r.run_id);
  std::vector<std::string> kept;
  GANTRY_ASSIGN_OR_RETURN(bool signed_before, Already(sign::VerifyImage(*s.registry, image, pub),
                                                      [&](const sign::VerifiedSignature& v) {
                                                        auto it = v.annotations.find("run");
                                                        return it != v.annotations.end() && it->second == run;
                                                      }));
  if (signed_before) {
    GANTRY_ASSIGN_OR_RETURN(result.signature, TagDigest(*s.registry, image, sign::SignatureTag(image.digest)));
    kept.push_back("signature");
  } else {
    GANTRY_ASSIGN_OR_RETURN(sign::Pushed sig, sign::SignImage(*s.registry, image, *s.signing_key, {{"run", run}, {"commit", r.commit}}));
    result.signature = sig.manifest_digest;
  }
  GANTRY_ASSIGN_OR_RETURN(bool attested_before,
                          Already(sign::VerifyAttestations(*s.registry, image, pub, sign::kSlsaProvenanceV1),
                                  [&](const sign::VerifiedAttestation& a) {
                                    return value::StringAt(&a.statement, {"predicate", "runDetails", "metadata", "invocationId"}) == run;
                                  }));
  if (attested_before) {
    GANTRY_ASSIGN_OR_RETURN(result.attestation, TagDigest(*s.registry, image, sign::AttestationTag(image.digest)));
    kept.push_back("provenance");
  } else {
    std::string statement = sign::ProvenanceStatement(image, image.digest, provenance);
    GANTRY_ASSIGN_OR_RETURN(sign::Pushed att,
                            sign::AttestImage(*s.registry, image, statement, sign::kSlsaProvenanceV1, *s.signing_key));
    result.attestation = att.manifest_digest;
  }
  if (!sbom.empty()) {
    GANTRY_ASSIGN_OR_RETURN(bool sbom_before, Already(sign::VerifyAttestations(*s.registry, image, pub, sign::kSpdxDocument),
                                                      [](const sign::VerifiedAttestation&) { return true; }));
    if (sbom_before) {
      GANTRY_ASSIGN_OR_RETURN(result.sbom, TagDigest(*s.registry, image, sign::AttestationTag(image.digest)));
      kept.push_back("SBOM");
    } else {
      GANTRY_ASSIGN_OR_RETURN(sign::Pushed att, sign::AttestImage(*s.registry, image, sign::SbomStatement(image, image.digest, sbom),
                                                                  sign::kSpdxDocument, *s.signing_key));
      result.sbom = att.manifest_digest;
    }
  }
  Log(r, kImageStage, fmt::format("signed {} ({} key): signature {}, provenance {}{}{}", image.ToString(),
                                  sign::KeyTypeName(s.signing_key->type()), result.signature, result.attestation,
                                  result.sbom.empty() ? "" : ", sbom " + result.sbom,
                                  kept.empty() ? "" : fmt::format(" ({} there already with this key: not signed again)", fmt::join(kept, ", "))));
  return OkStatus();
}

// The SBOM of the image tagged `tag` in `layout` (SPDX JSON), or "" with a line in the log when
// it has several platforms (each would need its own: `gantry image sbom --platform`).
Result<std::string> BuiltSbom(const oci::Layout& layout, const std::string& tag, const oci::BuildResult& built,
                              const oci::Reference& image, const std::optional<oci::Platform>& platform, const ReleaseRequest& r) {
  if (built.manifests.size() > 1 && !platform) {
    Log(r, kImageStage, fmt::format("no SBOM: the image has {} platforms", built.manifests.size()));
    return std::string();
  }
  std::string doc;
  sign::SbomOptions o{.image = image, .digest = image.digest, .created = Rfc3339(std::chrono::system_clock::now()), .platform = platform};
  GANTRY_ASSIGN_OR_RETURN(sign::SbomStats stats, sign::WriteSbom(layout, tag, o, [&](std::string_view chunk) {
                            doc.append(chunk);
                            return OkStatus();
                          }));
  Log(r, kImageStage, fmt::format("sbom: {} files, {} packages{}", stats.files, stats.packages,
                                  stats.package_database.empty() ? "" : " (from /" + stats.package_database + ")"));
  return doc;
}

Result<Built> Package(const ReleaseServices& s, const ci::ImageSpec& spec, const ReleaseRequest& r,
                      std::string_view pipeline, const std::function<bool()>& stopping) {
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
  sign::Provenance provenance{.builder_id = s.builder_id, .pipeline = std::string(pipeline),
                              .source_repository = git::ScrubUrl(r.repo), .source_commit = r.commit,
                              .source_ref = r.ref, .run_id = std::to_string(r.run_id)};
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
    provenance.base_images[base.ToString()] = pulled->digest;
  }
  for (const auto& l : spec.layers) {
    GANTRY_ASSIGN_OR_RETURN(fs::path src, LayerSource(r.workspace, l.src));
    b.layers.push_back({.source = src, .destination = l.dest.empty() ? "/" : l.dest, .excludes = l.exclude});
    provenance.parameters["layer " + (l.dest.empty() ? std::string("/") : l.dest)] = l.src;
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
    if (stopping()) return CancelledError("cancelled");
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
  std::string sbom;
  if (s.signing_key) {
    GANTRY_ASSIGN_OR_RETURN(sbom, BuiltSbom(out, tags[0], built, first, b.platform, r));
  }
  fs::remove_all(out_dir, ec);  // pushed; the registry holds it now
  if (s.signing_key) GANTRY_RETURN_IF_ERROR(SignBuilt(s, first, provenance, sbom, r, result));
  return result;
}

}  // namespace

Status SendNotification(const NotifyTarget& target, const std::string& body, const std::string& delivery) {
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

Result<fs::path> LayerSource(const fs::path& workspace, std::string_view src) {
  if (src == ".") return workspace;
  auto resolved = ResolveBeneath(workspace, src);
  if (!resolved.ok()) return Status(resolved.status().code(), fmt::format("layer src {}: {}", src, resolved.status().message()));
  std::error_code ec;
  if (!fs::exists(*resolved, ec)) return NotFoundError("layer src {} does not exist in the workspace after the steps", src);
  return *resolved;
}

Result<std::vector<oci::TarTree>> WorkspaceTrees(const fs::path& workspace, const ci::ImageSpec& image) {
  std::vector<oci::TarTree> trees;
  for (const auto& l : image.layers) {
    GANTRY_ASSIGN_OR_RETURN(fs::path src, LayerSource(workspace, l.src));
    std::string at = fs::path(l.src).lexically_normal().generic_string();
    while (at.ends_with('/')) at.pop_back();
    trees.push_back({.root = src, .prefix = at == "." ? "" : at});
  }
  return trees;
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

// --- the Release ----------------------------------------------------------------------------------

namespace {

constexpr Stage kStages[] = {Stage::kPackage, Stage::kUpdate, Stage::kNotify, Stage::kDeploy, Stage::kRecord, Stage::kDone};

std::optional<Stage> ParseStage(std::string_view name) {
  for (Stage s : kStages)
    if (Name(s) == name) return s;
  return std::nullopt;
}

std::optional<deliver::Phase> ParseDeployPhase(std::string_view name) {
  for (deliver::Phase p : {deliver::Phase::kRunning, deliver::Phase::kSucceeded, deliver::Phase::kFailed,
                           deliver::Phase::kWaitingApproval, deliver::Phase::kTerminated})
    if (deliver::Name(p) == name) return p;
  return std::nullopt;
}

// The trailer every config commit of a release carries, so that a resumed release finds its push.
std::string Trailer(const ReleaseRequest& r) {
  return fmt::format("Gantry-Release: run {} of {}@{}", r.run_id, git::ScrubUrl(r.repo), r.commit);
}

std::string WithTrailer(std::string message, const std::string& trailer) {
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return message + "\n\n" + trailer + "\n";
}

bool HasTrailer(std::string_view message, std::string_view trailer) {
  for (size_t at = message.find(trailer); at != std::string_view::npos; at = message.find(trailer, at + 1)) {
    size_t end = at + trailer.size();
    bool starts_line = at == 0 || message[at - 1] == '\n';
    bool ends_line = end == message.size() || message[end] == '\n' || message[end] == '\r';
    if (starts_line && ends_line) return true;
  }
  return false;
}

}  // namespace

std::string_view Name(Stage stage) {
  switch (stage) {
    case Stage::kPackage: return "package";
    case Stage::kUpdate: return "update";
    case Stage::kNotify: return "notify";
    case Stage::kDeploy: return "deploy";
    case Stage::kRecord: return "record";
    case Stage::kDone: return "done";
  }
  return "unknown";
}

std::string_view Name(Phase phase) {
  switch (phase) {
    case Phase::kRunning: return "Running";
    case Phase::kSucceeded: return "Succeeded";
    case Phase::kFailed: return "Failed";
    case Phase::kTerminated: return "Terminated";
  }
  return "Unknown";
}

struct Release::Impl {
  const ReleaseServices& s;
  const ci::Pipeline pipeline;
  const ReleaseRequest r;
  ReleaseState* st = nullptr;
  const std::atomic<bool>* terminate = nullptr;

  // What is kept in the store (ReleaseProgress::data), beyond state().result.
  std::optional<store::ReleaseProgress> progress;
  std::string repository, tag;           // package: the image's repository and first tag
  std::string branch;                    // update: where the config commit went
  std::vector<std::string> files;        // update: the files it changed (for notify)
  std::string update_base;               // update in flight: the branch tip before the push
  std::string update_branch;             //   and the branch it pushes to
  std::string pull_forge, pull_repo;     // update, pull-request mode: where the pull request is

  std::shared_ptr<git::Repository> config_repo;
  std::unique_ptr<deliver::Deployment> deployment;

  Impl(const ReleaseServices& services, const ci::Pipeline& p, ReleaseRequest request)
      : s(services), pipeline(p), r(std::move(request)) {}

  bool Stopping() const { return terminate->load() || (r.cancel != nullptr && r.cancel->load()); }
  const ci::ReleaseSpec& Spec() const { return *pipeline.release; }
  bool Deploys() const {
    const ci::ReleaseSpec& rel = Spec();
    return !rel.app.empty() && s.deliver_config && !s.deliver_config->environments.empty() && rel.push_branch.empty() &&
           !rel.pull_request;
  }
  std::string App() const { return LedgerApp(pipeline); }
  // Where the config commit goes: release.push_branch, the pull request's branch, or release.branch.
  std::string PushBranch() const {
    const ci::ReleaseSpec& rel = Spec();
    if (rel.pull_request) return fmt::format("gantry/{}/{}", App(), rel.environment);
    return rel.push_branch;
  }
  bool Applies(Stage stage) const {
    if (stage == Stage::kPackage) return true;
    if (!pipeline.release) return false;
    switch (stage) {
      case Stage::kUpdate: return true;
      case Stage::kNotify: return st->result.committed && PushBranch().empty() && !s.notify.empty();
      case Stage::kDeploy: return Deploys();
      case Stage::kRecord: return !Deploys();
      default: return false;
    }
  }
  Stage After(Stage done) const {
    for (Stage stage : kStages)
      if (stage > done && stage != Stage::kDone && Applies(stage)) return stage;
    return Stage::kDone;
  }

  std::string Encode() const {
    using value::Value;
    const ReleaseResult& res = st->result;
    Value v = Value::Map();
    v.Set("image", res.image);
    v.Set("digest", res.digest);
    v.Set("signature", res.signature);
    v.Set("attestation", res.attestation);
    v.Set("sbom", res.sbom);
    v.Set("repository", repository);
    v.Set("tag", tag);
    v.Set("configCommit", res.config_commit);
    v.Set("committed", res.committed);
    v.Set("branch", branch);
    Value f = Value::Seq();
    for (const auto& file : files) f.Append(Value(file));
    v.Set("files", f);
    v.Set("updateBase", update_base);
    v.Set("updateBranch", update_branch);
    v.Set("releaseId", res.release_id);
    v.Set("deployPhase", res.deploy_phase ? std::string(deliver::Name(*res.deploy_phase)) : std::string());
    v.Set("pullRequest", res.pull_request);
    v.Set("pullRequestUrl", res.pull_request_url);
    v.Set("pullForge", pull_forge);
    v.Set("pullRepo", pull_repo);
    return value::ToJson(v);
  }

  Status Decode(const store::ReleaseProgress& p) {
    auto where = fmt::format("release progress of run {}", r.run_id);
    auto v = value::ParseJson(p.data, where);
    if (!v.ok() || !v->IsMap()) return DataLossError("{}: not a JSON object: {}", where, v.ok() ? p.data : v.status().message());
    ReleaseResult& res = st->result;
    res.image = value::StringAt(&*v, {"image"});
    res.digest = value::StringAt(&*v, {"digest"});
    res.signature = value::StringAt(&*v, {"signature"});
    res.attestation = value::StringAt(&*v, {"attestation"});
    res.sbom = value::StringAt(&*v, {"sbom"});
    repository = value::StringAt(&*v, {"repository"});
    tag = value::StringAt(&*v, {"tag"});
    res.config_commit = value::StringAt(&*v, {"configCommit"});
    res.committed = value::BoolAt(&*v, {"committed"});
    branch = value::StringAt(&*v, {"branch"});
    if (const value::Value* f = v->Get("files"); f != nullptr && f->IsSeq())
      for (const auto& file : f->items())
        if (file.IsString()) files.emplace_back(file.AsString());
    update_base = value::StringAt(&*v, {"updateBase"});
    update_branch = value::StringAt(&*v, {"updateBranch"});
    res.release_id = value::IntAt(&*v, {"releaseId"});
    res.pull_request = value::IntAt(&*v, {"pullRequest"});
    res.pull_request_url = value::StringAt(&*v, {"pullRequestUrl"});
    pull_forge = value::StringAt(&*v, {"pullForge"});
    pull_repo = value::StringAt(&*v, {"pullRepo"});
    std::string phase = value::StringAt(&*v, {"deployPhase"});
    if (!phase.empty()) {
      res.deploy_phase = ParseDeployPhase(phase);
      if (!res.deploy_phase) return DataLossError("{}: unknown deploy phase {:?}", where, phase);
    }
    return OkStatus();
  }

  // Writes the progress: `done` is the last stage completed (the stored one when nullopt).
  Status Save(std::optional<Stage> done) {
    store::ReleaseProgress p = progress.value_or(store::ReleaseProgress{.run_id = r.run_id});
    if (done) p.stage = std::string(Name(*done));
    if (p.stage.empty()) p.stage = "started";
    p.data = Encode();
    auto written = s.store->PutReleaseProgress(p);
    if (!written.ok()) return written.status().WithContext(fmt::format("release: progress of run {}", r.run_id));
    progress = *written;
    return OkStatus();
  }

  bool Fail(Status error) {
    st->phase = Phase::kFailed;
    st->error = std::move(error);
    return false;
  }
  // Records `done` and moves to the next stage; false when there is none (the release succeeded).
  bool Finish(Stage done) {
    if (Status saved = Save(done); !saved.ok()) return Fail(saved);
    st->next = After(done);
    if (st->next != Stage::kDone) return true;
    st->phase = Phase::kSucceeded;
    return false;
  }

  Result<std::shared_ptr<git::Repository>> ConfigRepo() {
    if (config_repo) return config_repo;
    const ci::ReleaseSpec& rel = Spec();
    if (std::find(s.config_repos.begin(), s.config_repos.end(), rel.repo) == s.config_repos.end()) {
      return PermissionDeniedError("release: config repository {} is not one this server may write to (--config-repo)",
                                   git::ScrubUrl(rel.repo));
    }
    if (!s.open_config_repo) return FailedPreconditionError("release: no Git mirrors");
    git::OpenOptions open = s.config_git;
    open.credentials = git::CredentialsFor(s.config_credentials, rel.repo);
    auto repo = s.open_config_repo(rel.repo, open);
    if (!repo.ok()) return repo.status().WithContext("release");
    config_repo = *repo;
    return config_repo;
  }

  // The ledger release this run wrote (a record, or a Deployment's start), if any.
  Result<int64_t> LedgerRelease(const std::string& app) {
    if (st->result.release_id != 0) return st->result.release_id;
    GANTRY_ASSIGN_OR_RETURN(auto releases, s.store->ListReleases(app, 50));
    for (const auto& rel : releases)
      if (rel.run_id == r.run_id) return rel.id;
    return int64_t{0};
  }

  // What the package stage signed and attested, for the ledger.
  store::ImageSupplyChain SupplyChain() const {
    return {.signature = st->result.signature, .provenance = st->result.attestation, .sbom = st->result.sbom};
  }

  bool OpenPullRequest();
  bool WantMerge(int64_t release_id);
  bool Package();
  bool Update();
  bool Notify();
  bool Deploy();
  bool Record();
  bool Stop();
};

bool Release::Impl::Package() {
  auto built = gantry::release::Package(s, *pipeline.image, r, pipeline.name, [this] { return Stopping(); });
  if (!built.ok()) {
    if (built.status().code() == Code::kCancelled && Stopping()) return Stop();
    return Fail(built.status().WithContext(kImageStage));
  }
  st->result.image = built->reference;
  st->result.digest = built->digest;
  st->result.signature = built->signature;
  st->result.attestation = built->attestation;
  st->result.sbom = built->sbom;
  repository = built->repository;
  tag = built->tag;
  return Finish(Stage::kPackage);
}

bool Release::Impl::Update() {
  const ci::ReleaseSpec& rel = Spec();
  auto repo = ConfigRepo();
  if (!repo.ok()) return Fail(repo.status());
  git::Repository& config = **repo;
  const std::string where = git::ScrubUrl(rel.repo);
  const std::string trailer = Trailer(r);

  // Pushed before an interruption? Then the commit is on the branch after the recorded tip.
  if (!update_base.empty()) {
    Result<std::optional<git::CommitInfo>> mine = [&]() -> Result<std::optional<git::CommitInfo>> {
      GANTRY_RETURN_IF_ERROR(config.Fetch().status());
      auto tip = config.Resolve("refs/heads/" + update_branch);
      if (!tip.ok() && tip.status().code() == Code::kNotFound) return std::optional<git::CommitInfo>();
      if (!tip.ok()) return tip.status();
      if (*tip == update_base) return std::optional<git::CommitInfo>();
      GANTRY_ASSIGN_OR_RETURN(auto log, config.Log(*tip, update_base, 1000));
      for (auto& c : log)
        if (HasTrailer(c.message, trailer)) return std::optional<git::CommitInfo>(std::move(c));
      return std::optional<git::CommitInfo>();
    }();
    if (!mine.ok()) return Fail(mine.status().WithContext("release: update " + where + ": find the commit of an interrupted push"));
    if (mine->has_value()) {
      const git::CommitInfo& c = **mine;
      files.clear();
      if (!c.parent.empty()) {
        auto changed = config.ChangedPaths(c.parent, c.id);
        if (!changed.ok()) return Fail(changed.status().WithContext("release: update " + where));
        files = *changed;
      }
      st->result.config_commit = c.id;
      st->result.committed = true;
      branch = update_branch;
      update_base.clear();
      update_branch.clear();
      Log(r, kReleaseStage, fmt::format("{} was pushed to {} before an interruption: not pushing again", c.id.substr(0, 12), branch));
      if (!OpenPullRequest()) return false;
      return Finish(Stage::kUpdate);
    }
  }

  update::GitUpdateOptions uo;
  uo.branch = rel.branch;
  uo.path = rel.path;
  uo.push_branch = PushBranch();
  uo.force_push = rel.pull_request;
  uo.author = s.author;
  if (s.commit_signer) uo.sign = [this](std::string_view commit) { return s.commit_signer->Sign(commit, "git"); };
  auto vars = Vars(r);
  vars["image"] = repository;
  vars["digest"] = st->result.digest;
  vars["tag"] = tag;  // the image tag (the ref's tag, if any, is in {branch}/{commit})
  auto message = Expand(rel.message, vars, "release.message");
  if (!message.ok()) return Fail(message.status().WithContext("release"));
  uo.message_template = WithTrailer(*message, trailer);
  update::ImageRule rule;
  rule.image = repository;
  rule.name = repository.substr(repository.rfind('/') + 1);
  rule.new_tag = tag;
  uo.rules.push_back(rule);

  // The tip the push will follow, recorded first: see the file comment.
  const std::string target = uo.push_branch.empty() ? rel.branch : uo.push_branch;
  if (Status f = config.Fetch().status(); !f.ok()) return Fail(f.WithContext("release: update " + where));
  auto tip = config.Resolve("refs/heads/" + target);
  if (!tip.ok() && !uo.push_branch.empty() && tip.status().code() == Code::kNotFound) tip = config.Resolve("refs/heads/" + rel.branch);
  if (tip.ok()) {
    update_base = *tip;
    update_branch = target;
    if (Status saved = Save(std::nullopt); !saved.ok()) return Fail(saved);
  }  // else UpdateRepository says what is wrong with the branch

  Log(r, kReleaseStage, fmt::format("rewriting {} in {} ({}{})", repository, where, rel.branch, rel.path.empty() ? "" : ":" + rel.path));
  auto updated = update::UpdateRepository(config, uo);
  if (!updated.ok()) return Fail(updated.status().WithContext("release: update " + where));
  for (const auto& c : updated->changes) Log(r, kReleaseStage, c.ToString());
  for (const auto& sk : updated->skipped) Log(r, kReleaseStage, "skipped " + sk);
  st->result.config_commit = updated->commit;
  st->result.committed = updated->committed;
  branch = updated->branch;
  files.clear();
  for (const auto& c : updated->changes)
    if (std::find(files.begin(), files.end(), c.file) == files.end()) files.push_back(c.file);
  update_base.clear();
  update_branch.clear();
  Log(r, kReleaseStage, updated->committed ? fmt::format("committed {} to {}", updated->commit.substr(0, 12), updated->branch)
                                           : fmt::format("{} already at {}: no commit", rel.branch, tag));
  if (!OpenPullRequest()) return false;
  return Finish(Stage::kUpdate);
}

// Best effort: agents poll as well.
bool Release::Impl::Notify() {
  const std::string& commit = st->result.config_commit;
  std::string body = PushEventPayload(Spec().repo, branch, "", commit, files);
  NotifyFn send = s.send_notify ? s.send_notify : NotifyFn(SendNotification);
  for (const auto& n : s.notify) {
    Status sent = send(n, body, fmt::format("gantry-{}-{}", r.run_id, commit.substr(0, 12)));
    Log(r, kReleaseStage, sent.ok() ? "notified " + n.url : "could not notify agent: " + sent.message());
  }
  return Finish(Stage::kNotify);
}

bool Release::Impl::Deploy() {
  if (deployment) {
    if (deployment->Step()) return true;
    const deliver::DeployState& d = deployment->state();
    st->result.deploy_phase = d.phase;
    Log(r, kDeployStage, fmt::format("release {}: {}{}", st->result.release_id, deliver::Name(d.phase),
                                     d.message.empty() ? "" : ": " + d.message));
    deployment.reset();
    return Finish(Stage::kDeploy);
  }
  const ci::ReleaseSpec& rel = Spec();
  auto repo = ConfigRepo();
  if (!repo.ok()) return Fail(repo.status());
  deliver::DeployOptions d;
  d.app = rel.app;
  d.revision = st->result.config_commit;
  d.config_revision = st->result.config_commit;
  d.source_revision = r.commit;
  d.run_id = r.run_id;
  d.image_digests = {{repository, st->result.digest}};
  if (!SupplyChain().empty()) d.supply_chain = {{repository, SupplyChain()}};
  d.through = rel.through;
  d.path_template = s.path_template;
  d.started_by = "ci";
  // A release a push started never overrides the project's sync windows (no window_override).
  d.project = r.project;
  d.prune = s.prune;
  d.health_timeout = s.health_timeout;
  d.clock = s.clock;
  auto progress = [this](std::string_view line) { Log(r, kDeployStage, line); };
  auto render = deliver::GitRenderFn(*repo, s.render);

  // A deploy this run started before an interruption is continued, never started again.
  auto existing = LedgerRelease(rel.app);
  if (!existing.ok()) return Fail(existing.status().WithContext("deploy: ledger"));
  if (*existing != 0) {
    const int64_t id = *existing;
    st->result.release_id = id;
    auto release = s.store->GetRelease(id);
    if (!release.ok()) return Fail(release.status().WithContext("deploy: ledger"));
    auto unfinished = deliver::HasWorkLeft(*s.store, *release, *s.deliver_config, s.clock);
    if (!unfinished.ok()) return Fail(unfinished.status().WithContext("deploy: ledger"));
    if (*unfinished) {
      auto resumed = deliver::Deployment::Resume(*s.store, *s.deliver_config, render, s.connect, d, progress);
      if (!resumed.ok() && resumed.status().code() != Code::kNotFound) return Fail(resumed.status().WithContext("deploy"));
      if (resumed.ok() && (*resumed)->state().release_id == id) {
        deployment = std::move(*resumed);
        return true;
      }
    }
    // It ended before the interruption (or a newer release superseded it): its targets say how.
    auto now = s.store->ListTargets(id);
    if (!now.ok()) return Fail(now.status().WithContext("deploy: ledger"));
    bool healthy = !now->empty() && std::all_of(now->begin(), now->end(), [](const store::Target& t) {
      return t.state == store::TargetState::kHealthy;
    });
    st->result.deploy_phase = healthy ? deliver::Phase::kSucceeded : deliver::Phase::kFailed;
    Log(r, kDeployStage, fmt::format("release {}: {} (ended before an interruption)", id, deliver::Name(*st->result.deploy_phase)));
    return Finish(Stage::kDeploy);
  }
  auto started = deliver::Deployment::Start(*s.store, *s.deliver_config, render, s.connect, d, progress);
  if (!started.ok()) return Fail(started.status().WithContext("deploy"));
  deployment = std::move(*started);
  st->result.release_id = deployment->state().release_id;
  if (Status saved = Save(std::nullopt); !saved.ok()) return Fail(saved);
  return true;
}

// Pull-request mode, after a commit: the pull request of the branch opened or updated (the forge
// finds the open one, so a resumed release asks again safely). False when the release failed.
bool Release::Impl::OpenPullRequest() {
  const ci::ReleaseSpec& rel = Spec();
  if (!rel.pull_request || !st->result.committed) return true;
  const std::string where = git::ScrubUrl(rel.repo);
  if (!s.open_pull_request) {
    return Fail(FailedPreconditionError("release: pull-request mode: the server knows no forge for {} (--forge)", where));
  }
  const std::string app = App();
  std::string body = fmt::format(
      "Release of **{}** to **{}** by Gantry: `{}:{}`\n\n- image digest: `{}`\n- source: {}@{}\n- CI run: {}\n", app,
      rel.environment, repository, tag, st->result.digest, git::ScrubUrl(r.repo), r.commit, r.run_id);
  if (!files.empty()) {
    body += "- files:\n";
    for (const auto& f : files) body += fmt::format("  - `{}`\n", f);
  }
  body += fmt::format("\nEach release of {} to {} updates this pull request until it is merged{}.\n", app,
                      rel.environment,
                      rel.auto_merge ? fmt::format("; Gantry merges it ({}) once its checks pass", rel.merge_method) : "");
  forge::PullRequestSpec spec{.head = PushBranch(),
                              .base = rel.branch,
                              .title = fmt::format("release {} to {}: {}:{}", app, rel.environment, repository, tag),
                              .body = std::move(body)};
  auto opened = s.open_pull_request(rel.repo, spec);
  if (!opened.ok()) return Fail(opened.status().WithContext(fmt::format("release: pull request {} → {} of {}", spec.head, spec.base, where)));
  st->result.pull_request = opened->pull.number;
  st->result.pull_request_url = opened->pull.url;
  pull_forge = opened->forge;
  pull_repo = opened->repo;
  Log(r, kReleaseStage, fmt::format("{} pull request #{} {}", opened->pull.created ? "opened" : "updated",
                                    opened->pull.number, opened->pull.url));
  return true;
}

// auto_merge: the pull request put into the merge outbox for ledger release `release_id` (again
// on a resumed record: the put replaces the row, and a merged pull request is found merged).
bool Release::Impl::WantMerge(int64_t release_id) {
  const ci::ReleaseSpec& rel = Spec();
  if (!rel.pull_request || !rel.auto_merge || st->result.pull_request == 0) return true;
  const auto now = (s.clock != nullptr ? *s.clock : SystemClock()).WallNow();
  auto put = s.store->PutPullMerge({.forge = pull_forge,
                                    .repo = pull_repo,
                                    .number = st->result.pull_request,
                                    .sha = st->result.config_commit,
                                    .method = rel.merge_method,
                                    .required_checks = rel.required_checks,
                                    .release_id = release_id,
                                    .next_attempt_at = now,
                                    .deadline = now + s.merge_deadline});
  if (!put.ok()) return Fail(put.status().WithContext("release: auto-merge"));
  Log(r, kReleaseStage, fmt::format("pull request #{} will be merged ({}) once its checks pass", st->result.pull_request,
                                    rel.merge_method));
  return true;
}

bool Release::Impl::Record() {
  const ci::ReleaseSpec& rel = Spec();
  const std::string app = App();
  auto existing = LedgerRelease(app);
  if (!existing.ok()) return Fail(existing.status().WithContext("release: ledger"));
  if (*existing != 0) {
    st->result.release_id = *existing;
    Log(r, kReleaseStage, fmt::format("release {} of {} recorded (before an interruption)", *existing, app));
    if (!WantMerge(*existing)) return false;
    return Finish(Stage::kRecord);
  }
  std::string note;
  if (st->result.pull_request != 0) {
    note = fmt::format("pull request #{} {}", st->result.pull_request, st->result.pull_request_url);
  } else if (!rel.push_branch.empty()) {
    note = "proposed on branch " + rel.push_branch;
  }
  store::Release ledger{.app = app,
                        .source_revision = r.commit,
                        .config_revision = st->result.config_commit,
                        .image_digests = {{repository, st->result.digest}},
                        .started_by = "ci",
                        .run_id = r.run_id,
                        .note = std::move(note),
                        .project = r.project == "default" ? "" : r.project,
                        .pull_request = st->result.pull_request,
                        .pull_request_url = st->result.pull_request_url};
  if (!SupplyChain().empty()) ledger.supply_chain = {{repository, SupplyChain()}};
  auto id = s.store->CreateRelease(ledger);
  if (!id.ok()) return Fail(id.status().WithContext("release: ledger"));
  st->result.release_id = *id;
  Status a = s.store->Audit({.actor = "ci", .action = "release", .object = fmt::format("app/{} release/{}", app, *id),
                             .details = fmt::format("{} → {}", r.commit.substr(0, 12), st->result.image)})
                 .status();
  if (!a.ok()) log::Warn("release: audit: {}", a.message());
  Log(r, kReleaseStage, fmt::format("release {} of {} recorded", *id, app));
  if (!WantMerge(*id)) return false;
  return Finish(Stage::kRecord);
}

// Stopped between steps: a running deployment stops too (its ledger keeps what it did), and the
// progress stays for Create() or Resume().
bool Release::Impl::Stop() {
  if (deployment) {
    deployment->Terminate();
    while (deployment->Step()) {
    }
    const deliver::DeployState& d = deployment->state();
    Log(r, kDeployStage, fmt::format("release {}: {}{}", st->result.release_id, deliver::Name(d.phase),
                                     d.message.empty() ? "" : ": " + d.message));
    deployment.reset();
  }
  st->phase = Phase::kTerminated;
  st->error = CancelledError("cancelled");
  return false;
}

Release::Release(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->st = &state_;
  impl_->terminate = &terminate_;
}
Release::~Release() = default;

Result<std::unique_ptr<Release>> Release::Create(const ReleaseServices& s, const ci::Pipeline& pipeline, ReleaseRequest r) {
  if (!pipeline.image) return InvalidArgumentError("the pipeline has no image: section");
  if (s.store == nullptr) return FailedPreconditionError("release: no store");
  // The pipeline chooses its image repository and config path; its repository's project bounds
  // both, before anything is built or pushed.
  if (r.project.empty()) r.project = "default";
  auto project = s.deliver_config ? s.deliver_config->ProjectNamed(r.project)
                 : r.project == "default"
                     ? Result<project::Project>(project::DefaultProject())
                     : Result<project::Project>(NotFoundError("no Project {:?} (no push configuration)", r.project));
  if (!project.ok()) return project.status().WithContext("release");
  // The app by the name the ledger records (release.app or the image's name) is this project's:
  // another project's pipeline cannot add releases to it, nor force-push its pull request's branch.
  if (pipeline.release) {
    GANTRY_RETURN_IF_ERROR(deliver::CheckAppProject(*s.store, LedgerApp(pipeline), r.project).WithContext("release"));
  }
  GANTRY_RETURN_IF_ERROR(project::CheckRelease(*project, pipeline.image->repository,
                                               !pipeline.release ? ""
                                               : pipeline.release->path.empty() ? "." : pipeline.release->path)
                             .WithContext("release"));
  // The registry credential the push would use (named by its host) must be the project's too.
  if (!s.registry_credentials.empty()) {
    GANTRY_ASSIGN_OR_RETURN(oci::Reference push_to, oci::ParseReference(pipeline.image->repository));
    const std::string host = oci::RegistryHost(push_to.registry);
    if (std::find(s.registry_credentials.begin(), s.registry_credentials.end(), host) != s.registry_credentials.end()) {
      GANTRY_RETURN_IF_ERROR(project::CheckCredential(*project, host)
                                 .WithContext(fmt::format("release: push to {} with the registry credential of {}",
                                                          pipeline.image->repository, host)));
    }
  }
  auto progress = s.store->GetReleaseProgress(r.run_id);
  if (!progress.ok()) return progress.status().WithContext(fmt::format("release: progress of run {}", r.run_id));
  std::unique_ptr<Release> release(new Release(std::make_unique<Impl>(s, pipeline, std::move(r))));
  Impl& m = *release->impl_;
  ReleaseState& st = release->state_;
  if (!progress->has_value()) return release;
  m.progress = **progress;
  GANTRY_RETURN_IF_ERROR(m.Decode(m.progress.value()));
  st.resumed = true;
  if (m.progress->stage == "started") {
    st.next = Stage::kPackage;
  } else {
    auto done = ParseStage(m.progress->stage);
    if (!done || *done == Stage::kDone)
      return DataLossError("release progress of run {}: unknown stage {:?}", m.r.run_id, m.progress->stage);
    st.next = m.After(*done);
  }
  if (st.next != Stage::kDone) {
    // Take the release over: a process still at it (a server whose run lease expired while it
    // was paused or cut off) now fails its next progress write (Aborted) and stops.
    GANTRY_RETURN_IF_ERROR(m.Save(std::nullopt));
  }
  std::string_view log_stage = st.next == Stage::kPackage ? kImageStage : st.next == Stage::kDeploy ? kDeployStage : kReleaseStage;
  Log(m.r, log_stage, st.next == Stage::kDone
                          ? fmt::format("the release of run {} ended before an interruption: nothing to do", m.r.run_id)
                          : fmt::format("resuming the release of run {} at {} (interrupted)", m.r.run_id, Name(st.next)));
  return release;
}

Result<std::unique_ptr<Release>> Release::Resume(const ReleaseServices& s, const ci::Pipeline& pipeline, ReleaseRequest r) {
  if (s.store == nullptr) return FailedPreconditionError("release: no store");
  auto progress = s.store->GetReleaseProgress(r.run_id);
  if (!progress.ok()) return progress.status().WithContext(fmt::format("release: progress of run {}", r.run_id));
  if (!progress->has_value()) return NotFoundError("resume: run {} has no release in progress", r.run_id);
  return Create(s, pipeline, std::move(r));
}

bool Release::Step() {
  Impl& m = *impl_;
  if (state_.phase != Phase::kRunning) return false;
  if (m.Stopping()) return m.Stop();
  switch (state_.next) {
    case Stage::kPackage: return m.Package();
    case Stage::kUpdate: return m.Update();
    case Stage::kNotify: return m.Notify();
    case Stage::kDeploy: return m.Deploy();
    case Stage::kRecord: return m.Record();
    case Stage::kDone: break;
  }
  state_.phase = Phase::kSucceeded;
  return false;
}

Result<ReleaseResult> RunRelease(const ReleaseServices& services, const ci::Pipeline& pipeline, const ReleaseRequest& request) {
  GANTRY_ASSIGN_OR_RETURN(auto release, Release::Create(services, pipeline, request));
  const ReleaseState& st = release->Run();
  if (st.phase == Phase::kSucceeded) return st.result;
  return st.error;
}

Status ReleaseSucceededRun(const ReleaseServices& services, const ci::SucceededRun& run) {
  ReleaseRequest request{.run_id = run.run.id, .repo = run.run.repo, .commit = run.commit, .ref = run.run.ref,
                         .workspace = run.workspace, .log = run.log, .cancel = run.cancel, .project = run.project};
  GANTRY_ASSIGN_OR_RETURN(ReleaseResult result, RunRelease(services, run.pipeline, request));
  if (result.deploy_phase && *result.deploy_phase != deliver::Phase::kSucceeded) {
    return FailedPreconditionError("deploy: release {} ended {}", result.release_id, deliver::Name(*result.deploy_phase));
  }
  return OkStatus();
}

}  // namespace gantry::release

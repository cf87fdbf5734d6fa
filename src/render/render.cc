// Render(): picks the renderer, plans what it may read, materializes that into a private copy,
// runs the external renderer there, parses its output; and the cache around it.

#include <sys/stat.h>

#include <algorithm>

#include "base/hash.h"
#include "base/mutex.h"
#include "base/path.h"
#include "render/internal/documents.h"
#include "render/internal/plain.h"
#include "render/internal/renderers.h"
#include "render/internal/sandbox.h"
#include "render/internal/tree.h"
#include "render/render.h"

namespace gantry::render {
namespace fs = std::filesystem;

namespace {

// Whether a Go renderer under a memory limit crashed in its own runtime: near the limit, Go can
// fault on an allocation that failed instead of reporting "out of memory" (kustomize 5.8: SIGSEGV
// at addr=0x0 in runtime.(*spanQueue).tryDrain, or another runtime fatal error). The stack dump
// follows "goroutine N"; the first frame of the crashing goroutine is in package runtime.
bool GoRuntimeCrash(std::string_view err, size_t memory_limit) {
  if (memory_limit == 0) return false;
  if (!err.starts_with("SIGSEGV: ") && !err.starts_with("fatal error: ") && !err.starts_with("unexpected fault address")) {
    return false;
  }
  size_t g = err.find("\ngoroutine ");
  if (g == std::string_view::npos) return false;
  size_t frame = err.find('\n', g + 1);
  return frame != std::string_view::npos && err.substr(frame + 1).starts_with("runtime.");
}

// What one render reads, decided (and checked) before anything is copied or run.
struct Plan {
  Renderer renderer = Renderer::kPlain;
  fs::path root;            // the repository, canonical
  std::string rel;          // the application path, normalised ("" for the root)
  fs::path dir;             // rel resolved beneath root
  bool is_dir = true;
  std::vector<std::string> trees;                           // directories an external renderer reads
  internal::KustomizeScan kustomize;                        // for Kustomize: what else it reads
  std::vector<std::pair<std::string, std::string>> values;  // helm value files: (rel, copy name)
};

std::string Display(const std::string& rel) { return rel.empty() ? "." : rel; }

Result<Plan> MakePlan(const Source& source, const Options& options) {
  Plan plan;
  std::error_code ec;
  plan.root = fs::canonical(source.repo_root, ec);
  if (ec || !fs::is_directory(plan.root)) {
    return NotFoundError("repository {}: not a directory{}", source.repo_root.string(),
                         ec ? ": " + ec.message() : "");
  }
  GANTRY_ASSIGN_OR_RETURN(plan.rel, internal::NormalizeRel(source.path, "application path"));
  GANTRY_ASSIGN_OR_RETURN(plan.dir, ResolveBeneath(plan.root, plan.rel));
  struct stat st;
  if (::stat(plan.dir.c_str(), &st) != 0) {
    return NotFoundError("{}: no such file or directory in the repository", Display(plan.rel));
  }
  plan.is_dir = S_ISDIR(st.st_mode);
  plan.renderer = options.renderer;
  if (plan.renderer == Renderer::kAuto) plan.renderer = plan.is_dir ? Detect(plan.dir) : Renderer::kPlain;
  if (!plan.is_dir && plan.renderer != Renderer::kPlain) {
    return InvalidArgumentError("{}: {} needs a directory", Display(plan.rel), RendererName(plan.renderer));
  }
  switch (plan.renderer) {
    case Renderer::kKustomize: {
      if (internal::KustomizationName(plan.dir).empty()) {
        return NotFoundError("{}: no kustomization.yaml, kustomization.yml or Kustomization", Display(plan.rel));
      }
      GANTRY_ASSIGN_OR_RETURN(plan.kustomize,
                              internal::KustomizeTrees(plan.root, plan.rel, options.kustomize, options.limits));
      plan.trees = plan.kustomize.trees;
      break;
    }
    case Renderer::kHelm: {
      GANTRY_ASSIGN_OR_RETURN(fs::path chart, ResolveBeneath(plan.dir, "Chart.yaml"));
      if (::stat(chart.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        return NotFoundError("{}: no Chart.yaml", Display(plan.rel));
      }
      plan.trees = {plan.rel};
      GANTRY_ASSIGN_OR_RETURN(plan.values, internal::HelmValueFiles(plan.root, plan.rel, options.helm));
      break;
    }
    case Renderer::kJsonnet:
      // Imports and library paths may name any file of the repository.
      plan.trees = {""};
      break;
    case Renderer::kAuto:
    case Renderer::kPlain:
      plan.trees = {plan.rel};
      break;
  }
  return plan;
}

std::string CacheKey(std::string_view content_key, const Plan& plan, const Options& options) {
  return CacheKey(content_key, plan.rel, plan.renderer, options);
}

}  // namespace

// The options that change what a renderer produces, canonically.
std::string CacheKey(std::string_view content_key, std::string_view path, Renderer renderer, const Options& options) {
  struct {
    std::string rel;
    Renderer renderer;
  } plan{std::string(path), renderer};
  auto list = [](const std::vector<std::string>& items) {
    value::Value seq = value::Value::Seq();
    for (const std::string& s : items) seq.Append(s);
    return seq;
  };
  value::Value o = value::Value::Map();
  o.Set("path", plan.rel);
  o.Set("renderer", RendererName(plan.renderer));
  if (plan.renderer == Renderer::kKustomize) {
    o.Set("binary", options.kustomize_binary);
    o.Set("images", list(options.kustomize.images));
    o.Set("components", list(options.kustomize.components));
    o.Set("remote_hosts", list(options.kustomize.remote_hosts));
  } else if (plan.renderer == Renderer::kHelm) {
    const HelmOptions& h = options.helm;
    o.Set("binary", options.helm_binary);
    o.Set("release_name", h.release_name);
    o.Set("namespace", h.namespace_);
    o.Set("value_files", list(h.value_files));
    o.Set("values", h.values);
    o.Set("set", list(h.set));
    o.Set("set_string", list(h.set_string));
    o.Set("include_crds", h.include_crds);
    o.Set("kube_version", h.kube_version);
    o.Set("api_versions", list(h.api_versions));
  } else if (plan.renderer == Renderer::kJsonnet) {
    const JsonnetOptions& j = options.jsonnet;
    auto vars = [](const std::vector<JsonnetVar>& vs) {
      value::Value seq = value::Value::Seq();
      for (const JsonnetVar& v : vs) {
        value::Value m = value::Value::Map();
        m.Set("name", v.name);
        m.Set("value", v.value);
        m.Set("code", v.code);
        seq.Append(std::move(m));
      }
      return seq;
    };
    o.Set("binary", options.jsonnet_binary);
    o.Set("tlas", vars(j.tlas));
    o.Set("ext_vars", vars(j.ext_vars));
    o.Set("libs", list(j.libs));
    o.Set("recurse", j.recurse);
    o.Set("max_stack", static_cast<int64_t>(j.max_stack));
  }
  // Decrypted results depend on the keys: a digest of them (never the keys) is part of the key.
  if (!options.sops.age_keys.empty()) {
    o.Set("sops_keys", Sha256Hex("gantry-sops-age-keys\n" + options.sops.age_keys));
    o.Set("sops_binary", options.sops.binary);
  }
  Sha256 hash;
  hash.Update(fmt::format("gantry-render-v1\n{}\n{}\n", content_key.size(), content_key));
  hash.Update(value::ToJson(o));
  return hash.FinishHex();
}

namespace {

using Output = internal::Keyed;

// The last `n` non-empty lines of a renderer's stderr, with the private copy's path removed.
std::string Tail(std::string text, const fs::path& copy, int n = 5) {
  for (const std::string& p : {copy.string() + "/", copy.string()}) {
    for (size_t pos; (pos = text.find(p)) != std::string::npos;) text.replace(pos, p.size(), "");
  }
  std::vector<std::string_view> lines;
  std::string_view rest = text;
  while (!rest.empty()) {
    size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) lines.push_back(line);
    rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
  }
  size_t from = lines.size() > static_cast<size_t>(n) ? lines.size() - static_cast<size_t>(n) : 0;
  std::string out;
  for (size_t i = from; i < lines.size(); ++i) out += (out.empty() ? "" : "\n") + std::string(lines[i]);
  return out;
}

// With a cache and a content key: the key is content_key's, extended by what the render depends on
// beyond the repository (PrepareKustomizeCopy), looked up (unless `key_checked` and it is not
// extended: the caller looked already) and stored.
Result<Output> RenderExternal(const Plan& plan, const Options& options, RenderCache* cache,
                              std::string_view content_key, bool key_checked) {
  const bool helm = plan.renderer == Renderer::kHelm;
  GANTRY_ASSIGN_OR_RETURN(std::string binary,
                          FindRenderer(plan.renderer, helm ? options.helm_binary : options.kustomize_binary));
  const std::string display = fmt::format("{} {}", helm ? "helm template" : "kustomize build", Display(plan.rel));

  GANTRY_ASSIGN_OR_RETURN(internal::PrivateDir tmp, internal::PrivateDir::Create(options.temp_dir));
  const fs::path copy = tmp.path() / "repo", home = tmp.path() / "home", values = tmp.path() / "values",
                 helm_home = tmp.path() / "helm";
  std::error_code ec;
  for (const fs::path& d : {copy, home, values, helm_home / "cache", helm_home / "config", helm_home / "data"}) {
    fs::create_directories(d, ec);
    if (ec) return InternalError("create {}: {}", d.string(), ec.message());
  }
  internal::Materializer copier(plan.root, copy, options.limits, nullptr);
  for (const std::string& tree : plan.trees) GANTRY_RETURN_IF_ERROR(copier.AddTree(tree));
  std::vector<std::string> value_names;
  for (const auto& [rel, name] : plan.values) {
    GANTRY_RETURN_IF_ERROR(copier.AddFile(rel, values / name));
    value_names.push_back(name);
  }
  const fs::path app = copy / plan.rel;
  if (helm) {
    if (Status s = internal::VendorHelmDependencies(copy, plan.rel, copier, options); !s.ok()) {
      return s.WithContext(display);
    }
  }

  std::map<std::string, std::string> env = {
      {"PATH", "/usr/local/bin:/usr/bin:/bin"},
      {"HOME", home.string()},
      {"XDG_CONFIG_HOME", (home / ".config").string()},
      {"XDG_CACHE_HOME", (home / ".cache").string()},
      {"XDG_DATA_HOME", (home / ".local/share").string()},
      {"LANG", "C.UTF-8"},
  };
  std::vector<std::string> args;
  std::vector<std::string> extra_binaries;
  std::string deps;
  auto helm_env = [&] {
    env.insert({{"HELM_CACHE_HOME", (helm_home / "cache").string()},
                {"HELM_CONFIG_HOME", (helm_home / "config").string()},
                {"HELM_DATA_HOME", (helm_home / "data").string()},
                {"HELM_PLUGINS", (helm_home / "plugins").string()},
                {"HELM_REPOSITORY_CONFIG", (helm_home / "config/repositories.yaml").string()},
                {"HELM_REPOSITORY_CACHE", (helm_home / "cache/repository").string()},
                {"HELM_REGISTRY_CONFIG", (helm_home / "config/registry/config.json").string()}});
  };
  if (helm) {
    if (!options.helm.values.empty()) {
      GANTRY_RETURN_IF_ERROR(internal::WriteNewFile(values / "inline.yaml", options.helm.values));
    }
    std::string default_name = plan.rel.empty() ? plan.root.filename().string() : fs::path(plan.rel).filename().string();
    GANTRY_ASSIGN_OR_RETURN(args, internal::HelmTemplateArgs(default_name, app, values, value_names, options.helm));
    helm_env();
  } else {
    std::string helm_binary;
    if (!plan.kustomize.charts.empty()) {
      GANTRY_ASSIGN_OR_RETURN(helm_binary, FindRenderer(Renderer::kHelm, options.helm_binary));
    }
    GANTRY_ASSIGN_OR_RETURN(deps, internal::PrepareKustomizeCopy(plan.kustomize, copy, tmp.path() / "remote",
                                                                 options, helm_binary));
    if (!options.kustomize.images.empty() || !options.kustomize.components.empty()) {
      fs::path kfile = app / internal::KustomizationName(app);
      GANTRY_ASSIGN_OR_RETURN(std::string text, ReadFile(kfile, options.limits.max_file_bytes));
      std::string name = (plan.rel.empty() ? "" : plan.rel + "/") + kfile.filename().string();
      GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(text, name, options.limits.parse));
      value::Value k = docs.empty() ? value::Value::Map() : docs[0];
      GANTRY_RETURN_IF_ERROR(internal::EditKustomization(k, options.kustomize));
      fs::remove(kfile, ec);
      GANTRY_RETURN_IF_ERROR(internal::WriteNewFile(kfile, value::ToYaml(k)));
    }
    args = {"build", ".", "--load-restrictor=LoadRestrictionsRootOnly"};
    if (!helm_binary.empty()) {
      // helmCharts: Gantry's helm, in the same sandbox, without the network (the charts are there).
      args.insert(args.end(), {"--enable-helm", "--helm-command", helm_binary});
      extra_binaries.push_back(helm_binary);
      helm_env();
    }
  }

  Output out;
  const std::string lines = "\n" + deps;
  out.unpinned = lines.find("\nremote ") != std::string::npos || lines.find("\nchart ") != std::string::npos;
  if (cache != nullptr && !content_key.empty()) {
    out.key = CacheKey(deps.empty() ? std::string(content_key) : std::string(content_key) + "\n" + deps, plan.rel,
                       plan.renderer, options);
    if (!key_checked || !deps.empty()) {
      if (auto hit = cache->Get(out.key)) {
        out.manifests = std::move(*hit);
        out.hit = true;
        return out;
      }
    }
  }

  internal::RendererRun run;
  run.binary = binary;
  run.args = std::move(args);
  run.cwd = app;
  run.private_dir = tmp.path();
  run.env = std::move(env);
  run.extra_binaries = std::move(extra_binaries);
  run.sandbox = options.sandbox;
  run.bwrap_binary = options.bwrap_binary;
  run.timeout = options.timeout;
  run.max_output_bytes = options.limits.max_total_bytes;
  run.max_memory_bytes = options.limits.max_renderer_memory_bytes;
  GANTRY_ASSIGN_OR_RETURN(ProcessResult r, internal::RunRenderer(run));
  if (r.timed_out) {
    return DeadlineExceededError("{}: did not finish within {} ms, the time a render may take", display,
                                 options.timeout.count());
  }
  if (r.output_truncated) {
    return ResourceExhaustedError("{}: output larger than {} bytes (limit max_total_bytes)", display,
                                  options.limits.max_total_bytes);
  }
  if (!r.success()) {
    std::string tail = Tail(r.err.empty() ? r.out : r.err, copy);
    if (r.err.find("runtime: out of memory") != std::string::npos ||
        r.err.find("cannot allocate memory") != std::string::npos) {
      return ResourceExhaustedError("{}: ran out of memory at {} bytes (limit max_renderer_memory_bytes)",
                                    display, options.limits.max_renderer_memory_bytes);
    }
    if (GoRuntimeCrash(r.err, run.max_memory_bytes)) {
      std::string_view first = std::string_view(r.err).substr(0, r.err.find('\n'));
      return ResourceExhaustedError("{}: crashed in the Go runtime near its memory limit of {} bytes ({}; limit "
                                    "max_renderer_memory_bytes)", display, options.limits.max_renderer_memory_bytes, first);
    }
    if (helm && r.err.find("missing in charts/ directory") != std::string::npos) {
      return FailedPreconditionError("{}: chart dependencies are not vendored in charts/ (Gantry never runs "
                                     "`helm dependency build`, which needs the network): {}", display, tail);
    }
    return UnknownError("{} failed: {}{}{}", display, r.Describe(), tail.empty() ? "" : ": ", tail);
  }
  GANTRY_ASSIGN_OR_RETURN(out.manifests, internal::ParseRendered(r.out, display, options.limits, helm));
  GANTRY_RETURN_IF_ERROR(internal::DecryptSops(out.manifests, options));
  if (!out.key.empty()) cache->Put(out.key, out.manifests, internal::ManifestBytes(out.manifests));
  return out;
}

// Jsonnet: every *.jsonnet file of the path (below it with recurse), one `jsonnet` process each on
// the private copy of the repository, within the one timeout of the render.
Result<Output> RenderJsonnet(const Plan& plan, const Options& options) {
  GANTRY_ASSIGN_OR_RETURN(std::string binary, FindRenderer(Renderer::kJsonnet, options.jsonnet_binary));
  GANTRY_ASSIGN_OR_RETURN(internal::PrivateDir tmp, internal::PrivateDir::Create(options.temp_dir));
  const fs::path copy = tmp.path() / "repo", home = tmp.path() / "home";
  std::error_code ec;
  for (const fs::path& d : {copy, home}) {
    fs::create_directories(d, ec);
    if (ec) return InternalError("create {}: {}", d.string(), ec.message());
  }
  internal::Materializer copier(plan.root, copy, options.limits, nullptr);
  for (const std::string& tree : plan.trees) GANTRY_RETURN_IF_ERROR(copier.AddTree(tree));
  const fs::path app = copy / plan.rel;
  GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> files,
                          internal::JsonnetFiles(app, options.jsonnet.recurse, options.limits));
  if (files.empty()) {
    return NotFoundError("{}: no *.jsonnet file{} (*.libsonnet files are libraries, not evaluated)",
                         Display(plan.rel), options.jsonnet.recurse ? " in it or below it" : " directly in it");
  }
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  size_t output_bytes = 0;
  Output out;
  for (const std::string& file : files) {
    const std::string name = plan.rel.empty() ? file : plan.rel + "/" + file;
    const std::string display = "jsonnet " + name;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return DeadlineExceededError("{}: did not finish within {} ms, the time a render may take", display,
                                   options.timeout.count());
    }
    internal::RendererRun run;
    run.binary = binary;
    GANTRY_ASSIGN_OR_RETURN(run.args, internal::JsonnetArgs(app / file, copy, options.jsonnet));
    run.cwd = app;
    run.private_dir = tmp.path();
    // No JSONNET_PATH: library paths are only the ones given, inside the copy.
    run.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"HOME", home.string()}, {"LANG", "C.UTF-8"}};
    run.sandbox = options.sandbox;
    run.bwrap_binary = options.bwrap_binary;
    run.timeout = left;
    run.max_output_bytes = options.limits.max_total_bytes - output_bytes;
    run.max_memory_bytes = options.limits.max_renderer_memory_bytes;
    GANTRY_ASSIGN_OR_RETURN(ProcessResult r, internal::RunRenderer(run));
    if (r.timed_out) {
      return DeadlineExceededError("{}: did not finish within {} ms, the time a render may take", display,
                                   options.timeout.count());
    }
    if (r.output_truncated) {
      return ResourceExhaustedError("{}: output larger than {} bytes (limit max_total_bytes)", display,
                                    options.limits.max_total_bytes);
    }
    if (!r.success()) {
      if (r.err.find("runtime: out of memory") != std::string::npos || GoRuntimeCrash(r.err, run.max_memory_bytes)) {
        return ResourceExhaustedError("{}: ran out of memory at {} bytes (limit max_renderer_memory_bytes)", display,
                                      options.limits.max_renderer_memory_bytes);
      }
      std::string tail = Tail(r.err.empty() ? r.out : r.err, copy);
      return UnknownError("{} failed: {}{}{}", display, r.Describe(), tail.empty() ? "" : ": ", tail);
    }
    output_bytes += r.out.size();
    GANTRY_RETURN_IF_ERROR(internal::AddJsonnetOutput(r.out, display, options.limits, out.manifests));
  }
  return out;
}

Result<Output> RenderLocalPlain(const Plan& plan, const Options& options) {
  std::string parent = plan.is_dir ? plan.rel : fs::path(plan.rel).parent_path().string();
  GANTRY_ASSIGN_OR_RETURN(internal::PlainResult r,
                          internal::ReadPlain(plan.dir, options.limits, parent.empty() ? "" : parent + "/"));
  Output out;
  out.manifests = std::move(r.manifests);
  return out;
}

}  // namespace

std::string_view RendererName(Renderer r) {
  switch (r) {
    case Renderer::kAuto: return "auto";
    case Renderer::kPlain: return "plain";
    case Renderer::kKustomize: return "kustomize";
    case Renderer::kHelm: return "helm";
    case Renderer::kJsonnet: return "jsonnet";
  }
  return "unknown";
}

std::optional<Renderer> ParseRenderer(std::string_view name) {
  for (Renderer r : {Renderer::kAuto, Renderer::kPlain, Renderer::kKustomize, Renderer::kHelm, Renderer::kJsonnet}) {
    if (name == RendererName(r)) return r;
  }
  if (name.empty()) return Renderer::kAuto;
  return std::nullopt;
}

Renderer Detect(const fs::path& dir) {
  if (!internal::KustomizationName(dir).empty()) return Renderer::kKustomize;
  std::error_code ec;
  if (fs::exists(fs::symlink_status(dir / "Chart.yaml", ec))) return Renderer::kHelm;
  // Jsonnet: the names of every file below the directory (bounded: a huge tree stays plain).
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (files.size() >= Limits{}.max_files) return Renderer::kPlain;
    std::string rel = it->path().lexically_relative(dir).string();
    if (it->is_directory(ec)) {
      if (it->path().filename().string().starts_with('.')) it.disable_recursion_pending();
      continue;
    }
    files.push_back(std::move(rel));
  }
  if (!ec && internal::JsonnetDetected(files)) return Renderer::kJsonnet;
  return Renderer::kPlain;
}

void RenderCache::DropLeastRecent() {
  stats_.bytes -= lru_.back().bytes;
  index_.erase(lru_.back().key);
  lru_.pop_back();
}

void RenderCache::DropIdle(std::chrono::steady_clock::time_point now) {
  if (max_idle_.count() <= 0) return;
  while (!lru_.empty() && now - lru_.back().used > max_idle_) DropLeastRecent();
}

std::optional<std::vector<Manifest>> RenderCache::Get(const std::string& key) {
  const auto now = clock_->Now();
  MutexLock lock(mu_);
  DropIdle(now);
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++stats_.misses;
    return std::nullopt;
  }
  ++stats_.hits;
  it->second->used = now;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->manifests;
}

void RenderCache::Put(const std::string& key, std::vector<Manifest> manifests, size_t bytes) {
  const auto now = clock_->Now();
  MutexLock lock(mu_);
  DropIdle(now);
  if (auto it = index_.find(key); it != index_.end()) {
    stats_.bytes -= it->second->bytes;
    lru_.erase(it->second);
    index_.erase(it);
  }
  if (bytes > max_bytes_) return;
  while (!lru_.empty() && stats_.bytes + bytes > max_bytes_) DropLeastRecent();
  lru_.push_front(Entry{key, std::move(manifests), bytes, now});
  index_[key] = lru_.begin();
  stats_.bytes += bytes;
}

RenderCache::Stats RenderCache::stats() const {
  MutexLock lock(mu_);
  Stats s = stats_;
  s.entries = lru_.size();
  return s;
}

Result<std::vector<Manifest>> Render(const Source& source, const Options& options) {
  return Render(source, options, nullptr, "");
}

Result<std::vector<Manifest>> Render(const Source& source, const Options& options, RenderCache* cache,
                                     std::string_view content_key) {
  GANTRY_ASSIGN_OR_RETURN(internal::Keyed r, internal::RenderKeyed(source, options, cache, content_key, false));
  return std::move(r.manifests);
}

namespace internal {

Result<Keyed> RenderKeyed(const Source& source, const Options& options, RenderCache* cache,
                          std::string_view content_key, bool key_checked) {
  GANTRY_ASSIGN_OR_RETURN(Plan plan, MakePlan(source, options));
  Keyed out;
  if (plan.renderer != Renderer::kPlain && plan.renderer != Renderer::kJsonnet) {
    // The unextended key first, before the renderer is even looked for: only renders that read
    // nothing beyond the repository are stored under it.
    if (cache != nullptr && !content_key.empty() && !key_checked) {
      out.key = CacheKey(content_key, plan, options);
      if (auto hit = cache->Get(out.key)) {
        out.manifests = std::move(*hit);
        out.hit = true;
        return out;
      }
    }
    return RenderExternal(plan, options, cache, content_key, true);
  }
  if (cache != nullptr && !content_key.empty()) {
    out.key = CacheKey(content_key, plan, options);
    if (!key_checked) {
      if (auto hit = cache->Get(out.key)) {
        out.manifests = std::move(*hit);
        out.hit = true;
        return out;
      }
    }
  }
  // Plain and Jsonnet read only the repository: the unextended key is theirs.
  GANTRY_ASSIGN_OR_RETURN(out, plan.renderer == Renderer::kJsonnet ? RenderJsonnet(plan, options)
                                                                    : RenderLocalPlain(plan, options));
  GANTRY_RETURN_IF_ERROR(internal::DecryptSops(out.manifests, options));
  if (cache != nullptr && !content_key.empty()) {
    out.key = CacheKey(content_key, plan, options);
    cache->Put(out.key, out.manifests, internal::ManifestBytes(out.manifests));
  }
  return out;
}

}  // namespace internal

Result<std::string> LocalContentKey(const Source& source, const Options& options) {
  GANTRY_ASSIGN_OR_RETURN(Plan plan, MakePlan(source, options));
  Sha256 hash;
  hash.Update(fmt::format("gantry-local-content-v1 {}\n", RendererName(plan.renderer)));
  internal::Materializer walker(plan.root, fs::path(), options.limits, &hash);
  if (!plan.is_dir) {
    GANTRY_RETURN_IF_ERROR(walker.AddFile(plan.rel, plan.rel));
  } else {
    for (const std::string& tree : plan.trees) GANTRY_RETURN_IF_ERROR(walker.AddTree(tree));
  }
  for (const auto& [rel, name] : plan.values) GANTRY_RETURN_IF_ERROR(walker.AddFile(rel, name));
  return hash.FinishHex();
}

}  // namespace gantry::render

#include "server/previews.h"

#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "api/application.h"
#include "base/log.h"
#include "ci/server.h"
#include "forge/forge.h"
#include "git/git.h"
#include "project/project.h"
#include "release/release.h"
#include "server/app_resources.h"
#include "update/update.h"

namespace gantry::server {
namespace {

using value::Value;

// An object's identity across renders and the cluster: group, kind, namespace, name.
std::string Key(std::string_view api_version, std::string_view kind, std::string_view ns, std::string_view name) {
  return fmt::format("{}/{}/{}/{}", kube::SplitApiVersion(api_version).first, kind, ns, name);
}

// The rendered objects by Key (as rendered: a namespaced object may lack its namespace).
using Objects = std::map<std::string, Value>;
Objects ByKey(const std::vector<Value>& objects) {
  Objects out;
  for (const Value& o : objects) {
    const kube::ObjectRef r = kube::RefOf(o);
    out.emplace(Key(r.api_version, r.kind, r.namespace_, r.name), o);
  }
  return out;
}

// The rendered object of `ref`, which the cluster names with its namespace: the render may have
// left it out (the default namespace).
const Value* Lookup(const Objects& objects, const kube::ObjectRef& ref, std::string_view default_namespace) {
  auto it = objects.find(Key(ref.api_version, ref.kind, ref.namespace_, ref.name));
  if (it == objects.end() && ref.namespace_ == default_namespace) it = objects.find(Key(ref.api_version, ref.kind, "", ref.name));
  return it == objects.end() ? nullptr : &it->second;
}

struct Rendering {
  Result<render::Rendered> head = UnknownError("not rendered");
  Result<render::Rendered> base = UnknownError("not rendered");
};

// A target's objects from the diff document of its head (DiffAgainst) and the two renders.
void FromDiff(const Value& doc, const Rendering& r, std::string_view default_namespace, TargetPreview& t) {
  t.compared = value::StringAt(&doc, {"compared"});
  t.compared_note = value::StringAt(&doc, {"compared_note"});
  const Objects head = ByKey(r.head->objects);
  const Objects base = r.base.ok() ? ByKey(r.base->objects) : Objects{};
  for (const Value& item : doc.Get("items")->items()) {
    const std::string sync = value::StringAt(&item, {"sync"});
    if (sync == "Synced") {
      ++t.unchanged;
      continue;
    }
    const std::string group = value::StringAt(&item, {"group"}), version = value::StringAt(&item, {"version"});
    ObjectPreview o{.ref = {.api_version = group.empty() ? version : group + "/" + version,
                            .kind = value::StringAt(&item, {"kind"}),
                            .namespace_ = value::StringAt(&item, {"namespace"}),
                            .name = value::StringAt(&item, {"name"})},
                    .change = sync == "Missing" ? Change::kAdded : sync == "Extra" ? Change::kRemoved : Change::kChanged,
                    .diff = value::StringAt(&item, {"diff"}),
                    .refused = value::StringAt(&item, {"refused"})};
    const Value* want = Lookup(head, o.ref, default_namespace);
    const Value* was = Lookup(base, o.ref, default_namespace);
    const Value* live = item.Get("live");
    if (live != nullptr && live->IsNull()) live = nullptr;
    o.in_pull_request = (want == nullptr) != (was == nullptr) || (want != nullptr && value::ToJson(*want) != value::ToJson(*was));
    if (o.change != Change::kRemoved) o.callouts = HealthCallouts(live, want);
    t.objects.push_back(std::move(o));
  }
  std::stable_sort(t.objects.begin(), t.objects.end(), [](const ObjectPreview& a, const ObjectPreview& b) {
    return std::tuple(!a.in_pull_request, a.change, a.ref) < std::tuple(!b.in_pull_request, b.change, b.ref);
  });
}

// Compares the head's objects with the cluster under `project`, as a sync would: each object the
// project refuses (its kind or namespace; checked one by one, so that every one is named) and an
// image its verification rules refuse are the target's violations, and the rest is diffed with a
// server-side dry run.
void CompareUnder(kube::Client& client, const project::Project& project, sync::Options options,
                  const sync::ImageCheck& check_images, const Rendering& r, TargetPreview& t) {
  std::vector<Value> allowed;
  for (const Value& object : r.head->objects) {
    const value::Mark at = object.mark();
    project::Object o{.ref = kube::RefOf(object), .source = at.file.empty() ? "" : fmt::format("{}:{}", at.file, at.line)};
    auto info = client.Resolve(o.ref.api_version, o.ref.kind);
    o.namespaced = !info.ok() || info->namespaced;  // a kind not served yet (its CRD comes along): namespaced
    if (!o.namespaced) o.ref.namespace_.clear();
    if (o.namespaced && o.ref.namespace_.empty()) o.ref.namespace_ = options.default_namespace;
    if (Status s = project::CheckObjects(project, options.cluster_server, options.cluster_name, {&o, 1}); !s.ok()) {
      t.violations.push_back(std::string(s.message()));
    } else {
      allowed.push_back(object);
    }
  }
  if (check_images) {
    std::vector<Value> copies = allowed;  // the check may pin tags to digests: the diff shows the render
    std::vector<Value*> objects;
    for (Value& o : copies) objects.push_back(&o);
    if (Status s = check_images(objects); !s.ok()) t.violations.push_back(std::string(s.message()));
  }
  options.project = &project;
  auto doc = DiffAgainst(client, allowed, options, /*dry_run=*/true);
  if (doc.ok()) {
    FromDiff(*doc, r, options.default_namespace, t);
  } else {
    t.error = std::string(doc.status().message());
  }
}

// The project of a pull cluster's Application, as its agent reads it: the Project of that name in
// the Application's namespace ("default" without one: project::DefaultProject()). A missing or
// invalid Project is an error, which its agent refuses the Application for.
Result<project::Project> PullProject(kube::Client& client, const api::Application& app) {
  auto object = client.Get({project::kApiVersion, project::kKind, app.namespace_, app.project});
  if (!object.ok() && object.status().code() == Code::kNotFound && app.project == "default") {
    return project::DefaultProject();
  }
  if (!object.ok()) {
    return object.status().WithContext(fmt::format("project {} of Application {}/{}", app.project, app.namespace_, app.name));
  }
  return project::ParseProject(*object);
}

// Whether neither revision has the path: then there is nothing to preview.
bool NeitherHasIt(const Rendering& r) {
  return !r.head.ok() && !r.base.ok() && r.head.status().code() == Code::kNotFound &&
         r.base.status().code() == Code::kNotFound;
}

// The image verification of `project`'s rules in `env` (deliver::Config::image_check), if any.
sync::ImageCheck ImagesOf(const PreviewRequest& q, const project::Project& project, const std::string& env,
                          kube::Client& client) {
  return q.config->image_check ? q.config->image_check(project, env, client) : nullptr;
}

// Connects to each cluster once; a cluster that cannot be reached is remembered with why.
class Clients {
 public:
  explicit Clients(const deliver::ConnectFn& connect) : connect_(connect) {}
  Result<kube::Client*> Of(const deliver::Cluster& cluster) {
    if (auto it = unreachable_.find(cluster.name); it != unreachable_.end()) return UnavailableError("{}", it->second);
    if (auto it = clients_.find(cluster.name); it != clients_.end()) return it->second.get();
    auto client = connect_(cluster);
    if (!client.ok()) {
      unreachable_[cluster.name] = std::string(client.status().message());
      return client.status();
    }
    return (clients_[cluster.name] = *std::move(client)).get();
  }

 private:
  const deliver::ConnectFn& connect_;
  std::map<std::string, std::unique_ptr<kube::Client>> clients_;
  std::map<std::string, std::string> unreachable_;  // cluster → why
};

// The pull clusters of `env`: its explicit list's, else those naming it.
std::vector<const deliver::Cluster*> PullClustersOf(const deliver::Config& config, const deliver::Environment& env) {
  std::vector<const deliver::Cluster*> out;
  for (const deliver::Cluster& c : config.clusters) {
    const bool listed = env.clusters.empty()
                            ? c.environment == env.name
                            : std::find(env.clusters.begin(), env.clusters.end(), c.name) != env.clusters.end();
    if (c.pull && listed) out.push_back(&c);
  }
  return out;
}

// The targets of one pull cluster: each Application whose source is the config repository,
// rendered as its agent renders it at the base and the head, compared as its agent compares.
void PreviewPullCluster(const PreviewRequest& q, const deliver::Cluster& cluster, Clients& clients,
                        std::chrono::steady_clock::time_point fetched_after, Preview& p) {
  TargetPreview failed{.environment = cluster.environment, .cluster = cluster.name, .pull = true};
  auto client = clients.Of(cluster);
  Result<kube::ObjectList> applications = client.ok() ? (*client)->List(api::kApiVersion, api::kKind, "")
                                                       : Result<kube::ObjectList>(client.status());
  if (!applications.ok()) {
    failed.error = fmt::format("list the Applications of pull cluster {}: {}", cluster.name, applications.status().message());
    p.targets.push_back(std::move(failed));
    return;
  }
  std::string cluster_server;
  if (auto rest = kube::LoadConfig({.paths = {cluster.kubeconfig}, .context = cluster.context}); rest.ok()) {
    cluster_server = rest->server;
  }
  const std::vector<std::string> repos = q.pull_repos.empty() ? std::vector<std::string>{q.config_repo} : q.pull_repos;
  const auto allow = [&repos](std::string_view url) -> Status {
    if (std::find(repos.begin(), repos.end(), url) != repos.end()) return OkStatus();
    return PermissionDeniedError("{} is not a config repository of this server", git::ScrubUrl(url));
  };
  const ci::RepoLocation config_repo = ci::LocateRepo(q.config_repo);
  for (const Value& object : applications->items) {
    auto app = api::ParseApplication(object);
    if (!app.ok() || ci::LocateRepo(app->source.repo_url) != config_repo) continue;
    TargetPreview t{.app = app->namespace_ + "/" + app->name, .environment = cluster.environment, .cluster = cluster.name,
                    .path = app->source.path, .pull = true};
    if (!q.fork.empty()) {
      t.error = fmt::format("the head is on the fork {}, and Applications are rendered from the config repositories of "
                            "this server only",
                            git::ScrubUrl(q.fork));
      p.targets.push_back(std::move(t));
      continue;
    }
    auto render_at = [&](const std::string& revision) -> Result<render::Rendered> {
      api::Application at = *app;
      at.source.target_revision = revision;
      GANTRY_ASSIGN_OR_RETURN(std::string commit, q.pull_source->Resolve(at, fetched_after));
      GANTRY_ASSIGN_OR_RETURN(render::Rendered rendered, q.pull_source->Render(at, commit, allow));
      rendered.commit = commit;
      return rendered;
    };
    Rendering r{.head = render_at(q.predict ? q.base : q.head), .base = render_at(q.base)};
    if (q.predict && r.head.ok()) {
      q.predict(app->source.path, r.head->objects);
      r.head->commit = q.head;
    }
    if (NeitherHasIt(r)) continue;
    if (r.head.ok()) p.head = r.head->commit;
    if (r.base.ok()) p.base = r.base->commit;
    if (!r.head.ok()) {
      t.error = fmt::format("render {} at {}: {}", t.path, q.head, r.head.status().message());
      p.targets.push_back(std::move(t));
      continue;
    }
    auto options = agent::SyncOptionsFor(
        *app, {.home_namespace = app->namespace_, .cluster_server = cluster_server, .cluster_name = cluster.name}, nullptr,
        nullptr);
    auto project = PullProject(**client, *app);
    if (!options.ok() || !project.ok()) {
      t.error = std::string((options.ok() ? project.status() : options.status()).message());
      p.targets.push_back(std::move(t));
      continue;
    }
    // The Application itself, as its agent checks it before rendering.
    const std::string& server = app->destination_server.empty() ? cluster_server : app->destination_server;
    const std::string& name = app->destination_name.empty() ? cluster.name : app->destination_name;
    for (const Status& s : {project::CheckSourceRepo(*project, app->source.repo_url),
                            project::CheckAppNamespace(*project, app->namespace_),
                            project::CheckDestination(*project, server, name, app->destination_namespace)}) {
      if (!s.ok()) t.violations.push_back(std::string(s.message()));
    }
    CompareUnder(**client, *project, *std::move(options), ImagesOf(q, *project, cluster.environment, **client), r, t);
    p.targets.push_back(std::move(t));
  }
}

}  // namespace

Result<Preview> ComputePreview(const PreviewRequest& q) {
  if (q.config == nullptr || !q.render || !q.connect) {
    return InvalidArgumentError("preview: the topology, a config repository and cluster connections are required");
  }
  if (q.apps.empty() && q.pull_source == nullptr) {
    return InvalidArgumentError("preview: no application to preview (name one with --app)");
  }
  GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> order, deliver::PromotionOrder(*q.config));
  if (!q.only_env.empty() && std::find(order.begin(), order.end(), q.only_env) == order.end()) {
    return NotFoundError("preview: no environment {:?} (there are: {})", q.only_env, fmt::join(order, ", "));
  }
  Preview p{.base = q.base, .head = q.head, .predicted = q.predicted};
  Clients clients(q.connect);
  const auto started = std::chrono::steady_clock::now();  // one fetch serves every pull Application
  for (const std::string& env : order) {
    if (!q.only_env.empty() && env != q.only_env) continue;
    const deliver::Environment* e = q.config->FindEnvironment(env);
    for (const auto& [app, project] : q.apps) {
      GANTRY_ASSIGN_OR_RETURN(std::string path, deliver::ExpandPathTemplate(q.path_template, app, env));
      const deliver::RenderTarget where{.namespace_ = q.default_namespace};
      Rendering r{.head = q.render(q.head, path, where), .base = q.render(q.base, path, where)};
      if (NeitherHasIt(r)) continue;
      if (r.head.ok()) p.head = r.head->commit.empty() ? p.head : r.head->commit;
      if (r.base.ok()) p.base = r.base->commit.empty() ? p.base : r.base->commit;
      for (const deliver::Cluster* cluster : q.config->ClustersOf(*e)) {
        TargetPreview t{.app = app, .environment = env, .cluster = cluster->name, .path = path};
        if (!r.head.ok()) {
          t.error = fmt::format("render {} at {}: {}", path, q.head, r.head.status().message());
        } else if (auto client = clients.Of(*cluster); !client.ok()) {
          t.error = std::string(client.status().message());
        } else {
          const PushTarget target{.app = app, .project = project, .config = q.config, .cluster = cluster,
                                  .environment = env, .config_revision = q.head, .render = q.render,
                                  .path_template = q.path_template, .default_namespace = q.default_namespace};
          auto desired = DesiredOf(**client, target);
          if (desired.ok()) {
            // Rendered for this cluster (a Helm chart with its Capabilities).
            const Rendering here{.head = render::Rendered{.commit = r.head->commit, .objects = std::move(desired->objects)},
                                 .base = r.base};
            CompareUnder(**client, desired->project, std::move(desired->options), ImagesOf(q, desired->project, env, **client),
                         here, t);
          } else {
            t.error = std::string(desired.status().message());
          }
        }
        p.targets.push_back(std::move(t));
      }
    }
    if (q.pull_source == nullptr) continue;
    for (const deliver::Cluster* cluster : PullClustersOf(*q.config, *e)) {
      PreviewPullCluster(q, *cluster, clients, started, p);
    }
  }
  return p;
}

render::Options UntrustedRender(render::Options o) {
  o.charts = nullptr;
  o.allow_repository = [](std::string_view url) -> Status {
    return PermissionDeniedError("the head of a pull request from a fork renders nothing beyond its own repository, so {} "
                                 "is not fetched",
                                 git::ScrubUrl(url));
  };
  o.kustomize.remote_hosts.clear();
  o.kustomize.fetch_remote = nullptr;
  o.kustomize.fetch_chart = nullptr;
  o.sops.age_keys.clear();
  o.check_commit = nullptr;
  o.sandbox = render::Sandbox::kRequire;
  return o;
}

namespace {

// The head repository of a pull request from a fork or to an app repository: a mirror of its own,
// fetched without credentials, removed (with its directory) when this ends.
class HeadMirror {
 public:
  static Result<std::unique_ptr<HeadMirror>> Fetch(const std::filesystem::path& parent, const std::string& url,
                                                   bool allow_file) {
    std::error_code ec;
    const std::filesystem::path base = parent.empty() ? std::filesystem::temp_directory_path(ec) : parent;
    std::filesystem::create_directories(base, ec);
    std::string dir = (base / "head-XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) {
      return InternalError("create a directory for the fork's mirror under {}: {}", base.string(), std::strerror(errno));
    }
    auto fork = std::unique_ptr<HeadMirror>(new HeadMirror(dir));
    GANTRY_ASSIGN_OR_RETURN(fork->repo_, fork->mirrors_.Open(url, {.allow_file = allow_file}));
    GANTRY_RETURN_IF_ERROR(fork->repo_->Fetch().status());
    return fork;
  }
  ~HeadMirror() {
    repo_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::shared_ptr<git::Repository> repo() const { return repo_; }

 private:
  explicit HeadMirror(std::filesystem::path dir) : dir_(std::move(dir)), mirrors_(dir_) {}
  std::filesystem::path dir_;
  git::Mirrors mirrors_;
  std::shared_ptr<git::Repository> repo_;
};

// Whether a release to config path `under` ("" : the whole repository) rewrites what is rendered
// from `path`: one holds the other.
bool Overlaps(std::string_view under, std::string_view path) {
  auto clean = [](std::string_view p) {
    while (p.starts_with("./")) p.remove_prefix(2);
    while (p.ends_with('/')) p.remove_suffix(1);
    return p == "." ? std::string_view() : p;
  };
  under = clean(under);
  path = clean(path);
  return under.empty() || path.empty() || path == under || path.starts_with(std::string(under) + "/") ||
         under.starts_with(std::string(path) + "/");
}

// Sets every container image (init containers too) of repository `name` (update::NormalizeName's
// form) in a workload to `reference`.
void SetImages(Value& object, const std::string& name, const std::string& reference) {
  const std::vector<std::string> path = PodSpecPath(value::StringAt(&object, {"kind"}));
  Value* spec = path.empty() ? nullptr : &object;
  for (const std::string& key : path) spec = spec == nullptr ? nullptr : spec->MutableGet(key);
  if (spec == nullptr) return;
  for (const char* list : {"initContainers", "containers"}) {
    Value* containers = spec->MutableGet(list);
    if (containers == nullptr || !containers->IsSeq()) continue;
    for (size_t i = 0; i < containers->items().size(); ++i) {
      Value* c = containers->MutableAt(i);
      auto ref = update::ParseImageRef(value::StringAt(c, {"image"}));
      if (ref.ok() && update::NormalizeName(ref->name) == name) c->Set("image", reference);
    }
  }
}

// Makes `q` the preview of the release the head of a pull request to app repository `repo` would
// make (PreviewRequest::predict): the pipeline at the head, its image's first tag for the head
// commit, set in the config repository at release.branch under release.path. False when the
// pipeline releases nothing into the config repository (no image:, no release:, another
// repository) or there is none. Errors: reading or parsing the pipeline, expanding the tag.
Result<bool> PredictRelease(git::Repository& repo, const webhook::PullRequest& pr, const std::string& config_repo,
                            PreviewRequest& q) {
  constexpr char kPipeline[] = ".gantry/pipeline.yaml";
  auto file = repo.ReadTree(pr.head_sha, kPipeline);
  if (!file.ok() && file.status().code() == Code::kNotFound) return false;
  GANTRY_RETURN_IF_ERROR(file.status().WithContext(fmt::format("read {} at {}", kPipeline, pr.head_sha)));
  if (file->files.size() != 1) return false;
  GANTRY_ASSIGN_OR_RETURN(ci::Pipeline pipeline, ci::ParsePipeline(file->files.front().content, kPipeline));
  if (!pipeline.image || !pipeline.release || ci::LocateRepo(pipeline.release->repo) != ci::LocateRepo(config_repo)) {
    return false;
  }
  const ci::ImageSpec& image = *pipeline.image;
  const ci::ReleaseSpec& release = *pipeline.release;
  GANTRY_ASSIGN_OR_RETURN(std::string tag, release::ExpandTag(image.tags.empty() ? "{short_commit}" : image.tags.front(),
                                                              {.repo = repo.url(), .commit = pr.head_sha,
                                                               .ref = "refs/heads/" + pr.base_ref}));
  const std::string reference = image.repository + ":" + tag;
  q.base = release.branch;
  q.predicted = fmt::format("This pull request is to the app repository {}: once it is merged, its pipeline releases {} "
                            "into {} of the config repository (branch {}). Below is what that release would change, "
                            "from the config repository as it is now; the tag is the one the head commit would get.",
                            git::ScrubUrl(repo.url()), reference, release.path.empty() ? "the whole" : release.path,
                            release.branch);
  q.predict = [name = update::NormalizeName(image.repository), reference, under = release.path](
                  const std::string& path, std::vector<Value>& objects) {
    if (!Overlaps(under, path)) return;
    for (Value& o : objects) SetImages(o, name, reference);
  };
  // Push targets render `head` through `render`: the base, changed.
  q.render = [render = std::move(q.render), head = q.head, base = q.base, predict = q.predict](
                 std::string_view revision, const std::string& path,
                 const deliver::RenderTarget& target) -> Result<render::Rendered> {
    if (revision != head) return render(revision, path, target);
    GANTRY_ASSIGN_OR_RETURN(render::Rendered r, render(base, path, target));
    predict(path, r.objects);
    r.commit = head;
    r.content_key.clear();
    return r;
  };
  return true;
}

}  // namespace

Previews::Previews(PreviewsOptions options, bool start)
    : options_(std::move(options)), clock_(options_.clock != nullptr ? *options_.clock : SystemClock()) {
  GANTRY_CHECK(options_.store != nullptr && options_.config != nullptr && options_.renderer && options_.connect);
  if (!start) return;
  thread_ = std::thread([this] {
    while (true) {
      webhook::Event e;
      {
        MutexLock lock(mu_);
        while (!stop_ && queue_.empty()) cv_.Wait(mu_);
        if (stop_) return;
        e = std::move(queue_.front());
        queue_.pop_front();
      }
      if (Status s = Handle(e); !s.ok()) {
        log::Warn("preview of pull request {} of {}: {}", e.pull_request->number, e.repo_full_name, s.ToString());
      }
    }
  });
}

Previews::~Previews() { Stop(); }

void Previews::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
    cv_.NotifyAll();
  }
  if (thread_.joinable()) thread_.join();
}

std::optional<Previews::Located> Previews::Locate(const webhook::Event& e) const {
  if (e.kind != webhook::Kind::kPullRequest || !e.pull_request) return std::nullopt;
  const webhook::PrAction a = e.pull_request->normalized_action;
  if (a != webhook::PrAction::kOpened && a != webhook::PrAction::kSynchronized && a != webhook::PrAction::kReopened) {
    return std::nullopt;
  }
  std::string url, app_repo;
  if (!options_.config_repo.empty() && ci::SameRepo(options_.config_repo, e)) url = options_.config_repo;
  for (const std::string& repo : options_.app_repos) {
    if (url.empty() && ci::SameRepo(repo, e)) url = app_repo = repo;
  }
  if (url.empty()) return std::nullopt;
  for (const ForgeConfig& f : options_.forges) {
    if (auto path = forge::RepoPath(f.prefix, url)) return Located{.forge = f.prefix, .repo = *path, .app_repo = app_repo};
  }
  return std::nullopt;
}

bool Previews::Offer(const webhook::Event& e) {
  if (!Locate(e)) return false;
  MutexLock lock(mu_);
  // The newest head of a pull request replaces one still waiting.
  std::erase_if(queue_, [&](const webhook::Event& q) {
    return q.pull_request->number == e.pull_request->number && q.repo_full_name == e.repo_full_name;
  });
  queue_.push_back(e);
  cv_.NotifyAll();
  return true;
}

Status Previews::Handle(const webhook::Event& e) {
  const auto where = Locate(e);
  if (!where) return InvalidArgumentError("not a pull request of the config repository on a forge");
  const webhook::PullRequest& pr = *e.pull_request;
  PreviewRequest q{.config = options_.config, .render = options_.renderer(), .connect = options_.connect,
                   .base = pr.base_ref, .head = pr.head_sha, .path_template = options_.path_template,
                   .pull_source = options_.pull_source, .config_repo = options_.config_repo,
                   .pull_repos = options_.pull_repos};
  GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> apps, options_.store->ListApps());
  for (const std::string& app : apps) {
    auto newest = options_.store->ListReleases(app, 1);
    std::string project = newest.ok() && !newest->empty() ? newest->front().project : "";
    q.apps.emplace_back(app, project.empty() ? "default" : project);
  }
  // The head of a fork or of an app repository: from a mirror of its own, as untrusted input.
  std::unique_ptr<HeadMirror> mirror;
  Status fetched;
  if (pr.from_fork || !where->app_repo.empty()) {
    const std::string url = !pr.head_clone_url.empty() ? pr.head_clone_url : where->app_repo;
    auto m = pr.from_fork && pr.head_clone_url.empty()
                 ? Result<std::unique_ptr<HeadMirror>>(FailedPreconditionError("the forge did not say which repository the head is on"))
                 : HeadMirror::Fetch(options_.fork_dir, url, options_.allow_file_repos);
    if (m.ok()) {
      mirror = *std::move(m);
    } else {
      fetched = m.status().WithContext(fmt::format("fetch the head from {}", git::ScrubUrl(url)));
    }
  }
  if (!where->app_repo.empty()) {
    // Most pull requests to app repositories release nothing into the config repository: no
    // comment unless it is known that this one does.
    GANTRY_RETURN_IF_ERROR(fetched);
    auto releases = PredictRelease(*mirror->repo(), pr, options_.config_repo, q);
    if (releases.ok() && !*releases) return OkStatus();  // its pipeline releases nothing into the config repository
    fetched = releases.status();
  } else if (fetched.ok() && pr.from_fork) {
    q.fork = pr.head_clone_url;
    q.render = [base = std::move(q.render), head = deliver::GitRenderFn(mirror->repo(), UntrustedRender(options_.render_options)),
                sha = pr.head_sha](std::string_view revision, const std::string& path, const deliver::RenderTarget& target) {
      return revision == sha ? head(revision, path, target) : base(revision, path, target);
    };
  }
  std::string body;
  if (!fetched.ok()) {
    body = fmt::format("{}\n### Gantry preview\n\nGantry could not preview `{}`: {}\n", kMarker, pr.head_sha.substr(0, 12),
                       fetched.message());
  } else if (q.apps.empty() && q.pull_source == nullptr) {
    body = fmt::format("{}\n### Gantry preview\n\nNothing to preview: no application has been released from this "
                       "server yet, so no target renders from `{}`.\n",
                       kMarker, options_.path_template);
  } else {
    auto preview = ComputePreview(q);
    if (preview.ok()) {
      body = Report(*preview, {.markdown = true,
                               .full_diff = q.predict ? "" : fmt::format("`gantry preview --repo {} --base {} --head {}`",
                                                                         options_.config_repo, preview->base, preview->head)});
    } else {
      body = fmt::format("{}\n### Gantry preview\n\nGantry could not preview `{}`: {}\n", kMarker, pr.head_sha.substr(0, 12),
                         preview.status().message());
    }
  }
  const auto now = clock_.WallNow();
  return options_.store
      ->PutForgeStatus({.forge = where->forge,
                        .repo = where->repo,
                        .sha = fmt::format("pull/{}", pr.number),
                        .context = std::string(kCommentContext),
                        .state = "comment",
                        .description = std::move(body),
                        .next_attempt_at = now,
                        .deadline = now + options_.deadline})
      .status()
      .WithContext(fmt::format("put the preview of pull request {} into the outbox", pr.number));
}

}  // namespace gantry::server

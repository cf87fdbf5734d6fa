#include "server/previews.h"

#include <algorithm>
#include <map>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/log.h"
#include "ci/server.h"
#include "forge/forge.h"
#include "server/app_resources.h"

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

// One target from the engine's diff of the head (PushDiff) and the two renders.
TargetPreview Compare(kube::Client& client, const PushTarget& target, const Rendering& r, std::string path) {
  TargetPreview t{.app = target.app, .environment = target.environment, .cluster = target.cluster->name, .path = std::move(path)};
  auto doc = PushDiff(client, target);
  if (!doc.ok()) {
    t.error = std::string(doc.status().message());
    return t;
  }
  const Objects head = ByKey(r.head->objects);
  const Objects base = r.base.ok() ? ByKey(r.base->objects) : Objects{};
  for (const Value& item : doc->Get("items")->items()) {
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
                    .diff = value::StringAt(&item, {"diff"})};
    const Value* want = Lookup(head, o.ref, target.default_namespace);
    const Value* was = Lookup(base, o.ref, target.default_namespace);
    const Value* live = item.Get("live");
    if (live != nullptr && live->IsNull()) live = nullptr;
    o.in_pull_request = (want == nullptr) != (was == nullptr) || (want != nullptr && value::ToJson(*want) != value::ToJson(*was));
    if (o.change != Change::kRemoved) o.callouts = HealthCallouts(live, want);
    t.objects.push_back(std::move(o));
  }
  std::stable_sort(t.objects.begin(), t.objects.end(), [](const ObjectPreview& a, const ObjectPreview& b) {
    return std::tuple(!a.in_pull_request, a.change, a.ref) < std::tuple(!b.in_pull_request, b.change, b.ref);
  });
  return t;
}

}  // namespace

Result<Preview> ComputePreview(const PreviewRequest& q) {
  if (q.config == nullptr || !q.render || !q.connect) {
    return InvalidArgumentError("preview: the topology, a config repository and cluster connections are required");
  }
  if (q.apps.empty()) return InvalidArgumentError("preview: no application to preview (name one with --app)");
  GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> order, deliver::PromotionOrder(*q.config));
  if (!q.only_env.empty() && std::find(order.begin(), order.end(), q.only_env) == order.end()) {
    return NotFoundError("preview: no environment {:?} (there are: {})", q.only_env, fmt::join(order, ", "));
  }
  Preview p{.base = q.base, .head = q.head};
  std::map<std::string, std::unique_ptr<kube::Client>> clients;  // by cluster, connected once
  std::map<std::string, std::string> unreachable;                // cluster → why
  for (const std::string& env : order) {
    if (!q.only_env.empty() && env != q.only_env) continue;
    const deliver::Environment* e = q.config->FindEnvironment(env);
    for (const auto& [app, project] : q.apps) {
      GANTRY_ASSIGN_OR_RETURN(std::string path, deliver::ExpandPathTemplate(q.path_template, app, env));
      const deliver::RenderTarget where{.namespace_ = q.default_namespace};
      Rendering r{.head = q.render(q.head, path, where), .base = q.render(q.base, path, where)};
      if (!r.head.ok() && !r.base.ok() && r.head.status().code() == Code::kNotFound &&
          r.base.status().code() == Code::kNotFound) {
        continue;  // neither revision has this path: not a target
      }
      if (r.head.ok()) p.head = r.head->commit.empty() ? p.head : r.head->commit;
      if (r.base.ok()) p.base = r.base->commit.empty() ? p.base : r.base->commit;
      for (const deliver::Cluster* cluster : q.config->ClustersOf(*e)) {
        TargetPreview failed{.app = app, .environment = env, .cluster = cluster->name, .path = path};
        if (!r.head.ok()) {
          failed.error = fmt::format("render {} at {}: {}", path, q.head, r.head.status().message());
          p.targets.push_back(std::move(failed));
          continue;
        }
        if (!clients.contains(cluster->name) && !unreachable.contains(cluster->name)) {
          auto client = q.connect(*cluster);
          if (client.ok()) {
            clients[cluster->name] = *std::move(client);
          } else {
            unreachable[cluster->name] = std::string(client.status().message());
          }
        }
        if (auto it = unreachable.find(cluster->name); it != unreachable.end()) {
          failed.error = it->second;
          p.targets.push_back(std::move(failed));
          continue;
        }
        const PushTarget target{.app = app, .project = project, .config = q.config, .cluster = cluster,
                                .environment = env, .config_revision = q.head, .render = q.render,
                                .path_template = q.path_template, .default_namespace = q.default_namespace};
        p.targets.push_back(Compare(*clients[cluster->name], target, r, path));
      }
    }
  }
  return p;
}

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
  if (options_.config_repo.empty() || !ci::SameRepo(options_.config_repo, e)) return std::nullopt;
  for (const ForgeConfig& f : options_.forges) {
    if (auto path = forge::RepoPath(f.prefix, options_.config_repo)) return Located{.forge = f.prefix, .repo = *path};
  }
  return std::nullopt;
}

bool Previews::Offer(const webhook::Event& e) {
  if (!Locate(e)) return false;
  MutexLock lock(mu_);
  // The newest head of a pull request replaces one still waiting.
  std::erase_if(queue_, [&](const webhook::Event& q) { return q.pull_request->number == e.pull_request->number; });
  queue_.push_back(e);
  cv_.NotifyAll();
  return true;
}

Status Previews::Handle(const webhook::Event& e) {
  const auto where = Locate(e);
  if (!where) return InvalidArgumentError("not a pull request of the config repository on a forge");
  const webhook::PullRequest& pr = *e.pull_request;
  PreviewRequest q{.config = options_.config, .render = options_.renderer(), .connect = options_.connect,
                   .base = pr.base_ref, .head = pr.head_sha, .path_template = options_.path_template};
  GANTRY_ASSIGN_OR_RETURN(std::vector<std::string> apps, options_.store->ListApps());
  for (const std::string& app : apps) {
    auto newest = options_.store->ListReleases(app, 1);
    std::string project = newest.ok() && !newest->empty() ? newest->front().project : "";
    q.apps.emplace_back(app, project.empty() ? "default" : project);
  }
  std::string body;
  if (q.apps.empty()) {
    body = fmt::format("{}\n### Gantry preview\n\nNothing to preview: no application has been released from this "
                       "server yet, so no target renders from `{}`.\n",
                       kMarker, options_.path_template);
  } else {
    auto preview = ComputePreview(q);
    if (preview.ok()) {
      body = Report(*preview, {.markdown = true,
                               .full_diff = fmt::format("`gantry preview --repo {} --base {} --head {}`",
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

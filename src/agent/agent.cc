// The agent's loop: Applications from the cluster (list+watch) or from files, a work queue with
// workers, periodic refresh, drift from the watch cache of managed objects, leader election
// (internal/leader.h) or sharding over member Leases (internal/shard.h), and the webhook and
// metrics listeners.

#include <malloc.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "agent/agent.h"
#include "project/glob.h"
#include "agent/internal/leader.h"
#include "agent/internal/shard.h"
#include "agent/internal/workqueue.h"
#include "api/status.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/mutex.h"
#include "http/http.h"
#include "http/metrics.h"
#include "render/render.h"
#include "server/front.h"
#include "webhook/webhook.h"

namespace gantry::agent {
namespace {

using value::StringAt;
using value::Value;
using SteadyClock = std::chrono::steady_clock;
namespace fs = std::filesystem;

std::string Key(const std::string& ns, const std::string& name) { return ns + "/" + name; }

// A repository URL reduced to host and path, so that the https and ssh URLs of a webhook match the
// repoURL an Application names: "https://Git.example.com/org/app.git/" → "git.example.com/org/app".
std::string RepoIdentity(std::string url) {
  if (size_t scheme = url.find("://"); scheme != std::string::npos) url = url.substr(scheme + 3);
  if (size_t at = url.find('@'); at != std::string::npos && at < url.find('/')) url = url.substr(at + 1);
  // scp-like git@host:org/app.git
  if (size_t colon = url.find(':'); colon != std::string::npos && colon < url.find('/')) {
    std::string after = url.substr(colon + 1);
    bool port = !after.empty() && std::all_of(after.begin(), after.begin() + std::min(after.find('/'), after.size()),
                                              [](char c) { return c >= '0' && c <= '9'; });
    url = port ? url.substr(0, colon) + url.substr(colon + 1 + after.find('/')) : url.substr(0, colon) + "/" + after;
  }
  while (url.ends_with('/')) url.pop_back();
  if (url.ends_with(".git")) url.resize(url.size() - 4);
  size_t slash = url.find('/');
  for (size_t i = 0; i < std::min(slash, url.size()); ++i) url[i] = static_cast<char>(std::tolower(url[i]));
  return url;
}

// Prometheus metrics of the agent.
struct Metrics {
  http::Registry registry;
  http::Family<http::Counter>& reconciles =
      registry.AddCounterFamily("gantry_agent_reconciles_total", "Reconciles by result", {"result"});
  http::Family<http::Counter>& syncs =
      registry.AddCounterFamily("gantry_agent_syncs_total", "Sync operations by result", {"result"});
  http::Histogram& reconcile_seconds = registry.AddHistogram(
      "gantry_agent_reconcile_duration_seconds", "Duration of one reconcile", http::DefaultBuckets());
  http::Histogram& webhook_to_applied = registry.AddHistogram(
      "gantry_agent_webhook_to_applied_seconds",
      "From a push webhook to its commit applied and in sync (webhook-triggered syncs)",
      {0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120});
  http::Gauge& queue_depth = registry.AddGauge("gantry_agent_queue_depth", "Applications waiting in the work queue");
  http::Gauge& applications = registry.AddGauge("gantry_agent_applications", "Applications known to the agent");
  http::Gauge& leader = registry.AddGauge("gantry_agent_leader", "1 while this agent holds the lease");
  http::Counter& webhooks = registry.AddCounter("gantry_agent_webhooks_total", "Verified push webhooks");
  http::Gauge& api_requests =
      registry.AddGauge("gantry_agent_api_requests", "Kubernetes API requests made since the agent started");
  http::Counter& unchanged = registry.AddCounter(
      "gantry_agent_reconciles_unchanged_total",
      "Reconciles (counted in gantry_agent_reconciles_total too) that found the Application, its commit and its "
      "cached live objects unchanged since a comparison that was in sync, so did not render or compare again");
  http::Counter& renders = registry.AddCounter(
      "gantry_agent_renders_total", "Renders of an application's source (from the render cache or not)");
  http::Gauge& renderer_runs = registry.AddGauge(
      "gantry_agent_renderer_runs", "Renders that missed the render cache, since the agent started");
  http::Gauge& cached_objects = registry.AddGauge("gantry_agent_cached_objects", "Objects held by the watch caches");
  http::Gauge& shard_members =
      registry.AddGauge("gantry_agent_shard_members", "Live agent replicas this one sees (--shard)");
  http::Gauge& shard_owned = registry.AddGauge(
      "gantry_agent_shard_applications", "Applications this replica holds the claim of (--shard)");
  http::Counter& shard_rebalances = registry.AddCounter(
      "gantry_agent_shard_rebalances_total", "Changes of the live replicas seen after the first (--shard)");
  http::Family<http::Counter>& shard_handoffs = registry.AddCounterFamily(
      "gantry_agent_shard_handoffs_total", "Claims of Applications taken and given back (--shard)", {"action"});
  // Image verification (sign::ImagePolicy::stats), brought up to date at each scrape.
  http::Family<http::Counter>& image_verifications = registry.AddCounterFamily(
      "gantry_agent_image_verifications_total",
      "Images verified against a rule by result: passed (verified against the registry; cache hits are counted in "
      "gantry_agent_image_verification_cache_hits_total), refused (for any reason)",
      {"result"});
  http::Counter& image_verification_cache_hits = registry.AddCounter(
      "gantry_agent_image_verification_cache_hits_total",
      "Image verifications answered from the cache (no registry request for the signature)");
  http::Gauge& render_sandbox = registry.AddGauge(
      "gantry_agent_render_sandbox", "1 when kustomize and helm run sandboxed; 0 when the operator turned it off");
};

class AgentImpl final : public Agent {
 public:
  AgentImpl(kube::Client& client, AgentOptions options, std::unique_ptr<Source> source)
      : client_(client), options_(std::move(options)), source_(std::move(source)),
        // The first list of a kind is reported too: an application synced before its kind was
        // watched is compared again if its objects changed meanwhile (its own writes excepted).
        objects_(kube::NewCache(client, {.label_selector = sync::kAppLabel, .index_label = sync::kAppLabel,
                                         .notify_first_list = true})),
        inventories_(kube::NewCache(client, {.label_selector = sync::kInventoryLabel,
                                             .index_label = sync::kInventoryLabel})),
        projects_(kube::NewCache(client, {.namespace_ = options_.namespace_,
                                          .transform = [](const Value& v) { return v; }})) {
    options_.reconcile.home_namespace = options_.namespace_;
    for (const std::string& c : options_.git_credentials) {
      // Malformed entries are refused by NewSource, which every real agent is built with.
      if (auto parsed = git::ParseCredentials(c); parsed.ok()) options_.reconcile.credentials.push_back(*parsed);
    }
    for (const git::Credentials& c : options_.git_repo_credentials) options_.reconcile.credentials.push_back(c);
    // An unreadable Docker config is refused by NewSource too.
    if (auto hosts = oci::CredentialHosts(options_.registry); hosts.ok()) options_.reconcile.registry_credentials = *hosts;
    // A change to a managed object by anyone re-queues its application (drift within a second).
    objects_->OnChange([this](kube::EventType, const Value& object) { OnManagedChange(object); });
    metrics_.render_sandbox.Set(options_.render_sandbox ? 1 : 0);
    if (!options_.render_sandbox) {
      log::Warn("agent: renderers run WITHOUT the sandbox (--no-render-sandbox): a hostile repository that "
                "exploits kustomize or helm runs as this agent");
    }
    if (options_.identity.empty()) {
      char host[256] = {0};
      ::gethostname(host, sizeof(host) - 1);
      options_.identity = fmt::format("{}-{}", host, ::getpid());
    }
    if (options_.lease_namespace.empty()) {
      options_.lease_namespace = options_.namespace_.empty() ? "default" : options_.namespace_;
    }
  }

  Status Run() override {
    // glibc gives each thread that meets contention an arena of its own (up to 8 per core); the
    // agent's workers, watch threads and listeners then keep freed memory in a dozen arenas. Two
    // are enough for its allocation rate (MALLOC_ARENA_MAX in the environment still wins).
    if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
    if (options_.apps_dir.empty()) {
      // The CRD must be there: a clear error instead of an empty watch.
      auto crd = client_.Resolve(api::kApiVersion, api::kKind);
      if (!crd.ok()) {
        return crd.status().WithContext(
            "the Application CRD is not installed (run `gantry install`, or give Applications as files with --apps)");
      }
    }
    // Inventories are read from their cache; if its first list is slow, reads fall back to the API.
    Status inv = inventories_->Watch("v1", "ConfigMap", std::chrono::seconds(10));
    if (!inv.ok()) log::Warn("agent: watch inventories: {}", inv.message());
    // Projects (when their CRD is installed; without it every Application is in the default project).
    if (client_.Resolve(project::kApiVersion, project::kKind).ok()) {
      Status p = projects_->Watch(project::kApiVersion, project::kKind, std::chrono::seconds(10));
      if (!p.ok()) log::Warn("agent: watch Projects: {}", p.message());
      have_projects_ = true;
    }
    // Images are verified against the registries with the same options as oci:// sources, and
    // secretRef keys read from this cluster.
    auto registry = oci::NewHttpRegistry(options_.registry);
    if (!registry.ok()) return registry.status().WithContext("the registry client that verifies images");
    policy_registry_ = *std::move(registry);
    image_policy_ = std::make_unique<sign::ImagePolicy>(
        sign::PolicyOptions{.registry = policy_registry_.get(), .secrets = &client_});
    if (!options_.listen.empty()) GANTRY_RETURN_IF_ERROR(StartHttp());
    if (!options_.metrics_listen.empty()) GANTRY_RETURN_IF_ERROR(StartMetrics());
    std::vector<std::thread> threads;
    if (options_.shard) {
      members_ = std::make_unique<internal::Membership>(
          client_, internal::Membership::Options{.namespace_ = options_.lease_namespace,
                                                 .group = options_.lease_name,
                                                 .identity = options_.identity,
                                                 .duration = options_.lease_duration});
      threads.emplace_back([this] { MemberLoop(); });
      threads.emplace_back([this] { Watchdog(); });
    } else if (!options_.lease_name.empty()) {
      elector_ = std::make_unique<internal::LeaderElector>(
          client_, internal::LeaderElector::Options{
                       .lease = {"coordination.k8s.io/v1", "Lease", options_.lease_namespace, options_.lease_name},
                       .identity = options_.identity,
                       .duration = options_.lease_duration});
      threads.emplace_back([this] { LeaderLoop(); });
      threads.emplace_back([this] { Watchdog(); });
    } else {
      leader_ = true;
    }
    if (options_.apps_dir.empty()) {
      threads.emplace_back([this] { WatchApplications(); });
    } else {
      threads.emplace_back([this] { WatchFiles(); });
    }
    for (int i = 0; i < std::max(1, options_.workers); ++i) threads.emplace_back([this] { Worker(); });
    log::Info("agent {}: running ({} workers, refresh every {} s{})", options_.identity, options_.workers,
              options_.interval.count() / 1000,
              options_.shard ? ", sharded" : options_.lease_name.empty() ? "" : ", leader election on");
    {
      MutexLock lock(stop_mu_);
      stop_cv_.Wait(stop_mu_, [this] { return stopping_.load(); });
    }
    queue_.ShutDown();
    for (auto& t : threads) t.join();
    // Nothing reconciles any more: hand the Lease over now rather than a lease duration later.
    if (members_ != nullptr) {
      // Every claim this replica holds is free for the others once they see the Lease released.
      if (Status s = members_->Release(); !s.ok()) log::Warn("agent {}: release the lease: {}", options_.identity, s.message());
    }
    if (elector_ != nullptr) {
      if (Status s = elector_->Release(); !s.ok()) log::Warn("agent {}: release the lease: {}", options_.identity, s.message());
      leader_ = false;
      metrics_.leader.Set(0);
    }
    if (front_) front_->Stop();
    if (metrics_front_) metrics_front_->Stop();
    MutexLock lock(mu_);
    objects_->Stop();
    inventories_->Stop();
    projects_->Stop();
    return OkStatus();
  }

  void Stop() override {
    {
      MutexLock lock(stop_mu_);  // else the notify can fall between Run's check and its wait
      stopping_ = true;
      halt_ = true;
    }
    stop_cv_.NotifyAll();
  }

  int port() const override { return port_.load(); }
  int metrics_port() const override { return metrics_port_.load(); }
  bool is_leader() const override { return leader_.load(); }

 private:
  // --- HTTP: webhooks, health, metrics ------------------------------------------------------

  // The listener of `flag`'s address (http::ParseListen's errors, prefixed "agent: ").
  static Result<http::Options> ListenOptions(const std::string& listen, std::string_view flag) {
    auto address = http::ParseListen(listen, flag);
    if (!address.ok()) return address.status().WithContext("agent");
    http::Options ho;
    ho.address = address->host;
    ho.port = address->port;
    return ho;
  }

  // Webhooks and /healthz on server::Front, the front every Gantry listener shares (its one
  // Status → HTTP mapping, its webhook intake: verification, ping, ignored event types).
  Status StartHttp() {
    GANTRY_ASSIGN_OR_RETURN(http::Options ho, ListenOptions(options_.listen, "--listen"));
    ho.tls_cert_file = options_.tls_cert_file;
    ho.tls_key_file = options_.tls_key_file;
    std::string address = ho.address;
    bool tls = !ho.tls_cert_file.empty();
    front_ = std::make_unique<server::Front>("agent", std::move(ho));
    front_->AddHealth();
    if (options_.webhook_secret.empty()) {
      // Without a secret the agent cannot verify a sender, so it refuses every delivery.
      front_->Handle("POST", "/webhook", [](const http::Request&) {
        return server::TextError(UnavailableError("webhook secret not configured (--webhook-secret-env)"));
      });
    } else {
      GANTRY_RETURN_IF_ERROR(front_->AddWebhook("/webhook", {.secret = options_.webhook_secret},
                                                [this](const webhook::Event& e, const http::Request&) { return OnPush(e); }));
    }
    GANTRY_RETURN_IF_ERROR(front_->Start());
    port_ = front_->port();
    log::Info("agent: listening on {}:{} (/webhook, /healthz){}", address, port_, tls ? " with TLS" : "");
    return OkStatus();
  }

  // /metrics on a listener of its own (loopback by default): it needs no secret to read, so it
  // is not on the webhook listener, which is often exposed.
  Status StartMetrics() {
    GANTRY_ASSIGN_OR_RETURN(http::Options ho, ListenOptions(options_.metrics_listen, "--metrics-listen"));
    std::string address = ho.address;
    metrics_front_ = std::make_unique<server::Front>("agent", std::move(ho));
    metrics_front_->AddMetrics(metrics_.registry, "/metrics", [this] {
      metrics_.api_requests.Set(static_cast<double>(client_.request_count()));
      if (image_policy_ == nullptr) return;
      // The policy counts; the counters catch up with it (under a lock: two scrapes at once would
      // both add the same difference).
      sign::ImagePolicy::Stats st = image_policy_->stats();
      MutexLock lock(scrape_mu_);
      auto catch_up = [](http::Counter& c, uint64_t v) { c.Add(static_cast<double>(v) - c.Value()); };
      catch_up(metrics_.image_verifications.With({"passed"}), st.verified);
      catch_up(metrics_.image_verifications.With({"refused"}), st.refused);
      catch_up(metrics_.image_verification_cache_hits, st.cache_hits);
    });
    GANTRY_RETURN_IF_ERROR(metrics_front_->Start());
    metrics_port_ = metrics_front_->port();
    log::Info("agent: metrics on {}:{}/metrics", address, metrics_port_);
    return OkStatus();
  }

  // A push webhook is only a hint that Git changed: the Applications of that repository are
  // fetched and reconciled now. The payload decides nothing else.
  Result<http::Response> OnPush(const webhook::Event& event) {
    if (!deliveries_.Insert(event.provider, event.delivery_id)) {
      return http::Response::Text(202, "duplicate delivery\n");
    }
    metrics_.webhooks.Inc();
    std::set<std::string> ids;
    for (const std::string& u : {event.clone_url, event.ssh_url, event.web_url}) {
      if (!u.empty()) ids.insert(RepoIdentity(u));
    }
    std::vector<std::string> keys;
    const auto now = SteadyClock::now();
    {
      MutexLock lock(mu_);
      for (const auto& [key, obj] : apps_) {
        if (ids.count(RepoIdentity(StringAt(&obj, {"spec", "source", "repoURL"})))) {
          keys.push_back(key);
          webhook_at_[key] = now;
        }
      }
    }
    // One fetch begun after this moment serves all of them.
    for (const auto& key : keys) queue_.Add(key, now);
    return http::Response::Text(202, fmt::format("refreshing {} application(s)\n", keys.size()));
  }

  // --- Applications ---------------------------------------------------------------------------

  // Whether the agent serves Applications of namespace `ns`: its own, or one of --app-namespaces.
  bool Served(std::string_view ns) const {
    if (options_.namespace_.empty() || ns == options_.namespace_) return true;
    return std::ranges::any_of(options_.app_namespaces,
                               [&](const std::string& glob) { return project::GlobMatch(glob, ns); });
  }

  // Where Applications are listed: the home namespace, or every namespace when others are served.
  std::string WatchNamespace() const { return options_.app_namespaces.empty() ? options_.namespace_ : ""; }

  // The Project an Application names, from the home namespace (or the Application's own when the
  // agent has none); "default" is permissive unless a Project of that name says otherwise.
  Result<project::Project> GetProject(const Application& app) {
    std::string ns = options_.namespace_.empty() ? app.namespace_ : options_.namespace_;
    if (have_projects_) {
      if (auto obj = projects_->Get({project::kApiVersion, project::kKind, ns, app.project})) {
        auto parsed = project::ParseProject(*obj);
        if (!parsed.ok()) return parsed.status().WithContext(fmt::format("Project {}/{}", ns, app.project));
        return parsed;
      }
      if (!projects_->Synced(project::kApiVersion, project::kKind)) {
        return UnavailableError("the Projects of namespace {} are not read yet", ns);
      }
    }
    if (app.project == "default") return project::DefaultProject();
    return NotFoundError("no Project {:?} in namespace {}{}", app.project, ns,
                         have_projects_ ? "" : " (the Project CRD is not installed: run `gantry install`)");
  }

  Result<kube::Client*> Tenant(const std::string& user) {
    MutexLock lock(mu_);
    auto it = tenants_.find(user);
    if (it == tenants_.end()) {
      GANTRY_ASSIGN_OR_RETURN(auto client, client_.Impersonate({.user = user}));
      it = tenants_.emplace(user, std::move(client)).first;
    }
    return it->second.get();
  }

  // Keeps the latest Application object (its status included: reconciles read the previous status
  // from it, not from the API). Status-only changes (the agent's own writes coming back) do not
  // re-queue it; an object older than the one kept (a watch event behind the agent's own write) is
  // ignored.
  void Remember(const Value& object, bool from_write = false) {
    kube::ObjectRef ref = kube::RefOf(object);
    if (!Served(ref.namespace_)) return;
    std::string key = Key(ref.namespace_, ref.name);
    Value kept = options_.apps_dir.empty() ? kube::KeepForDiffAndHealth(object) : object;
    if (Value* meta = kept.MutableGet("metadata"); meta && meta->IsMap()) meta->Erase("managedFields");
    {
      MutexLock lock(mu_);
      auto it = apps_.find(key);
      if (it != apps_.end() && Older(kept, it->second)) return;
      bool changed = it == apps_.end() || SpecOf(it->second) != SpecOf(kept);
      apps_[key] = std::move(kept);
      metrics_.applications.Set(static_cast<double>(apps_.size()));
      if (!changed || from_write) return;
    }
    queue_.Add(key, true);
  }

  // The terminate request (annotation) of the Application as the watch last saw it: a sync that
  // runs asks it at each check, so a request stops it within its next wait slice.
  std::string TerminateRequest(const std::string& key) {
    MutexLock lock(mu_);
    auto it = apps_.find(key);
    return it == apps_.end() ? "" : StringAt(&it->second, {"metadata", "annotations", api::kTerminateRequested});
  }

  // Whether `a` is an older version of the object than `b` (resourceVersions compared as numbers,
  // as client-go's mutation cache does; unknown orders count as newer).
  static bool Older(const Value& a, const Value& b) {
    std::string ra = StringAt(&a, {"metadata", "resourceVersion"}), rb = StringAt(&b, {"metadata", "resourceVersion"});
    if (ra.empty() || rb.empty() || ra.size() > 19 || rb.size() > 19) return false;
    if (ra.find_first_not_of("0123456789") != std::string::npos || rb.find_first_not_of("0123456789") != std::string::npos) {
      return false;
    }
    return std::stoull(ra) < std::stoull(rb);
  }

  static std::string SpecOf(const Value& object) {
    const Value* spec = object.Get("spec");
    const Value* ann = object.Find({"metadata", "annotations"});
    return (spec ? value::ToJson(*spec) : "") + (ann ? value::ToJson(*ann) : "");
  }

  void WatchApplications() {
    while (!stopping_) {
      // Each Application is kept (reduced) as its page arrives; the parsed list is never whole in
      // memory, and nothing of it outlives this statement (the watch below runs for hours).
      std::set<std::string> present;
      auto list = client_.List(api::kApiVersion, api::kKind, WatchNamespace(),
                               {.each = [&](Value app) {
                                 kube::ObjectRef ref = kube::RefOf(app);
                                 present.insert(Key(ref.namespace_, ref.name));
                                 Remember(app);
                               }});
      if (!list.ok()) {
        log::Warn("agent: list Applications: {}", list.status().message());
        Sleep(std::chrono::seconds(2));
        continue;
      }
      {
        MutexLock lock(mu_);
        for (auto it = apps_.begin(); it != apps_.end();) {
          if (!present.count(it->first)) steady_.erase(it->first);
          it = present.count(it->first) ? std::next(it) : apps_.erase(it);
        }
      }
      std::string rv = list->resource_version;
      while (!stopping_) {
        Status s = client_.Watch(api::kApiVersion, api::kKind, WatchNamespace(),
                                 {.resource_version = rv, .timeout = std::chrono::seconds(60), .stop = &stopping_},
                                 [&](const kube::WatchEvent& e) {
                                   std::string erv = StringAt(&e.object, {"metadata", "resourceVersion"});
                                   if (!erv.empty()) rv = erv;
                                   if (e.type == kube::EventType::kBookmark) return !stopping_.load();
                                   kube::ObjectRef ref = kube::RefOf(e.object);
                                   if (e.type == kube::EventType::kDeleted) {
                                     MutexLock lock(mu_);
                                     apps_.erase(Key(ref.namespace_, ref.name));
                                     steady_.erase(Key(ref.namespace_, ref.name));
                                     claims_.erase(Key(ref.namespace_, ref.name));
                                   } else {
                                     Remember(e.object);
                                   }
                                   return !stopping_.load();
                                 });
        if (!s.ok()) {
          // 410 Gone: the version is too old; list again. Anything else: back off, then list.
          if (s.code() != Code::kOutOfRange) log::Warn("agent: watch Applications: {}", s.message());
          break;
        }
      }
    }
  }

  void WatchFiles() {
    while (!stopping_) {
      auto manifests = render::RenderPlain(options_.apps_dir);
      if (!manifests.ok()) {
        log::Error("agent: read Applications from {}: {}", options_.apps_dir, manifests.status().message());
      } else {
        for (auto& m : *manifests) {
          Value obj = m.object;
          if (StringAt(&obj, {"kind"}) != api::kKind) continue;
          if (StringAt(&obj, {"metadata", "namespace"}).empty()) {
            obj.MutableGet("metadata")->Set("namespace", options_.namespace_.empty() ? "default" : options_.namespace_);
          }
          Remember(obj);
        }
      }
      Sleep(std::chrono::seconds(5));
    }
  }

  // --- Work -----------------------------------------------------------------------------------

  void Worker() {
    std::mt19937_64 rng{std::random_device{}()};
    while (auto item = queue_.Get()) {
      const auto& [key, fetch_after] = *item;
      if (!leader_ || (elector_ != nullptr && !elector_->leading())) {
        // Followers keep the queue but do nothing; the key comes back when leadership might have changed.
        // (leader_ is set at ticks; leading() also ends while a renewal hangs.)
        queue_.Done(key);
        queue_.AddAfter(key, fetch_after != SteadyClock::time_point{}, std::chrono::seconds(2));
        continue;
      }
      Value object;
      {
        MutexLock lock(mu_);
        auto it = apps_.find(key);
        if (it == apps_.end()) {
          queue_.Done(key);
          continue;
        }
        object = it->second;
      }
      if (members_ != nullptr && !Claim(key, object)) {
        queue_.Done(key);
        continue;
      }
      const kube::ObjectRef app_ref = kube::RefOf(object);
      const std::string app_name = TrackingKey(options_.namespace_, app_ref.namespace_, app_ref.name);
      auto start = SteadyClock::now();
      if (StillSteady(key, object, app_name, fetch_after)) {
        metrics_.reconciles.With({"ok"}).Inc();
        metrics_.unchanged.Inc();
        metrics_.reconcile_seconds.Observe(std::chrono::duration<double>(SteadyClock::now() - start).count());
        log::Debug("agent: {} unchanged", key);
        ResetBackoff(key);
        queue_.Done(key);
        queue_.AddAfter(key, true, Jitter(options_.interval, rng), options_.interval / 10);
        TrimWhenIdle();
        continue;
      }
      if (fetch_after != SteadyClock::time_point{} && SourceUnchanged(object, fetch_after)) {
        // Nothing this application renders changed: its reconcile (which only records the new
        // revision) waits behind the applications whose sources changed, so a push to a monorepo
        // of a thousand applications applies the one it changed first.
        queue_.Done(key);
        queue_.Defer(key);
        continue;
      }
      if (!options_.apps_dir.empty()) {
        if (auto it = file_status_.find(key); it != file_status_.end()) object.Set("status", it->second);
      }
      ReconcileDeps deps{.client = client_, .source = *source_, .objects = objects_.get(),
                         .inventories = inventories_.get(), .get_application = [this](const kube::ObjectRef& ref) {
                           return GetApplication(ref);
                         },
                         .get_project = [this](const Application& app) { return GetProject(app); },
                         .tenant = [this](const std::string& user) { return Tenant(user); },
                         .image_policy = image_policy_.get(),
                         .stop = members_ != nullptr || elector_ != nullptr ? &halt_ : &stopping_,
                         .terminate_request = [this, app_key = key] { return TerminateRequest(app_key); }};
      // Read before the reconcile reads the caches: a change while it runs makes the next pass full.
      const uint64_t objects_version = objects_->IndexVersion(app_name);
      const uint64_t inventories_version = inventories_->IndexVersion(app_name);
      {
        MutexLock lock(mu_);
        reconciling_[app_name];  // events for it now wait for its result (OnManagedChange)
      }
      auto r = Reconcile(deps, object, fetch_after, options_.reconcile, options_.apps_dir.empty());
      SettleOwnWrites(key, app_name, r.ok() ? r->written : std::map<std::string, std::string>{});
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start);
      metrics_.reconcile_seconds.Observe(static_cast<double>(took.count()) / 1000);
      metrics_.reconciles.With({r.ok() && !r->failed ? "ok" : "failed"}).Inc();
      metrics_.queue_depth.Set(static_cast<double>(queue_.Depth()));
      if (r.ok() && r->synced) {
        std::string phase = r->status.operation ? r->status.operation->phase : "";
        metrics_.syncs.With({phase}).Inc();
        MutexLock lock(mu_);
        auto it = webhook_at_.find(key);
        if (it != webhook_at_.end() && phase == "Succeeded" &&
            r->status.sync_status == api::kSynced) {
          metrics_.webhook_to_applied.Observe(std::chrono::duration<double>(SteadyClock::now() - it->second).count());
          webhook_at_.erase(it);
        }
      }
      std::chrono::milliseconds next = Jitter(options_.interval, rng);
      bool fetch_next = true;
      if (!r.ok()) {
        log::Warn("agent: reconcile {}: {}", key, r.status().message());
        next = Backoff(key);
      } else {
        if (!options_.apps_dir.empty()) file_status_[key] = api::ToValue(r->status);
        if (!r->object.IsNull()) Remember(r->object, /*from_write=*/true);
        if (r->rendered) metrics_.renders.Inc();
        // A sync stopped between two steps (the agent stopping, or its shard membership lapsed)
        // stays Running: it is resumed by the next reconcile, here or on the next owner.
        const bool stopped = r->synced && r->status.operation && r->status.operation->phase == api::kPhaseRunning;
        log::Info("agent: {} {} {} health {} ({} ms{})", key, stopped ? "stopped" : r->synced ? "synced" : "reconciled",
                  r->status.sync_status, r->status.health ? health::Name(*r->status.health) : "", took.count(),
                  r->failed ? ", failed" : stopped ? ", its sync stays Running until it is resumed" : "");
        if (r->failed) {
          next = std::min(next, Backoff(key));
        } else {
          ResetBackoff(key);
        }
        if (r->requeue_after.count() > 0 && r->requeue_after < next) {
          next = r->requeue_after;
          fetch_next = r->failed;
        }
        WatchManagedKinds(r->status);
        RecordSteady(key, object, *r, objects_version, inventories_version);
        metrics_.cached_objects.Set(static_cast<double>(objects_->stats().objects + inventories_->stats().objects));
        metrics_.renderer_runs.Set(static_cast<double>(source_->renders()));
      }
      queue_.Done(key);
      // A periodic refresh takes a fetch of the repository begun up to a tenth of the interval
      // before it is due (as late as the jitter already makes it): the applications of one
      // repository then share about ten fetches per interval instead of making one each.
      queue_.AddAfter(key, fetch_next, next, options_.interval / 10);
      TrimWhenIdle();
    }
  }

  // A burst of reconciles (start-up, a push to a monorepo) leaves its renders, reads and compares
  // freed inside the malloc arenas, where glibc keeps them (it returns only the top of the main
  // heap). When the queue has drained, the free pages go back to the system, at most every 10 s.
  void TrimWhenIdle() {
    if (queue_.Depth() != 0) return;
    const auto now = SteadyClock::now();
    {
      MutexLock lock(mu_);
      if (now - trimmed_at_ < std::chrono::seconds(10)) return;
      trimmed_at_ = now;
    }
    malloc_trim(0);
  }

  // --- unchanged applications ----------------------------------------------------------------
  //
  // A reconcile that found an application in sync and healthy and wrote nothing is remembered with
  // what it compared: the Application object (its resourceVersion: spec, annotations, status), the
  // commit, and the IndexVersion of the application's live objects and inventory in the caches. A
  // later refresh that resolves the same commit and finds the same numbers would render the same
  // manifests from the same commit and compare them with the same live objects, so it ends there:
  // no render, no read, no compare, no API request. Anything else (a push, a drifted or deleted
  // object, an edited Application, a kind whose cache lost sync) changes a number and the next
  // reconcile is a full one.

  struct Steady {
    std::string resource_version;
    std::string commit;
    uint64_t objects_version = 0;
    uint64_t inventories_version = 0;
    std::shared_ptr<const api::Application> app;
  };

  bool StillSteady(const std::string& key, const Value& object, const std::string& name,
                   SteadyClock::time_point fetch_after) {
    const uint64_t objects_version = objects_->IndexVersion(name);
    const uint64_t inventories_version = inventories_->IndexVersion(name);
    std::shared_ptr<const api::Application> app;
    std::string commit;
    {
      MutexLock lock(mu_);
      auto it = steady_.find(key);
      if (it == steady_.end()) return false;
      const Steady& s = it->second;
      if (s.resource_version != StringAt(&object, {"metadata", "resourceVersion"}) ||
          s.objects_version != objects_version || s.inventories_version != inventories_version) {
        steady_.erase(it);
        return false;
      }
      app = s.app;
      commit = s.commit;
    }
    if (source_->Unpinned(*app)) return false;  // a remote base's branch may have moved: render
    auto resolved = source_->Resolve(*app, fetch_after);
    return resolved.ok() && *resolved == commit;
  }

  void RecordSteady(const std::string& key, const Value& object, const ReconcileResult& r, uint64_t objects_version,
                    uint64_t inventories_version) {
    const api::ApplicationStatus& st = r.status;
    std::string rv = StringAt(&object, {"metadata", "resourceVersion"});
    bool steady = options_.apps_dir.empty() && !rv.empty() && !r.failed && !r.synced && r.object.IsNull() &&
                  r.requeue_after.count() == 0 && st.sync_status == api::kSynced && !st.sync_revision.empty() &&
                  st.health == health::HealthStatus::kHealthy &&
                  (!st.operation || st.operation->phase != api::kPhaseRunning);
    // Every kind it has must be served by the cache; a kind read from the API has no IndexVersion.
    for (const api::ResourceStatus& res : st.resources) {
      if (!steady) break;
      steady = objects_->Synced(res.group.empty() ? res.version : res.group + "/" + res.version, res.kind);
    }
    std::shared_ptr<const api::Application> app;
    if (steady) {
      auto parsed = api::ParseApplication(object);
      // dependsOn is checked on every pass: it reads other Applications, which no number here covers.
      if (parsed.ok() && parsed->depends_on.empty()) app = std::make_shared<const api::Application>(*std::move(parsed));
    }
    MutexLock lock(mu_);
    if (!app) {
      steady_.erase(key);
      return;
    }
    steady_[key] = Steady{std::move(rv), st.sync_revision, objects_version, inventories_version, std::move(app)};
  }

  // Whether a refresh (a webhook, the interval) finds nothing the application renders changed since
  // the commit it was last found in sync at. Costs a shared fetch and a tree diff, never a render.
  bool SourceUnchanged(const Value& object, SteadyClock::time_point fetch_after) {
    api::ApplicationStatus status = api::ParseStatus(object.Get("status"));
    if (status.sync_status != api::kSynced || status.sync_revision.empty()) return false;
    auto app = api::ParseApplication(object);
    if (!app.ok()) return false;
    if (!app->sync_request.empty() && app->sync_request != status.last_sync_request) return false;
    if (!app->refresh_request.empty() && app->refresh_request != status.last_refresh_request) return false;
    if (status.observed_generation != app->generation) return false;
    auto commit = source_->Resolve(*app, fetch_after);
    if (!commit.ok() || *commit == status.sync_revision) return false;
    auto differ = source_->MayDiffer(*app, status.sync_revision, *commit);
    return differ.ok() && !*differ;
  }

  // Another Application (dependsOn), from what the watch keeps.
  Result<Value> GetApplication(const kube::ObjectRef& ref) {
    {
      MutexLock lock(mu_);
      auto it = apps_.find(Key(ref.namespace_, ref.name));
      if (it != apps_.end()) return it->second;
    }
    if (!options_.apps_dir.empty()) return NotFoundError("Application {}/{} not found", ref.namespace_, ref.name);
    return client_.Get(ref);
  }

  std::chrono::milliseconds Jitter(std::chrono::milliseconds d, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> u(0.9, 1.1);
    return std::chrono::milliseconds(static_cast<int64_t>(static_cast<double>(d.count()) * u(rng)));
  }

  // Per-application exponential backoff of failing reconciles: 1 s, 2 s, ... up to 5 min.
  std::chrono::milliseconds Backoff(const std::string& key) {
    MutexLock lock(mu_);
    int& n = failures_[key];
    n = std::min(n + 1, 20);
    return std::min<std::chrono::milliseconds>(std::chrono::milliseconds(1000LL << std::min(n - 1, 9)),
                                               std::chrono::minutes(5));
  }
  void ResetBackoff(const std::string& key) {
    MutexLock lock(mu_);
    failures_.erase(key);
  }

  // --- Drift ----------------------------------------------------------------------------------

  // Watches (in the shared cache) every kind the application manages, so a change by anyone else
  // re-queues the owning application within a second and later reads come from memory.
  void WatchManagedKinds(const api::ApplicationStatus& status) {
    for (const api::ResourceStatus& r : status.resources) {
      std::string api_version = r.group.empty() ? r.version : r.group + "/" + r.version;
      if (stopping_ || objects_->Synced(api_version, r.kind)) continue;
      Status s = objects_->Watch(api_version, r.kind, std::chrono::milliseconds(0));
      if (!s.ok() && s.code() != Code::kDeadlineExceeded) log::Debug("agent: watch {} {}: {}", api_version, r.kind, s.message());
    }
  }

  // After a reconcile of `app_name`: what it wrote is recorded, so that the watch events of its own
  // writes, before or after this point, re-queue nothing; a change by someone else that came in
  // meanwhile re-queues it.
  void SettleOwnWrites(const std::string& key, const std::string& app_name, std::map<std::string, std::string> written) {
    bool drifted = false;
    {
      MutexLock lock(mu_);
      auto pending = reconciling_.find(app_name);
      if (pending != reconciling_.end()) {
        for (const auto& [object, rv] : pending->second) {
          auto w = written.find(object);
          drifted |= w == written.end() || w->second != rv;
        }
        reconciling_.erase(pending);
      }
      if (!written.empty()) written_[app_name] = std::move(written);
    }
    if (drifted) queue_.AddAfter(key, false, std::chrono::milliseconds(500));
  }

  void OnManagedChange(const Value& object) {
    std::string app = StringAt(&object, {"metadata", "labels", sync::kAppLabel});
    if (app.empty()) return;
    std::string object_key = sync::ObjectKey(kube::RefOf(object));
    std::string rv = StringAt(&object, {"metadata", "resourceVersion"});
    std::vector<std::string> keys;
    {
      MutexLock lock(mu_);
      // A reconcile of it is running: decided when it ends (SettleOwnWrites).
      if (auto it = reconciling_.find(app); it != reconciling_.end()) {
        it->second.emplace_back(object_key, rv);
        return;
      }
      // The event of the last sync's own write.
      if (auto it = written_.find(app); it != written_.end()) {
        auto w = it->second.find(object_key);
        if (w != it->second.end() && w->second == rv) return;
      }
      if (!options_.namespace_.empty()) {
        // TrackingKey's inverse: NAMESPACE_NAME, or a name in the home namespace.
        size_t u = app.find('_');
        std::string key = u == std::string::npos ? Key(options_.namespace_, app)
                                                 : Key(app.substr(0, u), app.substr(u + 1));
        if (apps_.count(key)) keys.push_back(key);
      } else {
        for (const auto& [key, obj] : apps_) {
          if (key.size() > app.size() && key.compare(key.size() - app.size() - 1, std::string::npos, "/" + app) == 0) {
            keys.push_back(key);
          }
        }
      }
    }
    // Coalesce bursts (a rollout changes an object many times): one reconcile shortly after.
    for (const auto& key : keys) queue_.AddAfter(key, false, std::chrono::milliseconds(500));
  }

  // --- Leader election (internal/leader.h) ---------------------------------------------------

  void LeaderLoop() {
    internal::LeaderElector& elector = *elector_;
    while (!stopping_) {
      bool was = leader_.load();
      bool now_leader = elector.Tick();
      if (now_leader) {
        // Syncs may run from now, not only from the Watchdog's next look (Stop() sets stopping_
        // before halt_, so a stop between these two lines still leaves halt_ set).
        halt_ = false;
        if (stopping_) halt_ = true;
      }
      if (!was && now_leader) {
        // Newly leading: reconcile everything now.
        MutexLock lock(mu_);
        for (const auto& [key, obj] : apps_) queue_.Add(key, true);
      }
      leader_ = now_leader;
      metrics_.leader.Set(now_leader ? 1 : 0);
      Sleep(elector.retry_period());
    }
  }

  // --- Sharding (internal/shard.h) ----------------------------------------------------------

  // Renews this replica's membership and follows the others'; when the live replicas change (or
  // this one's membership starts a new term), every Application is looked at again: each replica
  // claims the ones it now owns and gives back the ones it lost.
  void MemberLoop() {
    internal::Membership& members = *members_;
    std::vector<std::string> last;
    uint64_t last_term = 0;
    while (!stopping_) {
      if (Status s = members.Tick(); !s.ok()) log::Warn("agent {}: {}", options_.identity, s.message());
      std::vector<std::string> now = members.members();
      uint64_t term = members.term();
      if (now != last || term != last_term) {
        if (!last.empty() && now != last) metrics_.shard_rebalances.Inc();
        last = now;
        last_term = term;
        MutexLock lock(mu_);
        for (const auto& [key, obj] : apps_) queue_.Add(key, false);
      }
      metrics_.shard_members.Set(static_cast<double>(now.size()));
      leader_ = members.member();
      Sleep(members.retry_period());
    }
  }

  // Stops running syncs (ReconcileDeps::stop) as soon as membership (sharded) or leadership lapses,
  // even while a renewal hangs: the others may claim this replica's Applications, or another
  // candidate take the Lease, a lease duration after its last renewal, and a sync must not still
  // be writing then. A stopped sync stays Running; whoever reconciles the Application next resumes it.
  void Watchdog() {
    while (!stopping_) {
      halt_ = members_ != nullptr ? !members_->member() : !elector_->leading();
      if (stopping_) halt_ = true;
      Sleep(std::chrono::milliseconds(100));
    }
    halt_ = true;
  }

  // Whether this replica may reconcile `key` now (sharded): it owns it among the live replicas and
  // holds its claim, taken in this membership term. Takes a free claim (or one of a dead replica)
  // with a compare-and-swap on the Application's resourceVersion, then `object` is the Application
  // as written; gives back a claim it no longer owns. When it must wait (its own membership
  // lapsed, the holder has not given the claim back yet, a write conflicted), `key` comes back later.
  bool Claim(const std::string& key, Value& object) {
    const std::string& self = options_.identity;
    const auto retry = members_->retry_period();
    std::vector<std::string> members = members_->members();
    if (!members_->member() || members.empty()) {
      queue_.AddAfter(key, false, retry);
      return false;
    }
    const std::string holder = StringAt(&object, {"metadata", "annotations", internal::kShardOwnerAnnotation});
    const uint64_t term = members_->term();
    if (internal::ShardOwner(key, members) != self) {
      if (holder != self) {
        DropClaim(key);
      } else if (ClaimPatch(key, object, false)) {
        DropClaim(key);
      } else {
        queue_.AddAfter(key, false, std::chrono::milliseconds(500));
      }
      return false;
    }
    {
      MutexLock lock(mu_);
      auto it = claims_.find(key);
      if (it != claims_.end() && it->second == term && holder == self) return true;
    }
    if (!holder.empty() && holder != self && !members_->Dead(holder)) {
      queue_.AddAfter(key, false, retry);  // until the holder gives it back, or dies
      return false;
    }
    if (!ClaimPatch(key, object, true)) {
      queue_.AddAfter(key, false, std::chrono::milliseconds(500));
      return false;
    }
    MutexLock lock(mu_);
    claims_[key] = term;
    metrics_.shard_owned.Set(static_cast<double>(claims_.size()));
    return true;
  }

  void DropClaim(const std::string& key) {
    MutexLock lock(mu_);
    if (claims_.erase(key)) metrics_.shard_owned.Set(static_cast<double>(claims_.size()));
  }

  // Writes (take) or removes (give back) this replica's claim on `key`, only if the Application is
  // still at the resourceVersion of `object`; `object` becomes the Application as written.
  bool ClaimPatch(const std::string& key, Value& object, bool take) {
    const kube::ObjectRef ref = kube::RefOf(object);
    const std::string rv = fmt::format(R"({{"op":"replace","path":"/metadata/resourceVersion","value":{}}})",
                                       value::ToJson(Value(StringAt(&object, {"metadata", "resourceVersion"}))));
    const std::string path = "/metadata/annotations/gantry.dev~1shard-owner";
    const std::string id = value::ToJson(Value(options_.identity));
    auto r = take ? client_.JsonPatch(ref, fmt::format(R"([{},{{"op":"add","path":"{}","value":{}}}])", rv, path, id))
                  : client_.JsonPatch(ref, fmt::format(R"([{},{{"op":"remove","path":"{}"}}])", rv, path));
    if (take && !r.ok() && r.status().code() != Code::kFailedPrecondition) {
      // No annotations at all: the map is added whole.
      r = client_.JsonPatch(ref, fmt::format(R"([{},{{"op":"add","path":"/metadata/annotations","value":{{{}:{}}}}}])",
                                             rv, value::ToJson(Value(internal::kShardOwnerAnnotation)), id));
    }
    if (!r.ok()) {
      log::Debug("agent {}: {} the claim on {}: {}", options_.identity, take ? "take" : "give back", key,
                 r.status().message());
      return false;
    }
    log::Info("agent {}: {} {}", options_.identity, take ? "claimed" : "gave back", key);
    metrics_.shard_handoffs.With({take ? "claimed" : "released"}).Inc();
    Remember(*r, /*from_write=*/true);
    MutexLock lock(mu_);
    if (auto it = apps_.find(key); it != apps_.end()) object = it->second;
    return true;
  }

  void Sleep(std::chrono::milliseconds d) {
    MutexLock lock(stop_mu_);
    stop_cv_.WaitFor(stop_mu_, d, [this] { return stopping_.load(); });
  }

  kube::Client& client_;
  AgentOptions options_;
  std::unique_ptr<Source> source_;
  std::unique_ptr<oci::Registry> policy_registry_;      // set in Run, before the workers start
  std::unique_ptr<sign::ImagePolicy> image_policy_;     // ... over policy_registry_
  Mutex scrape_mu_;  // serializes the catching up of the image verification counters
  std::unique_ptr<internal::LeaderElector> elector_;  // set in Run with leader election on
  std::unique_ptr<internal::Membership> members_;     // set in Run when sharded
  std::unique_ptr<kube::Cache> objects_;      // objects Gantry manages, by application
  std::unique_ptr<kube::Cache> inventories_;  // inventory ConfigMaps, by application
  std::unique_ptr<kube::Cache> projects_;     // Projects of the home namespace
  bool have_projects_ = false;                // their CRD is installed (set before the workers start)
  // Clients acting as projects' ServiceAccounts, by user name (never erased: reconciles hold them).
  std::map<std::string, std::unique_ptr<kube::Client>> tenants_ GUARDED_BY(mu_);
  internal::WorkQueue queue_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> leader_{false};  // sharded: a member
  std::atomic<bool> halt_{false};    // stopping, or membership / leadership lapsed (Watchdog)
  Mutex stop_mu_;
  CondVar stop_cv_;
  Mutex mu_;
  std::map<std::string, Value> apps_ GUARDED_BY(mu_);
  std::map<std::string, int> failures_ GUARDED_BY(mu_);
  std::map<std::string, uint64_t> claims_ GUARDED_BY(mu_);  // sharded: key → membership term it was claimed in
  std::map<std::string, Steady> steady_ GUARDED_BY(mu_);  // by key: StillSteady
  std::map<std::string, Value> file_status_;           // workers only, file mode: keyed like apps_
  std::atomic<int> port_{0};
  std::atomic<int> metrics_port_{0};
  Metrics metrics_;
  std::unique_ptr<server::Front> front_;
  std::unique_ptr<server::Front> metrics_front_;
  webhook::RecentDeliveries deliveries_;
  std::map<std::string, SteadyClock::time_point> webhook_at_ GUARDED_BY(mu_);
  SteadyClock::time_point trimmed_at_ GUARDED_BY(mu_);  // TrimWhenIdle
  // By application name: change events (object key, resourceVersion) that came in while it was
  // being reconciled, and what its last sync wrote (object key → resourceVersion).
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> reconciling_ GUARDED_BY(mu_);
  std::map<std::string, std::map<std::string, std::string>> written_ GUARDED_BY(mu_);
};

}  // namespace

Result<std::unique_ptr<Agent>> NewAgent(kube::Client& client, AgentOptions options, std::unique_ptr<Source> source) {
  if (source == nullptr) return InvalidArgumentError("agent: a source is required");
  if (options.workers < 1) return InvalidArgumentError("agent: --workers must be at least 1");
  if (options.interval < std::chrono::seconds(1)) return InvalidArgumentError("agent: --interval must be at least 1s");
  if (options.shard && options.lease_name.empty()) {
    return InvalidArgumentError("agent: --shard needs the member Leases: it cannot run with --no-leader-election");
  }
  if (options.shard && !options.apps_dir.empty()) {
    return InvalidArgumentError("agent: --shard claims Applications in the cluster: it cannot read them from --apps");
  }
  return std::unique_ptr<Agent>(new AgentImpl(client, std::move(options), std::move(source)));
}

}  // namespace gantry::agent

// Reconcile: one Application, one pass (see agent.h): guards, then the sub-reconcilers fetch,
// render, compare, sync and assess over one shared context, then one status write.

#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>

#include "agent/agent.h"
#include "base/log.h"
#include "oci/artifact.h"

namespace gantry::agent {
namespace {

using value::Value;

Value Map(std::initializer_list<std::pair<std::string_view, Value>> kv) {
  Value m = Value::Map();
  for (const auto& [k, v] : kv) m.Set(k, v);
  return m;
}

api::ResourceStatus Resource(const kube::ObjectRef& ref, std::string_view status, const health::Health& h) {
  auto [group, version] = kube::SplitApiVersion(ref.api_version);
  return {group, version, ref.kind, ref.namespace_, ref.name, std::string(status), h.status, h.message, false, ""};
}

// The delay before retry number `attempt` (1-based) of a failed sync.
std::chrono::milliseconds RetryDelay(const api::RetryPolicy& p, int attempt) {
  double ms = static_cast<double>(p.duration.count()) * std::pow(p.factor, std::max(0, attempt - 1));
  return std::chrono::milliseconds(static_cast<int64_t>(std::min(ms, static_cast<double>(p.max_duration.count()))));
}

}  // namespace

Result<sync::Options> SyncOptionsFor(const Application& app, const ReconcileOptions& options, Clock* clock,
                                     std::vector<std::string>* warnings) {
  sync::Options so;
  so.app = TrackingKey(options.home_namespace, app.namespace_, app.name);
  so.cluster_server = options.cluster_server;
  so.cluster_name = options.cluster_name;
  so.default_namespace = app.destination_namespace;
  so.prune = app.sync_policy.prune;
  so.allow_empty = app.sync_policy.allow_empty;
  // Git is the truth for the application's own objects: fields another manager took over on an
  // object carrying its tracking id are taken back (drift), unless it opts out. An object it does
  // not own yet is never taken from another manager silently: its conflicts are reported, unless
  // the application opts in with ForceConflicts=true.
  so.force = false;
  so.force_owned = true;
  // Prune=true, PruneLast, CreateNamespace, ApplyOutOfSyncOnly, ForceConflicts and every Argo CD option.
  GANTRY_RETURN_IF_ERROR(sync::ReadSyncOptions(
      app.sync_policy.sync_options,
      fmt::format("spec.syncPolicy.syncOptions of Application {}/{}", app.namespace_, app.name), so, warnings));
  so.namespace_labels = app.sync_policy.namespace_labels;
  so.namespace_annotations = app.sync_policy.namespace_annotations;
  if (!app.prune_approved.empty()) {
    so.prune_approved_at = ParseRfc3339(app.prune_approved);
    if (!so.prune_approved_at) {
      return InvalidArgumentError("Application {}/{}: the prune approval {:?} is not an RFC 3339 time "
                                  "(gantry app confirm-prune writes one)", app.namespace_, app.name, app.prune_approved);
    }
  }
  so.timeout = options.health_timeout;
  so.parallelism = options.parallelism;
  so.wait_for_health = false;
  so.diff.field_manager = options.field_manager;
  so.diff.ignore = app.ignore_differences;
  so.clock = clock;
  return so;
}

namespace {

// One pass over one Application. Each step returns OK to go on, or ends the pass by setting done_
// (a guard held, a failure recorded in conditions); a non-OK Status is an API failure of the pass.
class Pass {
 public:
  Pass(const ReconcileDeps& deps, const Value& object, std::chrono::steady_clock::time_point fetch_after,
       const ReconcileOptions& options)
      : deps_(deps), clock_(deps.clock ? *deps.clock : SystemClock()), object_(object), fetch_after_(fetch_after),
        options_(options), previous_(api::ParseStatus(object.Get("status"))), status_(previous_),
        conditions_(previous_.conditions, Now()), self_(kube::RefOf(object)) {}

  Result<ReconcileResult> Run(bool write_status) {
    write_status_ = write_status;
    using Step = Status (Pass::*)();
    for (Step step : {&Pass::Guards, &Pass::Fetch, &Pass::Render, &Pass::Compare, &Pass::Sync, &Pass::Assess}) {
      GANTRY_RETURN_IF_ERROR((this->*step)());
      if (done_) break;
    }
    GANTRY_RETURN_IF_ERROR(Write());
    return std::move(result_);
  }

 private:
  std::string Now() { return Rfc3339(clock_.WallNow()); }

  // --- guards ---------------------------------------------------------------------------------

  Status Guards() {
    auto parsed = api::ParseApplication(object_);
    if (!parsed.ok()) {
      conditions_.Set(api::kConditionInvalidSpec, true, api::kConditionInvalidSpec, parsed.status().message());
      result_.failed = true;
      done_ = true;
      return OkStatus();
    }
    app_ = *std::move(parsed);
    status_.observed_generation = app_.generation;
    if (Status s = Admit(); !s.ok()) return Denied(s);
    if (app_.suspend) {
      conditions_.Set(api::kConditionSuspended, true, api::kConditionSuspended,
                      "spec.suspend is true: nothing is fetched or applied");
      done_ = true;
      return OkStatus();
    }
    for (const std::string& dep : app_.depends_on) {
      kube::ObjectRef ref{api::kApiVersion, api::kKind, app_.namespace_, dep};
      auto other = deps_.get_application ? deps_.get_application(ref) : deps_.client.Get(ref);
      std::optional<health::HealthStatus> h;
      if (other.ok()) h = api::ParseStatus(other->Get("status")).health;
      if (h != health::HealthStatus::kHealthy) {
        conditions_.Set(api::kConditionDependencyNotReady, true, api::kConditionDependencyNotReady,
                        other.ok() ? fmt::format("waiting for Application {} to be Healthy (it is {})", dep,
                                                 h ? health::Name(*h) : "not reconciled yet")
                                   : fmt::format("waiting for Application {}: {}", dep, other.status().message()));
        result_.requeue_after = std::chrono::seconds(5);
        done_ = true;
        return OkStatus();
      }
    }
    return OkStatus();
  }

  // The application's project: it must exist, and allow the Application's namespace, its source
  // repository and its destination, before anything is fetched. The objects are checked by the
  // engine (sync::Prepare), and the sync window and the account to sync as just before a sync.
  Status Admit() {
    auto project = deps_.get_project ? deps_.get_project(app_)
                   : app_.project == "default"
                       ? Result<project::Project>(project::DefaultProject())
                       : Result<project::Project>(NotFoundError("project {:?} not found", app_.project));
    if (!project.ok()) {
      return PermissionDeniedError("spec.project: {}", project.status().message()).set_reason(project::kReasonDenied);
    }
    project_ = *std::move(project);
    if (!options_.home_namespace.empty() && app_.namespace_ != options_.home_namespace) {
      GANTRY_RETURN_IF_ERROR(project::CheckAppNamespace(project_, app_.namespace_));
    }
    GANTRY_RETURN_IF_ERROR(project::CheckSourceRepo(project_, app_.source.repo_url));
    if (app_.source.kind() == api::SourceKind::kOci) {
      // A registry the agent holds a credential for: only for projects that list it.
      auto ref = oci::ArtifactReference(app_.source.repo_url, app_.source.target_revision);
      std::string host = ref.ok() ? oci::RegistryHost(ref->registry) : "";
      if (std::find(options_.registry_credentials.begin(), options_.registry_credentials.end(), host) !=
          options_.registry_credentials.end()) {
        GANTRY_RETURN_IF_ERROR(project::CheckCredential(project_, host));
      }
    } else if (auto credential = git::CredentialsFor(options_.credentials, app_.source.repo_url)) {
      GANTRY_RETURN_IF_ERROR(project::CheckCredential(project_, credential->host));
    }
    GANTRY_RETURN_IF_ERROR(project::CheckDestination(project_, options_.cluster_server, options_.cluster_name,
                                                     app_.destination_namespace));
    return OkStatus();
  }

  // A refusal of the project (of one of its images, with type ImageVerificationFailed): a
  // condition, one Event per distinct refusal; nothing is applied.
  Status Denied(const Status& why, const char* type = api::kConditionProjectDenied) {
    if (const api::Condition* before = previous_.FindCondition(type);
        before == nullptr || before->message != why.message()) {
      Emit(true, type, why.message());
    }
    conditions_.Set(type, true, type, why.message());
    result_.failed = true;
    done_ = true;
    return OkStatus();
  }

  // The client the sync writes through: the project's ServiceAccount for the destination, when the
  // project names any; refused when it names some but none for this destination.
  Result<kube::Client*> Tenant() {
    std::string account = project::ServiceAccountFor(project_, options_.cluster_server, app_.destination_namespace);
    if (account.empty()) {
      if (!project_.service_accounts.empty()) {
        return PermissionDeniedError("project {}: no destinationServiceAccounts entry matches namespace {} of "
                                     "cluster {}; the application has no account to sync as",
                                     project_.name, app_.destination_namespace, options_.cluster_name)
            .set_reason(project::kReasonDenied);
      }
      return nullptr;
    }
    if (deps_.tenant) return deps_.tenant(account);
    auto client = deps_.client.Impersonate({.user = account});
    if (!client.ok()) return client.status();
    own_tenant_ = *std::move(client);
    return own_tenant_.get();
  }

  // --- fetch ----------------------------------------------------------------------------------

  Status Fetch() {
    // A manual refresh request, or a spec the last reconcile did not see, fetches now.
    bool refresh = (!app_.refresh_request.empty() && app_.refresh_request != previous_.last_refresh_request) ||
                   previous_.observed_generation != app_.generation || previous_.sync_revision.empty();
    if (refresh) fetch_after_ = clock_.Now();
    if (!app_.refresh_request.empty()) status_.last_refresh_request = app_.refresh_request;
    auto commit = deps_.source.Resolve(app_, fetch_after_);
    if (!commit.ok()) return SourceFailed(commit.status());
    commit_ = *std::move(commit);

    // In sync at the previous commit, and nothing the render reads changed: the application is at
    // the new commit without rendering (a push to a monorepo renders only what it changed).
    bool manual = !app_.sync_request.empty() && app_.sync_request != previous_.last_sync_request;
    bool steady = !refresh && !manual && previous_.sync_status == api::kSynced &&
                  !previous_.sync_revision.empty() && commit_ != previous_.sync_revision &&
                  (!previous_.operation || previous_.operation->phase != api::kPhaseRunning) &&
                  previous_.FindCondition(api::kConditionReady) != nullptr;
    if (steady) {
      auto differ = deps_.source.MayDiffer(app_, previous_.sync_revision, commit_);
      if (differ.ok() && !*differ) {
        status_.sync_revision = commit_;
        const api::Condition* ready = previous_.FindCondition(api::kConditionReady);
        conditions_.Set(ready->type, ready->status, ready->reason,
                        fmt::format("{} objects in sync at {} (no change to its source since {})",
                                    previous_.resources.size(), commit_.substr(0, 12),
                                    previous_.sync_revision.substr(0, 12)));
        done_ = true;
      }
    }
    return OkStatus();
  }

  // A failed fetch or render: conditions and one Event per distinct failure; the last good state
  // stays applied (nothing is synced or pruned).
  Status SourceFailed(const Status& error) {
    bool fetch = error.reason() == kReasonFetchFailed;
    const char* type = fetch ? api::kConditionFetchFailed : api::kConditionRenderFailed;
    const api::Condition* before = previous_.FindCondition(type);
    if (before == nullptr || before->message != error.message()) Emit(true, type, error.message());
    conditions_.Set(type, true, type, error.message());
    result_.failed = true;
    done_ = true;
    return OkStatus();
  }

  // --- render ---------------------------------------------------------------------------------

  Status Render() {
    // A config commit the project's rules need signed is checked before anything of it is read.
    if (!project::CommitRulesFor(project_, options_.environment).empty()) {
      auto source = deps_.source.CommitOf(app_, commit_);
      if (!source.ok()) return SourceFailed(source.status());
      Status checked = sign::CheckCommit(project_, options_.environment, commit_, *source, deps_.clock);
      if (!checked.ok()) return Denied(checked, api::kConditionCommitVerificationFailed);
    }
    // What the chart or kustomization fetches beyond the source must be in the project's sourceRepos
    // too, checked before the request is made.
    auto rendered = deps_.source.Render(
        app_, commit_, [this](std::string_view url) { return project::CheckSourceRepo(project_, url); });
    if (!rendered.ok() && rendered.status().reason() == project::kReasonDenied) return Denied(rendered.status());
    if (!rendered.ok()) return SourceFailed(rendered.status());
    result_.rendered = true;
    std::vector<std::string> warnings;
    auto so = SyncOptionsFor(app_, options_, deps_.clock, &warnings);
    if (!so.ok()) {
      conditions_.Set(api::kConditionInvalidSpec, true, api::kConditionInvalidSpec, so.status().message());
      result_.failed = true;
      done_ = true;
      return OkStatus();
    }
    for (const std::string& w : warnings) log::Warn("{}", w);
    sync_options_ = *std::move(so);
    sync_options_.project = &project_;
    if (deps_.image_policy != nullptr) {
      sync_options_.check_images = deps_.image_policy->For(project_, options_.environment);
    }
    auto prepared = sync::Prepare(deps_.client, std::move(rendered->objects), sync_options_);
    if (!prepared.ok() && prepared.status().reason() == project::kReasonDenied) return Denied(prepared.status());
    if (!prepared.ok() && prepared.status().reason() == project::kReasonImageVerification) {
      return Denied(prepared.status(), api::kConditionImageVerificationFailed);
    }
    if (!prepared.ok()) return SourceFailed(prepared.status());
    prepared_ = *std::move(prepared);
    return OkStatus();
  }

  // --- compare --------------------------------------------------------------------------------

  Status Compare() {
    auto live = sync::ReadLive(deps_.client, prepared_, sync_options_, {deps_.objects, deps_.inventories});
    Result<sync::Comparison> comparison = live.ok() ? sync::Compare(prepared_, *live, sync_options_)
                                                    : Result<sync::Comparison>(live.status());
    if (!comparison.ok()) {
      conditions_.Set(api::kConditionComparisonFailed, true, api::kConditionComparisonFailed,
                      comparison.status().message());
      result_.failed = true;
      done_ = true;
      return OkStatus();
    }
    live_ = *std::move(live);
    comparison_ = *std::move(comparison);
    return OkStatus();
  }

  // --- sync -----------------------------------------------------------------------------------

  Status Sync() {
    const std::optional<api::OperationState>& op = previous_.operation;
    std::string op_phase = op ? op->phase : "";
    std::string op_revision = op ? op->revision : "";
    int retries = op ? static_cast<int>(op->retry_count) : 0;
    bool manual = !app_.sync_request.empty() && app_.sync_request != previous_.last_sync_request;
    bool resume = op_phase == api::kPhaseRunning;  // the agent stopped mid-sync
    bool new_revision = commit_ != op_revision;
    // A terminate request that came while no sync of this agent ran: a sync to resume ends
    // Terminated here; otherwise there was nothing to stop, and the request is only acknowledged.
    if (TerminateAsked()) {
      status_.last_terminate_request = TerminateRequest();
      if (resume) {
        api::OperationState ended = *op;
        ended.message = fmt::format("terminated before it resumed ({}: {})", api::kTerminateRequested,
                                    status_.last_terminate_request);
        EndOperation(std::move(ended), api::kPhaseTerminated);
        return OkStatus();
      }
    }
    // Objects only a prune would fix (Extra) are no reason for an automated sync that may not prune:
    // it would find them again after every sync and loop (they are reported OutOfSync all the same).
    size_t fixable = comparison_.out_of_sync;
    if (!app_.sync_policy.prune) {
      for (const sync::DiffEntry& e : comparison_.entries) fixable -= e.status == diff::SyncStatus::kExtra ? 1 : 0;
    }
    bool want = manual || resume ||
                (app_.sync_policy.automated && fixable > 0 && (new_revision || app_.sync_policy.self_heal));
    // A terminated sync is not started again by itself at the same revision and spec (no retry, no
    // self-heal): a new commit, a spec change or a sync request does.
    if (want && !manual && op_phase == api::kPhaseTerminated && !new_revision &&
        previous_.observed_generation == app_.generation) {
      want = false;
      TerminatedCondition(op->message);
    }
    // An automated sync that failed at this revision is retried with backoff, a bounded number of times.
    if (want && !manual && !resume && op_phase == api::kPhaseFailed && !new_revision) {
      int limit = app_.sync_policy.retry.limit;
      if (limit >= 0 && retries >= limit) {
        want = false;
        conditions_.Set(api::kConditionSyncFailed, true, api::kReasonRetriesExhausted,
                        fmt::format("sync failed {} times at {}; fix the source or request a sync: {}", retries + 1,
                                    op_revision.substr(0, 12), op->message));
      } else {
        auto delay = RetryDelay(app_.sync_policy.retry, retries + 1);
        // finishedAt has second precision; compare against wall time. A finishedAt more than a
        // second in the future means the wall clock went back since (or another replica's runs
        // ahead): the backoff cannot be measured, and waiting for the clock to catch up could take
        // hours, so the retry goes ahead; the next backoff is measured from its own finishedAt.
        std::tm tm{};
        if (strptime(op->finished_at.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) != nullptr) {
          auto since = clock_.WallNow() - std::chrono::system_clock::from_time_t(timegm(&tm));
          if (since > -std::chrono::seconds(1) && since < delay) {
            want = false;
            result_.requeue_after =
                std::chrono::duration_cast<std::chrono::milliseconds>(delay - since) + std::chrono::milliseconds(100);
          }
        }
        if (want) ++retries;
      }
    } else if (want) {
      retries = 0;
    }
    if (manual) status_.last_sync_request = app_.sync_request;
    if (!want) return OkStatus();

    // The project's sync windows: a closed window defers the sync (a manual one passes where every
    // closing window allows manual syncs; that override is recorded as an Event).
    project::WindowDecision window = project::CheckWindows(
        project_, {app_.name, options_.environment, options_.cluster_name, app_.destination_namespace},
        clock_.WallNow(), manual || resume);
    if (!window.allowed) {
      conditions_.Set(api::kConditionSyncWindowClosed, true, api::kConditionSyncWindowClosed, window.message);
      if (window.opens_at) {
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(*window.opens_at - clock_.WallNow());
        result_.requeue_after = std::max(std::chrono::milliseconds(1000), wait + std::chrono::seconds(1));
      }
      return OkStatus();
    }
    if (window.manual_override) Emit(true, "SyncWindowOverride", window.message);
    auto tenant = Tenant();
    if (!tenant.ok()) return Denied(tenant.status());
    sync_options_.tenant = *tenant;

    api::OperationState running{api::kPhaseRunning, commit_, Now(), "", retries,
                                manual ? api::kTriggerManual : resume ? api::kTriggerResume
                                       : new_revision ? api::kTriggerRevision : api::kTriggerSelfHeal, "", {}};
    status_.operation = running;
    GANTRY_RETURN_IF_ERROR(Write());  // recorded before anything is applied (crash safety)

    // The agent stopping, or a terminate request, reaches the operation in the middle of a wait.
    sync_options_.stop = [this] { return (deps_.stop != nullptr && deps_.stop->load()) || TerminateAsked(); };
    auto operation = sync::Operation::Start(deps_.client, prepared_, live_, comparison_, sync_options_, nullptr,
                                            deps_.objects);
    const sync::State& final_state = operation->Run();
    const bool by_request = final_state.phase == sync::Phase::kTerminated && TerminateAsked();
    if (final_state.phase == sync::Phase::kTerminated && !by_request) {
      // Stopped between steps: the operation stays Running in the status, so the next reconcile
      // (this agent's after a restart, or the next leader's) resumes it.
      result_.synced = true;
      done_ = true;
      return OkStatus();
    }
    result_.synced = true;
    bool ok = final_state.phase == sync::Phase::kSucceeded;
    api::OperationState done = running;
    done.message = final_state.message;
    if (by_request) {
      status_.last_terminate_request = TerminateRequest();
      done.message = fmt::format("{} ({}: {})", final_state.message, api::kTerminateRequested,
                                 status_.last_terminate_request);
    }
    std::map<std::string, const sync::ObjectResult*> results;
    for (const auto& r : final_state.results) {
      api::ResourceStatus e = Resource(r.ref, sync::Name(r.action), r.health);
      e.failed = r.failed;
      e.message = r.message;
      done.sync_result.push_back(std::move(e));
      results[sync::ObjectKey(r.ref)] = &r;
      if (!r.resource_version.empty()) result_.written[sync::ObjectKey(r.ref)] = r.resource_version;
    }
    EndOperation(std::move(done), ok ? api::kPhaseSucceeded : by_request ? api::kPhaseTerminated : api::kPhaseFailed);
    if (ok) Emit(false, "Synced", fmt::format("synced {} at {}", app_.source.repo_url, commit_.substr(0, 12)));
    if (!ok && !by_request) {
      conditions_.Set(api::kConditionSyncFailed, true,
                      final_state.error.reason() == sync::kReasonPruneBlocked ? api::kReasonPruneBlocked
                                                                               : api::kConditionSyncFailed,
                      final_state.message);
      result_.failed = true;
    }

    // The cluster as the operation left it: what it applied is in sync (with the health of the
    // object it got back), what it pruned is gone; the rest is as compared.
    sync::Comparison after;
    for (sync::DiffEntry e : comparison_.entries) {
      auto it = results.find(sync::ObjectKey(e.ref));
      if (it != results.end() && !it->second->failed) {
        const sync::ObjectResult& r = *it->second;
        if (r.action == sync::Action::kPrune) continue;
        if (r.action == sync::Action::kCreate || r.action == sync::Action::kUpdate || r.action == sync::Action::kApply) {
          e.status = diff::SyncStatus::kSynced;
          e.health = r.health;
        }
      }
      after.out_of_sync += e.status != diff::SyncStatus::kSynced;
      after.index[sync::ObjectKey(e.ref)] = after.entries.size();
      after.entries.push_back(std::move(e));
    }
    comparison_ = std::move(after);
    return OkStatus();
  }

  // The operation `op` ended with `phase`: recorded now in operationState and the history; a
  // failure or a termination is an Event too, and a termination the SyncFailed condition.
  void EndOperation(api::OperationState op, std::string_view phase) {
    op.phase = std::string(phase);
    op.finished_at = Now();
    status_.history.push_back({op.revision, op.started_at, op.finished_at, op.phase, op.message});
    size_t keep = static_cast<size_t>(std::max(1, options_.history_limit));
    if (status_.history.size() > keep) status_.history.erase(status_.history.begin(), status_.history.end() - keep);
    if (phase == api::kPhaseFailed) Emit(true, "SyncFailed", op.message);
    if (phase == api::kPhaseTerminated) {
      Emit(true, "SyncTerminated", op.message);
      TerminatedCondition(op.message);
    }
    status_.operation = std::move(op);
  }

  void TerminatedCondition(std::string_view message) {
    conditions_.Set(api::kConditionSyncFailed, true, api::kReasonTerminated,
                    fmt::format("{}; a new commit, a spec change or a sync request syncs again", message));
  }

  // The application's terminate request as the agent knows it now (deps_.terminate_request), and
  // whether it is one not acted on yet. Called on this pass's thread, also while the sync runs.
  std::string TerminateRequest() const {
    return deps_.terminate_request ? deps_.terminate_request() : app_.terminate_request;
  }
  bool TerminateAsked() const {
    std::string request = TerminateRequest();
    return !request.empty() && request != status_.last_terminate_request;
  }

  // --- assess ---------------------------------------------------------------------------------

  Status Assess() {
    health::Health overall{health::HealthStatus::kHealthy, ""};
    status_.resources.clear();
    for (const auto& d : comparison_.entries) {
      status_.resources.push_back(Resource(d.ref, diff::Name(d.status), d.health));
      if (d.status != diff::SyncStatus::kExtra && health::IsWorse(overall.status, d.health.status)) {
        overall = {d.health.status, fmt::format("{}: {}", d.ref.ToString(), d.health.message)};
      }
    }
    size_t out_of_sync = comparison_.out_of_sync;
    status_.sync_status = out_of_sync == 0 ? api::kSynced : api::kOutOfSync;
    status_.sync_revision = commit_;
    status_.health = overall.status;
    status_.health_message = overall.status == health::HealthStatus::kHealthy ? "" : overall.message;
    if (!result_.failed) {
      size_t n = comparison_.entries.size();
      conditions_.Set(api::kConditionReady, out_of_sync == 0 && overall.status == health::HealthStatus::kHealthy,
                      out_of_sync == 0 ? api::kReasonSynced : api::kReasonOutOfSync,
                      out_of_sync == 0
                          ? fmt::format("{} objects in sync at {}", n, commit_.substr(0, 12))
                          : fmt::format("{} of {} objects differ from {}", out_of_sync, n, commit_.substr(0, 12)));
    }
    if (overall.status == health::HealthStatus::kProgressing && result_.requeue_after.count() == 0) {
      result_.requeue_after = std::chrono::seconds(2);  // watch health settle
    }
    return OkStatus();
  }

  // --- status ---------------------------------------------------------------------------------

  // The one place status is written. A pass that changed nothing writes nothing (steady state makes
  // no API writes): the time of the last reconcile is only written along with a real change.
  Status Write() {
    api::ApplicationStatus next = status_;
    next.conditions = conditions_.Peek();
    next.reconciled_at = previous_.reconciled_at;
    if (next == written_.value_or(previous_)) {
      result_.status = next;
      return OkStatus();
    }
    next.reconciled_at = Now();
    result_.status = next;
    written_ = next;
    written_->reconciled_at = previous_.reconciled_at;
    if (!write_status_) return OkStatus();
    Value patch = Map({{"apiVersion", Value(api::kApiVersion)}, {"kind", Value(api::kKind)},
                       {"metadata", Map({{"name", Value(self_.name)}, {"namespace", Value(self_.namespace_)}})},
                       {"status", api::ToValue(next)}});
    auto out = deps_.client.ApplyStatus(patch, {.field_manager = options_.field_manager + "-agent", .force = true});
    if (!out.ok()) return out.status().WithContext("write status of Application " + self_.name);
    result_.object = *std::move(out);
    return OkStatus();
  }

  // Records a Kubernetes Event on the Application (best effort: an Event that cannot be written is
  // logged, never a reason to fail the reconcile).
  void Emit(bool warning, std::string_view reason, std::string_view message) {
    auto now = clock_.WallNow();
    auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
    Value involved = Map({{"apiVersion", Value(api::kApiVersion)}, {"kind", Value(api::kKind)},
                          {"name", Value(self_.name)}, {"namespace", Value(self_.namespace_)}});
    std::string uid = value::StringAt(&object_, {"metadata", "uid"});
    if (!uid.empty()) involved.Set("uid", uid);
    Value event = Map({{"apiVersion", Value("v1")}, {"kind", Value("Event")},
                       {"metadata", Map({{"name", Value(fmt::format("{}.{:x}", self_.name, nanos))},
                                         {"namespace", Value(self_.namespace_)}})},
                       {"involvedObject", involved},
                       {"type", Value(warning ? "Warning" : "Normal")},
                       {"reason", Value(reason)},
                       {"message", Value(std::string(message.substr(0, 1024)))},
                       {"source", Map({{"component", Value("gantry-agent")}})},
                       {"firstTimestamp", Value(Rfc3339(now))},
                       {"lastTimestamp", Value(Rfc3339(now))},
                       {"count", Value(static_cast<int64_t>(1))}});
    auto r = deps_.client.Create(event);
    if (!r.ok()) log::Debug("agent: event for {}: {}", self_.name, r.status().message());
  }

  const ReconcileDeps& deps_;
  Clock& clock_;
  const Value& object_;
  std::chrono::steady_clock::time_point fetch_after_;
  const ReconcileOptions& options_;
  const api::ApplicationStatus previous_;
  api::ApplicationStatus status_;
  api::ConditionSet conditions_;
  kube::ObjectRef self_;
  bool write_status_ = true;
  bool done_ = false;
  std::optional<api::ApplicationStatus> written_;  // what the last Write() wrote (reconciledAt: previous)
  Application app_;
  std::string commit_;
  project::Project project_;
  std::unique_ptr<kube::Client> own_tenant_;  // Tenant() without deps_.tenant
  sync::Options sync_options_;
  sync::Prepared prepared_;
  sync::Live live_;
  sync::Comparison comparison_;
  ReconcileResult result_;
};

}  // namespace

std::string TrackingKey(std::string_view home_namespace, std::string_view ns, std::string_view name) {
  if (home_namespace.empty() || ns == home_namespace) return std::string(name);
  return fmt::format("{}_{}", ns, name);
}

Result<ReconcileResult> Reconcile(const ReconcileDeps& deps, const Value& object,
                                  std::chrono::steady_clock::time_point fetch_after, const ReconcileOptions& options,
                                  bool write_status) {
  Pass pass(deps, object, fetch_after, options);
  return pass.Run(write_status);
}

}  // namespace gantry::agent

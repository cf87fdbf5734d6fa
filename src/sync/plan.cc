#include <algorithm>
#include <charconv>
#include <map>

#include "sync/sync.h"
#include "value/position.h"

namespace gantry::sync {
namespace {

// The first of `keys` that is set among the object's annotations.
std::pair<std::string, const value::Value*> Annotation(const value::Value& object,
                                                       std::initializer_list<std::string_view> keys) {
  const value::Value* ann = object.Find({"metadata", "annotations"});
  if (ann == nullptr || !ann->IsMap()) return {"", nullptr};
  for (std::string_view k : keys) {
    if (const value::Value* v = ann->Get(k)) return {std::string(k), v};
  }
  return {"", nullptr};
}

std::string Where(const value::Value& v) { return value::PositionOf(v, "annotation"); }

}  // namespace

std::string_view Name(HookPhase p) {
  switch (p) {
    case HookPhase::kNone: return "none";
    case HookPhase::kPreSync: return "PreSync";
    case HookPhase::kSync: return "Sync";
    case HookPhase::kPostSync: return "PostSync";
    case HookPhase::kSyncFail: return "SyncFail";
    case HookPhase::kSkipped: return "skipped";
  }
  return "?";
}

int KindOrder(std::string_view kind) {
  // Helm's and Argo CD's install order.
  static const std::map<std::string_view, int> kOrder = [] {
    const char* kinds[] = {"Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
                           "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret",
                           "SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
                           "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
                           "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role",
                           "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
                           "ReplicationController", "ReplicaSet", "Deployment",
                           "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass",
                           "Ingress", "APIService", "MutatingWebhookConfiguration",
                           "ValidatingWebhookConfiguration"};
    std::map<std::string_view, int> m;
    int i = 0;
    for (const char* k : kinds) m.emplace(k, i++);
    return m;
  }();
  auto it = kOrder.find(kind);
  return it == kOrder.end() ? static_cast<int>(kOrder.size()) : it->second;
}

Status ReadAnnotations(const value::Value& object, Task& task) {
  // The wave: an explicit sync-wave wins; else a Helm hook weight orders the object within its
  // phase (Argo CD's syncwaves.Wave reads helm.sh/hook-weight the same way).
  if (auto [key, v] = Annotation(object, {"gantry.dev/sync-wave", "argocd.argoproj.io/sync-wave",
                                          "helm.sh/hook-weight"});
      v) {
    std::string_view text = v->IsString() ? v->AsString() : "";
    int wave = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), wave);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
      return InvalidArgumentError("{}: annotation {} must be an integer in quotes, e.g. \"-1\"", Where(*v), key);
    }
    task.wave = wave;
  }
  if (auto [key, v] = Annotation(object, {"gantry.dev/hook", "argocd.argoproj.io/hook", "helm.sh/hook"}); v) {
    std::string text = v->IsString() ? std::string(v->AsString()) : "";
    std::vector<std::string_view> phases = SplitCommaList(text);
    // Argo CD allows several phases; Gantry runs a hook in the first it supports. Helm test hooks
    // run only on `helm test`, and Helm's delete and rollback hooks never on an install or upgrade:
    // Argo CD ignores them, and so does Gantry, unless the list also names a phase that runs.
    task.hook = HookPhase::kNone;
    std::string ignored;  // the first Helm hook of the list that a sync never runs
    for (std::string_view p : phases) {
      if (p == "PreSync" || p == "pre-install" || p == "pre-upgrade") task.hook = HookPhase::kPreSync;
      else if (p == "Sync") task.hook = HookPhase::kSync;
      else if (p == "PostSync" || p == "post-install" || p == "post-upgrade") task.hook = HookPhase::kPostSync;
      else if (p == "SyncFail") task.hook = HookPhase::kSyncFail;
      else if (p == "Skip") {
        task.hook = HookPhase::kSkipped;
        task.skip_reason = fmt::format("annotation {}: Skip: never applied", key);
      } else if (p == "PostDelete") {
        // Argo CD runs it when the Application is deleted; Gantry does not act on that deletion.
        task.hook = HookPhase::kSkipped;
        task.skip_reason = "a PostDelete hook: Gantry does not run hooks when an application is deleted";
      } else {
        bool helm_only = key == "helm.sh/hook" || key == "gantry.dev/hook";
        if (ignored.empty() && helm_only &&
            (p == "test" || p == "test-success" || p == "test-failure" || p == "pre-delete" ||
             p == "post-delete" || p == "pre-rollback" || p == "post-rollback")) {
          ignored = p;
        }
        continue;
      }
      break;
    }
    if (task.hook == HookPhase::kNone && !ignored.empty()) {
      task.hook = HookPhase::kSkipped;
      task.skip_reason = ignored.starts_with("test")
                             ? "a Helm test hook: it runs only with helm test, never on a sync"
                             : fmt::format("a Helm {} hook: a sync runs no delete or rollback hooks", ignored);
    }
    if (task.hook == HookPhase::kSkipped) return OkStatus();
    if (task.hook == HookPhase::kNone) {
      return InvalidArgumentError("{}: annotation {}: unknown hook {:?} (PreSync, Sync, PostSync, SyncFail, Skip, "
                                  "or Helm's pre-install, pre-upgrade, post-install, post-upgrade, and test, "
                                  "delete and rollback hooks, which are skipped)",
                                  Where(*v), key, text);
    }
    task.hook_delete_policies = {"BeforeHookCreation"};
  }
  if (auto [key, v] = Annotation(object, {"gantry.dev/hook-delete-policy",
                                           "argocd.argoproj.io/hook-delete-policy",
                                           "helm.sh/hook-delete-policy"});
      v) {
    task.hook_delete_policies.clear();
    for (std::string_view p : SplitCommaList(v->IsString() ? v->AsString() : "")) {
      std::string policy(p == "hook-succeeded"         ? "HookSucceeded"
                         : p == "hook-failed"          ? "HookFailed"
                         : p == "before-hook-creation" ? "BeforeHookCreation"
                                                       : p);
      if (policy != "HookSucceeded" && policy != "HookFailed" && policy != "BeforeHookCreation") {
        return InvalidArgumentError("{}: annotation {}: unknown policy {:?}", Where(*v), key, p);
      }
      task.hook_delete_policies.push_back(policy);
    }
  }
  task.is_namespace_or_crd = task.hook == HookPhase::kNone &&
                             (task.ref.kind == "Namespace" || task.ref.kind == "CustomResourceDefinition");
  return OkStatus();
}

SyncPlan Plan(std::vector<Task> tasks) {
  auto less = [](const Task& a, const Task& b) {
    auto key = [](const Task& t) {
      return std::tuple(KindOrder(t.ref.kind), t.ref.kind, t.ref.namespace_, t.ref.name);
    };
    return key(a) < key(b);
  };
  std::vector<Task> first, fail;
  std::map<int, std::vector<Task>> pre, waves, post;  // by wave
  SyncPlan plan;
  for (Task& t : tasks) {
    switch (t.hook) {
      case HookPhase::kPreSync: pre[t.wave].push_back(std::move(t)); break;
      case HookPhase::kPostSync: post[t.wave].push_back(std::move(t)); break;
      case HookPhase::kSyncFail: fail.push_back(std::move(t)); break;
      case HookPhase::kSync: waves[t.wave].push_back(std::move(t)); break;
      case HookPhase::kSkipped: plan.skipped.push_back(std::move(t)); break;
      case HookPhase::kNone:
        if (t.is_namespace_or_crd) first.push_back(std::move(t));
        else waves[t.wave].push_back(std::move(t));
        break;
    }
  }
  auto add = [&](std::vector<Task> step, std::string name) {
    if (step.empty()) return;
    std::stable_sort(step.begin(), step.end(), less);
    for (Task& t : step) t.step = static_cast<int>(plan.steps.size());
    plan.steps.push_back(std::move(step));
    plan.step_names.push_back(std::move(name));
  };
  // Hooks of a phase run wave by wave; a phase of one wave is one step named for the phase.
  auto add_phase = [&](std::map<int, std::vector<Task>>& phase, std::string_view name) {
    for (auto& [wave, step] : phase) {
      add(std::move(step), phase.size() == 1 ? std::string(name) : fmt::format("{}, wave {}", name, wave));
    }
  };
  add_phase(pre, "PreSync hooks");
  add(std::move(first), "namespaces and CRDs");
  for (auto& [wave, step] : waves) add(std::move(step), fmt::format("wave {}", wave));
  add_phase(post, "PostSync hooks");
  std::stable_sort(fail.begin(), fail.end(), [&](const Task& a, const Task& b) {
    return a.wave != b.wave ? a.wave < b.wave : less(a, b);
  });
  plan.sync_fail_hooks = std::move(fail);
  return plan;
}

}  // namespace gantry::sync

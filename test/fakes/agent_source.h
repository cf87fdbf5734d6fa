#pragma once
// fakes::FakeSource: an agent::Source serving manifests set by the test, per commit, and the paths
// each commit changed; counts resolves and renders. Thread-safe.

#include <map>
#include <set>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "base/mutex.h"
#include "value/value.h"

namespace gantry::fakes {

// Two ConfigMaps (a, b) as one manifest: what the agent tests' sources render.
inline constexpr char kTwoConfigMaps[] = R"(apiVersion: v1
kind: ConfigMap
metadata: {name: a}
data: {k: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b}
data: {k: "2"}
)";

// A Deployment that never becomes Healthy (no node matches its Pods; the fake has no controller at
// all), then a ConfigMap `after-stuck` in wave 1: a sync waits for wave 0 until stopped or timed
// out, and must not apply wave 1 when stopped.
inline constexpr char kStuckThenWave1[] = R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck}
spec:
  replicas: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {gantry.dev/no-such-node: "true"}
      containers: [{name: app, image: registry.example/stuck:1}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: after-stuck, annotations: {gantry.dev/sync-wave: "1"}}
)";

class FakeSource final : public agent::Source {
 public:
  // Commit `commit` holds `yaml` under `path`; `changed` lists the files it changed from the
  // previous commit. A target revision naming a commit resolves to it; any other to the latest
  // commit added.
  void AddCommit(const std::string& commit, std::map<std::string, std::string> yaml_by_path,
                 std::vector<std::string> changed) {
    MutexLock lock(mu_);
    previous_[commit] = head_;
    head_ = commit;
    commits_[commit] = std::move(yaml_by_path);
    changed_[commit] = std::move(changed);
  }
  void FailResolve(Status s) {
    MutexLock lock(mu_);
    resolve_error_ = std::move(s);
  }
  // Each render then fetches `urls` beyond the source (as chart dependencies would), asking the
  // caller's check first; a refusal is the render's error.
  void FetchBeyondSource(std::vector<std::string> urls) {
    MutexLock lock(mu_);
    beyond_ = std::move(urls);
  }

  Result<std::string> Resolve(const agent::Application& app, std::chrono::steady_clock::time_point) override {
    MutexLock lock(mu_);
    ++resolves_;
    if (!resolve_error_.ok()) return resolve_error_;
    if (commits_.contains(app.source.target_revision)) return app.source.target_revision;
    if (head_.empty()) return NotFoundError("no commit");
    return head_;
  }

  Result<bool> MayDiffer(const agent::Application& app, std::string_view from, std::string_view to) override {
    MutexLock lock(mu_);
    for (std::string c(to); !c.empty() && c != from; c = previous_[c]) {
      for (const std::string& f : changed_[c]) {
        if (f.starts_with(app.source.path + "/")) return true;
      }
    }
    return false;
  }

  Result<agent::Rendered> Render(const agent::Application& app, std::string_view commit,
                                 const render::RepositoryCheck& allow_repository) override {
    MutexLock lock(mu_);
    ++renders_;
    for (const std::string& url : beyond_) {
      if (!allow_repository) continue;
      if (Status s = allow_repository(url); !s.ok()) return s.WithContext(app.source.path + "/Chart.yaml");
    }
    auto c = commits_.find(std::string(commit));
    if (c == commits_.end()) return NotFoundError("no commit {}", commit);
    auto p = c->second.find(app.source.path);
    if (p == c->second.end()) return NotFoundError("render {} at {}: no such path", app.source.path, commit);
    GANTRY_ASSIGN_OR_RETURN(std::vector<value::Value> docs, value::ParseYaml(p->second, app.source.path + "/all.yaml"));
    return agent::Rendered{std::string(commit), std::move(docs), ""};
  }

  uint64_t renders() const override {
    MutexLock lock(mu_);
    return renders_;
  }
  uint64_t resolves() const {
    MutexLock lock(mu_);
    return resolves_;
  }

 private:
  mutable Mutex mu_;
  std::string head_ GUARDED_BY(mu_);
  std::vector<std::string> beyond_ GUARDED_BY(mu_);
  std::map<std::string, std::string> previous_ GUARDED_BY(mu_);
  std::map<std::string, std::map<std::string, std::string>> commits_ GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::string>> changed_ GUARDED_BY(mu_);
  Status resolve_error_ GUARDED_BY(mu_);
  uint64_t renders_ GUARDED_BY(mu_) = 0;
  uint64_t resolves_ GUARDED_BY(mu_) = 0;
};

}  // namespace gantry::fakes

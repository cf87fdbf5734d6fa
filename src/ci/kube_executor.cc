// KubernetesExecutor: one Pod per step. The step's environment goes into a Secret referenced by
// the Pod (so secret values are never in the Pod spec); the Pod runs the argv with restartPolicy
// Never, no service account token, an emptyDir workspace and activeDeadlineSeconds = timeout.
// The executor polls the Pod, forwards new log bytes (GET .../log), reads the exit code from
// status.containerStatuses[0].state.terminated, and deletes the Pod and Secret at the end (also on
// timeout and cancellation, which is what ends the step's processes there).

#include <random>
#include <thread>

#include "base/log.h"
#include "ci/executor.h"
#include "kube/kube.h"
#include "value/value.h"

namespace gantry::ci {
namespace {

using value::Value;
using SteadyClock = std::chrono::steady_clock;

std::string DnsName(std::string_view s) {
  std::string out;
  for (char c : s) {
    char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out += std::isalnum(static_cast<unsigned char>(l)) ? l : '-';
  }
  while (out.find("--") != std::string::npos) out.erase(out.find("--"), 1);
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.substr(0, 40);
}

class KubernetesExecutor final : public Executor {
 public:
  KubernetesExecutor(kube::Client& client, KubernetesExecutorOptions options)
      : client_(client), options_(std::move(options)) {}

  std::string_view name() const override { return "kubernetes"; }
  std::string WorkspacePath(const std::filesystem::path&) const override { return "/workspace"; }
  std::string ArtifactsPath(const std::filesystem::path&) const override { return "/artifacts"; }

  Result<StepOutcome> Run(const StepRequest& r, const OutputFn& output, const std::atomic<bool>& cancel) override {
    static std::atomic<uint32_t> counter{0};
    std::string pod_name = fmt::format("gantry-{}-{}-{:x}", DnsName(r.run_label), DnsName(r.step),
                                       (std::random_device{}() ^ counter.fetch_add(1)) & 0xffffff);
    const std::string& ns = options_.namespace_;
    Value secret = Value::Map();
    secret.Set("apiVersion", "v1");
    secret.Set("kind", "Secret");
    Value meta = Value::Map();
    meta.Set("name", pod_name + "-env");
    meta.Set("namespace", ns);
    Value labels = Value::Map();
    labels.Set("app.kubernetes.io/managed-by", "gantry");
    labels.Set("gantry.dev/run", DnsName(r.run_label));
    labels.Set("gantry.dev/step", DnsName(r.step));
    meta.Set("labels", labels);
    secret.Set("metadata", meta);
    Value data = Value::Map();
    for (const auto& [k, v] : r.env) data.Set(k, v);
    secret.Set("stringData", data);
    secret.Set("type", "Opaque");

    Value pod = BuildPod(r, pod_name, labels);
    kube::ObjectRef secret_ref{"v1", "Secret", ns, pod_name + "-env"};
    kube::ObjectRef pod_ref{"v1", "Pod", ns, pod_name};
    auto created_secret = client_.Create(secret);
    if (!created_secret.ok()) return created_secret.status().WithContext("create Secret " + secret_ref.ToString());
    auto created = client_.Create(pod);
    if (!created.ok()) {
      client_.Delete(secret_ref).IgnoreError();
      return created.status().WithContext("create Pod " + pod_ref.ToString());
    }
    StepOutcome out;
    SteadyClock::time_point start = SteadyClock::now();
    size_t log_sent = 0;
    std::string log_path = fmt::format("/api/v1/namespaces/{}/pods/{}/log", ns, pod_name);
    auto pump_logs = [&] {
      auto text = client_.GetRaw(log_path);
      if (text.ok() && text->size() > log_sent) {
        output(std::string_view(*text).substr(log_sent));
        log_sent = text->size();
      }
    };
    for (;;) {
      auto got = client_.Get(pod_ref);
      if (got.ok()) {
        const Value* term = got->Find({"status", "containerStatuses", 0, "state", "terminated"});
        std::string_view phase;
        if (const Value* p = got->Find({"status", "phase"}); p != nullptr && p->IsString()) phase = p->AsString();
        if (term != nullptr || phase == "Succeeded" || phase == "Failed") {
          pump_logs();
          const Value* code = term != nullptr ? term->Get("exitCode") : nullptr;
          out.exit_code = code != nullptr && code->IsInt() ? static_cast<int>(code->AsInt()) : (phase == "Succeeded" ? 0 : 1);
          const Value* reason = got->Find({"status", "reason"});
          if (reason != nullptr && reason->IsString() && reason->AsString() == "DeadlineExceeded") out.timed_out = true;
          break;
        }
        if (phase == "Running") pump_logs();
      } else if (got.status().code() == Code::kNotFound) {
        output("gantry: the step's Pod was deleted by someone else\n");
        out.exit_code = -1;
        out.term_signal = 9;
        break;
      }
      if (SteadyClock::now() - start >= r.timeout) {
        out.timed_out = true;
        break;
      }
      if (cancel.load()) {
        out.cancelled = true;
        break;
      }
      std::this_thread::sleep_for(options_.poll);
    }
    out.duration = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start);
    kube::DeleteOptions now;
    now.propagation = kube::Propagation::kBackground;
    if (Status s = client_.Delete(pod_ref, now); !s.ok() && s.code() != Code::kNotFound) {
      log::Warn("ci: delete Pod {}: {}", pod_ref.ToString(), s.message());
    }
    if (Status s = client_.Delete(secret_ref, now); !s.ok() && s.code() != Code::kNotFound) {
      log::Warn("ci: delete Secret {}: {}", secret_ref.ToString(), s.message());
    }
    return out;
  }

 private:
  Value BuildPod(const StepRequest& r, const std::string& pod_name, const Value& labels) const {
    Value pod = Value::Map();
    pod.Set("apiVersion", "v1");
    pod.Set("kind", "Pod");
    Value meta = Value::Map();
    meta.Set("name", pod_name);
    meta.Set("namespace", options_.namespace_);
    meta.Set("labels", labels);
    pod.Set("metadata", meta);
    Value c = Value::Map();
    c.Set("name", "step");
    c.Set("image", r.image.empty() ? options_.default_image : r.image);
    Value cmd = Value::Seq();
    for (const auto& a : r.argv) cmd.Append(a);
    c.Set("command", cmd);
    c.Set("workingDir", "/workspace");
    Value env_from = Value::Seq();
    Value ref = Value::Map();
    Value sref = Value::Map();
    sref.Set("name", pod_name + "-env");
    ref.Set("secretRef", sref);
    env_from.Append(ref);
    c.Set("envFrom", env_from);
    Value mounts = Value::Seq();
    Value m = Value::Map();
    m.Set("name", "workspace");
    m.Set("mountPath", "/workspace");
    mounts.Append(m);
    c.Set("volumeMounts", mounts);
    if (r.limits.memory_bytes > 0) {
      Value res = Value::Map();
      Value lim = Value::Map();
      lim.Set("memory", std::to_string(r.limits.memory_bytes));
      res.Set("limits", lim);
      c.Set("resources", res);
    }
    Value sc = Value::Map();
    sc.Set("allowPrivilegeEscalation", false);
    c.Set("securityContext", sc);
    Value spec = Value::Map();
    spec.Set("restartPolicy", "Never");
    spec.Set("automountServiceAccountToken", false);
    if (!options_.service_account.empty()) spec.Set("serviceAccountName", options_.service_account);
    spec.Set("activeDeadlineSeconds", static_cast<int64_t>(std::max<int64_t>(1, r.timeout.count() / 1000)));
    Value containers = Value::Seq();
    containers.Append(c);
    spec.Set("containers", containers);
    Value vols = Value::Seq();
    Value v = Value::Map();
    v.Set("name", "workspace");
    v.Set("emptyDir", Value::Map());
    vols.Append(v);
    spec.Set("volumes", vols);
    pod.Set("spec", spec);
    return pod;
  }

  kube::Client& client_;
  KubernetesExecutorOptions options_;
};

}  // namespace

std::unique_ptr<Executor> NewKubernetesExecutor(kube::Client& client, KubernetesExecutorOptions options) {
  return std::make_unique<KubernetesExecutor>(client, std::move(options));
}

}  // namespace gantry::ci

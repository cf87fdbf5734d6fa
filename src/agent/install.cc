// What `gantry install` applies to a cluster for the pull agent.

#include "agent/agent.h"
#include "base/status.h"
#include "project/project.h"

namespace gantry::agent {
namespace {

using value::Value;

}  // namespace

std::vector<Value> InstallManifests(const std::string& ns, const std::string& image, const InstallPlacement& placement) {
  std::vector<Value> out;
  out.push_back(api::ApplicationCrd());
  out.push_back(project::ProjectCrd());
  out.push_back(value::BuiltInYaml(fmt::format("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {}}}\n", ns)));
  out.push_back(value::BuiltInYaml(fmt::format(
      "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: gantry-agent, namespace: {}}}\n", ns)));
  // The agent itself reads everything (its caches, diffs and health), writes only its own state
  // (Application status and its shard claim, inventories, Events, its Lease and the Leases of
  // sharded replicas gone for long, namespaces it is asked to create), and
  // applies an application's objects as the ServiceAccount its project names (impersonate), so
  // the apiserver's RBAC bounds every tenant.
  out.push_back(value::BuiltInYaml(R"(apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: gantry-agent}
rules:
- {apiGroups: ["*"], resources: ["*"], verbs: [get, list, watch]}
- {apiGroups: [gantry.dev], resources: [applications, applications/status], verbs: [get, list, watch, patch, update]}
- {apiGroups: [""], resources: [configmaps], verbs: [create, patch, update, delete]}
- {apiGroups: [""], resources: [events], verbs: [create, patch]}
- {apiGroups: [""], resources: [namespaces], verbs: [create, patch]}
- {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [create, update, patch, delete]}
- {apiGroups: [""], resources: [serviceaccounts], verbs: [impersonate]}
- {nonResourceURLs: ["*"], verbs: [get]}
)"));
  out.push_back(value::BuiltInYaml(fmt::format(R"(apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: gantry-agent}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gantry-agent}}
subjects: [{{kind: ServiceAccount, name: gantry-agent, namespace: {}}}]
)", ns)));
  // The default project: what an Application without spec.project gets. It may deploy anything
  // anywhere, as the ServiceAccount gantry-default with cluster-admin-like rights, which is what a
  // single-team cluster wants. To share the cluster, narrow this Project (or its account's role)
  // and give each team a Project of its own (docs/tenancy.md).
  out.push_back(value::BuiltInYaml(fmt::format(
      "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: gantry-default, namespace: {}}}\n", ns)));
  out.push_back(value::BuiltInYaml(R"(apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: gantry-default-project}
rules:
- {apiGroups: ["*"], resources: ["*"], verbs: ["*"]}
)"));
  out.push_back(value::BuiltInYaml(fmt::format(R"(apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: gantry-default-project}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gantry-default-project}}
subjects: [{{kind: ServiceAccount, name: gantry-default, namespace: {}}}]
)", ns)));
  out.push_back(value::BuiltInYaml(fmt::format(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {{name: default, namespace: {ns}}}
spec:
  description: "Every Application without spec.project. Permissive: narrow it to share the cluster."
  sourceRepos: ["*"]
  destinations: [{{server: "*", namespace: "*"}}]
  clusterResourceWhitelist: [{{group: "*", kind: "*"}}]
  destinationServiceAccounts: [{{server: "*", namespace: "*", defaultServiceAccount: "{ns}:gantry-default"}}]
  credentials: ["*"]
)", fmt::arg("ns", ns))));
  // The root filesystem is read-only: the caches live in one emptyDir, and /tmp (where a Git
  // revision is checked out for Kustomize and Helm to render) is another.
  out.push_back(value::BuiltInYaml(fmt::format(R"(apiVersion: apps/v1
kind: Deployment
metadata: {{name: gantry-agent, namespace: {ns}, labels: {{app.kubernetes.io/name: gantry-agent}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app.kubernetes.io/name: gantry-agent}}}}
  template:
    metadata: {{labels: {{app.kubernetes.io/name: gantry-agent}}}}
    spec:
      serviceAccountName: gantry-agent
      securityContext: {{runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
      - name: agent
        image: {image}
        args: [agent, --in-cluster, --namespace, {ns}, --listen, ":8080"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: http}}}}
        resources: {{requests: {{cpu: 50m, memory: 64Mi}}, limits: {{memory: 256Mi}}}}
        securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {{drop: [ALL]}}}}
        volumeMounts: [{{name: cache, mountPath: /var/cache/gantry}}, {{name: tmp, mountPath: /tmp}}]
        env: [{{name: GANTRY_CACHE, value: /var/cache/gantry}}]
      volumes: [{{name: cache, emptyDir: {{}}}}, {{name: tmp, emptyDir: {{}}}}]
)", fmt::arg("ns", ns), fmt::arg("image", image))));
  Value* pod = out.back().MutableGet("spec")->MutableGet("template")->MutableGet("spec");
  if (!placement.node_selector.empty()) {
    Value selector = Value::Map();
    for (const auto& [k, v] : placement.node_selector) selector.Set(k, v);
    pod->Set("nodeSelector", selector);
  }
  if (!placement.tolerate_taints.empty()) {
    Value tolerations = Value::Seq();
    for (const std::string& key : placement.tolerate_taints) {
      Value t = Value::Map();
      t.Set("key", key);
      t.Set("operator", "Exists");
      tolerations.Append(t);
    }
    pod->Set("tolerations", tolerations);
  }
  Value* args = pod->MutableGet("containers")->MutableAt(0)->MutableGet("args");
  if (placement.replicas > 0) {
    out.back().MutableGet("spec")->Set("replicas", static_cast<int64_t>(placement.replicas));
    args->Append("--shard");
  }
  for (const std::string& a : placement.extra_args) args->Append(a);
  return out;
}

}  // namespace gantry::agent

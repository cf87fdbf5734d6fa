// What `gantry install` applies to a cluster for the pull agent.

#include "agent/agent.h"
#include "base/status.h"

namespace gantry::agent {
namespace {

using value::Value;

Value ParseOne(std::string_view yaml) {
  auto docs = value::ParseYaml(yaml, "install");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

}  // namespace

std::vector<Value> InstallManifests(const std::string& ns, const std::string& image) {
  std::vector<Value> out;
  out.push_back(api::ApplicationCrd());
  out.push_back(ParseOne(fmt::format("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {}}}\n", ns)));
  out.push_back(ParseOne(fmt::format(
      "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: gantry-agent, namespace: {}}}\n", ns)));
  // The agent applies arbitrary manifests, so it needs wide rights in its cluster, as Argo CD's
  // application controller and Flux's kustomize-controller have. Narrow this role to restrict what
  // applications may touch.
  out.push_back(ParseOne(R"(apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: gantry-agent}
rules:
- {apiGroups: ["*"], resources: ["*"], verbs: ["*"]}
- {nonResourceURLs: ["*"], verbs: [get]}
)"));
  out.push_back(ParseOne(fmt::format(R"(apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: gantry-agent}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gantry-agent}}
subjects: [{{kind: ServiceAccount, name: gantry-agent, namespace: {}}}]
)", ns)));
  out.push_back(ParseOne(fmt::format(R"(apiVersion: apps/v1
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
        volumeMounts: [{{name: cache, mountPath: /var/cache/gantry}}]
        env: [{{name: GANTRY_CACHE, value: /var/cache/gantry}}]
      volumes: [{{name: cache, emptyDir: {{}}}}]
)", fmt::arg("ns", ns), fmt::arg("image", image))));
  return out;
}

}  // namespace gantry::agent

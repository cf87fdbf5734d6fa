#include "corpus.h"

#include <cstdint>

#include <fmt/format.h>

namespace gantry::bench {
namespace {

class Rng {
 public:
  uint64_t Next() {  // splitmix64
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int Int(int lo, int hi) { return lo + static_cast<int>(Next() % static_cast<uint64_t>(hi - lo + 1)); }
  const char* Pick(std::initializer_list<const char*> xs) {
    return xs.begin()[Next() % xs.size()];
  }

 private:
  uint64_t state_ = 42;
};

const char* kWords[] = {"api", "web", "worker", "billing", "auth", "search", "cart", "ingest",
                        "gateway", "metrics", "payments", "profile", "orders", "catalog"};

std::string Name(Rng& r) {
  return fmt::format("{}-{}-{}", kWords[r.Next() % 14], kWords[r.Next() % 14], r.Int(1, 999));
}

void Deployment(Rng& r, std::string& out) {
  std::string name = Name(r);
  std::string team = kWords[r.Next() % 14];
  out += fmt::format(R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: {0}
  namespace: {1}
  labels:
    app.kubernetes.io/name: {0}
    app.kubernetes.io/part-of: {1}
    app.kubernetes.io/version: "{2}.{3}.{4}"
  annotations:
    deployment.kubernetes.io/revision: "{5}"
    gantry.dev/source: "git@github.com:example/{1}.git#main"
spec:
  replicas: {6}
  revisionHistoryLimit: 10
  selector:
    matchLabels:
      app.kubernetes.io/name: {0}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {0}
        app.kubernetes.io/part-of: {1}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "{7}"
    spec:
      serviceAccountName: {0}
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        fsGroup: 10001
      containers:
)",
                     name, team, r.Int(0, 9), r.Int(0, 30), r.Int(0, 99), r.Int(1, 50),
                     r.Int(1, 12), r.Int(8000, 9999));
  int containers = r.Int(1, 3);
  for (int c = 0; c < containers; ++c) {
    out += fmt::format(R"(      - name: {0}
        image: registry.example.com/{1}/{0}:v{2}.{3}.{4}@sha256:{5:016x}{6:016x}
        imagePullPolicy: IfNotPresent
        args: ["--port={7}", "--log-level=info", --metrics]
        ports:
        - name: http
          containerPort: {7}
          protocol: TCP
        env:
)",
                       c == 0 ? name : Name(r), team, r.Int(0, 9), r.Int(0, 30), r.Int(0, 99),
                       r.Next(), r.Next(), r.Int(8000, 9999));
    int envs = r.Int(3, 12);
    for (int e = 0; e < envs; ++e) {
      if (r.Int(0, 3) == 0) {
        out += fmt::format(R"(        - name: SECRET_{0}
          valueFrom:
            secretKeyRef:
              name: {1}
              key: key-{0}
)",
                           e, Name(r));
      } else {
        out += fmt::format("        - name: VAR_{}\n          value: \"{}\"\n", e,
                           r.Pick({"true", "false", "8080", "https://api.example.com/v1", "info",
                                   "/var/run/data", "100ms"}));
      }
    }
    out += fmt::format(R"(        resources:
          requests:
            cpu: {0}m
            memory: {1}Mi
          limits:
            cpu: "{2}"
            memory: {3}Gi
        livenessProbe:
          httpGet:
            path: /healthz
            port: http
          initialDelaySeconds: 10
          periodSeconds: 10
        readinessProbe:
          httpGet: {{path: /ready, port: http}}
          failureThreshold: 3
        volumeMounts:
        - name: config
          mountPath: /etc/{4}
          readOnly: true
)",
                       r.Int(1, 20) * 50, r.Int(1, 32) * 64, r.Int(1, 4), r.Int(1, 8),
                       kWords[r.Next() % 14]);
  }
  out += fmt::format(R"(      volumes:
      - name: config
        configMap:
          name: {0}-config
      tolerations:
      - key: dedicated
        operator: Equal
        value: {1}
        effect: NoSchedule
)",
                     name, team);
}

void Service(Rng& r, std::string& out) {
  std::string name = Name(r);
  out += fmt::format(R"(apiVersion: v1
kind: Service
metadata:
  name: {0}
  namespace: {1}
  labels:
    app.kubernetes.io/name: {0}
spec:
  type: {2}
  selector:
    app.kubernetes.io/name: {0}
  ports:
  - name: http
    port: 80
    targetPort: http
    protocol: TCP
  - name: grpc
    port: {3}
    targetPort: {3}
)",
                     name, kWords[r.Next() % 14], r.Pick({"ClusterIP", "ClusterIP", "NodePort"}),
                     r.Int(9000, 9999));
}

void ConfigMap(Rng& r, std::string& out) {
  std::string name = Name(r);
  out += fmt::format(R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: {0}-config
  namespace: {1}
data:
  LOG_LEVEL: {2}
  FEATURE_FLAGS: "alpha,beta"
  config.yaml: |
    server:
      port: {3}
      timeout: 30s
    database:
      host: db-{4}.example.internal
      pool: {5}
    # comment inside a block scalar
    features: [a, b, c]
  nginx.conf: |-
)",
                     name, kWords[r.Next() % 14], r.Pick({"info", "debug", "warn"}),
                     r.Int(8000, 9999), r.Int(1, 99), r.Int(5, 50));
  int locations = r.Int(2, 8);
  out += "    server {\n      listen 80;\n";
  for (int i = 0; i < locations; ++i) {
    out += fmt::format("      location /{} {{\n        proxy_pass http://{}:{};\n      }}\n",
                       kWords[r.Next() % 14], Name(r), r.Int(8000, 9999));
  }
  out += "    }\n";
}

void Property(Rng& r, std::string& out, int indent, int depth) {
  std::string pad(static_cast<size_t>(indent), ' ');
  int n = r.Int(3, depth > 0 ? 8 : 12);
  out += pad + "properties:\n";
  for (int i = 0; i < n; ++i) {
    out += fmt::format("{}  {}{}:\n", pad, kWords[r.Next() % 14], i);
    if (depth > 0 && r.Int(0, 2) == 0) {
      out += fmt::format("{}    type: object\n{}    description: Configuration of the {} subsystem.\n",
                         pad, pad, kWords[r.Next() % 14]);
      Property(r, out, indent + 4, depth - 1);
    } else {
      const char* type = r.Pick({"string", "integer", "boolean", "string"});
      out += fmt::format("{}    type: {}\n{}    description: >-\n{}      The {} setting; see the\n{}      "
                         "operator documentation for details.\n",
                         pad, type, pad, pad, kWords[r.Next() % 14], pad);
      if (r.Int(0, 3) == 0) out += fmt::format("{}    enum: [One, Two, Three]\n", pad);
      if (r.Int(0, 3) == 0) out += fmt::format("{}    x-kubernetes-int-or-string: true\n", pad);
    }
  }
}

void Crd(Rng& r, std::string& out) {
  std::string kind = kWords[r.Next() % 14];
  kind[0] = static_cast<char>(kind[0] - 'a' + 'A');
  out += fmt::format(R"(apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {0}s.example.com
  annotations:
    controller-gen.kubebuilder.io/version: v0.14.0
spec:
  group: example.com
  names:
    kind: {1}{2}
    listKind: {1}{2}List
    plural: {0}s
    singular: {0}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {{}}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
)",
                     kind, kind, r.Int(1, 999));
  Property(r, out, 8, 3);
}

}  // namespace

std::string GenerateManifestCorpus(size_t target_bytes) {
  Rng r;
  std::string out;
  out.reserve(target_bytes + 65536);
  while (out.size() < target_bytes) {
    int pick = r.Int(0, 99);
    if (pick < 40) {
      Deployment(r, out);
    } else if (pick < 65) {
      Service(r, out);
    } else if (pick < 90) {
      ConfigMap(r, out);
    } else {
      Crd(r, out);
    }
    out += "---\n";
  }
  return out;
}

}  // namespace gantry::bench

#include "health/health.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <ostream>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/path.h"
#include "value/value.h"

namespace gantry::health {
namespace {

using ::testing::HasSubstr;
using value::Value;
using enum HealthStatus;

// One live object in testdata/<file>.yaml and the health it must get. An empty `message` means the
// message must be empty; otherwise it must contain `message`.
struct Case {
  const char* file;
  HealthStatus status;
  const char* message;
};

const Case kCases[] = {
    // Deployment
    {"deployment-healthy", kHealthy, ""},
    {"deployment-paused", kSuspended, "Deployment is paused"},
    {"deployment-generation-not-observed", kProgressing,
     "observed deployment generation less than desired generation"},
    {"deployment-progress-deadline-exceeded", kDegraded,
     "Deployment \"web\" exceeded its progress deadline"},
    {"deployment-updating", kProgressing, "1 out of 3 new replicas have been updated"},
    {"deployment-old-replicas-terminating", kProgressing, "2 old replicas are pending termination"},
    {"deployment-updated-replicas-unavailable", kProgressing,
     "2 of 3 updated replicas are available"},
    {"deployment-deleting", kProgressing, "Pending deletion"},
    // StatefulSet
    {"statefulset-healthy", kHealthy,
     "partitioned roll out complete: 3 new pods have been updated"},
    {"statefulset-generation-not-observed", kProgressing,
     "Waiting for statefulset spec update to be observed"},
    {"statefulset-pods-not-ready", kProgressing, "Waiting for 1 pods to be ready"},
    {"statefulset-partitioned-rollout", kProgressing,
     "Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated"},
    {"statefulset-partitioned-rollout-complete", kHealthy,
     "partitioned roll out complete: 3 new pods have been updated"},
    {"statefulset-ondelete", kHealthy, "statefulset has 3 ready pods (1 updated)"},
    {"statefulset-revision-mismatch", kProgressing,
     "waiting for statefulset rolling update to complete 1 pods at revision redis-66e7d8c9a0"},
    {"statefulset-rolling-update-complete", kHealthy,
     "statefulset rolling update complete 2 pods at revision redis-66e7d8c9a0"},
    // DaemonSet
    {"daemonset-healthy", kHealthy, ""},
    {"daemonset-rollout-updating", kProgressing,
     "Waiting for daemon set \"node-exporter\" rollout to finish: 1 out of 3 new pods have been "
     "updated"},
    {"daemonset-pods-unavailable", kProgressing, "2 of 3 updated pods are available"},
    {"daemonset-ondelete", kHealthy, "daemon set 1 out of 3 new pods have been updated"},
    {"daemonset-generation-not-observed", kProgressing,
     "observed daemon set generation less than desired generation"},
    // ReplicaSet
    {"replicaset-healthy", kHealthy, ""},
    {"replicaset-replica-failure", kDegraded, "exceeded quota: compute"},
    {"replicaset-pods-unavailable", kProgressing, "1 out of 3 new replicas are available"},
    // Pod
    {"pod-running-ready", kHealthy, ""},
    {"pod-pending-unschedulable", kProgressing, ""},
    {"pod-succeeded", kHealthy, ""},
    {"pod-failed-evicted", kDegraded, "The node was low on resource: memory"},
    {"pod-failed-exit-code", kDegraded, "container \"migrate\" failed with exit code 1"},
    {"pod-failed-init-oomkilled", kDegraded, "OOMKilled"},
    {"pod-crashloop-terminated", kDegraded,
     "container \"web\" is crash-looping: exit code 2 (restarted 5 times)"},
    {"pod-crashloopbackoff", kDegraded, "container \"web\": CrashLoopBackOff: back-off 2m40s restarting failed container=web"},
    {"pod-imagepullbackoff", kDegraded,
     "Back-off pulling image \"ghcr.io/example/web:does-not-exist\""},
    {"pod-errimagepull", kDegraded, "401 Unauthorized"},
    {"pod-createcontainerconfigerror", kDegraded, "secret \"db-credentials\" not found"},
    {"pod-waiting-error-without-message", kDegraded, "container \"api\": RunContainerError"},
    {"pod-hook-running", kProgressing, ""},
    {"pod-hook-imagepullbackoff", kProgressing, ""},
    {"pod-onfailure-running", kProgressing, ""},
    {"pod-running-not-ready", kProgressing, ""},
    {"pod-running-restarted-not-ready", kDegraded,
     "container \"web\" is not ready and last terminated with exit code 137 (OOMKilled)"},
    {"pod-unknown-phase", kUnknown, "which was running pod web-7c9d8f6b5d-lost1 is unresponsive"},
    // Job, CronJob
    {"job-complete", kHealthy, "Reached expected number of succeeded pods"},
    {"job-failed", kDegraded, "Job has reached the specified backoff limit"},
    {"job-running", kProgressing, "Job has 2 active, 1 succeeded and 1 failed pods"},
    {"job-suspended", kSuspended, "Job suspended"},
    {"job-suspended-not-yet-observed", kSuspended, "Job is suspended"},
    {"cronjob-healthy", kHealthy, ""},
    {"cronjob-suspended", kSuspended, "CronJob is suspended"},
    // Service, Ingress
    {"service-clusterip", kHealthy, ""},
    {"service-loadbalancer-pending", kProgressing, "Waiting for the load balancer"},
    {"service-loadbalancer-ready", kHealthy, ""},
    {"ingress-healthy", kHealthy, ""},
    {"ingress-no-address", kProgressing, "publish an address"},
    // PersistentVolumeClaim
    {"pvc-bound", kHealthy, ""},
    {"pvc-pending", kProgressing, "Waiting for the claim to be bound"},
    {"pvc-lost", kDegraded, "lost its volume"},
    // CustomResourceDefinition
    {"crd-established", kHealthy, "CRD is established"},
    {"crd-names-not-accepted", kDegraded,
     "CRD names have not been accepted: \"cert\" is already in use"},
    {"crd-installing", kProgressing,
     "CRD is not established yet: the initial names have been accepted"},
    {"crd-no-conditions", kProgressing, "Status conditions not found"},
    {"crd-non-structural-schema", kDegraded, "Schema violations found: spec.validation"},
    // APIService
    {"apiservice-available", kHealthy, "Passed: all checks passed"},
    {"apiservice-unavailable", kProgressing, "FailedDiscoveryCheck: failing or missing response"},
    {"apiservice-no-status", kProgressing, "Waiting to be processed"},
    // Namespace
    {"namespace-active", kHealthy, ""},
    {"namespace-terminating", kProgressing, "Pending deletion"},
    // HorizontalPodAutoscaler
    {"hpa-v2-healthy", kHealthy, "recommended size matches current size"},
    {"hpa-v2-failed-metrics", kDegraded, "the HPA was unable to compute the replica count"},
    {"hpa-v2-no-conditions", kProgressing, "Waiting to Autoscale"},
    {"hpa-v1-annotation-healthy", kHealthy, "recommended size matches current size"},
    // Any other kind
    {"configmap", kHealthy, ""},
    {"clusterrole", kHealthy, ""},
    {"certificate-ready", kHealthy, "Certificate is up to date and has not expired"},
    {"certificate-issuing", kProgressing, "Issuing certificate as Secret does not exist"},
    {"kustomization-stalled", kDegraded, "kustomization path not found"},
    {"helmrelease-reconciling", kProgressing, "Running 'upgrade' action with timeout of 5m0s"},
    {"custom-resource-generation-not-observed", kProgressing,
     "Cluster generation is 3, but latest observed generation is 2"},
    {"custom-resource-available", kHealthy, "2/2 replicas available"},
    {"custom-resource-unknown-conditions", kHealthy, ""},
    // Malformed objects
    {"malformed-status-string", kUnknown,
     "cannot assess health: .status is a string (\"Running\"), expected a map"},
    {"malformed-service-status-list", kUnknown, ".status is a list, expected a map"},
    {"malformed-conditions-map", kUnknown, ".status.conditions is a map, expected a list"},
    {"malformed-condition-item-string", kUnknown,
     ".status.conditions[0] is a string (\"Complete\"), expected a map"},
    {"malformed-replicas-string", kUnknown,
     ".spec.replicas is a string (\"three\"), expected a 32-bit integer"},
    {"malformed-replicas-overflow", kUnknown,
     ".spec.replicas is an integer (9223372036854775807), expected a 32-bit integer"},
    {"malformed-container-statuses-map", kUnknown,
     ".status.containerStatuses is a map, expected a list"},
    {"malformed-paused-string", kUnknown,
     ".spec.paused is a string (\"true\"), expected a boolean"},
    {"malformed-not-a-map", kUnknown, "the object is a list, expected a map"},
    {"malformed-metadata-string", kUnknown,
     ".metadata is a string (\"web-config\"), expected a map"},
    {"malformed-hpa-annotation", kUnknown, "cannot parse the conditions annotation"},
    {"malformed-generation-string", kUnknown,
     ".metadata.generation is a string (\"3\"), expected an integer"},
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.file; }

Value Load(const std::string& file) {
  std::string path = "testdata/" + file + ".yaml";
  auto text = ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  if (!text.ok()) return Value();
  auto docs = value::ParseYaml(*text, path);
  EXPECT_TRUE(docs.ok()) << docs.status().ToString();
  if (!docs.ok()) return Value();
  EXPECT_EQ(docs->size(), 1u) << path;
  return docs->empty() ? Value() : docs->front();
}

class FixtureTest : public ::testing::TestWithParam<Case> {};

TEST_P(FixtureTest, HasExpectedHealth) {
  const Case& c = GetParam();
  Value live = Load(c.file);
  Health health = Assess(&live);
  EXPECT_EQ(Name(health.status), Name(c.status)) << health.message;
  if (std::string_view(c.message).empty()) {
    EXPECT_EQ(health.message, "");
  } else {
    EXPECT_THAT(health.message, HasSubstr(c.message));
  }
}

INSTANTIATE_TEST_SUITE_P(Testdata, FixtureTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& param) {
                           std::string name = param.param.file;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(FixturesTest, EveryFileInTestdataHasACaseAndEveryCaseAFile) {
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator("testdata")) {
    if (entry.path().extension() == ".yaml") files.insert(entry.path().stem().string());
  }
  std::set<std::string> cases;
  for (const Case& c : kCases) {
    EXPECT_TRUE(cases.insert(c.file).second) << "listed twice: " << c.file;
  }
  EXPECT_EQ(files, cases);
  EXPECT_GE(cases.size(), 40u);
}

TEST(AssessTest, AbsentObjectIsMissing) {
  Health health = Assess(nullptr);
  EXPECT_EQ(health.status, kMissing);
  EXPECT_THAT(health.message, HasSubstr("does not exist"));
}

TEST(AssessTest, NamespaceTerminatingWithoutDeletionTimestampIsProgressing) {
  Value ns = Load("namespace-active");
  ns.MutableGet("status")->Set("phase", "Terminating");
  EXPECT_EQ(Assess(&ns), (Health{kProgressing, "Namespace is terminating"}));
}

TEST(AssessTest, ChecksAreChosenByGroupAndKindWhateverTheVersion) {
  Value deployment = Load("deployment-updating");
  ASSERT_EQ(Assess(&deployment).status, kProgressing);

  Value beta = deployment;
  beta.Set("apiVersion", "apps/v1beta2");
  EXPECT_EQ(Assess(&beta), Assess(&deployment));

  // Another group's Deployment is judged by the generic rules (its Progressing condition is not
  // one of them), not by the apps/Deployment check.
  Value other = deployment;
  other.Set("apiVersion", "example.com/v1");
  EXPECT_EQ(Assess(&other).status, kHealthy);
}

TEST(AssessTest, WholeNumbersWrittenAsDoublesAreIntegers) {
  Value deployment = Load("deployment-updating");
  deployment.MutableGet("spec")->Set("replicas", 3.0);
  EXPECT_EQ(Assess(&deployment).status, kProgressing);
  deployment.MutableGet("spec")->Set("replicas", 2.5);
  EXPECT_EQ(Assess(&deployment).status, kUnknown);
}

TEST(AssessTest, DeletionWinsOverEveryOtherState) {
  Value pod = Load("pod-crashloopbackoff");
  ASSERT_EQ(Assess(&pod).status, kDegraded);
  pod.MutableGet("metadata")->Set("deletionTimestamp", "2024-05-06T13:00:00Z");
  EXPECT_EQ(Assess(&pod), (Health{kProgressing, "Pending deletion"}));
}

// Replaces every node of every fixture, one at a time, with values of every type: Assess must
// never abort (or trip a sanitizer), and many of the replacements must be noticed (Unknown) rather
// than read as zero values.
TEST(AssessTest, NeverCrashesOnMalformedObjects) {
  using Step = std::variant<std::string, size_t>;
  const Value replacements[] = {Value(),
                                Value("x"),
                                Value(int64_t{-1}),
                                Value(int64_t{9223372036854775807}),
                                Value(-9.5e300),
                                Value(true),
                                Value::Seq(),
                                Value::Map(),
                                [] {
                                  Value seq = Value::Seq();
                                  seq.Append("x");
                                  seq.Append(Value::Map());
                                  return seq;
                                }()};
  size_t assessed = 0;
  size_t unknown = 0;
  for (const Case& c : kCases) {
    Value original = Load(c.file);
    std::vector<std::vector<Step>> paths;
    std::vector<Step> path;
    std::function<void(const Value&)> walk = [&](const Value& v) {
      paths.push_back(path);
      for (const value::MapEntry& e : v.entries()) {
        path.emplace_back(std::string(e.key.AsString()));
        walk(e.value);
        path.pop_back();
      }
      for (size_t i = 0; i < v.items().size(); ++i) {
        path.emplace_back(i);
        walk(v.items()[i]);
        path.pop_back();
      }
    };
    walk(original);
    for (const std::vector<Step>& at : paths) {
      for (const Value& replacement : replacements) {
        Value mutated = original;
        Value* node = &mutated;
        for (const Step& step : at) {
          node = std::holds_alternative<std::string>(step)
                     ? node->MutableGet(std::get<std::string>(step))
                     : node->MutableAt(std::get<size_t>(step));
        }
        *node = replacement;
        Health health = Assess(&mutated);
        EXPECT_FALSE(Name(health.status).empty());
        ++assessed;
        unknown += health.status == kUnknown;
      }
    }
  }
  EXPECT_GT(assessed, 10000u);
  EXPECT_GT(unknown, assessed / 20);  // the checks do notice wrong types
}

TEST(NameTest, NamesAreArgoCDs) {
  EXPECT_EQ(Name(kHealthy), "Healthy");
  EXPECT_EQ(Name(kProgressing), "Progressing");
  EXPECT_EQ(Name(kDegraded), "Degraded");
  EXPECT_EQ(Name(kSuspended), "Suspended");
  EXPECT_EQ(Name(kMissing), "Missing");
  EXPECT_EQ(Name(kUnknown), "Unknown");
}

TEST(IsWorseTest, FollowsArgoCDsOrder) {
  const HealthStatus order[] = {kHealthy, kSuspended, kProgressing, kMissing, kDegraded, kUnknown};
  for (size_t i = 0; i < std::size(order); ++i) {
    for (size_t j = 0; j < std::size(order); ++j) {
      EXPECT_EQ(IsWorse(order[i], order[j]), j > i) << Name(order[i]) << " then " << Name(order[j]);
    }
  }
}

}  // namespace
}  // namespace gantry::health

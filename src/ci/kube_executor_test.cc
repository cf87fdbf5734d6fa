// The Pod the Kubernetes executor creates for a step, as a value (no cluster needed; the
// executor's behaviour against a control plane is in test/integration/ci_kube_test.cc).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ci/executor.h"

namespace gantry::ci {
namespace {

using ::testing::ElementsAre;
using value::Value;

std::string Text(const Value* v) { return v != nullptr && v->IsString() ? std::string(v->AsString()) : "<none>"; }

StepRequest Request() {
  StepRequest r;
  r.run_label = "run-12";
  r.step = "Test (linux, 3)";
  r.argv = {"bash", "-c", "echo \"$GREETING\" $(id -u)"};
  r.env = {{"GREETING", "hello $USER"}, {"TOKEN", "canary-kube-secret"}};
  r.secret_names = {"TOKEN"};
  r.limits.memory_bytes = 64 << 20;
  r.timeout = std::chrono::milliseconds(90'500);
  r.image = "alpine:3.20";
  return r;
}

TEST(KubernetesPodSpec, RunsTheArgvUnchangedWithPlainVariablesAndSecretRefs) {
  Value pod = KubernetesPodSpec(Request(), "gantry-run-12-test-linux-3-abcdef", {.namespace_ = "ci"});
  const Value* c = pod.Find({"spec", "containers", 0});
  ASSERT_NE(c, nullptr);
  std::vector<std::string> command;
  for (const auto& a : c->Get("command")->items()) command.emplace_back(a.AsString());
  EXPECT_THAT(command, ElementsAre("bash", "-c", "echo \"$GREETING\" $(id -u)"));
  EXPECT_EQ(Text(c->Get("image")), "alpine:3.20");
  const Value* env = c->Get("env");
  ASSERT_NE(env, nullptr);
  ASSERT_EQ(env->items().size(), 2u);
  EXPECT_EQ(Text(env->At(0)->Get("name")), "GREETING");
  EXPECT_EQ(Text(env->At(0)->Get("value")), "hello $USER");
  EXPECT_EQ(Text(env->At(1)->Get("name")), "TOKEN");
  EXPECT_EQ(env->At(1)->Get("value"), nullptr);
  EXPECT_EQ(Text(env->At(1)->Find({"valueFrom", "secretKeyRef", "name"})), "gantry-run-12-test-linux-3-abcdef-env");
  EXPECT_EQ(Text(env->At(1)->Find({"valueFrom", "secretKeyRef", "key"})), "TOKEN");
  EXPECT_EQ(value::ToJson(pod).find("canary-kube-secret"), std::string::npos) << value::ToJson(pod);
}

TEST(KubernetesPodSpec, NeverRestartsHasADeadlineLimitsAndNamesTheRunAndStep) {
  Value pod = KubernetesPodSpec(Request(), "gantry-run-12-test-linux-3-abcdef", {.namespace_ = "ci"});
  EXPECT_EQ(Text(pod.Find({"metadata", "namespace"})), "ci");
  EXPECT_EQ(Text(pod.Find({"metadata", "labels", "gantry.dev/run"})), "run-12");
  EXPECT_EQ(Text(pod.Find({"metadata", "labels", "gantry.dev/step"})), "test-linux-3");
  EXPECT_EQ(Text(pod.Find({"metadata", "annotations", "gantry.dev/step"})), "Test (linux, 3)");
  EXPECT_EQ(Text(pod.Find({"metadata", "labels", "app.kubernetes.io/managed-by"})), "gantry");
  EXPECT_EQ(Text(pod.Find({"spec", "restartPolicy"})), "Never");
  EXPECT_EQ(pod.Find({"spec", "activeDeadlineSeconds"})->AsInt(), 91);  // rounded up
  EXPECT_FALSE(pod.Find({"spec", "automountServiceAccountToken"})->AsBool());
  EXPECT_EQ(Text(pod.Find({"spec", "containers", 0, "resources", "limits", "memory"})), std::to_string(64 << 20));
}

TEST(KubernetesPodSpec, UsesTheDefaultImageAndNoResourcesWithoutLimits) {
  StepRequest r = Request();
  r.image.clear();
  r.limits = {};
  Value pod = KubernetesPodSpec(r, "p", {.default_image = "busybox:1"});
  EXPECT_EQ(Text(pod.Find({"spec", "containers", 0, "image"})), "busybox:1");
  EXPECT_EQ(pod.Find({"spec", "containers", 0, "resources"}), nullptr);
}

}  // namespace
}  // namespace gantry::ci

// AdoptClientSideApply: the managedFields rewrite that adopts what `kubectl apply` (client-side)
// created, as client-go's csaupgrade does it.

#include <gtest/gtest.h>

#include "sync/sync.h"
#include "value/value.h"

namespace gantry::sync {
namespace {

using value::Value;

Value Object(std::string_view managed_fields) {
  auto docs = value::ParseYaml(fmt::format(R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  resourceVersion: "42"
  managedFields: {}
data: {{a: "1", b: "2"}}
)", managed_fields));
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

const Value& Entries(const Value& object) { return *object.Find({"metadata", "managedFields"}); }

std::string Managers(const Value& object) {
  std::string out;
  for (const Value& e : Entries(object).items()) {
    if (!out.empty()) out += ",";
    out += value::StringAt(&e, {"manager"}) + "/" + value::StringAt(&e, {"operation"});
    if (std::string s = value::StringAt(&e, {"subresource"}); !s.empty()) out += "/" + s;
  }
  return out;
}

TEST(AdoptClientSideApplyTest, TheClientSideApplyEntryBecomesGantrysApplyEntry) {
  Value live = Object(R"([
    {manager: kubectl-client-side-apply, operation: Update, apiVersion: v1, time: "2026-01-01T00:00:00Z",
     fieldsType: FieldsV1, fieldsV1: {"f:data": {".": {}, "f:a": {}, "f:b": {}},
       "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}}}},
    {manager: kube-controller-manager, operation: Update, apiVersion: v1, fieldsType: FieldsV1,
     fieldsV1: {"f:metadata": {"f:ownerReferences": {}}}}])");
  ASSERT_TRUE(AdoptClientSideApply(live, "gantry"));
  EXPECT_EQ(Managers(live), "gantry/Apply,kube-controller-manager/Update");
  const Value* fields = Entries(live).At(0)->Get("fieldsV1");
  ASSERT_NE(fields, nullptr);
  EXPECT_NE(fields->Find({"f:data", "f:b"}), nullptr);
  EXPECT_NE(fields->Find({"f:metadata", "f:annotations", "f:kubectl.kubernetes.io/last-applied-configuration"}),
            nullptr)
      << "owning the annotation lets the next apply remove it";
  EXPECT_EQ(value::StringAt(Entries(live).At(0), {"apiVersion"}), "v1");
  EXPECT_EQ(value::StringAt(&live, {"data", "b"}), "2") << "only managedFields change";
  EXPECT_FALSE(AdoptClientSideApply(live, "gantry")) << "adopted once";
}

TEST(AdoptClientSideApplyTest, FieldSetsOfEveryClientSideManagerAreUnitedIntoAnExistingApplyEntry) {
  Value live = Object(R"([
    {manager: gantry, operation: Apply, apiVersion: v1, fieldsType: FieldsV1,
     fieldsV1: {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:gantry.dev/app": {}}}}},
    {manager: kubectl-client-side-apply, operation: Update, apiVersion: v1, fieldsType: FieldsV1,
     fieldsV1: {"f:data": {".": {}, "f:a": {}, "f:b": {}}}},
    {manager: before-first-apply, operation: Update, apiVersion: v1, fieldsType: FieldsV1,
     fieldsV1: {"f:data": {"f:c": {}}}},
    {manager: kubectl, operation: Update, apiVersion: v1, fieldsType: FieldsV1,
     fieldsV1: {"f:metadata": {"f:labels": {"f:old": {}}}}}])");
  ASSERT_TRUE(AdoptClientSideApply(live, "gantry"));
  EXPECT_EQ(Managers(live), "gantry/Apply");
  const Value* fields = Entries(live).At(0)->Get("fieldsV1");
  for (const char* f : {"f:a", "f:b", "f:c", "."}) EXPECT_NE(fields->Find({"f:data", f}), nullptr) << f;
  EXPECT_NE(fields->Find({"f:metadata", "f:labels", "f:gantry.dev/app"}), nullptr);
  EXPECT_NE(fields->Find({"f:metadata", "f:labels", "f:old"}), nullptr);
}

TEST(AdoptClientSideApplyTest, EntriesOfAnotherApiVersionAreDroppedNotUnited) {
  Value live = Object(R"([
    {manager: kubectl-client-side-apply, operation: Update, apiVersion: apps/v1, fieldsType: FieldsV1,
     fieldsV1: {"f:spec": {"f:replicas": {}}}},
    {manager: kubectl-client-side-apply, operation: Update, apiVersion: apps/v1beta2, fieldsType: FieldsV1,
     fieldsV1: {"f:spec": {"f:paused": {}}}}])");
  ASSERT_TRUE(AdoptClientSideApply(live, "gantry"));
  EXPECT_EQ(Managers(live), "gantry/Apply");
  const Value* fields = Entries(live).At(0)->Get("fieldsV1");
  EXPECT_NE(fields->Find({"f:spec", "f:replicas"}), nullptr);
  EXPECT_EQ(fields->Find({"f:spec", "f:paused"}), nullptr);
}

TEST(AdoptClientSideApplyTest, ServerSideApplySubresourcesAndOtherManagersAreLeftAlone) {
  // `kubectl apply --server-side` is manager kubectl with operation Apply: not client-side apply.
  Value live = Object(R"([
    {manager: kubectl, operation: Apply, apiVersion: v1, fieldsType: FieldsV1, fieldsV1: {"f:data": {"f:a": {}}}},
    {manager: kubectl-client-side-apply, operation: Update, apiVersion: v1, subresource: status,
     fieldsType: FieldsV1, fieldsV1: {"f:status": {}}},
    {manager: helm, operation: Update, apiVersion: v1, fieldsType: FieldsV1, fieldsV1: {"f:data": {"f:b": {}}}}])");
  Value before = live;
  EXPECT_FALSE(AdoptClientSideApply(live, "gantry"));
  EXPECT_EQ(live, before);
  Value none = Object("[]");
  EXPECT_FALSE(AdoptClientSideApply(none, "gantry"));
  Value absent = Object("[]");
  absent.MutableGet("metadata")->Erase("managedFields");
  EXPECT_FALSE(AdoptClientSideApply(absent, "gantry"));
}

}  // namespace
}  // namespace gantry::sync

// sync::Operation on the fake client: what the inventory keeps across syncs with and without prune.

#include <gtest/gtest.h>

#include "sync/sync.h"
#include "test/fakes/kube_client.h"
#include "value/value.h"

namespace gantry::sync {
namespace {

using value::Value;

Value Map(std::string_view name) {
  auto docs = value::ParseYaml(fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}}}\ndata: {{k: v}}\n", name));
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

class OperationTest : public ::testing::Test {
 protected:
  const State& Sync(std::vector<Value> objects, bool prune) {
    Options options;
    options.app = "web";
    options.prune = prune;
    auto op = Operation::Create(client_, std::move(objects), options);
    EXPECT_TRUE(op.ok()) << op.status().ToString();
    op_ = *std::move(op);
    const State& s = op_->Run();
    EXPECT_EQ(s.phase, Phase::kSucceeded) << s.message;
    return s;
  }
  bool Exists(std::string_view name) { return client_.Get({"v1", "ConfigMap", "default", std::string(name)}).ok(); }

  fakes::FakeKubeClient client_;
  std::unique_ptr<Operation> op_;
};

TEST_F(OperationTest, AnObjectLeftBehindWithoutPruneIsStillPrunedLater) {
  Sync({Map("a"), Map("b")}, false);
  Sync({Map("a")}, false);
  EXPECT_TRUE(Exists("b")) << "nothing is deleted without prune";
  auto diff = Diff(client_, {Map("a")}, {.app = "web"}, false);
  ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  bool extra = false;
  for (const DiffEntry& e : *diff) extra = extra || (e.ref.name == "b" && e.status == diff::SyncStatus::kExtra);
  EXPECT_TRUE(extra) << "the object left behind is reported Extra (still in the inventory)";
  Sync({Map("a")}, true);
  EXPECT_FALSE(Exists("b")) << "a later sync with prune deletes what an earlier one left behind";
  EXPECT_TRUE(Exists("a"));
}

}  // namespace
}  // namespace gantry::sync

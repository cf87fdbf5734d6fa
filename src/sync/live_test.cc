// ReadLive on the fake client: the desired objects that the labelled lists did not return (all of
// them before the first sync) are looked for one Get each, several at a time.

#include <algorithm>
#include <chrono>

#include <gtest/gtest.h>

#include "base/mutex.h"
#include "sync/sync.h"
#include "test/fakes/forwarding_kube_client.h"
#include "test/fakes/kube_client.h"
#include "value/value.h"

namespace gantry::sync {
namespace {

using value::Value;

Value LiveMap(std::string_view name) {
  auto docs = value::ParseYaml(fmt::format("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}, namespace: web}}\n"
                                           "data: {{k: v}}\n", name));
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

// Each Get waits (up to 500 ms, as a slow apiserver answers) until `width` Gets are in flight at
// once, and records the most that ever were.
class SlowGets final : public fakes::ForwardingKubeClient {
 public:
  SlowGets(kube::Client& target, int width) : ForwardingKubeClient(target), width_(width) {}
  Result<Value> Get(const kube::ObjectRef& ref) override {
    {
      MutexLock lock(mu_);
      most_ = std::max(most_, ++in_flight_);
      cv_.NotifyAll();
      cv_.WaitFor(mu_, std::chrono::milliseconds(500), [this]() REQUIRES(mu_) { return in_flight_ >= width_; });
    }
    auto got = ForwardingKubeClient::Get(ref);
    MutexLock lock(mu_);
    --in_flight_;
    return got;
  }
  int most() {
    MutexLock lock(mu_);
    return most_;
  }

 private:
  const int width_;
  Mutex mu_;
  CondVar cv_;
  int in_flight_ GUARDED_BY(mu_) = 0;
  int most_ GUARDED_BY(mu_) = 0;
};

// issue 21: the first sync of 1,000 ConfigMaps read the cluster with 1,000 Gets one after the
// other; on an apiserver slowed by load that alone outlasted the test's wait for the sync.
TEST(ReadLiveTest, DesiredObjectsNotLabelledAreLookedForSeveralAtATime) {
  fakes::FakeKubeClient fake;
  ASSERT_TRUE(fake.Create(LiveMap("by-hand")).ok());  // exists, without Gantry's label
  SlowGets client(fake, 4);
  Options options;
  options.app = "web";
  options.default_namespace = "web";
  options.parallelism = 4;
  std::vector<Value> desired = {LiveMap("by-hand")};
  for (int i = 0; i < 16; ++i) desired.push_back(LiveMap(fmt::format("cm{}", i)));
  auto prepared = Prepare(client, std::move(desired), options);
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();

  auto live = ReadLive(client, *prepared, options);
  ASSERT_TRUE(live.ok()) << live.status().ToString();
  EXPECT_EQ(live->objects.size(), 1u) << "the object made by hand is found, the 16 missing ones are not";
  EXPECT_EQ(fake.count("get"), 17u + 1u) << "one Get per desired object, and the inventory's";
  // Up to 4 at a time (the threads may start late on a loaded machine); one after the other, each
  // Get would wait its full 500 ms.
  EXPECT_GE(client.most(), 2) << "the Gets ran one after the other";
  EXPECT_LE(client.most(), 4) << "more Gets at once than options.parallelism";
}

}  // namespace
}  // namespace gantry::sync

// Diff throughput: 10,000 desired/live Deployment pairs (live as the apiserver returns it after
// server-side apply: defaults, status, managedFields), 90% in sync and 10% drifted, compared on one
// thread. Prints objects per second per core, and the cost of rendering a diff for the drifted ones.
//
//   diff_bench [PAIRS] [FIXTURE_DIR]   (default 10000, src/diff/testdata)

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "base/path.h"
#include "diff/diff.h"
#include "value/value.h"

using gantry::value::Value;

namespace {

Value Load(const std::string& path) {
  auto text = gantry::ReadFile(path);
  GANTRY_CHECK(text.ok());
  auto docs = gantry::value::ParseYaml(*text, path);
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return (*docs)[0];
}

// A copy of `v` renamed to name-i (so no two pairs share nodes that were just compared).
Value Renamed(const Value& v, int i) {
  Value out = v;
  Value* meta = out.MutableGet("metadata");
  meta->Set("name", std::string(meta->Get("name")->AsString()) + "-" + std::to_string(i));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int pairs = argc > 1 ? std::atoi(argv[1]) : 10000;
  std::string dir = argc > 2 ? argv[2] : "src/diff/testdata";
  Value desired = Load(dir + "/deployment-desired.yaml");
  Value live = Load(dir + "/deployment-live.yaml");

  std::vector<std::pair<Value, Value>> work;
  work.reserve(pairs);
  for (int i = 0; i < pairs; ++i) {
    Value d = Renamed(desired, i), l = Renamed(live, i);
    if (i % 10 == 0) {  // drift: someone changed the replicas and an env value
      l.MutableGet("spec")->Set("replicas", static_cast<int64_t>(7));
    }
    work.emplace_back(std::move(d), std::move(l));
  }

  gantry::diff::Options options;
  int out_of_sync = 0;
  double best = 1e9;
  for (int round = 0; round < 3; ++round) {
    out_of_sync = 0;
    auto start = std::chrono::steady_clock::now();
    for (const auto& [d, l] : work) {
      auto r = gantry::diff::Compare(&d, &l, options);
      GANTRY_CHECK(r.ok());
      out_of_sync += r->status != gantry::diff::SyncStatus::kSynced;
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  auto start = std::chrono::steady_clock::now();
  size_t bytes = 0;
  int rendered = 0;
  for (const auto& [d, l] : work) {
    auto c = gantry::diff::Compare(&d, &l, options);
    if (c->status == gantry::diff::SyncStatus::kSynced) continue;
    auto text = gantry::diff::RenderDiff(&d, &l, {});
    GANTRY_CHECK(text.ok());
    bytes += text->size();
    ++rendered;
  }
  double render = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("| pairs | out of sync | compare s (best of 3) | objects/s/core | us/object | rendered diffs/s |\n");
  std::printf("|---|---|---|---|---|---|\n");
  std::printf("| %d | %d | %.3f | %.0f | %.2f | %.0f |\n", pairs, out_of_sync, best, pairs / best,
              best * 1e6 / pairs, rendered / render);
  (void)bytes;
  return 0;
}

#pragma once
// A kube::Client that answers every call Unimplemented ("fake: NAME"), to derive the small
// purpose-made clients of tests and benchmarks from: they override only the calls they serve, so a
// new method of kube::Client does not break each of them. Header-only: a benchmark can use it
// without linking the fakes library. Thread-safe (it holds no state).

#include "kube/kube.h"

namespace gantry::fakes {

class UnimplementedKubeClient : public kube::Client {
 public:
  Result<kube::ResourceInfo> Resolve(std::string_view, std::string_view) override { return No("Resolve"); }
  Result<value::Value> Get(const kube::ObjectRef&) override { return No("Get"); }
  Result<kube::ObjectList> List(std::string_view, std::string_view, std::string_view,
                                const kube::ListOptions&) override {
    return No("List");
  }
  Result<value::Value> Apply(const value::Value&, const kube::ApplyOptions&) override { return No("Apply"); }
  Result<value::Value> ApplyStatus(const value::Value&, const kube::ApplyOptions&) override {
    return No("ApplyStatus");
  }
  Result<value::Value> Replace(const value::Value&) override { return No("Replace"); }
  Status Delete(const kube::ObjectRef&, const kube::DeleteOptions&) override { return No("Delete"); }
  Result<value::Value> Create(const value::Value&, const kube::CreateOptions&) override { return No("Create"); }
  Status Watch(std::string_view, std::string_view, std::string_view, const kube::WatchOptions&,
               const kube::WatchHandler&) override {
    return No("Watch");
  }
  void InvalidateDiscovery() override {}
  Result<std::string> GetRaw(std::string_view) override { return No("GetRaw"); }
  uint64_t request_count() const override { return 0; }

 protected:
  static Status No(std::string_view call) { return UnimplementedError("fake: {}", call); }
};

}  // namespace gantry::fakes

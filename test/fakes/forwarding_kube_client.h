#pragma once
// fakes::ForwardingKubeClient: a kube::Client that forwards every call to a shared FakeKubeClient,
// for code that connects once per use and owns what it gets (deliver::ConnectFn, cli::Deps'
// connect and connect_cluster return a std::unique_ptr): each connection is a new
// ForwardingKubeClient, all of them to the one fake cluster the test inspects.
//
// Thread-safe as FakeKubeClient is.

#include <memory>
#include <string>
#include <string_view>

#include "kube/kube.h"
#include "test/fakes/kube_client.h"

namespace gantry::fakes {

class ForwardingKubeClient final : public kube::Client {
 public:
  explicit ForwardingKubeClient(std::shared_ptr<FakeKubeClient> to) : to_(std::move(to)) {}

  // A new client to `to`, as a connect function returns it.
  static std::unique_ptr<kube::Client> To(std::shared_ptr<FakeKubeClient> to) {
    return std::make_unique<ForwardingKubeClient>(std::move(to));
  }

  Result<kube::ResourceInfo> Resolve(std::string_view v, std::string_view k) override { return to_->Resolve(v, k); }
  Result<value::Value> Get(const kube::ObjectRef& ref) override { return to_->Get(ref); }
  Result<kube::ObjectList> List(std::string_view v, std::string_view k, std::string_view ns,
                                const kube::ListOptions& o) override {
    return to_->List(v, k, ns, o);
  }
  Result<value::Value> Apply(const value::Value& obj, const kube::ApplyOptions& o) override { return to_->Apply(obj, o); }
  Result<value::Value> ApplyStatus(const value::Value& obj, const kube::ApplyOptions& o) override {
    return to_->ApplyStatus(obj, o);
  }
  Result<value::Value> Replace(const value::Value& obj) override { return to_->Replace(obj); }
  Status Delete(const kube::ObjectRef& ref, const kube::DeleteOptions& o) override { return to_->Delete(ref, o); }
  Result<value::Value> Create(const value::Value& obj) override { return to_->Create(obj); }
  Status Watch(std::string_view v, std::string_view k, std::string_view ns, const kube::WatchOptions& o,
               const kube::WatchHandler& h) override {
    return to_->Watch(v, k, ns, o, h);
  }
  void InvalidateDiscovery() override { to_->InvalidateDiscovery(); }
  Result<std::string> GetRaw(std::string_view path) override { return to_->GetRaw(path); }
  uint64_t request_count() const override { return to_->request_count(); }

 private:
  std::shared_ptr<FakeKubeClient> to_;
};

}  // namespace gantry::fakes

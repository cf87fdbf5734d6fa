#pragma once
// fakes::ForwardingKubeClient: a kube::Client that forwards every call to another client it does
// not own. Code that takes ownership of a client (cli::Deps::connect returns a unique_ptr) can so
// be handed one FakeKubeClient that the test keeps and inspects after the code is done with it.
// The target must outlive the forwarder. Thread-safe as the target is. A test may derive from it
// to change one call (delay it, count it) and forward the rest.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "kube/kube.h"

namespace gantry::fakes {

class ForwardingKubeClient : public kube::Client {
 public:
  explicit ForwardingKubeClient(kube::Client& target) : target_(target) {}

  // A new client to `target`, as a connect function returns it; it shares ownership of `target`.
  static std::unique_ptr<kube::Client> To(std::shared_ptr<kube::Client> target) {
    auto forwarder = std::make_unique<ForwardingKubeClient>(*target);
    forwarder->owner_ = std::move(target);
    return forwarder;
  }

  Result<kube::ResourceInfo> Resolve(std::string_view api_version, std::string_view kind) override {
    return target_.Resolve(api_version, kind);
  }
  Result<value::Value> Get(const kube::ObjectRef& ref) override { return target_.Get(ref); }
  Result<kube::ObjectList> List(std::string_view api_version, std::string_view kind, std::string_view namespace_,
                                const kube::ListOptions& options = {}) override {
    return target_.List(api_version, kind, namespace_, options);
  }
  Result<value::Value> Apply(const value::Value& object, const kube::ApplyOptions& options = {}) override {
    return target_.Apply(object, options);
  }
  Result<value::Value> ApplyStatus(const value::Value& object, const kube::ApplyOptions& options = {}) override {
    return target_.ApplyStatus(object, options);
  }
  Result<value::Value> Replace(const value::Value& object) override { return target_.Replace(object); }
  Result<value::Value> JsonPatch(const kube::ObjectRef& ref, std::string_view patch) override {
    return target_.JsonPatch(ref, patch);
  }
  Status Delete(const kube::ObjectRef& ref, const kube::DeleteOptions& options = {}) override {
    return target_.Delete(ref, options);
  }
  Result<value::Value> Create(const value::Value& object, const kube::CreateOptions& options = {}) override {
    return target_.Create(object, options);
  }
  Status Watch(std::string_view api_version, std::string_view kind, std::string_view namespace_,
               const kube::WatchOptions& options, const kube::WatchHandler& handler) override {
    return target_.Watch(api_version, kind, namespace_, options, handler);
  }
  void WakeWatches(const std::atomic<bool>* stop) override { target_.WakeWatches(stop); }
  void InvalidateDiscovery() override { target_.InvalidateDiscovery(); }
  Result<std::string> GetRaw(std::string_view path) override { return target_.GetRaw(path); }
  Result<std::vector<kube::ResourceInfo>> ServedKinds() override { return target_.ServedKinds(); }
  uint64_t request_count() const override { return target_.request_count(); }
  Result<std::unique_ptr<kube::Client>> Impersonate(const kube::Impersonation& who) override {
    return target_.Impersonate(who);
  }

 private:
  kube::Client& target_;
  std::shared_ptr<kube::Client> owner_;  // To(): keeps the target alive
};

}  // namespace gantry::fakes

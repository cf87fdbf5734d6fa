#pragma once
// A ci::Executor for tests of what surrounds the runner (the API, access, the CLI against a
// server that is never started): no step runs; running one is an error saying so.

#include <atomic>
#include <filesystem>
#include <string>
#include <string_view>

#include "ci/executor.h"

namespace gantry::fakes {

class NoStepExecutor final : public ci::Executor {
 public:
  Result<ci::StepOutcome> Run(const ci::StepRequest&, const ci::OutputFn&, const std::atomic<bool>&) override {
    return UnimplementedError("no steps run in this test");
  }
  std::string WorkspacePath(const std::filesystem::path& host) const override { return host.string(); }
  std::string ArtifactsPath(const std::filesystem::path& host) const override { return host.string(); }
  std::string_view name() const override { return "none"; }
  bool Isolates() const override { return true; }
};

}  // namespace gantry::fakes

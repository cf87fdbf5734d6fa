#pragma once
// The agent's Source of OCI artifacts (api::SourceKind::kOci), private to the agent module; the
// Router of source.cc sends it the applications of that kind.
//
// Resolve: the pinned digest of targetRevision as is, else one HEAD of the tag, shared by every
// application of that tag that asked before it began (fetch_after, as GitSource's fetches); errors
// carry kReasonFetchFailed. MayDiffer: false only for the same digest (an artifact is immutable).
// Render: oci::PullArtifact into `cache_dir` by manifest digest (once; verified; atomic), then
// render::Render of the application's path inside it (plain, Kustomize or Helm, auto-detected
// unless spec.source says), cached by the digest; Helm renders for `cluster`'s version and APIs when
// it is not null. Thread-safe.

#include <filesystem>
#include <memory>

#include "agent/agent.h"
#include "oci/registry.h"

namespace gantry::agent::internal {

// InvalidArgument when the registry options are (an unreadable Docker config, a missing CA file).
Result<std::unique_ptr<Source>> NewOciSource(oci::RegistryOptions registry, std::filesystem::path cache_dir,
                                             render::Options render_options, kube::Client* cluster);
// Over a given registry client (tests).
std::unique_ptr<Source> NewOciSource(std::unique_ptr<oci::Registry> registry, std::filesystem::path cache_dir,
                                     render::Options render_options, kube::Client* cluster);

}  // namespace gantry::agent::internal

#pragma once
// A deterministic corpus of realistic Kubernetes manifests (Deployments, Services, ConfigMaps,
// CRDs with large schemas) as one multi-document YAML stream, for the parse benchmark.

#include <cstddef>
#include <string>

namespace gantry::bench {

// About `target_bytes` of YAML; the same bytes for the same argument on every machine.
std::string GenerateManifestCorpus(size_t target_bytes);

}  // namespace gantry::bench

// Fuzzes LoadConfig over a kubeconfig file, which users hand Gantry for each cluster (gantry
// cluster add): any input must load or fail cleanly, for its current context and for a context,
// cluster and user named explicitly, with exec plugins refused and allowed by name. The file is
// read from a scratch directory; files it names are read with LoadConfig's size limits.

#include <cstdint>
#include <string>

#include "base/path.h"
#include "fuzz/fuzz.h"
#include "kube/kube.h"

using namespace gantry;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = (fuzz::ScratchDir() / "config").string();
  if (Status s = WriteFileAtomic(path, fuzz::Text(data, size), 0600, /*sync=*/false); !s.ok()) {
    fuzz::Fail("write the kubeconfig", s.ToString());
  }
  kube::LoadOptions options{.paths = {path}};
  (void)kube::LoadConfig(options);
  options.context = "dev";
  options.cluster = "kind";
  options.user = "admin";
  options.namespace_ = "team-a";
  options.allowed_exec_plugins = {"aws", "gke-gcloud-auth-plugin", "kubelogin"};
  (void)kube::LoadConfig(options);
  return 0;
}

// gantry push artifact DIR oci://host/repository:tag [--source URL] [--revision REV]
//                      [--created RFC3339] [--annotation k=v]... [--layer-media-type flux|oci]
//                      [--ignore PATTERN]... [registry flags]
//
// Publishes a directory of manifests as an OCI artifact in Flux's format (oci/artifact.h), which
// Flux's OCIRepository, `flux pull artifact`, Argo CD 3.1 oci:// sources (with --layer-media-type
// oci, the layer type Argo CD accepts by default) and Gantry itself read. Prints the digest. Exit
// codes: 0 pushed; 2 usage (bad reference, flag, directory content); 3 registry or file errors.

#include <cstdlib>
#include <ctime>
#include <filesystem>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/image.h"
#include "oci/artifact.h"

namespace gantry::cli {
namespace {

struct PushArtifactFlags {
  std::string dir;
  std::string target;
  std::string source_url;
  std::string revision;
  std::string created;
  std::vector<std::string> annotations;
  std::vector<std::string> ignore;
  std::string layer_media_type = "flux";
  RegistryFlags registry;
};

// --created, else SOURCE_DATE_EPOCH as RFC 3339, else none (so the same directory repeats its digest).
Result<std::string> Created(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* epoch = std::getenv("SOURCE_DATE_EPOCH");
  if (epoch == nullptr || *epoch == '\0') return std::string();
  char* end = nullptr;
  long long secs = std::strtoll(epoch, &end, 10);
  if (*end != '\0' || secs < 0) return InvalidArgumentError("SOURCE_DATE_EPOCH {:?}: not a number of seconds", epoch);
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf);
}

Result<oci::ArtifactOptions> Options(const PushArtifactFlags& f) {
  oci::ArtifactOptions o;
  o.source_url = f.source_url;
  o.revision = f.revision;
  GANTRY_ASSIGN_OR_RETURN(o.created, Created(f.created));
  for (const std::string& a : f.annotations) {
    size_t eq = a.find('=');
    if (eq == 0 || eq == std::string::npos) return InvalidArgumentError("--annotation {:?}: want key=value", a);
    o.annotations[a.substr(0, eq)] = a.substr(eq + 1);
  }
  o.excludes = f.ignore;
  o.layer_media_type = std::string(f.layer_media_type == "oci" ? oci::media::kOciLayerGzip : oci::media::kFluxContent);
  return o;
}

}  // namespace

void AddPushCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* push = app.add_subcommand("push", "Publish to a registry");
  push->require_subcommand(1);
  auto f = std::make_shared<PushArtifactFlags>();
  auto* cmd = push->add_subcommand(
      "artifact",
      "Push a directory of manifests as an OCI artifact (Flux's format; Argo CD reads it with --layer-media-type "
      "oci); prints its digest. The same files give the same digest. .git directories and the patterns of a "
      ".sourceignore file at the top are left out; a symlink, device or fifo is refused (flux push artifact skips "
      "them silently)");
  cmd->add_option("dir", f->dir, "Directory to publish")->required();
  cmd->add_option("reference", f->target, "oci://host/repository:tag (or host/repository:tag)")->required();
  cmd->add_option("--source", f->source_url, "Where the content comes from (org.opencontainers.image.source)");
  cmd->add_option("--revision", f->revision,
                  "Its revision, e.g. main@sha1:<commit> as Flux writes it (org.opencontainers.image.revision)");
  cmd->add_option("--created", f->created,
                  "Creation time, RFC 3339 (org.opencontainers.image.created; default $SOURCE_DATE_EPOCH, else "
                  "none, so that pushes of the same files give the same digest)");
  cmd->add_option("--annotation", f->annotations, "Manifest annotation key=value (repeatable)");
  cmd->add_option("--ignore", f->ignore, "Glob of paths left out, as a .sourceignore line (repeatable)");
  cmd->add_option("--layer-media-type", f->layer_media_type,
                  "flux: application/vnd.cncf.flux.content.v1.tar+gzip (default); oci: "
                  "application/vnd.oci.image.layer.v1.tar+gzip (what Argo CD accepts without configuration)")
      ->check(CLI::IsMember({"flux", "oci"}));
  AddRegistryFlags(cmd, f->registry);
  cmd->callback([f, &deps, &exit_code] {
    std::string text = f->target;
    if (text.starts_with("oci://")) text.erase(0, 6);
    auto ref = oci::ParseReference(text);
    if (!ref.ok()) return void(exit_code = Fail(deps, ref.status(), kExitUsage));
    if (!ref->digest.empty()) {
      return void(exit_code = Fail(deps, InvalidArgumentError("{}: push to a tag, not a digest", f->target), kExitUsage));
    }
    auto options = Options(*f);
    if (!options.ok()) return void(exit_code = Fail(deps, options.status(), kExitUsage));
    auto registry = OpenRegistry(f->registry, ref->registry);
    if (!registry.ok()) return void(exit_code = Fail(deps, registry.status(), kExitUsage));
    std::error_code ec;
    if (!std::filesystem::is_directory(f->dir, ec)) {
      return void(exit_code = Fail(deps, InvalidArgumentError("{}: not a directory", f->dir), kExitUsage));
    }
    auto digest = oci::PushArtifact(**registry, f->dir, *ref, *options);
    if (!digest.ok()) {
      // InvalidArgument: what the directory holds (a symlink, a .sourceignore line), the user's to fix.
      bool usage = digest.status().code() == Code::kInvalidArgument;
      return void(exit_code = Fail(deps, digest.status(), usage ? kExitUsage : kExitError));
    }
    fmt::print(deps.out, "{}\n", *digest);
    exit_code = kExitOk;
  });
}

}  // namespace gantry::cli

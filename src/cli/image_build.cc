// `gantry image build` and `gantry image unpack` (see docs/images.md):
//
//   gantry image build --from oci:DIR[:TAG] | REF | scratch --layer SRC[:DEST]... [--exclude GLOB]...
//                      [--entrypoint E] [--cmd C] [--env K=V]... [--workdir D] [--user U]
//                      [--expose PORT[/proto]]... [--label K=V]... [--source URL] [--revision SHA]
//                      [--platform os/arch] [--compression gzip|zstd] [--timestamp S] [--owner UID:GID]
//                      --output oci:DIR[:TAG] [--push REF] [--digest-file F] [--insecure-registry HOST]...
//   gantry image unpack oci:DIR[:TAG] DEST [--platform os/arch]
//
// --entrypoint and --cmd take a JSON array (exec form) or a string, run as ["/bin/sh", "-c", S].
// Build prints the digest of what it tagged (manifest, or index for a multi-platform base).
// Exit codes: 0 done; 1 the build, push or unpack failed (also for an unreadable layout or an
// unreachable registry: docs/images.md documents no 3 here); 2 usage.

#include <cstdlib>
#include <fstream>

#include <CLI/CLI.hpp>

#include "base/path.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/image.h"
#include "oci/build.h"
#include "oci/registry.h"
#include "value/value.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

struct BuildFlags {
  std::string from = "scratch";
  std::vector<std::string> layers, excludes, env, expose, labels, insecure;
  std::string entrypoint, cmd, workdir, user, source, revision, platform, compression = "gzip";
  std::string output, push, digest_file, owner;
  int64_t timestamp = 0;
  bool workdir_set = false, user_set = false;
};

Result<std::vector<std::string>> ParseCommand(std::string_view flag, const std::string& text) {
  if (!text.starts_with("[")) return std::vector<std::string>{"/bin/sh", "-c", text};
  auto v = value::ParseJson(text, flag);
  if (!v.ok()) return v.status();
  std::vector<std::string> out;
  if (!v->IsSeq()) return InvalidArgumentError("{}: expected a JSON array of strings", flag);
  for (const auto& item : v->items()) {
    if (!item.IsString()) return InvalidArgumentError("{}: expected a JSON array of strings", flag);
    out.emplace_back(item.AsString());
  }
  return out;
}

fs::path CacheDir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "gantry" / "images";
  const char* home = std::getenv("HOME");
  return fs::path(home ? home : "/tmp") / ".cache" / "gantry" / "images";
}

// flags → options; InvalidArgument for a usage error.
Result<oci::BuildOptions> ToOptions(const BuildFlags& f) {
  oci::BuildOptions o;
  for (const auto& l : f.layers) {
    // SRC[:DEST]: DEST is the part after the last ':' when it is an absolute path.
    size_t colon = l.rfind(':');
    oci::LayerSpec spec;
    if (colon != std::string::npos && colon + 1 < l.size() && l[colon + 1] == '/') {
      spec.source = l.substr(0, colon);
      spec.destination = l.substr(colon + 1);
    } else {
      spec.source = l;
    }
    spec.excludes = f.excludes;
    o.layers.push_back(std::move(spec));
  }
  if (!f.entrypoint.empty()) {
    auto e = ParseCommand("--entrypoint", f.entrypoint);
    if (!e.ok()) return e.status();
    o.entrypoint = *e;
  }
  if (!f.cmd.empty()) {
    auto c = ParseCommand("--cmd", f.cmd);
    if (!c.ok()) return c.status();
    o.cmd = *c;
  }
  o.env = f.env;
  if (f.workdir_set) o.workdir = f.workdir;
  if (f.user_set) o.user = f.user;
  o.expose = f.expose;
  for (const auto& kv : f.labels) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return InvalidArgumentError("--label {:?}: expected KEY=VALUE", kv);
    o.labels[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  o.source_url = f.source;
  o.revision = f.revision;
  if (!f.platform.empty()) {
    auto p = oci::ParsePlatform(f.platform);
    if (!p.ok()) return p.status();
    o.platform = *p;
  }
  if (f.compression == "zstd") {
    o.compression = oci::Compression::kZstd;
  } else if (f.compression != "gzip") {
    return InvalidArgumentError("--compression {:?}: expected gzip or zstd", f.compression);
  }
  if (f.timestamp < 0) return InvalidArgumentError("--timestamp: must not be negative");
  o.timestamp = f.timestamp;
  if (!f.owner.empty()) {
    unsigned uid = 0, gid = 0;
    char extra = 0;
    if (std::sscanf(f.owner.c_str(), "%u:%u%c", &uid, &gid, &extra) != 2) {
      return InvalidArgumentError("--owner {:?}: expected UID:GID (numbers)", f.owner);
    }
    o.uid = uid;
    o.gid = gid;
  }
  return o;
}

// What to build: the flags checked and parsed.
struct BuildCommandOptions {
  oci::BuildOptions build;
  OciTarget output;
  std::optional<OciTarget> from_layout;     // --from oci:DIR[:TAG]
  std::optional<oci::Reference> from_image;  // --from REF
  std::optional<oci::Reference> push;
  std::vector<std::string> insecure;
  std::string digest_file;
};

// flags → options: InvalidArgument naming the flag.
Result<BuildCommandOptions> ToBuildOptions(const BuildFlags& f) {
  BuildCommandOptions o;
  GANTRY_ASSIGN_OR_RETURN(o.build, ToOptions(f));
  auto output = ParseOciTarget(f.output);
  if (!output.ok()) return output.status().WithContext("--output");
  o.output = *output;
  if (o.output.tag.empty()) o.output.tag = "latest";
  if (f.from.starts_with("oci:")) {
    auto from = ParseOciTarget(f.from);
    if (!from.ok()) return from.status().WithContext("--from");
    o.from_layout = *from;
  } else if (f.from != "scratch") {
    auto ref = oci::ParseReference(f.from);
    if (!ref.ok()) return ref.status().WithContext("--from");
    o.from_image = *ref;
  }
  if (!f.push.empty()) {
    auto ref = oci::ParseReference(f.push);
    if (!ref.ok()) return ref.status().WithContext("--push");
    o.push = *ref;
  }
  o.insecure = f.insecure;
  o.digest_file = f.digest_file;
  return o;
}

Result<std::unique_ptr<oci::Registry>> OpenRegistry(const BuildCommandOptions& o) {
  oci::RegistryOptions options;
  options.insecure_http_hosts = o.insecure;
  return oci::NewHttpRegistry(std::move(options));
}

// Builds, pushes and prints the digest; every error is the build's failure (exit 1, docs/images.md).
Status RunBuild(BuildCommandOptions o, const Deps& deps) {
  auto built = [&]() -> Result<std::string> {
    GANTRY_ASSIGN_OR_RETURN(oci::Layout output, oci::Layout::Open(o.output.dir, true));
    std::optional<oci::Layout> base;
    if (o.from_layout) {
      auto l = oci::Layout::Open(o.from_layout->dir, false);
      if (!l.ok()) return l.status().WithContext("--from");
      base = *std::move(l);
      o.build.base_ref = o.from_layout->tag;
    } else if (o.from_image) {
      const oci::Reference& ref = *o.from_image;
      GANTRY_ASSIGN_OR_RETURN(auto registry, OpenRegistry(o));
      auto cache = oci::Layout::Open(CacheDir(), true);
      if (!cache.ok()) return cache.status().WithContext("image cache");
      // The whole index is kept unless one platform is asked for; the build then picks.
      auto pulled = oci::PullImage(*registry, ref, *cache, ref.ToString(), o.build.platform);
      if (!pulled.ok()) return pulled.status().WithContext("pull " + ref.ToString());
      base = *std::move(cache);
      o.build.base_ref = ref.ToString();
    }
    if (base) o.build.base = &*base;
    auto result = oci::BuildImage(o.build, output, o.output.tag);
    if (!result.ok()) return result.status().WithContext("build");
    if (o.push) {
      GANTRY_ASSIGN_OR_RETURN(auto registry, OpenRegistry(o));
      auto pushed = oci::PushImage(*registry, output, o.output.tag, *o.push);
      if (!pushed.ok()) return pushed.status().WithContext("push " + o.push->ToString());
    }
    return result->image.digest;
  }();
  if (!built.ok()) return Status(built.status()).set_reason(kReasonFailed);
  fmt::print(deps.out, "{}\n", *built);
  if (!o.digest_file.empty()) {
    if (Status s = WriteFileAtomic(o.digest_file, *built + "\n"); !s.ok()) return s.set_reason(kReasonFailed);
  }
  return OkStatus();
}

struct UnpackFlags {
  std::string image, dest, platform;
};

struct UnpackOptions {
  OciTarget image;
  std::filesystem::path dest;
  std::optional<oci::Platform> platform;
};

// flags → options: InvalidArgument for a bad image name or platform.
Result<UnpackOptions> ToUnpackOptions(const UnpackFlags& f) {
  UnpackOptions o{.dest = f.dest};
  GANTRY_ASSIGN_OR_RETURN(o.image, ParseOciTarget(f.image));
  if (!f.platform.empty()) {
    GANTRY_ASSIGN_OR_RETURN(o.platform, oci::ParsePlatform(f.platform));
  }
  return o;
}

// Unpacks and prints what it wrote; every error is the unpack's failure (exit 1).
Status RunUnpack(const UnpackOptions& o, const Deps& deps) {
  auto layout = oci::Layout::Open(o.image.dir, false);
  if (!layout.ok()) return Status(layout.status()).set_reason(kReasonFailed);
  auto stats = oci::UnpackImage(*layout, o.image.tag, o.dest, o.platform);
  if (!stats.ok()) return stats.status().WithContext("unpack").set_reason(kReasonFailed);
  fmt::print(deps.out, "{} entries, {} bytes{}\n", stats->entries, stats->bytes,
             stats->skipped ? fmt::format(", {} device/fifo entries skipped", stats->skipped) : "");
  return OkStatus();
}

}  // namespace

void AddImageBuildCommand(CLI::App& image, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<BuildFlags>();
  auto* build = image.add_subcommand("build", "Build an image from a base and workspace files, without Docker");
  build->add_option("--from", f->from, "oci:DIR[:TAG], a registry reference, or scratch (default)");
  build->add_option("--layer", f->layers, "SRC[:DEST]: one layer with SRC at DEST in the image (default /)")->required();
  build->add_option("--exclude", f->excludes, "Glob of paths (relative to each SRC) left out");
  build->add_option("--entrypoint", f->entrypoint, "JSON array, or a string run by /bin/sh -c");
  build->add_option("--cmd", f->cmd, "JSON array, or a string run by /bin/sh -c");
  build->add_option("--env", f->env, "K=V (replaces K of the base)");
  build->add_option("--workdir", f->workdir)->each([f](const std::string&) { f->workdir_set = true; });
  build->add_option("--user", f->user)->each([f](const std::string&) { f->user_set = true; });
  build->add_option("--expose", f->expose, "PORT[/tcp|udp|sctp]");
  build->add_option("--label", f->labels, "K=V");
  build->add_option("--source", f->source, "Source URL (org.opencontainers.image.source)");
  build->add_option("--revision", f->revision, "Source revision (org.opencontainers.image.revision)");
  build->add_option("--platform", f->platform, "os/arch[/variant]: pick one from a multi-platform base");
  build->add_option("--compression", f->compression, "gzip (default) or zstd");
  build->add_option("--timestamp", f->timestamp, "Seconds since the epoch for every file and the config (default 0)")
      ->envname("SOURCE_DATE_EPOCH");
  build->add_option("--owner", f->owner, "UID:GID of every file (default 0:0)");
  build->add_option("--output", f->output, "oci:DIR[:TAG] (TAG default latest)")->required();
  build->add_option("--push", f->push, "Registry reference to push the result to");
  build->add_option("--digest-file", f->digest_file, "Also write the digest to this file");
  build->add_option("--insecure-registry", f->insecure, "host[:port] reached over plain HTTP");
  build->callback([f, &deps, &exit_code] {
    auto options = ToBuildOptions(*f);
    if (!options.ok()) return void(exit_code = UsageError(options.status(), deps.err));
    exit_code = Report(RunBuild(*std::move(options), deps), deps.err);
  });

  auto u = std::make_shared<UnpackFlags>();
  auto* unpack = image.add_subcommand("unpack", "Apply the layers of an image to a directory (archive-safe)");
  unpack->add_option("image", u->image, "oci:DIR[:TAG]")->required();
  unpack->add_option("dest", u->dest, "Directory (created if absent)")->required();
  unpack->add_option("--platform", u->platform, "os/arch[/variant] of a multi-platform image");
  unpack->callback([u, &deps, &exit_code] {
    auto options = ToUnpackOptions(*u);
    if (!options.ok()) return void(exit_code = UsageError(options.status(), deps.err));
    exit_code = Report(RunUnpack(*options, deps), deps.err);
  });
}

}  // namespace gantry::cli

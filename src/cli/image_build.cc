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
// Exit codes: 0 done; 1 the build, push or unpack failed; 2 usage.

#include <cstdlib>
#include <fstream>

#include <CLI/CLI.hpp>

#include "base/path.h"
#include "cli/commands.h"
#include "cli/deps.h"
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

Result<std::unique_ptr<oci::Registry>> OpenRegistry(const BuildFlags& f) {
  oci::RegistryOptions options;
  options.insecure_http_hosts = f.insecure;
  return oci::NewHttpRegistry(std::move(options));
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

int Fail(const Status& s, int code = 1) {
  fmt::print(stderr, "error: {}\n", s.message());
  return code;
}

int RunBuild(const BuildFlags& f) {
  auto options = ToOptions(f);
  if (!options.ok()) return Fail(options.status(), 2);
  auto target = ParseOciTarget(f.output);
  if (!target.ok()) return Fail(target.status().WithContext("--output"), 2);
  std::string tag = target->tag.empty() ? "latest" : target->tag;
  auto output = oci::Layout::Open(target->dir, true);
  if (!output.ok()) return Fail(output.status());

  std::optional<oci::Layout> base;
  if (f.from.starts_with("oci:")) {
    auto from = ParseOciTarget(f.from);
    if (!from.ok()) return Fail(from.status().WithContext("--from"), 2);
    auto l = oci::Layout::Open(from->dir, false);
    if (!l.ok()) return Fail(l.status().WithContext("--from"));
    base = *std::move(l);
    options->base_ref = from->tag;
  } else if (f.from != "scratch") {
    auto ref = oci::ParseReference(f.from);
    if (!ref.ok()) return Fail(ref.status().WithContext("--from"), 2);
    auto registry = OpenRegistry(f);
    if (!registry.ok()) return Fail(registry.status());
    auto cache = oci::Layout::Open(CacheDir(), true);
    if (!cache.ok()) return Fail(cache.status().WithContext("image cache"));
    // The whole index is kept unless one platform is asked for; the build then picks.
    auto pulled = oci::PullImage(**registry, *ref, *cache, ref->ToString(), options->platform);
    if (!pulled.ok()) return Fail(pulled.status().WithContext("pull " + ref->ToString()));
    base = *std::move(cache);
    options->base_ref = ref->ToString();
  }
  if (base) options->base = &*base;

  auto result = oci::BuildImage(*options, *output, tag);
  if (!result.ok()) return Fail(result.status().WithContext("build"));
  std::string digest = result->image.digest;
  if (!f.push.empty()) {
    auto ref = oci::ParseReference(f.push);
    if (!ref.ok()) return Fail(ref.status().WithContext("--push"), 2);
    auto registry = OpenRegistry(f);
    if (!registry.ok()) return Fail(registry.status());
    auto pushed = oci::PushImage(**registry, *output, tag, *ref);
    if (!pushed.ok()) return Fail(pushed.status().WithContext("push " + ref->ToString()));
  }
  fmt::print("{}\n", digest);
  if (!f.digest_file.empty()) {
    if (Status s = WriteFileAtomic(f.digest_file, digest + "\n"); !s.ok()) return Fail(s);
  }
  return 0;
}

}  // namespace

void AddImageBuildCommand(CLI::App& image, [[maybe_unused]] const Deps& deps, int& exit_code) {
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
  build->callback([f, &exit_code] { exit_code = RunBuild(*f); });

  auto u = std::make_shared<std::tuple<std::string, std::string, std::string>>();
  auto* unpack = image.add_subcommand("unpack", "Apply the layers of an image to a directory (archive-safe)");
  unpack->add_option("image", std::get<0>(*u), "oci:DIR[:TAG]")->required();
  unpack->add_option("dest", std::get<1>(*u), "Directory (created if absent)")->required();
  unpack->add_option("--platform", std::get<2>(*u), "os/arch[/variant] of a multi-platform image");
  unpack->callback([u, &exit_code] {
    auto target = ParseOciTarget(std::get<0>(*u));
    if (!target.ok()) {
      exit_code = Fail(target.status(), 2);
      return;
    }
    std::optional<oci::Platform> platform;
    if (!std::get<2>(*u).empty()) {
      auto p = oci::ParsePlatform(std::get<2>(*u));
      if (!p.ok()) {
        exit_code = Fail(p.status(), 2);
        return;
      }
      platform = *p;
    }
    auto layout = oci::Layout::Open(target->dir, false);
    if (!layout.ok()) {
      exit_code = Fail(layout.status());
      return;
    }
    auto stats = oci::UnpackImage(*layout, target->tag, std::get<1>(*u), platform);
    if (!stats.ok()) {
      exit_code = Fail(stats.status().WithContext("unpack"));
      return;
    }
    fmt::print("{} entries, {} bytes{}\n", stats->entries, stats->bytes,
               stats->skipped ? fmt::format(", {} device/fifo entries skipped", stats->skipped) : "");
    exit_code = 0;
  });
}

}  // namespace gantry::cli

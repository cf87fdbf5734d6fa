// Images between layouts and registries (see docs/registries.md):
//
//   gantry image push oci:DIR[:TAG] REF [--mount-from REPO]... [--parallel N]
//   gantry image pull REF oci:DIR[:TAG] [--platform os/arch[/variant]]
//   gantry image inspect REF|oci:DIR[:TAG] [--json]
//   gantry image tags REPO [--page-size N]
//   gantry image latest REPO (--semver RANGE | --alphabetical | --numerical) [--order asc|desc]
//                      [--filter RE [--extract '$group']] [--reference]
//
// Common flags: --registry-config FILE (Docker config.json), --ca-file PEM, --insecure-http HOST
// (repeatable), --username U --password-stdin. Exit codes: 0 done; 2 usage; 3 registry or file
// errors (unreachable, unauthenticated, not found, digest mismatch); `latest` exits 1 when no tag
// passes the policy.

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>

#include "base/hash.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/image.h"
#include "update/update.h"
#include "oci/layout.h"
#include "oci/registry.h"
#include "value/value.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

fs::path UploadStateDir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "gantry" / "uploads";
  const char* home = std::getenv("HOME");
  return fs::path(home ? home : "/tmp") / ".cache" / "gantry" / "uploads";
}

std::string HumanSize(int64_t n) {
  if (n >= (1 << 20)) return fmt::format("{:.1f} MiB", n / 1048576.0);
  if (n >= 1024) return fmt::format("{:.1f} KiB", n / 1024.0);
  return fmt::format("{} B", n);
}

// ---------------------------------------------------------------------------------------------
// inspect: a source of manifests and blobs, a layout or a registry.

struct Source {
  std::function<Result<oci::RawManifest>(const std::string& digest)> manifest;  // "" = the top
  std::function<Result<std::string>(const oci::Descriptor&)> blob;
  std::string name;
};

Result<value::Value> DescribeManifest(const Source& src, const oci::RawManifest& raw) {
  value::Value out = value::Value::Map();
  out.Set("digest", raw.digest);
  out.Set("mediaType", raw.media_type);
  out.Set("size", static_cast<int64_t>(raw.bytes.size()));
  GANTRY_ASSIGN_OR_RETURN(oci::Manifest m, oci::ParseManifest(raw.bytes, raw.media_type));
  value::Value layers = value::Value::Seq();
  int64_t total = 0;
  for (const oci::Descriptor& l : m.layers) {
    value::Value e = value::Value::Map();
    e.Set("digest", l.digest);
    e.Set("mediaType", l.media_type);
    e.Set("size", l.size);
    layers.Append(e);
    total += l.size;
  }
  out.Set("layers", layers);
  out.Set("layersSize", total);
  value::Value config = value::Value::Map();
  config.Set("digest", m.config.digest);
  config.Set("mediaType", m.config.media_type);
  if (m.config.size <= (4 << 20)) {
    GANTRY_ASSIGN_OR_RETURN(std::string bytes, src.blob(m.config));
    if (auto doc = value::ParseJson(bytes, "config"); doc.ok() && doc->IsMap()) {
      for (const char* key : {"os", "architecture", "variant", "created", "author"})
        if (const value::Value* v = doc->Get(key)) config.Set(key, *v);
      if (const value::Value* c = doc->Get("config"); c && c->IsMap()) {
        for (const char* key : {"Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "Labels"})
          if (const value::Value* v = c->Get(key); v && !v->IsNull()) config.Set(key, *v);
      }
    }
  }
  out.Set("config", config);
  return out;
}

Result<value::Value> Describe(const Source& src) {
  GANTRY_ASSIGN_OR_RETURN(oci::RawManifest top, src.manifest(""));
  if (!oci::IsIndexType(top.media_type)) {
    GANTRY_ASSIGN_OR_RETURN(value::Value v, DescribeManifest(src, top));
    v.Set("name", src.name);
    return v;
  }
  GANTRY_ASSIGN_OR_RETURN(oci::Index index, oci::ParseIndex(top.bytes, top.media_type));
  value::Value out = value::Value::Map();
  out.Set("name", src.name);
  out.Set("digest", top.digest);
  out.Set("mediaType", top.media_type);
  out.Set("size", static_cast<int64_t>(top.bytes.size()));
  value::Value manifests = value::Value::Seq();
  for (const oci::Descriptor& d : index.manifests) {
    value::Value e = value::Value::Map();
    e.Set("platform", d.platform ? d.platform->ToString() : "");
    if (oci::IsManifestType(d.media_type)) {
      GANTRY_ASSIGN_OR_RETURN(oci::RawManifest child, src.manifest(d.digest));
      GANTRY_ASSIGN_OR_RETURN(e, DescribeManifest(src, child));
      e.Set("platform", d.platform ? d.platform->ToString() : "");
    } else {
      e.Set("digest", d.digest);
      e.Set("mediaType", d.media_type);
      e.Set("size", d.size);
    }
    manifests.Append(e);
  }
  out.Set("manifests", manifests);
  return out;
}

std::string FieldText(const value::Value& v, std::string_view key) {
  const value::Value* f = v.Get(key);
  if (!f || f->IsNull()) return "";
  return f->IsString() ? std::string(f->AsString()) : value::ToJson(*f);
}

void PrintManifest(std::FILE* out, const value::Value& m, const std::string& indent) {
  const value::Value& c = *m.Get("config");
  std::string platform = FieldText(c, "os") + "/" + FieldText(c, "architecture");
  if (!FieldText(c, "variant").empty()) platform += "/" + FieldText(c, "variant");
  fmt::print(out, "{}Digest:     {}\n{}MediaType:  {}\n{}Platform:   {}\n", indent, FieldText(m, "digest"), indent,
             FieldText(m, "mediaType"), indent, platform);
  for (const char* key : {"created", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts", "Labels"})
    if (!FieldText(c, key).empty()) fmt::print(out, "{}{:<11} {}\n", indent, std::string(key) + ":", FieldText(c, key));
  fmt::print(out, "{}Config:     {}\n", indent, FieldText(c, "digest"));
  const value::Value& layers = *m.Get("layers");
  fmt::print(out, "{}Layers:     {} ({})\n", indent, layers.size(), HumanSize(m.Get("layersSize")->AsInt()));
  for (const value::Value& l : layers.items())
    fmt::print(out, "{}  {}  {:>10}  {}\n", indent, FieldText(l, "digest"), HumanSize(l.Get("size")->AsInt()),
               FieldText(l, "mediaType"));
}

int RunInspect(const std::string& target, bool json, const RegistryFlags& f, const Deps& deps) {
  Source src;
  src.name = target;
  std::optional<oci::Layout> layout;
  std::unique_ptr<oci::Registry> registry;
  oci::Reference ref;
  if (target.starts_with("oci:")) {
    auto t = ParseOciTarget(target);
    if (!t.ok()) return Fail(deps, t.status(), kExitUsage);
    auto l = oci::Layout::Open(t->dir, false);
    if (!l.ok()) return Fail(deps, l.status());
    layout.emplace(*l);
    auto top = layout->Find(t->tag);
    if (!top.ok()) return Fail(deps, top.status());
    src.manifest = [&, top = *top](const std::string& digest) -> Result<oci::RawManifest> {
      oci::RawManifest m;
      m.digest = digest.empty() ? top.digest : digest;
      m.media_type = top.media_type;
      GANTRY_ASSIGN_OR_RETURN(m.bytes, layout->ReadBlob(m.digest, 4 << 20));
      if (!digest.empty()) {
        auto doc = value::ParseJson(m.bytes, "manifest");
        const value::Value* mt = doc.ok() ? doc->Get("mediaType") : nullptr;
        m.media_type = mt && mt->IsString() ? std::string(mt->AsString()) : std::string(oci::media::kOciManifest);
      }
      return m;
    };
    src.blob = [&](const oci::Descriptor& d) { return layout->ReadBlob(d.digest, 16 << 20); };
  } else {
    auto r = oci::ParseReference(target);
    if (!r.ok()) return Fail(deps, r.status(), kExitUsage);
    ref = *r;
    auto reg = OpenRegistry(f, ref.registry);
    if (!reg.ok()) return Fail(deps, reg.status(), kExitUsage);
    registry = std::move(*reg);
    src.manifest = [&](const std::string& digest) -> Result<oci::RawManifest> {
      oci::Reference at = ref;
      if (!digest.empty()) at.tag.clear(), at.digest = digest;
      return registry->GetManifest(at);
    };
    src.blob = [&](const oci::Descriptor& d) -> Result<std::string> { return oci::FetchBlobBytes(*registry, ref, d); };
  }
  auto v = Describe(src);
  if (!v.ok()) return Fail(deps, v.status().WithContext("inspect " + target));
  if (json) {
    fmt::print(deps.out, "{}\n", value::ToJson(*v));
    return kExitOk;
  }
  fmt::print(deps.out, "Name:       {}\n", target);
  if (const value::Value* ms = v->Get("manifests")) {
    fmt::print(deps.out, "Digest:     {}\nMediaType:  {}\nPlatforms:  {}\n", FieldText(*v, "digest"), FieldText(*v, "mediaType"), ms->size());
    for (const value::Value& m : ms->items()) {
      fmt::print(deps.out, "- {}\n", FieldText(m, "platform").empty() ? "(no platform)" : FieldText(m, "platform"));
      if (m.Get("config")) PrintManifest(deps.out, m, "    ");
      else fmt::print(deps.out, "    Digest:     {}\n    MediaType:  {}\n", FieldText(m, "digest"), FieldText(m, "mediaType"));
    }
  } else {
    PrintManifest(deps.out, *v, "");
  }
  return kExitOk;
}

}  // namespace

void AddRegistryFlags(CLI::App* cmd, RegistryFlags& f) {
  cmd->add_option("--registry-config", f.registry_config,
                  "Docker config.json with credentials (default $DOCKER_CONFIG/config.json or "
                  "~/.docker/config.json; \"none\" to read none)");
  cmd->add_option("--ca-file", f.ca_file, "PEM CA bundle to verify the registry with");
  cmd->add_option("--insecure-http", f.insecure_http, "Reach this host[:port] over plain HTTP (repeatable)");
  cmd->add_option("--username", f.username, "Registry user name (with --password-stdin)");
  cmd->add_flag("--password-stdin", f.password_stdin, "Read the registry password from stdin");
}

int Fail(const Deps& deps, const Status& s, int code) {
  fmt::print(deps.err, "error: {}\n", s.message());
  return code;
}

Result<std::unique_ptr<oci::Registry>> OpenRegistry(const RegistryFlags& f, const std::string& host) {
  oci::RegistryOptions options;
  options.docker_config = f.registry_config;
  options.ca_file = f.ca_file;
  options.insecure_http_hosts = f.insecure_http;
  options.upload_state_dir = UploadStateDir();
  if (f.password_stdin != !f.username.empty())
    return InvalidArgumentError("--username and --password-stdin go together");
  if (f.password_stdin) {
    std::string password;
    std::getline(std::cin, password);
    while (!password.empty() && (password.back() == '\r' || password.back() == '\n')) password.pop_back();
    if (password.empty()) return InvalidArgumentError("--password-stdin: no password on stdin");
    options.credentials.push_back({host, f.username, password});
  }
  return oci::NewHttpRegistry(std::move(options));
}

void AddImageRegistryCommands(CLI::App& image, const Deps& deps, int& exit_code) {
  struct Flags {
    RegistryFlags registry;
    std::string source, target, platform;
    std::vector<std::string> mount_from;
    int parallel = 4;
    int page_size = 0;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();

  auto* push = image.add_subcommand("push", "Push an image from an OCI layout to a registry; prints its digest");
  push->add_option("source", f->source, "oci:DIR[:TAG]")->required();
  push->add_option("reference", f->target, "registry/repository[:tag]")->required();
  push->add_option("--mount-from", f->mount_from, "Repository of the same registry the blobs may be in (repeatable)");
  push->add_option("--parallel", f->parallel, "Blobs uploaded at once")->check(CLI::Range(1, 32));
  AddRegistryFlags(push, f->registry);
  push->callback([f, &deps, &exit_code] {
    auto src = ParseOciTarget(f->source);
    if (!src.ok()) return void(exit_code = Fail(deps, src.status(), kExitUsage));
    auto ref = oci::ParseReference(f->target);
    if (!ref.ok()) return void(exit_code = Fail(deps, ref.status(), kExitUsage));
    auto layout = oci::Layout::Open(src->dir, false);
    if (!layout.ok()) return void(exit_code = Fail(deps, layout.status()));
    auto registry = OpenRegistry(f->registry, ref->registry);
    if (!registry.ok()) return void(exit_code = Fail(deps, registry.status(), kExitUsage));
    oci::PushOptions options;
    options.mount_from = f->mount_from;
    options.parallel = f->parallel;
    auto digest = oci::PushImage(**registry, *layout, src->tag, *ref, options);
    if (!digest.ok()) return void(exit_code = Fail(deps, digest.status()));
    fmt::print(deps.out, "{}\n", *digest);
    exit_code = kExitOk;
  });

  auto* pull = image.add_subcommand("pull", "Pull an image from a registry into an OCI layout");
  pull->add_option("reference", f->source, "registry/repository[:tag|@digest]")->required();
  pull->add_option("target", f->target, "oci:DIR[:TAG]")->required();
  pull->add_option("--platform", f->platform, "os/arch[/variant]: from an index, only this platform");
  AddRegistryFlags(pull, f->registry);
  pull->callback([f, &deps, &exit_code] {
    auto ref = oci::ParseReference(f->source);
    if (!ref.ok()) return void(exit_code = Fail(deps, ref.status(), kExitUsage));
    auto dst = ParseOciTarget(f->target);
    if (!dst.ok()) return void(exit_code = Fail(deps, dst.status(), kExitUsage));
    std::optional<oci::Platform> platform;
    if (!f->platform.empty()) {
      auto p = oci::ParsePlatform(f->platform);
      if (!p.ok()) return void(exit_code = Fail(deps, p.status(), kExitUsage));
      platform = *p;
    }
    auto layout = oci::Layout::Open(dst->dir, true);
    if (!layout.ok()) return void(exit_code = Fail(deps, layout.status()));
    auto registry = OpenRegistry(f->registry, ref->registry);
    if (!registry.ok()) return void(exit_code = Fail(deps, registry.status(), kExitUsage));
    std::string tag = dst->tag.empty() ? (ref->tag.empty() ? "latest" : ref->tag) : dst->tag;
    auto d = oci::PullImage(**registry, *ref, *layout, tag, platform);
    if (!d.ok()) return void(exit_code = Fail(deps, d.status()));
    fmt::print(deps.out, "{}\n", d->digest);
    exit_code = kExitOk;
  });

  auto* inspect = image.add_subcommand("inspect", "Show an image's digest, platforms, layers and config");
  inspect->add_option("image", f->source, "REF or oci:DIR[:TAG]")->required();
  inspect->add_flag("--json", f->json, "Print JSON");
  AddRegistryFlags(inspect, f->registry);
  inspect->callback([f, &deps, &exit_code] { exit_code = RunInspect(f->source, f->json, f->registry, deps); });

  auto* tags = image.add_subcommand("tags", "List the tags of a repository");
  tags->add_option("repository", f->source, "registry/repository")->required();
  tags->add_option("--page-size", f->page_size, "Tags per request (n=); all pages are read");
  AddRegistryFlags(tags, f->registry);
  tags->callback([f, &deps, &exit_code] {
    auto ref = oci::ParseReference(f->source);
    if (!ref.ok()) return void(exit_code = Fail(deps, ref.status(), kExitUsage));
    auto registry = OpenRegistry(f->registry, ref->registry);
    if (!registry.ok()) return void(exit_code = Fail(deps, registry.status(), kExitUsage));
    auto list = (*registry)->ListTags(*ref, f->page_size);
    if (!list.ok()) return void(exit_code = Fail(deps, list.status()));
    for (const std::string& t : *list) fmt::print(deps.out, "{}\n", t);
    exit_code = kExitOk;
  });

  // gantry image latest REPO --semver RANGE | --alphabetical | --numerical [--filter RE [--extract $g]]
  struct LatestFlags {
    std::string repository;
    std::string semver;
    bool alphabetical = false;
    bool numerical = false;
    std::string order = "asc";
    std::string filter;
    std::string extract;
    bool print_reference = false;
  };
  auto lf = std::make_shared<LatestFlags>();
  auto* latest = image.add_subcommand("latest", "The newest tag of a repository by a tag policy (as Flux's ImagePolicy)");
  latest->add_option("repository", lf->repository, "registry/repository")->required();
  latest->add_option("--semver", lf->semver, "Semver range: the highest version in it (\">=1.0.0-0\" admits pre-releases)");
  latest->add_flag("--alphabetical", lf->alphabetical, "Order tags alphabetically");
  latest->add_flag("--numerical", lf->numerical, "Order tags as numbers");
  latest->add_option("--order", lf->order, "asc: the highest wins (default); desc: the lowest")->check(CLI::IsMember({"asc", "desc"}));
  latest->add_option("--filter", lf->filter, "Only tags matching this regular expression (RE2)");
  latest->add_option("--extract", lf->extract, "Order by this expansion of the filter's groups, e.g. '$ts'");
  latest->add_flag("--reference", lf->print_reference, "Print registry/repository:tag instead of the tag");
  AddRegistryFlags(latest, f->registry);
  latest->callback([lf, f, &deps, &exit_code] {
    int kinds = !lf->semver.empty() + lf->alphabetical + lf->numerical;
    if (kinds != 1) return void(exit_code = Fail(deps, InvalidArgumentError("give exactly one of --semver RANGE, --alphabetical, --numerical"), kExitUsage));
    if (!lf->extract.empty() && lf->filter.empty()) return void(exit_code = Fail(deps, InvalidArgumentError("--extract needs --filter"), kExitUsage));
    update::TagPolicy policy;
    policy.kind = !lf->semver.empty() ? update::TagPolicy::Kind::kSemver
                  : lf->alphabetical  ? update::TagPolicy::Kind::kAlphabetical
                                      : update::TagPolicy::Kind::kNumerical;
    policy.range = lf->semver;
    policy.ascending = lf->order == "asc";
    policy.pattern = lf->filter;
    policy.extract = lf->extract;
    auto ref = oci::ParseReference(lf->repository);
    if (!ref.ok()) return void(exit_code = Fail(deps, ref.status(), kExitUsage));
    auto registry = OpenRegistry(f->registry, ref->registry);
    if (!registry.ok()) return void(exit_code = Fail(deps, registry.status(), kExitUsage));
    auto list = (*registry)->ListTags(*ref);
    if (!list.ok()) return void(exit_code = Fail(deps, list.status()));
    auto tag = update::SelectLatest(*list, policy);
    if (!tag.ok()) return void(exit_code = Fail(deps, tag.status(), tag.status().code() == Code::kInvalidArgument ? kExitUsage : kExitFailed));
    if (lf->print_reference) {
      oci::Reference out = *ref;
      out.tag = *tag;
      out.digest.clear();
      fmt::print(deps.out, "{}\n", out.ToString());
    } else {
      fmt::print(deps.out, "{}\n", *tag);
    }
    exit_code = kExitOk;
  });
}

}  // namespace gantry::cli

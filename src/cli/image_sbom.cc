// `gantry image sbom` (see docs/supply-chain.md):
//
//   gantry image sbom REF [-o FILE] [--platform os/arch] [--attest --key KEY.pem] [registry flags]
//   gantry image sbom oci:DIR[:TAG] [-o FILE] [--platform os/arch]
//
// Writes the SPDX 2.3 JSON SBOM of an image in a registry (its layers pulled into a temporary
// layout, removed afterwards) or in a local layout, to FILE or stdout, and with --attest signs it
// as an in-toto attestation (predicate type https://spdx.dev/Document, what `cosign attest --type
// spdxjson` writes) stored under the image's .att tag. Exit codes: 0 done; 2 usage (flags,
// references, keys); 3 registry errors; 1 when the SBOM cannot be made (a malformed layer or
// package database, a limit, an unwritable FILE).

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/clock.h"
#include "base/path.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/image.h"
#include "sign/sbom.h"
#include "sign/sign.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

struct SbomFlags {
  std::string reference;
  std::string output;
  std::string platform;
  bool attest = false;
  std::string key;
  RegistryFlags registry;
};

// Removes a directory tree when it goes out of scope.
struct TempDir {
  fs::path path;
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

// Writes the SBOM to the output (FILE, or stdout when empty), keeping a copy in `keep` when
// given (to attest it). Errors are the SBOM's failure (exit 1).
Result<sign::SbomStats> Write(const oci::Layout& layout, std::string_view tag, const sign::SbomOptions& options,
                              const std::string& output, std::FILE* out, std::string* keep) {
  std::FILE* f = out;
  if (!output.empty()) {
    f = std::fopen(output.c_str(), "we");
    if (f == nullptr) return ErrnoError(errno, "open " + output);
  }
  auto stats = sign::WriteSbom(layout, tag, options, [&](std::string_view chunk) -> Status {
    if (keep != nullptr) keep->append(chunk);
    if (std::fwrite(chunk.data(), 1, chunk.size(), f) != chunk.size()) {
      return ErrnoError(errno, "write " + (output.empty() ? std::string("stdout") : output));
    }
    return OkStatus();
  });
  if (f != out && std::fclose(f) != 0 && stats.ok()) return ErrnoError(errno, "write " + output);
  if (!stats.ok() && !output.empty()) ::unlink(output.c_str());
  return stats;
}

int Run(const SbomFlags& f, const Deps& deps) {
  std::optional<oci::Platform> platform;
  if (!f.platform.empty()) {
    auto p = oci::ParsePlatform(f.platform);
    if (!p.ok()) return UsageError(p.status().WithContext("--platform"), deps.err);
    platform = *p;
  }
  if (f.attest != !f.key.empty()) return UsageError(InvalidArgumentError("--attest and --key go together"), deps.err);
  std::optional<sign::PrivateKey> key;
  if (f.attest) {
    auto pem = ReadFile(f.key, 1 << 20);
    auto parsed = pem.ok() ? sign::ParsePrivateKey(*pem, f.key) : Result<sign::PrivateKey>(pem.status());
    if (!parsed.ok()) return UsageError(parsed.status().WithContext("--key"), deps.err);
    key = *parsed;
  }
  sign::SbomOptions options{.created = Rfc3339(deps.clock != nullptr ? deps.clock->WallNow() : std::chrono::system_clock::now()),
                            .platform = platform};
  std::string document;
  std::string* keep = f.attest ? &document : nullptr;

  if (f.reference.starts_with("oci:")) {
    if (f.attest) return UsageError(InvalidArgumentError("--attest needs an image in a registry, not oci:DIR"), deps.err);
    auto target = ParseOciTarget(f.reference);
    if (!target.ok()) return UsageError(target.status(), deps.err);
    auto layout = oci::Layout::Open(target->dir, false);
    if (!layout.ok()) return Report(Status(layout.status()).set_reason(kReasonFailed), deps.err);
    auto found = layout->Find(target->tag);
    if (!found.ok()) return Report(Status(found.status()).set_reason(kReasonFailed), deps.err);
    options.image = oci::Reference{.registry = "oci", .repository = target->dir.filename().string(), .tag = target->tag};
    options.digest = found->digest;
    auto stats = Write(*layout, target->tag, options, f.output, deps.out, keep);
    if (!stats.ok()) return Report(Status(stats.status()).set_reason(kReasonFailed), deps.err);
    fmt::print(deps.err, "{} files, {} packages\n", stats->files, stats->packages);
    return kExitOk;
  }

  auto ref = oci::ParseReference(f.reference);
  if (!ref.ok()) return UsageError(ref.status(), deps.err);
  auto registry = OpenRegistry(f.registry, ref->registry);
  if (!registry.ok()) return UsageError(registry.status(), deps.err);
  auto subject = sign::ResolveImage(**registry, *ref);
  if (!subject.ok()) return Report(subject.status(), deps.err);
  oci::Reference at = *ref;
  at.tag.clear();
  at.digest = subject->digest;

  TempDir tmp{fs::temp_directory_path() / "gantry-sbom-XXXXXX"};
  std::string tmpl = tmp.path.string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    tmp.path.clear();
    return Report(ErrnoError(errno, "create a temp dir"), deps.err);
  }
  tmp.path = tmpl;
  auto layout = oci::Layout::Open(tmp.path, true);
  if (!layout.ok()) return Report(layout.status(), deps.err);
  auto pulled = oci::PullImage(**registry, at, *layout, "sbom", platform);
  if (!pulled.ok()) return Report(pulled.status().WithContext("pull " + at.ToString()), deps.err);
  options.image = *ref;
  options.digest = subject->digest;
  auto stats = Write(*layout, "sbom", options, f.output, deps.out, keep);
  if (!stats.ok()) return Report(Status(stats.status()).set_reason(kReasonFailed), deps.err);
  fmt::print(deps.err, "{} files, {} packages{}\n", stats->files, stats->packages,
             stats->package_database.empty() ? "" : " (from /" + stats->package_database + ")");
  if (!f.attest) return kExitOk;
  auto pushed = sign::AttestImage(**registry, at, sign::SbomStatement(at, at.digest, document), sign::kSpdxDocument, *key);
  if (!pushed.ok()) return Report(pushed.status(), deps.err);
  fmt::print(deps.err, "sbom attestation stored as {}/{}:{} ({})\n", at.registry, at.repository, pushed->tag,
             pushed->manifest_digest);
  return kExitOk;
}

}  // namespace

void AddImageSbomCommand(CLI::App& image, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<SbomFlags>();
  auto* cmd = image.add_subcommand("sbom", "Write an image's SPDX 2.3 SBOM (files with digests, installed packages)");
  cmd->add_option("reference", f->reference, "registry/repository[:tag|@digest], or oci:DIR[:TAG]")->required();
  cmd->add_option("-o,--output", f->output, "Write the SBOM to FILE (default: stdout)");
  cmd->add_option("--platform", f->platform, "os/arch[/variant]: the image of a multi-platform index");
  cmd->add_flag("--attest", f->attest, "Also attach it as a signed attestation (cosign's spdxjson type)");
  cmd->add_option("--key", f->key, "With --attest: private key, PEM (ECDSA P-256 or Ed25519, unencrypted)");
  AddRegistryFlags(cmd, f->registry);
  cmd->callback([f, &deps, &exit_code] { exit_code = Run(*f, deps); });
}

}  // namespace gantry::cli

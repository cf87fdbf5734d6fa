// Image signatures and attestations in cosign's format (see docs/supply-chain.md):
//
//   gantry image sign REF --key KEY.pem [-a KEY=VALUE]...
//   gantry image verify REF --key KEY.pub
//   gantry image attest REF --key KEY.pem (--predicate FILE [--type URI] | provenance flags)
//   gantry image verify-attestation REF --key KEY.pub [--type slsaprovenance1|URI]
//
// REF may name a tag (resolved to its digest once) or a digest. The registry flags are those of
// `image push`. Exit codes: 0 done; 2 usage (flags, references, unreadable or unsupported keys);
// 3 registry errors; 1 when verification fails (no signature, a bad one, another digest).

#include <CLI/CLI.hpp>

#include "base/path.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/image.h"
#include "sign/sign.h"

namespace gantry::cli {
namespace {

struct SignFlags {
  std::string reference;
  std::string key;
  std::vector<std::string> annotations;  // KEY=VALUE
  std::string predicate;                 // attest: a JSON predicate file
  std::string type = "slsaprovenance1";
  sign::Provenance provenance;
  std::vector<std::string> base_images;  // REF=DIGEST
  std::vector<std::string> params;       // NAME=VALUE
  RegistryFlags registry;
};

// cosign's short names for predicate types (`--type`), or the URI itself.
std::string PredicateUri(const std::string& type) {
  if (type == "slsaprovenance1") return std::string(sign::kSlsaProvenanceV1);
  if (type == "slsaprovenance" || type == "slsaprovenance02") return "https://slsa.dev/provenance/v0.2";
  if (type == "spdxjson") return "https://spdx.dev/Document";
  if (type == "cyclonedx") return "https://cyclonedx.org/bom";
  return type;
}

Result<std::map<std::string, std::string>> ParsePairs(const std::vector<std::string>& pairs, std::string_view flag) {
  std::map<std::string, std::string> out;
  for (const auto& p : pairs) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) return InvalidArgumentError("{} {:?}: expected KEY=VALUE", flag, p);
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

// What every subcommand starts with: the reference, the key (private to sign, public to verify),
// the registry. Errors are usage errors.
template <typename Key>
struct Opened {
  oci::Reference ref;
  std::optional<Key> key;
  std::unique_ptr<oci::Registry> registry;
};
template <typename Key>
Result<Opened<Key>> Open(const SignFlags& f, Result<Key> (*parse)(std::string_view pem, std::string_view where)) {
  Opened<Key> o;
  GANTRY_ASSIGN_OR_RETURN(o.ref, oci::ParseReference(f.reference));
  auto pem = ReadFile(f.key, 1 << 20);
  if (!pem.ok()) return InvalidArgumentError("--key: {}", pem.status().message());
  GANTRY_ASSIGN_OR_RETURN(o.key, parse(*pem, f.key));
  GANTRY_ASSIGN_OR_RETURN(o.registry, OpenRegistry(f.registry, o.ref.registry));
  return o;
}

// Prints what sign / attest pushed (its digest on stdout, where on stderr); the exit code.
int Pushed(const Result<sign::Pushed>& pushed, const oci::Reference& ref, std::string_view what, const Deps& deps) {
  if (!pushed.ok()) return Report(pushed.status(), deps.err);
  fmt::print(deps.out, "{}\n", pushed->manifest_digest);
  fmt::print(deps.err, "{} stored as {}/{}:{}\n", what, ref.registry, ref.repository, pushed->tag);
  return kExitOk;
}

// Prints a failed verification; exit 1 when the registry answered and a check failed (no
// signature, a bad one, another digest, a missing blob), 3 when the registry could not be asked.
int VerifyFailed(const Status& s, std::FILE* err) {
  int code = Report(s, err);
  switch (s.code()) {
    case Code::kNotFound:
    case Code::kPermissionDenied:
    case Code::kInvalidArgument:
    case Code::kDataLoss:
      return kExitFailed;
    default:
      return code;
  }
}

void AddSign(CLI::App& image, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<SignFlags>();
  auto* cmd = image.add_subcommand("sign", "Sign an image in a registry (cosign's format); prints the signature's digest");
  cmd->add_option("reference", f->reference, "registry/repository[:tag|@digest]")->required();
  cmd->add_option("--key", f->key, "Private key, PEM (ECDSA P-256 or Ed25519, unencrypted)")->required();
  cmd->add_option("-a,--annotation", f->annotations, "KEY=VALUE signed with the image (repeatable)");
  AddRegistryFlags(cmd, f->registry);
  cmd->callback([f, &deps, &exit_code] {
    auto annotations = ParsePairs(f->annotations, "--annotation");
    if (!annotations.ok()) return void(exit_code = UsageError(annotations.status(), deps.err));
    auto o = Open(*f, sign::ParsePrivateKey);
    if (!o.ok()) return void(exit_code = UsageError(o.status(), deps.err));
    exit_code = Pushed(sign::SignImage(*o->registry, o->ref, *o->key, *annotations), o->ref, "signature", deps);
  });
}

void AddVerify(CLI::App& image, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<SignFlags>();
  auto* cmd = image.add_subcommand("verify", "Verify an image's signatures with a public key");
  cmd->add_option("reference", f->reference, "registry/repository[:tag|@digest]")->required();
  cmd->add_option("--key", f->key, "Public key, PKIX PEM (cosign.pub)")->required();
  AddRegistryFlags(cmd, f->registry);
  cmd->callback([f, &deps, &exit_code] {
    auto o = Open(*f, sign::ParsePublicKey);
    if (!o.ok()) return void(exit_code = UsageError(o.status(), deps.err));
    auto verified = sign::VerifyImage(*o->registry, o->ref, *o->key);
    if (!verified.ok()) return void(exit_code = VerifyFailed(verified.status(), deps.err));
    for (const auto& v : *verified) {
      fmt::print(deps.out, "{}@{}: signature verified ({})\n", v.docker_reference, v.image_digest,
                 sign::KeyTypeName(o->key->type()));
    }
    exit_code = kExitOk;
  });
}

void AddAttest(CLI::App& image, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<SignFlags>();
  auto* cmd = image.add_subcommand(
      "attest", "Attach a signed in-toto attestation (SLSA provenance v1 from the flags, or --predicate FILE)");
  cmd->add_option("reference", f->reference, "registry/repository[:tag|@digest]")->required();
  cmd->add_option("--key", f->key, "Private key, PEM (ECDSA P-256 or Ed25519, unencrypted)")->required();
  cmd->add_option("--predicate", f->predicate, "A JSON predicate to attest instead of the provenance the flags describe");
  cmd->add_option("--type", f->type, "Predicate type of --predicate: slsaprovenance1, spdxjson, cyclonedx or a URI");
  cmd->add_option("--builder-id", f->provenance.builder_id, "Provenance: the builder's id (a URI)");
  cmd->add_option("--pipeline", f->provenance.pipeline, "Provenance: the pipeline that built the image");
  cmd->add_option("--source-repo", f->provenance.source_repository, "Provenance: the source repository URL");
  cmd->add_option("--commit", f->provenance.source_commit, "Provenance: the source commit");
  cmd->add_option("--ref", f->provenance.source_ref, "Provenance: the source ref (refs/heads/main)");
  cmd->add_option("--run-id", f->provenance.run_id, "Provenance: the CI run");
  cmd->add_option("--base", f->base_images, "Provenance: a base image as REF=DIGEST (repeatable)");
  cmd->add_option("--param", f->params, "Provenance: a build input as NAME=VALUE (repeatable)");
  AddRegistryFlags(cmd, f->registry);
  cmd->callback([f, &deps, &exit_code] {
    auto bases = ParsePairs(f->base_images, "--base");
    if (!bases.ok()) return void(exit_code = UsageError(bases.status(), deps.err));
    auto params = ParsePairs(f->params, "--param");
    if (!params.ok()) return void(exit_code = UsageError(params.status(), deps.err));
    for (const auto& [ref, digest] : *bases) {
      if (Status s = oci::ValidateDigest(digest); !s.ok()) return void(exit_code = UsageError(s.WithContext("--base " + ref), deps.err));
    }
    if (f->predicate.empty() && f->provenance.builder_id.empty()) {
      return void(exit_code = UsageError(InvalidArgumentError("give --predicate FILE or the provenance (at least --builder-id)"), deps.err));
    }
    std::optional<value::Value> predicate;
    if (!f->predicate.empty()) {
      auto text = ReadFile(f->predicate, 16 << 20);
      auto doc = text.ok() ? value::ParseJson(*text, f->predicate) : Result<value::Value>(text.status());
      if (!doc.ok()) return void(exit_code = UsageError(doc.status().WithContext("--predicate"), deps.err));
      predicate = *std::move(doc);
    }
    auto o = Open(*f, sign::ParsePrivateKey);
    if (!o.ok()) return void(exit_code = UsageError(o.status(), deps.err));
    auto subject = sign::ResolveImage(*o->registry, o->ref);
    if (!subject.ok()) return void(exit_code = Report(subject.status(), deps.err));
    std::string type = f->predicate.empty() ? std::string(sign::kSlsaProvenanceV1) : PredicateUri(f->type);
    std::string statement;
    if (predicate) {
      statement = sign::Statement(o->ref, subject->digest, type, *predicate);
    } else {
      sign::Provenance p = f->provenance;
      p.base_images = *bases;
      p.parameters = *params;
      statement = sign::ProvenanceStatement(o->ref, subject->digest, p);
    }
    oci::Reference at = o->ref;
    at.tag.clear();
    at.digest = subject->digest;
    exit_code = Pushed(sign::AttestImage(*o->registry, at, statement, type, *o->key), o->ref, "attestation", deps);
  });
}

void AddVerifyAttestation(CLI::App& image, const Deps& deps, int& exit_code) {
  auto f = std::make_shared<SignFlags>();
  auto* cmd = image.add_subcommand("verify-attestation", "Verify an image's attestations with a public key");
  cmd->add_option("reference", f->reference, "registry/repository[:tag|@digest]")->required();
  cmd->add_option("--key", f->key, "Public key, PKIX PEM (cosign.pub)")->required();
  cmd->add_option("--type", f->type, "Predicate type: slsaprovenance1, spdxjson, cyclonedx or a URI; \"\" for any");
  AddRegistryFlags(cmd, f->registry);
  cmd->callback([f, &deps, &exit_code] {
    auto o = Open(*f, sign::ParsePublicKey);
    if (!o.ok()) return void(exit_code = UsageError(o.status(), deps.err));
    auto verified = sign::VerifyAttestations(*o->registry, o->ref, *o->key, f->type.empty() ? "" : PredicateUri(f->type));
    if (!verified.ok()) return void(exit_code = VerifyFailed(verified.status(), deps.err));
    for (const auto& v : *verified) fmt::print(deps.out, "{}\n", value::ToJson(v.statement));
    exit_code = kExitOk;
  });
}

}  // namespace

void AddImageSignCommands(CLI::App& image, const Deps& deps, int& exit_code) {
  AddSign(image, deps, exit_code);
  AddVerify(image, deps, exit_code);
  AddAttest(image, deps, exit_code);
  AddVerifyAttestation(image, deps, exit_code);
}

}  // namespace gantry::cli

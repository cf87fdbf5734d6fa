// SOPS: decrypting rendered objects that are SOPS-encrypted, with the real `sops` in the sandbox.

#include "base/path.h"
#include "render/internal/documents.h"
#include "render/internal/renderers.h"
#include "render/internal/sandbox.h"

namespace gantry::render::internal {
namespace fs = std::filesystem;

namespace {

// The key types SOPS knows besides age, as they appear in the `sops` map.
constexpr const char* kOtherKeyTypes[] = {"pgp", "kms", "gcp_kms", "azure_kv", "hc_vault"};

// "Secret default/name" (or "Secret name" without a namespace).
std::string ObjectName(const value::Value& o) {
  auto str = [](const value::Value* v) { return v != nullptr && v->IsString() ? std::string(v->AsString()) : std::string(); };
  const value::Value* meta = o.Get("metadata");
  std::string ns = meta != nullptr ? str(meta->Get("namespace")) : "";
  std::string name = meta != nullptr ? str(meta->Get("name")) : "";
  return fmt::format("{} {}{}", str(o.Get("kind")), ns.empty() ? "" : ns + "/", name);
}

// The age recipients of an encrypted object, and the other key types it names.
void Recipients(const value::Value& sops, std::vector<std::string>& age, std::vector<std::string>& other) {
  if (const value::Value* list = sops.Get("age"); list != nullptr && list->IsSeq()) {
    for (const value::Value& e : list->items()) {
      const value::Value* r = e.IsMap() ? e.Get("recipient") : nullptr;
      if (r != nullptr && r->IsString()) age.emplace_back(r->AsString());
    }
  }
  for (const char* type : kOtherKeyTypes) {
    const value::Value* list = sops.Get(type);
    if (list != nullptr && list->IsSeq() && list->size() > 0) other.push_back(type);
  }
}

// The last line of sops's stderr that says something (sops never prints plaintext there: it only
// ever gets ciphertext to parse).
std::string LastLine(std::string_view err) {
  std::string_view last;
  while (!err.empty()) {
    size_t eol = err.find('\n');
    std::string_view line = err.substr(0, eol);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) last = line;
    err.remove_prefix(eol == std::string_view::npos ? err.size() : eol + 1);
  }
  return std::string(last.substr(0, 300));
}

}  // namespace

bool IsSopsEncrypted(const value::Value& object) {
  const value::Value* sops = object.IsMap() ? object.Get("sops") : nullptr;
  return sops != nullptr && sops->IsMap() && sops->Get("mac") != nullptr;
}

Status DecryptSops(std::vector<Manifest>& manifests, const Options& options) {
  std::string binary;
  std::optional<PrivateDir> tmp;
  for (Manifest& m : manifests) {
    if (!IsSopsEncrypted(m.object)) continue;
    const std::string what = fmt::format("{} ({})", m.source, ObjectName(m.object));
    std::vector<std::string> age, other;
    Recipients(*m.object.Get("sops"), age, other);
    const std::string recipients =
        age.empty() ? fmt::format("no age recipient (only {})", other.empty() ? "no key at all" : fmt::format("{}", fmt::join(other, ", ")))
                    : fmt::format("age recipient{} {}", age.size() == 1 ? "" : "s", fmt::join(age, ", "));
    if (age.empty()) {
      return FailedPreconditionError("{} is SOPS-encrypted for {}; Gantry decrypts with age keys only", what,
                                     recipients);
    }
    const value::Value* api = m.object.Get("apiVersion");
    const value::Value* kind = m.object.Get("kind");
    if (!(api != nullptr && api->IsString() && api->AsString() == "v1" && kind != nullptr && kind->IsString() &&
          kind->AsString() == "Secret")) {
      return InvalidArgumentError("{} is SOPS-encrypted, but Gantry decrypts only Secrets (v1), whose values it hides "
                                  "in diffs and output; keep secret values in a Secret", what);
    }
    if (options.sops.age_keys.empty()) {
      return FailedPreconditionError("{} is SOPS-encrypted for {}, and Gantry holds no age key (give the key file "
                                     "with --sops-age-key-file)", what, recipients);
    }
    if (binary.empty()) {
      GANTRY_ASSIGN_OR_RETURN(binary, FindSops(options.sops.binary));
      GANTRY_ASSIGN_OR_RETURN(PrivateDir dir, PrivateDir::Create(options.temp_dir));
      tmp.emplace(std::move(dir));
    }
    RendererRun run;
    run.binary = binary;
    run.args = {"decrypt", "--input-type", "json", "--output-type", "json"};
    run.cwd = tmp->path();
    run.private_dir = tmp->path();
    // The key only in the environment of sops (the sandbox's arguments travel in a sealed memfd, not
    // on a command line); HOME is empty, so sops finds no other key (~/.ssh, ~/.config/sops/age).
    run.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"},
               {"HOME", tmp->path().string()},
               {"XDG_CONFIG_HOME", tmp->path().string()},
               {"LANG", "C.UTF-8"},
               {"SOPS_AGE_KEY", options.sops.age_keys}};
    run.stdin_data = value::ToJson(m.object);
    run.sandbox = options.sandbox;
    run.bwrap_binary = options.bwrap_binary;
    run.timeout = options.timeout;
    run.max_output_bytes = options.limits.max_total_bytes;
    run.max_memory_bytes = options.limits.max_renderer_memory_bytes;
    GANTRY_ASSIGN_OR_RETURN(ProcessResult r, RunRenderer(run));
    if (r.timed_out) {
      return DeadlineExceededError("sops decrypt of {}: did not finish within {} ms", what, options.timeout.count());
    }
    if (r.output_truncated) {
      return ResourceExhaustedError("sops decrypt of {}: output larger than {} bytes (limit max_total_bytes)", what,
                                    options.limits.max_total_bytes);
    }
    if (!r.success()) {
      if (r.err.find("Failed to get the data key") != std::string::npos ||
          r.err.find("no master key was able to decrypt") != std::string::npos) {
        return PermissionDeniedError("{} is SOPS-encrypted for {}, and none of the age keys Gantry holds is one of "
                                     "them", what, recipients);
      }
      if (r.err.find("MAC mismatch") != std::string::npos) {
        return InvalidArgumentError("{} is SOPS-encrypted, but its MAC does not match: it was changed after it was "
                                    "encrypted (re-encrypt it with sops)", what);
      }
      return UnknownError("sops decrypt of {} failed: {}: {}", what, r.Describe(), LastLine(r.err));
    }
    // Parse errors must not quote the plaintext: report only that it is not an object.
    auto docs = value::ParseYaml(r.out, "sops output", options.limits.parse);
    if (!docs.ok() || docs->size() != 1 || !(*docs)[0].IsMap()) {
      return InternalError("sops decrypt of {}: its output is not one JSON object", what);
    }
    value::Value plain = std::move((*docs)[0]);
    if (Status valid = ValidateObject(plain); !valid.ok()) {
      return InvalidArgumentError("{}: decrypted, it is not a Kubernetes object (needs apiVersion, kind and "
                                  "metadata.name unencrypted)", what);
    }
    m.object = std::move(plain);
    m.decrypted = true;
  }
  return OkStatus();
}

}  // namespace gantry::render::internal

namespace gantry::render {

Result<std::string> ReadAgeKeyFile(const std::filesystem::path& path) {
  auto text = ReadFile(path, 1u << 20);
  if (!text.ok()) {
    return Status(text.status().code(), fmt::format("age key file {}: {}", path.string(), text.status().message()));
  }
  if (text->find("AGE-SECRET-KEY-1") == std::string::npos) {
    return InvalidArgumentError("age key file {}: holds no age identity (a line AGE-SECRET-KEY-1..., as age-keygen "
                                "writes)", path.string());
  }
  return std::move(*text);
}

}  // namespace gantry::render

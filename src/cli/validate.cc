// gantry validate PATH... and gantry render.
//
// validate: checks that files or directories hold well-formed Kubernetes manifests
// (YAML/JSON that parses within the limits, and objects with apiVersion, kind and metadata.name),
// reporting every problem with file:line:column. Exit 0 when all are valid, 1 when not.

#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/source.h"
#include "api/application.h"
#include "diff/diff.h"
#include "project/project.h"
#include "render/render.h"

namespace gantry::cli {
namespace {

struct ValidateOptions {
  std::vector<std::string> paths;
};

// Checks every path, printing each problem to deps.err; kReasonFailed when any is invalid.
Status RunValidate(const ValidateOptions& options, const Deps& deps) {
  int bad = 0;
  size_t objects = 0;
  for (const std::string& path : options.paths) {
    auto manifests = render::RenderPlain(path);
    if (!manifests.ok()) {
      fmt::print(deps.err, "error: {}\n", manifests.status().message());
      ++bad;
      continue;
    }
    if (manifests->empty()) {
      fmt::print(deps.err, "error: {}: no manifests found (.yaml, .yml or .json files)\n", path);
      ++bad;
    }
    objects += manifests->size();
    // Gantry's own kinds are checked in full: a Project with a bad glob or window, an Application
    // with a malformed sync option, say where.
    for (const auto& m : *manifests) {
      if (value::StringAt(&m.object, {"apiVersion"}) != project::kApiVersion) continue;
      std::string kind = value::StringAt(&m.object, {"kind"});
      Status s = kind == project::kKind ? project::ParseProject(m.object).status()
                 : kind == api::kKind   ? api::ParseApplication(m.object).status()
                                        : OkStatus();
      if (!s.ok()) {
        fmt::print(deps.err, "error: {}\n", s.message());
        ++bad;
      }
    }
  }
  if (bad > 0) return InvalidArgumentError("{} of {} path{} invalid", bad, options.paths.size(), options.paths.size() == 1 ? "" : "s").set_reason(kReasonFailed);
  fmt::print(deps.out, "{} object{} valid\n", objects, objects == 1 ? "" : "s");
  return OkStatus();
}

}  // namespace

void AddValidateCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* cmd = app.add_subcommand("validate", "Check that files or directories hold valid Kubernetes manifests");
  auto options = std::make_shared<ValidateOptions>();
  cmd->add_option("paths", options->paths, "Manifest files or directories (recursive)")->required();
  cmd->callback([options, &deps, &exit_code] { exit_code = Report(RunValidate(*options, deps), deps.err); });
}

void AddRenderCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "render", "Print the manifests of a directory or Git path (plain YAML, Kustomize, Helm or Jsonnet) as one YAML stream");
  auto source = std::make_shared<SourceFlags>();
  auto output = std::make_shared<std::string>("yaml");
  AddSourceFlags(cmd, *source);
  cmd->add_option("-o,--output", *output, "yaml or json (one object per line)")
      ->check(CLI::IsMember({"yaml", "json"}));
  cmd->callback([source, output, &deps, &exit_code] {
    auto loaded = LoadSource(*source);
    if (!loaded.ok()) {
      exit_code = Report(loaded.status(), deps.err);
      return;
    }
    if (!loaded->revision.empty()) fmt::print(deps.err, "rendered {} at {}\n", source->repo, loaded->revision);
    std::string out;
    for (const render::Manifest& m : loaded->manifests) {
      // A Secret decrypted from SOPS is printed with its values hidden (as in diffs): the plaintext
      // is for the cluster only.
      value::Value redacted;
      if (m.decrypted) redacted = diff::Redact(m.object);
      const value::Value& object = m.decrypted ? redacted : m.object;
      if (*output == "json") {
        out += value::ToJson(object);
        out += '\n';
      } else {
        out += fmt::format("---\n# Source: {}{}\n", m.source, m.decrypted ? " (decrypted with SOPS, values hidden)" : "");
        out += value::ToYaml(object);
      }
    }
    fmt::print(deps.out, "{}", out);
    exit_code = kExitOk;
  });
}

}  // namespace gantry::cli

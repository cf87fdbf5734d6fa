// gantry validate PATH... and gantry render.
//
// validate: checks that files or directories hold well-formed Kubernetes manifests
// (YAML/JSON that parses within the limits, and objects with apiVersion, kind and metadata.name),
// reporting every problem with file:line:column. Exit 0 when all are valid, 1 when not.

#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/source.h"
#include "render/render.h"

namespace gantry::cli {

void AddValidateCommand(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("validate", "Check that files or directories hold valid Kubernetes manifests");
  auto paths = std::make_shared<std::vector<std::string>>();
  cmd->add_option("paths", *paths, "Manifest files or directories (recursive)")->required();
  cmd->callback([paths, &exit_code] {
    int bad = 0;
    size_t objects = 0;
    for (const std::string& path : *paths) {
      auto manifests = render::RenderPlain(path);
      if (!manifests.ok()) {
        fmt::print(stderr, "error: {}\n", manifests.status().message());
        ++bad;
        continue;
      }
      if (manifests->empty()) {
        fmt::print(stderr, "error: {}: no manifests found (.yaml, .yml or .json files)\n", path);
        ++bad;
      }
      objects += manifests->size();
    }
    if (bad == 0) fmt::print("{} object{} valid\n", objects, objects == 1 ? "" : "s");
    exit_code = bad == 0 ? 0 : 1;
  });
}

void AddRenderCommand(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "render", "Print the manifests of a directory or Git path (plain YAML, Kustomize or Helm) as one YAML stream");
  auto source = std::make_shared<SourceFlags>();
  auto output = std::make_shared<std::string>("yaml");
  AddSourceFlags(cmd, *source);
  cmd->add_option("-o,--output", *output, "yaml or json (one object per line)")
      ->check(CLI::IsMember({"yaml", "json"}));
  cmd->callback([source, output, &exit_code] {
    auto loaded = LoadSource(*source);
    if (!loaded.ok()) {
      fmt::print(stderr, "error: {}\n", loaded.status().message());
      exit_code = 3;
      return;
    }
    if (!loaded->revision.empty()) fmt::print(stderr, "rendered {} at {}\n", source->repo, loaded->revision);
    std::string out;
    for (const render::Manifest& m : loaded->manifests) {
      if (*output == "json") {
        out += value::ToJson(m.object);
        out += '\n';
      } else {
        out += fmt::format("---\n# Source: {}\n", m.source);
        out += value::ToYaml(m.object);
      }
    }
    fmt::print("{}", out);
    exit_code = 0;
  });
}

}  // namespace gantry::cli

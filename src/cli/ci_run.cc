// gantry ci run [DIR] [--step S]... [--event push|tag|pull_request|manual] [--branch B]
//               [--secrets-file F] [--secret-env NAME]... [--parallel N] [--cache-dir D] [-q]
//               [--executor process|kube ...] (cli/ci.h)
//
// Runs DIR/.gantry/pipeline.yaml on DIR (a copy-free local run: DIR is the workspace), with a live
// progress line per step and a final table; exit 0 when every step succeeded, 1 when one failed,
// 2 for usage errors, 3 for a bad pipeline file or environment (docs/pipelines.md).

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "base/path.h"
#include "ci/pipeline.h"
#include "ci/runner.h"
#include "ci/secret_scopes.h"
#include "cli/ci.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/terminal.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

std::atomic<ci::Runner*> g_runner{nullptr};

void CancelRun(int) {
  if (ci::Runner* r = g_runner.load()) r->Cancel();
}

std::string Secs(std::chrono::milliseconds d) { return fmt::format("{:.2f}s", static_cast<double>(d.count()) / 1000.0); }

struct CiRunOptions {
  std::string dir = ".";
  std::vector<std::string> steps;
  std::string event = "manual";
  std::string branch;
  std::string secrets_file;
  std::vector<std::string> secret_env;
  ExecutorFlags executor;
  bool quiet = false;
  int parallel = 4;
  std::string cache_dir;
};

// The secrets the run gets: the scoped file's (as the server reads it: a local run is trusted, of
// no configured repository, never on a protected branch, so it gets the unscoped secrets and those
// of sections matching its event and branch) and the --secret-env variables.
Result<std::map<std::string, std::string>> Secrets(const CiRunOptions& o, const Deps& deps) {
  std::map<std::string, std::string> secrets;
  if (!o.secrets_file.empty()) {
    GANTRY_ASSIGN_OR_RETURN(auto scopes, ci::ReadSecretScopesFile(o.secrets_file));
    ci::SelectedSecrets selected = ci::Select(scopes, {.event = o.event, .branch = o.branch, .trusted = true});
    for (const auto& [name, why] : selected.out_of_scope) {
      fmt::print(deps.err, "note: secret {} is not given to this local run ({})\n", name, why);
    }
    secrets = std::move(selected.in_scope);
  }
  for (const auto& name : o.secret_env) {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return NotFoundError("--secret-env {}: the variable is not set", name);
    secrets[name] = v;
  }
  return secrets;
}

// The live progress: a line when a step starts and ends, its output prefixed by its name.
std::function<void(const ci::Progress&)> PrintProgress(const CiRunOptions& o, const Deps& deps) {
  const bool tty = ::isatty(::fileno(deps.out)) != 0;
  return [quiet = o.quiet, out = deps.out, tty](const ci::Progress& p) {
    switch (p.kind) {
      case ci::Progress::Kind::kStarted: fmt::print(out, "▶ {} started\n", p.step->name); break;
      case ci::Progress::Kind::kOutput:
        if (!quiet) {
          std::string_view d = p.data;
          while (!d.empty()) {
            size_t nl = d.find('\n');
            fmt::print(out, "  {} │ {}\n", p.step->name, d.substr(0, nl));
            if (nl == std::string_view::npos) break;
            d.remove_prefix(nl + 1);
          }
        }
        break;
      case ci::Progress::Kind::kFinished: {
        const ci::StepResult& s = *p.step;
        std::string mark = s.state == store::RunState::kSucceeded ? "✔" : s.state == store::RunState::kSkipped ? "○" : "✘";
        fmt::print(out, "{} {} {} in {} ({})\n", mark, s.name, store::Name(s.state), Secs(s.duration), s.message);
        break;
      }
    }
    if (!tty) std::fflush(out);
  };
}

// Runs the pipeline; kReasonFailed when a step failed, other errors for a bad pipeline file or
// environment.
Status RunCi(const CiRunOptions& o, const Deps& deps) {
  fs::path dir = fs::absolute(o.dir);
  fs::path file = dir / ".gantry" / "pipeline.yaml";
  auto text = ReadFile(file, 1 << 20);
  if (!text.ok()) return text.status().WithContext(file.string());
  GANTRY_ASSIGN_OR_RETURN(ci::Pipeline pipeline, ci::ParsePipeline(*text, ".gantry/pipeline.yaml"));
  GANTRY_ASSIGN_OR_RETURN(BuiltExecutor executor, MakeExecutor(o.executor, deps));
  if (o.executor.kind == "kube" && o.executor.helper_image.empty()) {
    fmt::print(deps.err, "note: the kube executor does not ship {} to the cluster without --helper-image: steps start in an "
               "empty /workspace\n",
               dir.string());
  }
  ci::RunOptions ro;
  ro.workspace = dir;
  ro.cache_root = o.cache_dir.empty() ? dir / ".gantry" / "cache" : fs::path(o.cache_dir);
  ro.context.event = o.event;
  ro.context.branch = o.branch;
  ro.only_steps = o.steps;
  ro.parallelism = o.parallel;
  ro.clock = deps.clock;
  GANTRY_ASSIGN_OR_RETURN(ro.secrets, Secrets(o, deps));
  ro.on_progress = PrintProgress(o, deps);
  std::string tmpl = (fs::temp_directory_path() / "gantry-ci-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return ErrnoError(errno, "create a run directory in " + fs::temp_directory_path().string());
  ro.run_dir = tmpl;

  ci::Runner runner(pipeline, *executor.executor, ro);
  g_runner.store(&runner);
  signal(SIGINT, CancelRun);
  signal(SIGTERM, CancelRun);
  auto result = runner.Run();
  g_runner.store(nullptr);
  std::error_code ec;
  fs::remove_all(ro.run_dir, ec);
  if (!result.ok()) return result.status();

  size_t w = 4;
  for (const auto& s : result->steps) w = std::max(w, s.name.size());
  fmt::print(deps.out, "\n{}  {}  {}  {}\n", Pad("STEP", w), Pad("STATE", 10), Pad("DURATION", 9), "RESULT");
  for (const auto& s : result->steps) {
    fmt::print(deps.out, "{}  {}  {}  {}\n", Pad(s.name, w), Pad(store::Name(s.state), 10), Pad(Secs(s.duration), 9),
               s.message);
  }
  fmt::print(deps.out, "\npipeline {} {} in {}\n", pipeline.name, store::Name(result->state), Secs(result->duration));
  std::fflush(deps.out);
  if (result->state != store::RunState::kSucceeded) {
    return FailedPreconditionError("pipeline {} {}", pipeline.name, store::Name(result->state)).set_reason(kReasonFailed);
  }
  return OkStatus();
}

}  // namespace

void AddCiCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* ci_cmd = app.add_subcommand("ci", "Run CI pipelines (.gantry/pipeline.yaml)");
  ci_cmd->require_subcommand(1);
  auto o = std::make_shared<CiRunOptions>();
  auto* run = ci_cmd->add_subcommand("run", "Run a repository's pipeline locally, with live progress");
  run->add_option("dir", o->dir, "Repository directory (default .)");
  run->add_option("--step", o->steps, "Run only this step and what it needs (repeatable)");
  run->add_option("--event", o->event, "Event for triggers and when: filters")
      ->check(CLI::IsMember({"push", "tag", "pull_request", "manual"}));
  run->add_option("--branch", o->branch, "Branch for when: filters");
  run->add_option("--secrets-file", o->secrets_file, "NAME=VALUE lines (mode 0600) with the secrets steps may ask for");
  run->add_option("--secret-env", o->secret_env, "Take secret NAME from this process's environment (repeatable)");
  run->add_option("--parallel", o->parallel, "Steps run at once")->check(CLI::Range(1, 64));
  run->add_option("--cache-dir", o->cache_dir, "Cache root (default DIR/.gantry/cache)");
  AddExecutorFlags(run, o->executor);
  run->add_flag("-q,--quiet", o->quiet, "Do not print step output, only progress");
  run->callback([o, &deps, &exit_code] {
    if (Status s = ValidateExecutorFlags(o->executor); !s.ok()) {
      exit_code = UsageError(s, deps.err);
      return;
    }
    exit_code = Report(RunCi(*o, deps), deps.err);
  });
}

}  // namespace gantry::cli

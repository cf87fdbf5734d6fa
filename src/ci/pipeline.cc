#include "ci/pipeline.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <set>

#include "base/duration.h"
#include "git/git.h"
#include "value/value.h"

namespace gantry::ci {
namespace {

// Variables that make the dynamic loader or glibc load code or data from a path (glibc's list of
// variables it ignores in setuid programs, and its tunables). Refused in a pipeline's env: so that
// no launcher on the host can ever be handed one (base/sandbox.h already gives the launcher none).
bool IsLoaderVariable(std::string_view name) {
  static constexpr std::string_view kNames[] = {"GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES",
                                                "LOCALDOMAIN", "LOCPATH", "MALLOC_TRACE", "NIS_PATH", "NLSPATH",
                                                "RESOLV_HOST_CONF", "RES_OPTIONS", "TZDIR"};
  return name.starts_with("LD_") || std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

using value::Value;

std::string Where(const Value& v, std::string_view file) {
  value::Mark m = v.mark();
  return fmt::format("{}:{}:{}", m.file.empty() ? file : m.file, m.line, m.column);
}

template <typename... Args>
Status Err(const Value& at, std::string_view file, fmt::format_string<Args...> f, Args&&... args) {
  return InvalidArgumentError("{}: {}", Where(at, file), fmt::format(f, std::forward<Args>(args)...));
}

// Parsing state: the file name for messages.
struct Parser {
  std::string_view file;

  Status CheckKeys(const Value& map, std::initializer_list<std::string_view> allowed, std::string_view what) {
    for (const auto& e : map.entries()) {
      std::string_view k = e.key.AsString();
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
        std::string list;
        for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        return Err(e.key, file, "unknown key {:?} in {}; expected one of: {}", k, what, list);
      }
    }
    return OkStatus();
  }

  Result<std::string> Scalar(const Value& v, std::string_view what) {
    switch (v.type()) {
      case Value::Type::kString: return std::string(v.AsString());
      case Value::Type::kInt: return std::to_string(v.AsInt());
      case Value::Type::kBool: return std::string(v.AsBool() ? "true" : "false");
      case Value::Type::kDouble: return fmt::format("{}", v.AsDouble());
      default: return Err(v, file, "{} must be a string, got {}", what, TypeName(v));
    }
  }

  Result<std::string> String(const Value& v, std::string_view what) {
    if (!v.IsString()) return Err(v, file, "{} must be a string, got {}", what, TypeName(v));
    return std::string(v.AsString());
  }

  // A string or a list of strings.
  Result<std::vector<std::string>> StringList(const Value& v, std::string_view what) {
    std::vector<std::string> out;
    if (v.IsString()) {
      out.emplace_back(v.AsString());
      return out;
    }
    if (!v.IsSeq()) return Err(v, file, "{} must be a string or a list of strings, got {}", what, TypeName(v));
    for (const auto& item : v.items()) {
      GANTRY_ASSIGN_OR_RETURN(std::string s, Scalar(item, what));
      out.push_back(std::move(s));
    }
    return out;
  }

  // `for_steps`: variables of steps, which refuse the dynamic loader's and glibc's variables (an
  // image's env: may set them; it configures the image, not a host process).
  Result<std::map<std::string, std::string>> Env(const Value& v, bool for_steps = true) {
    if (!v.IsMap()) return Err(v, file, "env must be a map of NAME: value, got {}", TypeName(v));
    std::map<std::string, std::string> out;
    for (const auto& e : v.entries()) {
      std::string_view k = e.key.AsString();
      bool ok = !k.empty() && !std::isdigit(static_cast<unsigned char>(k[0]));
      for (char c : k) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
      if (!ok) return Err(e.key, file, "environment variable name {:?} is invalid; expected letters, digits and _", k);
      if (k.starts_with("GANTRY_")) return Err(e.key, file, "variables named GANTRY_* are reserved");
      if (for_steps && IsLoaderVariable(k)) {
        return Err(e.key, file, "{} is refused in env: (it changes how programs are loaded); set it inside the "
                   "step's script instead", k);
      }
      GANTRY_ASSIGN_OR_RETURN(out[std::string(k)], Scalar(e.value, "an env value"));
    }
    return out;
  }

  Result<Triggers> ParseTriggers(const Value& v) {
    Triggers t;
    t.manual = false;
    auto set = [&](std::string_view kind, const Value* opts, const Value& at) -> Status {
      if (kind == "push") {
        t.push = true;
        if (opts != nullptr && opts->IsMap()) {
          GANTRY_RETURN_IF_ERROR(CheckKeys(*opts, {"branches", "tags"}, "on.push"));
          if (auto* b = opts->Get("branches")) { GANTRY_ASSIGN_OR_RETURN(t.push_branches, StringList(*b, "on.push.branches")); }
          if (auto* b = opts->Get("tags")) { GANTRY_ASSIGN_OR_RETURN(t.push_tags, StringList(*b, "on.push.tags")); }
        }
      } else if (kind == "pull_request") {
        t.pull_request = true;
        if (opts != nullptr && opts->IsMap()) {
          GANTRY_RETURN_IF_ERROR(CheckKeys(*opts, {"branches"}, "on.pull_request"));
          if (auto* b = opts->Get("branches")) { GANTRY_ASSIGN_OR_RETURN(t.pr_branches, StringList(*b, "on.pull_request.branches")); }
        }
      } else if (kind == "manual") {
        t.manual = opts == nullptr || !opts->IsBool() || opts->AsBool();
      } else {
        return Err(at, file, "unknown trigger {:?}; expected push, pull_request or manual", kind);
      }
      if (opts != nullptr && !opts->IsNull() && !opts->IsMap() && !opts->IsBool()) {
        return Err(*opts, file, "trigger {} takes a map (branches:, tags:), got {}", kind, TypeName(*opts));
      }
      return OkStatus();
    };
    if (v.IsString()) {
      GANTRY_RETURN_IF_ERROR(set(v.AsString(), nullptr, v));
    } else if (v.IsSeq()) {
      for (const auto& item : v.items()) {
        if (!item.IsString()) return Err(item, file, "on: list items must be trigger names, got {}", TypeName(item));
        GANTRY_RETURN_IF_ERROR(set(item.AsString(), nullptr, item));
      }
    } else if (v.IsMap()) {
      for (const auto& e : v.entries()) GANTRY_RETURN_IF_ERROR(set(e.key.AsString(), &e.value, e.key));
    } else {
      return Err(v, file, "on: must be a trigger name, a list or a map (push:, pull_request:, manual:), got {}", TypeName(v));
    }
    return t;
  }

  Result<When> ParseWhen(const Value& v) {
    if (!v.IsMap()) return Err(v, file, "when: must be a map (branches:, events:, paths:), got {}", TypeName(v));
    GANTRY_RETURN_IF_ERROR(CheckKeys(v, {"branches", "events", "paths"}, "when"));
    When w;
    if (auto* b = v.Get("branches")) { GANTRY_ASSIGN_OR_RETURN(w.branches, StringList(*b, "when.branches")); }
    if (auto* b = v.Get("paths")) { GANTRY_ASSIGN_OR_RETURN(w.paths, StringList(*b, "when.paths")); }
    if (auto* b = v.Get("events")) {
      GANTRY_ASSIGN_OR_RETURN(w.events, StringList(*b, "when.events"));
      for (size_t i = 0; i < w.events.size(); ++i) {
        const auto& e = w.events[i];
        if (e != "push" && e != "tag" && e != "pull_request" && e != "manual") {
          const Value* at = b->IsSeq() ? b->At(i) : b;
          return Err(*at, file, "unknown event {:?}; expected push, tag, pull_request or manual", e);
        }
      }
    }
    return w;
  }

  Result<uint64_t> Size(const Value& v, std::string_view what) {
    if (v.IsInt() && v.AsInt() >= 0) return static_cast<uint64_t>(v.AsInt());
    if (v.IsString()) {
      if (auto n = ParseSize(v.AsString())) return *n;
    }
    return Err(v, file, "{} must be a non-negative number, optionally with Ki, Mi, Gi, K, M or G", what);
  }

  // A workspace-relative path: not absolute, no "..".
  Status RelativePath(const Value& at, const std::string& path, std::string_view what) {
    if (path.empty() || path[0] == '/' || path == ".." || path.starts_with("../") || path.find("/../") != std::string::npos ||
        path.ends_with("/..")) {
      return Err(at, file, "{} {:?} must be relative to the workspace, without ..", what, path);
    }
    return OkStatus();
  }

  Result<ImageSpec> ParseImage(const Value& v) {
    if (!v.IsMap()) return Err(v, file, "image: must be a map (repository:, layers:, ...), got {}", TypeName(v));
    GANTRY_RETURN_IF_ERROR(CheckKeys(v, {"repository", "tags", "from", "layers", "entrypoint", "cmd", "env", "labels",
                                         "expose", "workdir", "user", "platform", "compression"},
                                     "image"));
    ImageSpec out;
    out.line = v.mark().line;
    out.column = v.mark().column;
    const Value* repo = v.Get("repository");
    if (repo == nullptr) return Err(v, file, "image: needs repository: (e.g. registry.local:5000/team/web)");
    GANTRY_ASSIGN_OR_RETURN(out.repository, String(*repo, "image.repository"));
    if (out.repository.empty() || out.repository.find('@') != std::string::npos ||
        out.repository.find(':', out.repository.rfind('/') == std::string::npos ? 0 : out.repository.rfind('/')) != std::string::npos) {
      return Err(*repo, file, "image.repository {:?} must be a repository without tag or digest", out.repository);
    }
    if (auto* x = v.Get("tags")) {
      GANTRY_ASSIGN_OR_RETURN(out.tags, StringList(*x, "image.tags"));
      if (out.tags.empty()) return Err(*x, file, "image.tags must name at least one tag");
    }
    if (auto* x = v.Get("from")) { GANTRY_ASSIGN_OR_RETURN(out.from, String(*x, "image.from")); }
    const Value* layers = v.Get("layers");
    if (layers == nullptr || !layers->IsSeq() || layers->size() == 0) {
      return Err(layers != nullptr ? *layers : v, file, "image: needs layers: a list of {{src: DIR, dest: /PATH}}");
    }
    for (const auto& l : layers->items()) {
      ImageLayer layer;
      if (l.IsString()) {
        layer.src = std::string(l.AsString());
      } else if (l.IsMap()) {
        GANTRY_RETURN_IF_ERROR(CheckKeys(l, {"src", "dest", "exclude"}, "an image layer"));
        const Value* src = l.Get("src");
        if (src == nullptr) return Err(l, file, "an image layer needs src:");
        GANTRY_ASSIGN_OR_RETURN(layer.src, String(*src, "layer src"));
        if (auto* d = l.Get("dest")) { GANTRY_ASSIGN_OR_RETURN(layer.dest, String(*d, "layer dest")); }
        if (auto* x = l.Get("exclude")) { GANTRY_ASSIGN_OR_RETURN(layer.exclude, StringList(*x, "layer exclude")); }
      } else {
        return Err(l, file, "an image layer must be a path or a map (src:, dest:), got {}", TypeName(l));
      }
      if (layer.src != ".") GANTRY_RETURN_IF_ERROR(RelativePath(l, layer.src, "layer src"));
      if (!layer.dest.empty() && layer.dest[0] != '/') return Err(l, file, "layer dest {:?} must be an absolute path in the image", layer.dest);
      out.layers.push_back(std::move(layer));
    }
    if (auto* x = v.Get("entrypoint")) { GANTRY_ASSIGN_OR_RETURN(out.entrypoint, StringList(*x, "image.entrypoint")); }
    if (auto* x = v.Get("cmd")) { GANTRY_ASSIGN_OR_RETURN(out.cmd, StringList(*x, "image.cmd")); }
    if (auto* x = v.Get("env")) { GANTRY_ASSIGN_OR_RETURN(out.env, Env(*x, /*for_steps=*/false)); }
    if (auto* x = v.Get("labels")) {
      if (!x->IsMap()) return Err(*x, file, "image.labels must be a map, got {}", TypeName(*x));
      for (const auto& e : x->entries()) { GANTRY_ASSIGN_OR_RETURN(out.labels[std::string(e.key.AsString())], Scalar(e.value, "a label value")); }
    }
    if (auto* x = v.Get("expose")) { GANTRY_ASSIGN_OR_RETURN(out.expose, StringList(*x, "image.expose")); }
    if (auto* x = v.Get("workdir")) { GANTRY_ASSIGN_OR_RETURN(out.workdir, String(*x, "image.workdir")); }
    if (auto* x = v.Get("user")) { GANTRY_ASSIGN_OR_RETURN(out.user, Scalar(*x, "image.user")); }
    if (auto* x = v.Get("platform")) { GANTRY_ASSIGN_OR_RETURN(out.platform, String(*x, "image.platform")); }
    if (auto* x = v.Get("compression")) {
      GANTRY_ASSIGN_OR_RETURN(out.compression, String(*x, "image.compression"));
      if (out.compression != "gzip" && out.compression != "zstd") return Err(*x, file, "image.compression {:?}: expected gzip or zstd", out.compression);
    }
    return out;
  }

  Result<ReleaseSpec> ParseRelease(const Value& v) {
    if (!v.IsMap()) return Err(v, file, "release: must be a map (repo:, path:, ...), got {}", TypeName(v));
    GANTRY_RETURN_IF_ERROR(CheckKeys(v, {"repo", "branch", "path", "push_branch", "message", "app", "through", "mode",
                                         "environment", "auto_merge", "merge_method", "required_checks"},
                                     "release"));
    ReleaseSpec out;
    out.line = v.mark().line;
    out.column = v.mark().column;
    const Value* repo = v.Get("repo");
    if (repo == nullptr) return Err(v, file, "release: needs repo: (the config repository URL)");
    GANTRY_ASSIGN_OR_RETURN(out.repo, String(*repo, "release.repo"));
    if (auto* x = v.Get("branch")) { GANTRY_ASSIGN_OR_RETURN(out.branch, String(*x, "release.branch")); }
    if (auto* x = v.Get("path")) {
      GANTRY_ASSIGN_OR_RETURN(out.path, String(*x, "release.path"));
      if (!out.path.empty() && out.path != ".") GANTRY_RETURN_IF_ERROR(RelativePath(*x, out.path, "release.path"));
      if (out.path == ".") out.path.clear();
    }
    if (auto* x = v.Get("push_branch")) { GANTRY_ASSIGN_OR_RETURN(out.push_branch, String(*x, "release.push_branch")); }
    if (auto* x = v.Get("message")) { GANTRY_ASSIGN_OR_RETURN(out.message, String(*x, "release.message")); }
    if (auto* x = v.Get("app")) { GANTRY_ASSIGN_OR_RETURN(out.app, String(*x, "release.app")); }
    if (auto* x = v.Get("through")) { GANTRY_ASSIGN_OR_RETURN(out.through, String(*x, "release.through")); }
    if (!out.through.empty() && out.app.empty()) return Err(v, file, "release.through needs release.app (the application to deploy)");
    if (auto* x = v.Get("mode")) {
      GANTRY_ASSIGN_OR_RETURN(std::string mode, String(*x, "release.mode"));
      if (mode != "push" && mode != "pull-request") return Err(*x, file, "release.mode {:?}: expected push or pull-request", mode);
      out.pull_request = mode == "pull-request";
    }
    if (auto* x = v.Get("environment")) { GANTRY_ASSIGN_OR_RETURN(out.environment, String(*x, "release.environment")); }
    if (auto* x = v.Get("auto_merge")) {
      if (!x->IsBool()) return Err(*x, file, "release.auto_merge must be true or false, got {}", TypeName(*x));
      out.auto_merge = x->AsBool();
    }
    if (auto* x = v.Get("merge_method")) {
      GANTRY_ASSIGN_OR_RETURN(out.merge_method, String(*x, "release.merge_method"));
      if (out.merge_method != "merge" && out.merge_method != "squash" && out.merge_method != "rebase") {
        return Err(*x, file, "release.merge_method {:?}: expected merge, squash or rebase", out.merge_method);
      }
    }
    if (auto* x = v.Get("required_checks")) { GANTRY_ASSIGN_OR_RETURN(out.required_checks, StringList(*x, "release.required_checks")); }
    if (!out.pull_request) {
      for (const char* key : {"environment", "auto_merge", "merge_method", "required_checks"}) {
        if (const Value* x = v.Get(key)) return Err(*x, file, "release.{} needs release.mode: pull-request", key);
      }
    } else {
      if (!out.push_branch.empty()) {
        return Err(*v.Get("push_branch"), file, "release.push_branch and release.mode: pull-request exclude each other "
                                                "(the pull request's branch is gantry/<app>/<environment>)");
      }
      if (!out.through.empty() && v.Get("environment") == nullptr) out.environment = out.through;
      if (out.environment.empty()) {
        out.environment = out.path.empty() ? out.branch : out.path.substr(out.path.rfind('/') + 1);
      }
      if (Status s = git::ValidateRefName("gantry/x/" + out.environment); !s.ok()) {
        return Err(v.Get("environment") != nullptr ? *v.Get("environment") : v, file,
                   "release.environment {:?} cannot be part of a branch name: {}", out.environment, s.message());
      }
    }
    return out;
  }

  Result<Limits> ParseLimits(const Value& v) {
    if (!v.IsMap()) return Err(v, file, "limits: must be a map, got {}", TypeName(v));
    GANTRY_RETURN_IF_ERROR(CheckKeys(v, {"memory", "cpu_seconds", "open_files", "processes"}, "limits"));
    Limits l;
    if (auto* x = v.Get("memory")) { GANTRY_ASSIGN_OR_RETURN(l.memory_bytes, Size(*x, "limits.memory")); }
    if (auto* x = v.Get("cpu_seconds")) { GANTRY_ASSIGN_OR_RETURN(l.cpu_seconds, Size(*x, "limits.cpu_seconds")); }
    if (auto* x = v.Get("open_files")) { GANTRY_ASSIGN_OR_RETURN(l.open_files, Size(*x, "limits.open_files")); }
    if (auto* x = v.Get("processes")) { GANTRY_ASSIGN_OR_RETURN(l.processes, Size(*x, "limits.processes")); }
    return l;
  }

  Result<std::vector<CacheSpec>> ParseCaches(const Value& v) {
    std::vector<CacheSpec> out;
    auto one = [&](const Value& c) -> Status {
      if (!c.IsMap()) return Err(c, file, "a cache must be a map (key:, paths:), got {}", TypeName(c));
      GANTRY_RETURN_IF_ERROR(CheckKeys(c, {"key", "paths"}, "cache"));
      const Value* key = c.Get("key");
      const Value* paths = c.Get("paths");
      if (key == nullptr) return Err(c, file, "cache needs key:");
      if (paths == nullptr) return Err(c, file, "cache needs paths:");
      CacheSpec spec;
      GANTRY_ASSIGN_OR_RETURN(spec.key, Scalar(*key, "cache.key"));
      GANTRY_ASSIGN_OR_RETURN(spec.paths, StringList(*paths, "cache.paths"));
      for (const auto& p : spec.paths) {
        if (p.empty() || p[0] == '/' || p.find("..") != std::string::npos) {
          return Err(*paths, file, "cache path {:?} must be relative to the workspace, without ..", p);
        }
      }
      out.push_back(std::move(spec));
      return OkStatus();
    };
    if (v.IsSeq()) {
      for (const auto& c : v.items()) GANTRY_RETURN_IF_ERROR(one(c));
    } else {
      GANTRY_RETURN_IF_ERROR(one(v));
    }
    return out;
  }

  // The argv of a step: `run:` script with a shell, or an argv list.
  Result<std::vector<std::string>> Command(const Value& step, const Value& run, const std::string& default_shell,
                                           std::string_view name) {
    if (run.IsSeq()) {
      if (step.Get("shell") != nullptr) return Err(*step.Get("shell"), file, "shell: is only for a run: script, not an argv list");
      GANTRY_ASSIGN_OR_RETURN(auto argv, StringList(run, "run"));
      if (argv.empty()) return Err(run, file, "run: argv list is empty; expected [program, args...]");
      return argv;
    }
    if (!run.IsString()) return Err(run, file, "run: must be a script (string, with shell:) or an argv list, got {}", TypeName(run));
    std::string shell = default_shell;
    const Value* sv = step.Get("shell");
    if (sv != nullptr) { GANTRY_ASSIGN_OR_RETURN(shell, String(*sv, "shell")); }
    if (shell.empty()) {
      return Err(run, file, "step {:?}: a run: script needs a named shell; expected shell: bash or shell: sh on the step "
                 "or at the top of the pipeline (or run: as an argv list)", name);
    }
    std::string script(run.AsString());
    if (shell == "bash") return std::vector<std::string>{"bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script};
    if (shell == "sh") return std::vector<std::string>{"sh", "-e", "-c", script};
    return Err(sv != nullptr ? *sv : run, file, "unknown shell {:?}; expected bash or sh", shell);
  }
};

// Cartesian product of the matrix axes, in file order.
Result<std::vector<std::vector<std::pair<std::string, std::string>>>> ExpandMatrix(Parser& p, const Value& m) {
  if (!m.IsMap() || m.size() == 0) return Err(m, p.file, "matrix: must be a map of axis: [values], got {}", TypeName(m));
  std::vector<std::vector<std::pair<std::string, std::string>>> combos = {{}};
  for (const auto& e : m.entries()) {
    std::string axis(e.key.AsString());
    if (!e.value.IsSeq() || e.value.size() == 0) return Err(e.value, p.file, "matrix axis {:?} must be a non-empty list", axis);
    std::vector<std::vector<std::pair<std::string, std::string>>> next;
    for (const auto& c : combos) {
      for (const auto& item : e.value.items()) {
        GANTRY_ASSIGN_OR_RETURN(std::string s, p.Scalar(item, "a matrix value"));
        auto n = c;
        n.emplace_back(axis, s);
        next.push_back(std::move(n));
        if (next.size() > kMaxMatrixCombinations) {
          return Err(m, p.file, "matrix expands to more than {} combinations", kMaxMatrixCombinations);
        }
      }
    }
    combos = std::move(next);
  }
  return combos;
}

bool ValidName(std::string_view s) {
  if (s.empty() || s.size() > 100) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

std::string EnvName(std::string_view axis) {
  std::string out = "MATRIX_";
  for (char c : axis) out += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::toupper(c)) : '_';
  return out;
}

}  // namespace

Result<Pipeline> ParsePipeline(std::string_view text, std::string_view file) {
  GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(text, file));
  if (docs.size() != 1) return InvalidArgumentError("{}: expected exactly one YAML document, found {}", file, docs.size());
  const Value& root = docs[0];
  Parser p{file};
  if (!root.IsMap()) return Err(root, file, "a pipeline must be a map (name:, on:, steps:), got {}", TypeName(root));
  // YAML 1.1 reads a plain `on` key as true; accept both spellings.
  GANTRY_RETURN_IF_ERROR(p.CheckKeys(root, {"name", "on", "true", "shell", "env", "steps", "image", "release"}, "the pipeline"));
  Pipeline out;
  out.file = std::string(file);
  if (auto* n = root.Get("name")) { GANTRY_ASSIGN_OR_RETURN(out.name, p.String(*n, "name")); }
  if (out.name.empty()) out.name = "pipeline";
  const Value* on = root.Get("on") != nullptr ? root.Get("on") : root.Get("true");
  if (on != nullptr) {
    GANTRY_ASSIGN_OR_RETURN(out.triggers, p.ParseTriggers(*on));
  } else {
    out.triggers.push = true;
  }
  std::string shell;
  if (auto* s = root.Get("shell")) { GANTRY_ASSIGN_OR_RETURN(shell, p.String(*s, "shell")); }
  std::map<std::string, std::string> env;
  if (auto* e = root.Get("env")) { GANTRY_ASSIGN_OR_RETURN(env, p.Env(*e)); }
  if (auto* x = root.Get("image")) { GANTRY_ASSIGN_OR_RETURN(out.image, p.ParseImage(*x)); }
  if (auto* x = root.Get("release")) {
    if (!out.image) return Err(*x, file, "release: needs image: (the image whose new reference is released)");
    GANTRY_ASSIGN_OR_RETURN(out.release, p.ParseRelease(*x));
  }
  const Value* steps = root.Get("steps");
  if (steps == nullptr) return Err(root, file, "the pipeline has no steps:; expected steps: {{name: {{run: ...}}}}");
  if (!steps->IsMap() || steps->size() == 0) return Err(*steps, file, "steps: must be a non-empty map of name: {{run: ...}}, got {}", TypeName(*steps));

  std::vector<Step> all;
  std::map<std::string, std::vector<std::string>> expanded;  // base name → step names
  std::map<std::string, const Value*> needs_nodes;         // step name → its needs: node
  for (const auto& e : steps->entries()) {
    std::string base(e.key.AsString());
    if (!ValidName(base)) return Err(e.key, file, "step name {:?} is invalid; expected letters, digits, '-', '_' or '.'", base);
    const Value& s = e.value;
    if (!s.IsMap()) return Err(s, file, "step {:?} must be a map (run:, needs:, ...), got {}", base, TypeName(s));
    GANTRY_RETURN_IF_ERROR(p.CheckKeys(s, {"run", "shell", "needs", "env", "secrets", "when", "timeout", "retry", "network",
                                           "limits", "matrix", "cache", "artifacts", "image"},
                                       "step " + base));
    Step step;
    step.base_name = base;
    step.line = e.key.mark().line;
    step.column = e.key.mark().column;
    const Value* run = s.Get("run");
    if (run == nullptr) return Err(e.key, file, "step {:?} has no run:; expected a script (with shell:) or an argv list", base);
    GANTRY_ASSIGN_OR_RETURN(step.argv, p.Command(s, *run, shell, base));
    step.env = env;
    if (auto* x = s.Get("env")) {
      GANTRY_ASSIGN_OR_RETURN(auto se, p.Env(*x));
      for (auto& [k, v] : se) step.env[k] = v;
    }
    if (auto* x = s.Get("secrets")) {
      GANTRY_ASSIGN_OR_RETURN(step.secrets, p.StringList(*x, "secrets"));
    }
    if (auto* x = s.Get("when")) { GANTRY_ASSIGN_OR_RETURN(step.when, p.ParseWhen(*x)); }
    if (auto* x = s.Get("timeout")) {
      GANTRY_ASSIGN_OR_RETURN(std::string t, p.Scalar(*x, "timeout"));
      auto d = ParseDuration(t);
      if (!d.ok() || d->count() <= 0) return Err(*x, file, "timeout {:?} is not a duration; expected e.g. 90s, 10m, 1h", t);
      step.timeout = *d;
    }
    if (auto* x = s.Get("retry")) {
      if (!x->IsInt() || x->AsInt() < 0 || x->AsInt() > 10) return Err(*x, file, "retry: must be an integer from 0 to 10");
      step.retry = static_cast<int>(x->AsInt());
    }
    if (auto* x = s.Get("network")) {
      if (!x->IsBool()) return Err(*x, file, "network: must be true or false, got {}", TypeName(*x));
      step.network = x->AsBool();
    }
    if (auto* x = s.Get("limits")) { GANTRY_ASSIGN_OR_RETURN(step.limits, p.ParseLimits(*x)); }
    if (auto* x = s.Get("cache")) { GANTRY_ASSIGN_OR_RETURN(step.caches, p.ParseCaches(*x)); }
    if (auto* x = s.Get("artifacts")) {
      GANTRY_ASSIGN_OR_RETURN(step.artifacts, p.StringList(*x, "artifacts"));
      for (const auto& a : step.artifacts) {
        if (a.empty() || a[0] == '/' || a.find("..") != std::string::npos) {
          return Err(*x, file, "artifact pattern {:?} must be relative to the workspace, without ..", a);
        }
      }
    }
    if (auto* x = s.Get("image")) { GANTRY_ASSIGN_OR_RETURN(step.image, p.String(*x, "image")); }
    if (auto* x = s.Get("needs")) {
      GANTRY_ASSIGN_OR_RETURN(step.needs, p.StringList(*x, "needs"));
      needs_nodes[base] = x;
    }
    std::vector<std::vector<std::pair<std::string, std::string>>> combos = {{}};
    if (auto* x = s.Get("matrix")) { GANTRY_ASSIGN_OR_RETURN(combos, ExpandMatrix(p, *x)); }
    for (const auto& combo : combos) {
      Step copy = step;
      if (!combo.empty()) {
        std::string suffix;
        for (const auto& [axis, val] : combo) {
          suffix += (suffix.empty() ? "" : ", ") + val;
          copy.env[EnvName(axis)] = val;
        }
        copy.name = base + " (" + suffix + ")";
      } else {
        copy.name = base;
      }
      expanded[base].push_back(copy.name);
      all.push_back(std::move(copy));
      if (all.size() > kMaxSteps) return Err(*steps, file, "more than {} steps after matrix expansion", kMaxSteps);
    }
  }
  // Resolve needs to expanded names.
  for (auto& step : all) {
    std::vector<std::string> resolved;
    for (size_t i = 0; i < step.needs.size(); ++i) {
      const std::string& n = step.needs[i];
      auto it = expanded.find(n);
      const Value* node = needs_nodes[step.base_name];
      const Value* at = node->IsSeq() ? node->At(i) : node;
      if (it == expanded.end()) {
        std::string known;
        for (const auto& [k, _] : expanded) known += (known.empty() ? "" : ", ") + k;
        return Err(*at, file, "step {:?} needs unknown step {:?}; expected one of: {}", step.base_name, n, known);
      }
      if (n == step.base_name) return Err(*at, file, "step {:?} needs itself", n);
      resolved.insert(resolved.end(), it->second.begin(), it->second.end());
    }
    step.needs = std::move(resolved);
  }
  // Topological order (Kahn, stable by file order); a leftover means a cycle, which DFS names.
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < all.size(); ++i) index[all[i].name] = i;
  std::vector<int> indeg(all.size(), 0);
  for (size_t i = 0; i < all.size(); ++i) indeg[i] = static_cast<int>(all[i].needs.size());
  std::vector<bool> done(all.size(), false);
  std::vector<Step> ordered;
  for (bool progress = true; progress;) {
    progress = false;
    for (size_t i = 0; i < all.size(); ++i) {
      if (done[i] || indeg[i] != 0) continue;
      done[i] = true;
      progress = true;
      for (size_t j = 0; j < all.size(); ++j) {
        for (const auto& n : all[j].needs) {
          if (n == all[i].name) --indeg[j];
        }
      }
      ordered.push_back(all[i]);
      break;  // restart from the top to keep file order among ready steps
    }
  }
  if (ordered.size() != all.size()) {
    // Find a cycle by walking needs from a step that is not done.
    std::vector<int> color(all.size(), 0);
    std::vector<size_t> stack;
    std::vector<std::string> cycle;
    std::function<bool(size_t)> dfs = [&](size_t i) {
      color[i] = 1;
      stack.push_back(i);
      for (const auto& n : all[i].needs) {
        size_t j = index[n];
        if (color[j] == 1) {
          auto it = std::find(stack.begin(), stack.end(), j);
          for (; it != stack.end(); ++it) cycle.push_back(all[*it].base_name);
          cycle.push_back(all[j].base_name);
          return true;
        }
        if (color[j] == 0 && dfs(j)) return true;
      }
      color[i] = 2;
      stack.pop_back();
      return false;
    };
    for (size_t i = 0; i < all.size() && cycle.empty(); ++i) {
      if (!done[i] && color[i] == 0) dfs(i);
    }
    std::string path;
    for (const auto& c : cycle) path += (path.empty() ? "" : " -> ") + c;
    const Step& first = all[index[cycle.empty() ? all[0].name : cycle[0]]];
    for (const auto& s : all) {
      if (!cycle.empty() && s.base_name == cycle[0]) {
        return InvalidArgumentError("{}:{}:{}: needs: form a cycle: {}; expected a DAG", file, s.line, s.column, path);
      }
    }
    return InvalidArgumentError("{}:{}:{}: needs: form a cycle: {}", file, first.line, first.column, path);
  }
  out.steps = std::move(ordered);
  return out;
}

bool GlobMatch(std::string_view pat, std::string_view s) {
  // Memoised recursion over (pattern index, text index): O(|pat| * |s|) for any pattern, so a
  // hostile pattern in a pipeline file cannot make matching exponential.
  std::vector<int8_t> memo((pat.size() + 1) * (s.size() + 1), -1);
  std::function<bool(size_t, size_t)> m = [&](size_t i, size_t j) -> bool {
    int8_t& slot = memo[i * (s.size() + 1) + j];
    if (slot >= 0) return slot != 0;
    bool r = false;
    if (i == pat.size()) {
      r = j == s.size();
    } else if (pat.compare(i, 2, "**") == 0) {
      size_t rest = i + 2;
      if (rest < pat.size() && pat[rest] == '/' && m(rest + 1, j)) r = true;  // "**/" matches no directory
      for (size_t k = j; !r && k <= s.size(); ++k) r = m(rest, k);
    } else if (pat[i] == '*') {
      for (size_t k = j; !r && k <= s.size(); ++k) {
        r = m(i + 1, k);
        if (k < s.size() && s[k] == '/') break;
      }
    } else if (j < s.size() && (pat[i] == s[j] || (pat[i] == '?' && s[j] != '/'))) {
      r = m(i + 1, j + 1);
    }
    slot = r ? 1 : 0;
    return r;
  };
  return m(0, 0);
}

namespace {
bool AnyGlob(const std::vector<std::string>& globs, std::string_view s) {
  for (const auto& g : globs) {
    if (GlobMatch(g, s)) return true;
  }
  return false;
}
}  // namespace

bool TriggerMatches(const Triggers& t, const Context& c) {
  if (c.event == "manual") return t.manual;
  if (c.event == "push") return t.push && (t.push_branches.empty() ? t.push_tags.empty() : AnyGlob(t.push_branches, c.branch));
  if (c.event == "tag") return t.push && AnyGlob(t.push_tags, c.tag);
  if (c.event == "pull_request") return t.pull_request && (t.pr_branches.empty() || AnyGlob(t.pr_branches, c.branch));
  return false;
}

bool WhenMatches(const When& w, const Context& c) {
  if (!w.events.empty() && std::find(w.events.begin(), w.events.end(), c.event) == w.events.end()) return false;
  if (!w.branches.empty() && !AnyGlob(w.branches, c.branch)) return false;
  if (!w.paths.empty() && c.changed_paths_known) {
    bool any = false;
    for (const auto& path : c.changed_paths) any = any || AnyGlob(w.paths, path);
    if (!any) return false;
  }
  return true;
}

std::optional<uint64_t> ParseSize(std::string_view s) {
  size_t n = 0;
  while (n < s.size() && std::isdigit(static_cast<unsigned char>(s[n]))) ++n;
  std::string_view unit = s.substr(n);
  uint64_t mult = unit.empty() ? 1
                  : unit == "Ki" ? 1ull << 10
                  : unit == "Mi" ? 1ull << 20
                  : unit == "Gi" ? 1ull << 30
                  : unit == "K" ? 1000ull
                  : unit == "M" ? 1000000ull
                  : unit == "G" ? 1000000000ull
                                 : 0;
  if (n == 0 || n > 12 || mult == 0) return std::nullopt;
  return std::stoull(std::string(s.substr(0, n))) * mult;
}

Result<std::vector<std::string>> SelectSteps(const Pipeline& pipeline, const std::vector<std::string>& only) {
  std::set<std::string> want;
  std::function<void(const Step&)> add = [&](const Step& s) {
    if (!want.insert(s.name).second) return;
    for (const auto& n : s.needs) {
      for (const auto& d : pipeline.steps) {
        if (d.name == n) add(d);
      }
    }
  };
  for (const auto& name : only) {
    bool found = false;
    for (const auto& s : pipeline.steps) {
      if (s.name == name || s.base_name == name) {
        add(s);
        found = true;
      }
    }
    if (!found) return NotFoundError("no step {:?} in pipeline {}", name, pipeline.name);
  }
  std::vector<std::string> out;
  for (const auto& s : pipeline.steps) {
    if (want.count(s.name)) out.push_back(s.name);
  }
  return out;
}

}  // namespace gantry::ci

// gantry update: rewrite image references in manifests (update::RewriteYaml), either in a local
// working tree (--dir, files rewritten in place) or in a Git repository (--repo, committed and
// pushed to --branch or to a new --push-branch). Every change is printed as
// "file:line:column: field: old → new". Exit 0 on success (whether or not anything changed), 1 when
// some YAML file mentioning an image could not be parsed (the others are still updated), 2 for
// usage errors, 3 for environment errors (I/O, Git, network).

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "base/path.h"
#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/source.h"
#include "git/git.h"
#include "update/update.h"

namespace gantry::cli {
namespace {

namespace fs = std::filesystem;

struct UpdateFlags {
  std::string dir;
  std::string repo;
  std::string branch = "main";
  std::string path;
  std::string push_branch;
  std::string message;
  std::string author = "Gantry <gantry@localhost>";
  std::string cache_dir;
  bool allow_file_repo = false;
  std::string git_username;
  std::vector<std::string> images;
  std::vector<std::string> policies;
  std::string helm_keys;
  bool dry_run = false;
};

// "Name <email>".
Result<git::Signature> ParseAuthor(std::string_view text) {
  size_t lt = text.find('<');
  size_t gt = text.rfind('>');
  if (lt == std::string_view::npos || gt == std::string_view::npos || gt < lt || gt + 1 != text.size()) {
    return InvalidArgumentError("--author \"{}\": expected \"Name <email>\"", text);
  }
  std::string_view name = text.substr(0, lt);
  while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
  if (name.empty()) return InvalidArgumentError("--author \"{}\": the name is empty", text);
  return git::Signature{std::string(name), std::string(text.substr(lt + 1, gt - lt - 1))};
}

Result<std::vector<update::ImageRule>> Rules(const UpdateFlags& f) {
  std::vector<update::ImageRule> rules;
  std::optional<update::HelmKeys> helm;
  if (!f.helm_keys.empty()) {
    update::HelmKeys keys;
    std::vector<std::string> parts;
    for (size_t b = 0;;) {
      size_t c = f.helm_keys.find(',', b);
      parts.push_back(f.helm_keys.substr(b, c == std::string::npos ? std::string::npos : c - b));
      if (c == std::string::npos) break;
      b = c + 1;
    }
    if (parts.size() < 2 || parts.size() > 3 || parts[0].empty()) {
      return InvalidArgumentError("--helm-keys \"{}\": expected REPOSITORY_KEY,TAG_KEY[,DIGEST_KEY]", f.helm_keys);
    }
    keys.repository = parts[0];
    keys.tag = parts[1];
    if (parts.size() == 3) keys.digest = parts[2];
    helm = keys;
  }
  for (const std::string& spec : f.images) {
    GANTRY_ASSIGN_OR_RETURN(update::ImageRule rule, update::ParseImageRule(spec));
    rule.helm = helm;
    rules.push_back(std::move(rule));
  }
  for (const std::string& spec : f.policies) {  // POLICY=NEWREF
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgumentError("--policy \"{}\": expected POLICY=NEWREF (flux-system:web=registry/web:1.2.3)", spec);
    }
    GANTRY_ASSIGN_OR_RETURN(update::ImageRef ref, update::ParseImageRef(spec.substr(eq + 1)));
    GANTRY_ASSIGN_OR_RETURN(update::ImageRule rule, update::ParseImageRule(ref.name + "=" + spec.substr(eq + 1)));
    rule.name = spec.substr(0, eq);
    rules.push_back(std::move(rule));
  }
  if (rules.empty()) return InvalidArgumentError("give at least one --image NAME=NEWREF or --policy POLICY=NEWREF");
  return rules;
}

void PrintChanges(const std::vector<update::Change>& changes) {
  std::string out;
  for (const update::Change& c : changes) {
    out += c.ToString();
    out += '\n';
  }
  fmt::print("{}", out);
}

// Local mode. Returns the exit code.
int RunLocal(const UpdateFlags& f, const std::vector<update::ImageRule>& rules) {
  std::error_code ec;
  fs::path root(f.dir);
  if (!fs::is_directory(root, ec)) {
    fmt::print(stderr, "error: --dir {}: not a directory\n", f.dir);
    return 3;
  }
  size_t files = 0, changes = 0, skipped = 0;
  auto it = fs::recursive_directory_iterator(root, fs::directory_options::none, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::directory_entry& entry = *it;
    if (entry.is_directory() && entry.path().filename() == ".git") {
      it.disable_recursion_pending();
      continue;
    }
    // Symlinks are not followed (the iterator does not descend into linked directories either).
    if (entry.is_symlink() || !entry.is_regular_file()) continue;
    std::string rel = entry.path().lexically_relative(root).generic_string();
    if (!update::IsYamlPath(rel)) continue;
    auto content = ReadFile(entry.path());
    if (!content.ok()) {
      fmt::print(stderr, "error: {}\n", content.status().message());
      return 3;
    }
    auto rewritten = update::RewriteYaml(*content, rel, rules);
    if (!rewritten.ok()) {
      fmt::print(stderr, "warning: skipped {}\n", rewritten.status().message());
      ++skipped;
      continue;
    }
    if (rewritten->changes.empty()) continue;
    PrintChanges(rewritten->changes);
    ++files;
    changes += rewritten->changes.size();
    if (f.dry_run) continue;
    struct stat st{};
    mode_t mode = ::stat(entry.path().c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
    if (Status s = WriteFileAtomic(entry.path(), rewritten->content, static_cast<int>(mode), /*sync=*/false); !s.ok()) {
      fmt::print(stderr, "error: {}\n", s.message());
      return 3;
    }
  }
  if (ec) {
    fmt::print(stderr, "error: read {}: {}\n", f.dir, ec.message());
    return 3;
  }
  fmt::print(stderr, "{} {} change{} in {} file{}\n", f.dry_run ? "would make" : "made", changes,
             changes == 1 ? "" : "s", files, files == 1 ? "" : "s");
  return skipped == 0 ? 0 : 1;
}

int RunGit(const UpdateFlags& f, std::vector<update::ImageRule> rules) {
  auto author = ParseAuthor(f.author);
  if (!author.ok()) {
    fmt::print(stderr, "error: {}\n", author.status().message());
    return 2;
  }
  render::GitSources sources(GitSourcesOptionsFor(f.cache_dir, f.repo, f.git_username, f.allow_file_repo));
  auto repo = sources.Open(f.repo);
  if (!repo.ok()) {
    fmt::print(stderr, "error: {}\n", repo.status().message());
    return repo.status().code() == Code::kInvalidArgument ? 2 : 3;
  }
  update::GitUpdateOptions options;
  options.branch = f.branch;
  options.path = f.path;
  options.push_branch = f.push_branch;
  if (!f.message.empty()) options.message_template = f.message;
  options.author = *author;
  options.rules = std::move(rules);
  if (f.dry_run) {
    // Compute against the tip without pushing: the same rewrite, read-only.
    auto fetched = (*repo)->Fetch();
    auto tip = fetched.ok() ? (*repo)->Resolve("refs/heads/" + f.branch) : Result<std::string>(fetched.status());
    auto tree = tip.ok() ? (*repo)->ReadTree(*tip, f.path) : Result<git::ReadResult>(tip.status());
    if (!tree.ok()) {
      fmt::print(stderr, "error: {}\n", tree.status().message());
      return 3;
    }
    size_t skipped = 0;
    for (const git::File& file : tree->files) {
      if (file.is_symlink() || !update::IsYamlPath(file.path)) continue;
      std::string full = f.path.empty() ? file.path : f.path + "/" + file.path;
      auto rewritten = update::RewriteYaml(file.content, full, options.rules);
      if (!rewritten.ok()) {
        fmt::print(stderr, "warning: skipped {}\n", rewritten.status().message());
        ++skipped;
        continue;
      }
      PrintChanges(rewritten->changes);
    }
    return skipped == 0 ? 0 : 1;
  }
  auto result = update::UpdateRepository(**repo, options);
  if (!result.ok()) {
    fmt::print(stderr, "error: {}\n", result.status().message());
    return result.status().code() == Code::kInvalidArgument ? 2 : 3;
  }
  for (const std::string& s : result->skipped) fmt::print(stderr, "warning: skipped {}\n", s);
  PrintChanges(result->changes);
  if (result->committed) {
    fmt::print(stderr, "committed {} to {}\n", result->commit.substr(0, 12), result->branch);
  } else {
    fmt::print(stderr, "{} is up to date at {}; nothing committed\n", result->branch, result->commit.substr(0, 12));
  }
  return result->skipped.empty() ? 0 : 1;
}

}  // namespace

void AddUpdateCommand(CLI::App& app, [[maybe_unused]] const Deps& deps, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "update", "Rewrite image tags and digests in manifests, in a directory or committed to a Git repository");
  auto f = std::make_shared<UpdateFlags>();
  cmd->add_option("--dir", f->dir, "Working tree to rewrite in place (local mode)");
  cmd->add_option("--repo", f->repo, "Git repository URL (Git mode)");
  cmd->add_option("--branch", f->branch, "Branch to update (Git mode)")->capture_default_str();
  cmd->add_option("--path", f->path, "Directory inside the repository (Git mode; default: the root)");
  cmd->add_option("--push-branch", f->push_branch, "Push to this branch (created from --branch) for review");
  cmd->add_option("--message", f->message,
                  "Commit message template: {{images}} {{changes}} {{count}} {{branch}} {{path}}");
  cmd->add_option("--author", f->author, "Commit author, \"Name <email>\"")->capture_default_str();
  cmd->add_option("--cache-dir", f->cache_dir, "Where Git mirrors are kept")->envname("GANTRY_CACHE");
  cmd->add_flag("--allow-file-repo", f->allow_file_repo, "Accept file:// repository URLs");
  cmd->add_option("--git-username", f->git_username, "User for GANTRY_GIT_PASSWORD (HTTP basic auth)");
  cmd->add_option("--image", f->images, "NAME=NEWREF: set the images of repository NAME to NEWREF "
                                         "(repo:tag, repo@digest or repo:tag@digest); repeatable");
  cmd->add_option("--policy", f->policies, "POLICY=NEWREF: what {\"$imagepolicy\": \"POLICY\"} markers "
                                           "point at; repeatable");
  cmd->add_option("--helm-keys", f->helm_keys,
                  "REPOSITORY_KEY,TAG_KEY[,DIGEST_KEY]: where --image rules find the image in Helm values "
                  "(e.g. image.repository,image.tag)");
  cmd->add_flag("--dry-run", f->dry_run, "Print the changes without writing, committing or pushing");
  cmd->callback([f, &exit_code] {
    if (f->dir.empty() == f->repo.empty()) {
      fmt::print(stderr, "error: give either --dir DIR or --repo URL\n");
      exit_code = 2;
      return;
    }
    auto rules = Rules(*f);
    if (!rules.ok()) {
      fmt::print(stderr, "error: {}\n", rules.status().message());
      exit_code = 2;
      return;
    }
    exit_code = f->dir.empty() ? RunGit(*f, std::move(*rules)) : RunLocal(*f, *rules);
  });
}

}  // namespace gantry::cli

// gantry update: rewrite image references in manifests (update::RewriteYaml), either in a local
// working tree (--dir, files rewritten in place) or in a Git repository (--repo, committed and
// pushed to --branch or to a new --push-branch; with --pull-request the push branch is rebuilt on
// --branch, force-pushed, and its pull request opened or updated on --forge). Every change is printed as
// "file:line:column: field: old → new". Exit 0 on success (whether or not anything changed), 1 when
// some YAML file mentioning an image could not be parsed (the others are still updated), 2 for
// usage errors, 3 for environment errors (I/O, Git, network).

#include <cstdio>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/deps.h"
#include "cli/exit.h"
#include "cli/source.h"
#include "forge/forge.h"
#include "git/git.h"
#include "server/forge_statuses.h"
#include "update/update.h"

namespace gantry::cli {
namespace {

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
  std::string ssh_key, ssh_known_hosts;
  std::vector<std::string> images;
  std::vector<std::string> policies;
  std::string helm_keys;
  bool dry_run = false;
  bool pull_request = false;
  std::string forge;  // --forge 'PREFIX type=... token-env=VAR' (server/forge_statuses.h)
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

struct UpdateOptions {
  std::string dir;   // local mode
  std::string repo;  // Git mode
  std::string cache_dir;
  bool allow_file_repo = false;
  std::string git_username;
  std::string ssh_key, ssh_known_hosts;
  update::GitUpdateOptions git;  // the rules and dry_run for both modes
  std::optional<server::ForgeConfig> forge;  // --pull-request: where to open it
  std::string forge_repo;                     // the repository's path on that forge
};

// Usage errors: not exactly one of --dir and --repo, bad rules, and in Git mode a refused URL, a
// bad branch name, author or message template.
Result<UpdateOptions> Validate(const UpdateFlags& f) {
  if (f.dir.empty() == f.repo.empty()) return InvalidArgumentError("give either --dir DIR or --repo URL");
  UpdateOptions o{.dir = f.dir, .repo = f.repo, .cache_dir = f.cache_dir, .allow_file_repo = f.allow_file_repo,
                  .git_username = f.git_username, .ssh_key = f.ssh_key, .ssh_known_hosts = f.ssh_known_hosts};
  GANTRY_ASSIGN_OR_RETURN(o.git.rules, Rules(f));
  for (const update::ImageRule& rule : o.git.rules) GANTRY_RETURN_IF_ERROR(update::ValidateRule(rule));
  o.git.dry_run = f.dry_run;
  if (f.repo.empty()) return o;
  GANTRY_RETURN_IF_ERROR(git::ValidateUrl(f.repo, f.allow_file_repo).WithContext("--repo"));
  GANTRY_RETURN_IF_ERROR(git::ValidateRefName(f.branch).WithContext("--branch"));
  if (!f.push_branch.empty()) GANTRY_RETURN_IF_ERROR(git::ValidateRefName(f.push_branch).WithContext("--push-branch"));
  GANTRY_ASSIGN_OR_RETURN(o.git.author, ParseAuthor(f.author));
  o.git.branch = f.branch;
  o.git.path = f.path;
  o.git.push_branch = f.push_branch;
  if (f.pull_request) {
    if (f.push_branch.empty()) return InvalidArgumentError("--pull-request needs --push-branch (the pull request's head)");
    if (f.forge.empty()) return InvalidArgumentError("--pull-request needs --forge 'PREFIX type=gitea|github|gitlab token-env=VAR'");
    GANTRY_ASSIGN_OR_RETURN(o.forge, server::ParseForgeFlag(f.forge));
    auto path = forge::RepoPath(o.forge->prefix, f.repo);
    if (!path) return InvalidArgumentError("--repo {} is not under the --forge prefix {}", git::ScrubUrl(f.repo), o.forge->prefix);
    o.forge_repo = *path;
    o.git.force_push = true;
  } else if (!f.forge.empty()) {
    return InvalidArgumentError("--forge is for --pull-request");
  }
  if (!f.message.empty()) o.git.message_template = f.message;
  GANTRY_RETURN_IF_ERROR(
      update::RenderMessage(o.git.message_template, o.git.rules, {}, "", "").status().WithContext("--message"));
  return o;
}

void PrintChanges(std::FILE* out, const std::vector<update::Change>& changes) {
  std::string text;
  for (const update::Change& c : changes) {
    text += c.ToString();
    text += '\n';
  }
  fmt::print(out, "{}", text);
  std::fflush(out);
}

// Files that could not be parsed: a warning each, and kReasonFailed.
Status Skipped(const std::vector<std::string>& skipped, const Deps& deps) {
  for (const std::string& s : skipped) fmt::print(deps.err, "warning: skipped {}\n", s);
  if (skipped.empty()) return OkStatus();
  return FailedPreconditionError("{} YAML file{} could not be parsed; the others were updated", skipped.size(),
                                 skipped.size() == 1 ? "" : "s")
      .set_reason(kReasonFailed);
}

Status RunLocal(const UpdateOptions& o, const Deps& deps) {
  GANTRY_ASSIGN_OR_RETURN(update::DirectoryUpdateResult result,
                          update::UpdateDirectory(o.dir, o.git.rules, o.git.dry_run));
  PrintChanges(deps.out, result.changes);
  size_t changes = result.changes.size();
  fmt::print(deps.err, "{} {} change{} in {} file{}\n", o.git.dry_run ? "would make" : "made", changes,
             changes == 1 ? "" : "s", result.files, result.files == 1 ? "" : "s");
  return Skipped(result.skipped, deps);
}

Status RunGit(const UpdateOptions& o, const Deps& deps) {
  render::GitSources sources(GitSourcesOptionsFor(o.cache_dir, o.repo, o.git_username, o.allow_file_repo,
                                                  o.ssh_key, o.ssh_known_hosts));
  GANTRY_ASSIGN_OR_RETURN(auto repo, sources.Open(o.repo));
  GANTRY_ASSIGN_OR_RETURN(update::GitUpdateResult result, update::UpdateRepository(*repo, o.git));
  PrintChanges(deps.out, result.changes);
  if (o.git.dry_run) {
    fmt::print(deps.err, "dry run: {} change{} at {} of {}; nothing committed\n", result.changes.size(),
               result.changes.size() == 1 ? "" : "s", result.commit.substr(0, 12), result.branch);
  } else if (result.committed) {
    fmt::print(deps.err, "committed {} to {}\n", result.commit.substr(0, 12), result.branch);
  } else {
    fmt::print(deps.err, "{} is up to date at {}; nothing committed\n", result.branch, result.commit.substr(0, 12));
  }
  if (o.forge && result.committed) {
    std::string body = "Image update by `gantry update`:\n\n";
    for (const update::Change& c : result.changes) body += fmt::format("- `{}`\n", c.ToString());
    GANTRY_ASSIGN_OR_RETURN(auto forge, forge::New(o.forge->options));
    GANTRY_ASSIGN_OR_RETURN(forge::PullRequest pr,
                            forge->OpenOrUpdatePullRequest(
                                o.forge_repo, {.head = o.git.push_branch,
                                               .base = o.git.branch,
                                               .title = fmt::format("update images in {}", o.git.path.empty() ? "/" : o.git.path),
                                               .body = std::move(body)}));
    fmt::print(deps.err, "{} pull request #{} {}\n", pr.created ? "opened" : "updated", pr.number, pr.url);
  }
  return Skipped(result.skipped, deps);
}

Status RunUpdate(const UpdateOptions& o, const Deps& deps) {
  return o.dir.empty() ? RunGit(o, deps) : RunLocal(o, deps);
}

}  // namespace

void AddUpdateCommand(CLI::App& app, const Deps& deps, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "update", "Rewrite image tags and digests in manifests, in a directory or committed to a Git repository");
  auto f = std::make_shared<UpdateFlags>();
  cmd->add_option("--dir", f->dir, "Working tree to rewrite in place (local mode)");
  cmd->add_option("--repo", f->repo, "Git repository URL (Git mode)");
  cmd->add_option("--branch", f->branch, "Branch to update (Git mode)")->capture_default_str();
  cmd->add_option("--path", f->path, "Directory inside the repository (Git mode; default: the root)");
  cmd->add_option("--push-branch", f->push_branch, "Push to this branch (created from --branch) for review");
  cmd->add_flag("--pull-request", f->pull_request,
                "Rebuild --push-branch on --branch, force-push it and open or update its pull request on --forge");
  cmd->add_option("--forge", f->forge,
                  "'PREFIX type=gitea|github|gitlab token-env=VAR [api=URL]': the forge of --repo, for --pull-request");
  cmd->add_option("--message", f->message,
                  "Commit message template: {{images}} {{changes}} {{count}} {{branch}} {{path}}");
  cmd->add_option("--author", f->author, "Commit author, \"Name <email>\"")->capture_default_str();
  cmd->add_option("--cache-dir", f->cache_dir, "Where Git mirrors are kept")->envname("GANTRY_CACHE");
  cmd->add_flag("--allow-file-repo", f->allow_file_repo, "Accept file:// repository URLs");
  cmd->add_option("--git-username", f->git_username, "User for GANTRY_GIT_PASSWORD (HTTP basic auth)");
  cmd->add_option("--ssh-key", f->ssh_key,
                  "Private key file for SSH Git; a passphrase is read from GANTRY_SSH_KEY_PASSPHRASE");
  cmd->add_option("--ssh-known-hosts", f->ssh_known_hosts,
                  "known_hosts file SSH host keys are checked against (default ~/.ssh/known_hosts)");
  cmd->add_option("--image", f->images, "NAME=NEWREF: set the images of repository NAME to NEWREF "
                                         "(repo:tag, repo@digest or repo:tag@digest); repeatable");
  cmd->add_option("--policy", f->policies, "POLICY=NEWREF: what {\"$imagepolicy\": \"POLICY\"} markers "
                                           "point at; repeatable");
  cmd->add_option("--helm-keys", f->helm_keys,
                  "REPOSITORY_KEY,TAG_KEY[,DIGEST_KEY]: where --image rules find the image in Helm values "
                  "(e.g. image.repository,image.tag)");
  cmd->add_flag("--dry-run", f->dry_run, "Print the changes without writing, committing or pushing");
  cmd->callback([f, &deps, &exit_code] {
    auto options = Validate(*f);
    exit_code = options.ok() ? Report(RunUpdate(*options, deps), deps.err) : UsageError(options.status(), deps.err);
  });
}

}  // namespace gantry::cli

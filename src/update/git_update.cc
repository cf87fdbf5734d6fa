// UpdateRepository: rewrite the YAML files of a path of a branch and commit them through
// git::Repository::CommitAndPush.

#include <fmt/format.h>

#include "update/update.h"

namespace gantry::update {
namespace {

struct Computed {
  git::Changes changes;
  std::vector<Change> list;
  std::vector<std::string> skipped;
};

Result<Computed> Compute(git::Repository& repo, const std::string& tip, const GitUpdateOptions& options) {
  Computed out;
  auto tree = repo.ReadTree(tip, options.path);
  if (!tree.ok()) return tree.status();
  for (const git::File& f : tree->files) {
    if (f.is_symlink() || !IsYamlPath(f.path)) continue;
    std::string full = options.path.empty() ? f.path : options.path + "/" + f.path;
    auto rewritten = RewriteYaml(f.content, full, options.rules);
    if (!rewritten.ok()) {
      out.skipped.push_back(rewritten.status().message());
      continue;
    }
    if (rewritten->changes.empty()) continue;
    out.changes.files[full] = std::move(rewritten->content);
    for (Change& c : rewritten->changes) out.list.push_back(std::move(c));
  }
  return out;
}

}  // namespace

Result<std::string> RenderMessage(std::string_view tmpl, std::span<const ImageRule> rules,
                                  std::span<const Change> changes, std::string_view branch, std::string_view path) {
  std::vector<std::string> images;
  for (const ImageRule& r : rules) {
    ImageRef ref{r.target_name(), r.new_tag, r.digest};
    images.push_back(ref.name.empty() ? fmt::format("{}={}", r.name, ImageRef{"", r.new_tag, r.digest}.ToString())
                                      : ref.ToString());
  }
  std::vector<std::string> lines;
  for (const Change& c : changes) {
    lines.push_back(fmt::format("{}:{}: {} → {}", c.file, c.line, c.old_text.empty() ? "(added)" : c.old_text,
                                c.new_text));
  }
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    size_t open = tmpl.find("{{", i);
    if (open == std::string_view::npos) {
      out.append(tmpl.substr(i));
      break;
    }
    out.append(tmpl.substr(i, open - i));
    size_t close = tmpl.find("}}", open + 2);
    if (close == std::string_view::npos) return InvalidArgumentError("message template: unclosed {{{{");
    std::string_view name = tmpl.substr(open + 2, close - open - 2);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (name == "images") out += fmt::format("{}", fmt::join(images, ", "));
    else if (name == "changes") out += fmt::format("{}", fmt::join(lines, "\n"));
    else if (name == "count") out += std::to_string(changes.size());
    else if (name == "branch") out += branch;
    else if (name == "path") out += path.empty() ? std::string_view("/") : path;
    else {
      return InvalidArgumentError(
          "message template: unknown placeholder {{{{{}}}}} (known: images, changes, count, branch, path)", name);
    }
    i = close + 2;
  }
  return out;
}

Result<GitUpdateResult> UpdateRepository(git::Repository& repo, const GitUpdateOptions& options) {
  auto context = fmt::format("update images in {} of {} ({})", options.path.empty() ? "/" : options.path,
                             options.branch, repo.url());
  if (options.rules.empty()) return InvalidArgumentError("{}: no image rules", context);
  for (const ImageRule& r : options.rules) GANTRY_RETURN_IF_ERROR(ValidateRule(r).WithContext(context));
  GANTRY_RETURN_IF_ERROR(git::ValidateRefName(options.branch).WithContext(context));
  if (!options.push_branch.empty()) {
    GANTRY_RETURN_IF_ERROR(git::ValidateRefName(options.push_branch).WithContext(context + ": push branch"));
  }
  // Check the template before any network work.
  GANTRY_RETURN_IF_ERROR(RenderMessage(options.message_template, options.rules, {}, "", "").status().WithContext(context));

  auto fetched = repo.Fetch();
  if (!fetched.ok()) return fetched.status().WithContext(context);
  auto target = repo.Resolve("refs/heads/" + options.branch);
  if (!target.ok()) return target.status().WithContext(context);
  GitUpdateResult result;
  result.branch = options.push_branch.empty() ? options.branch : options.push_branch;
  std::string base = *target;
  const bool force = options.force_push && !options.push_branch.empty();
  if (!options.push_branch.empty() && !force) {
    auto existing = repo.Resolve("refs/heads/" + options.push_branch);
    if (existing.ok()) base = *existing;
    else if (existing.status().code() != Code::kNotFound) return existing.status().WithContext(context);
  }

  // A first computation decides whether there is anything to do (so that an up-to-date repository
  // gets no commit and no new branch) and gives the message.
  auto first = Compute(repo, base, options);
  if (!first.ok()) return first.status().WithContext(context);
  if (first->changes.files.empty() || options.dry_run) {
    result.commit = base;
    if (options.dry_run) result.changes = std::move(first->list);
    result.skipped = std::move(first->skipped);
    return result;
  }
  GANTRY_ASSIGN_OR_RETURN(std::string message, RenderMessage(options.message_template, options.rules, first->list,
                                                            options.branch, options.path));
  Computed last;
  std::string last_tip;
  git::PushRequest request;
  request.branch = result.branch;
  if (!options.push_branch.empty()) request.start_point = *target;
  request.force = force;
  request.author = options.author;
  request.message = std::move(message);
  request.max_attempts = options.max_attempts;
  request.sign = options.sign;
  request.recompute = [&](const std::string& tip) -> Result<git::Changes> {
    GANTRY_ASSIGN_OR_RETURN(last, Compute(repo, tip, options));
    last_tip = tip;
    return last.changes;
  };
  auto pushed = repo.CommitAndPush(request);
  if (!pushed.ok()) return pushed.status().WithContext(context);
  result.commit = *pushed;
  result.committed = !last.changes.files.empty() && *pushed != last_tip;
  if (result.committed) result.changes = std::move(last.list);
  result.skipped = std::move(last.skipped);
  return result;
}

}  // namespace gantry::update

#pragma once
// Manifest updates: rewriting image references in YAML files in place, choosing the latest tag by
// a policy, and committing the rewritten files to a config repository.
//
// RewriteYaml() is a pure function of a file's bytes and a list of ImageRules. It parses the file
// (value::ParseYaml, which records the byte range of every scalar), finds the scalars a rule
// applies to, and splices new text into exactly those byte ranges; every other byte (comments,
// quoting, key order, indentation, other documents, CRLF line ends) is kept. What it rewrites:
//   - Kustomize `images:` entries (in a file named kustomization.yaml/.yml/Kustomization, or a
//     document of kind Kustomization of kustomize.config.k8s.io): an entry whose `name:` or
//     `newName:` matches a rule gets `newTag:` / `digest:` / `newName:` set, the key inserted with
//     the entry's indentation when missing.
//   - Helm values at the key paths a rule names (HelmKeys): when the value at `repository`
//     matches the rule, the values at `tag` / `digest` are set (inserted when missing and their
//     parent map exists).
//   - Container images: `image:` of every item of `containers`, `initContainers` and
//     `ephemeralContainers` found anywhere in a document (Pod, Deployment, CronJob jobTemplate,
//     custom resources that embed a pod template), when the reference's repository matches.
//   - Marker comments as Flux writes them, on the line of a scalar:
//       image: web:1.0 # {"$imagepolicy": "flux-system:web"}        the whole reference
//       tag: "1.0"     # {"$imagepolicy": "flux-system:web:tag"}    only the tag
//     with the suffixes :tag, :name and :digest; the policy is matched to a rule by ImageRule::name
//     ("flux-system:web" or just "web"). A marker wins over the other cases for its scalar.
// Repositories match after normalisation (nginx = docker.io/nginx = docker.io/library/nginx).
// When a rule sets a tag but no digest, a digest pinned next to the old tag is dropped (it would
// keep the old image running). A scalar already at the wanted text is left alone, so a second run
// is a no-op. New text keeps the scalar's quoting; a plain scalar whose new text would read back
// as something other than that string (1.10, true, "a: b") is written double-quoted instead.
// Block scalars (| and >) are never rewritten.
//
// SelectLatest() picks a tag as Flux's ImagePolicy does (semver range, alphabetical, numerical,
// with an optional regex filter and extraction). UpdateRepository() reads a path of a branch of a
// git::Repository, rewrites every YAML file under it and commits and pushes the result with
// git::Repository::CommitAndPush (recomputed on the new tip when another writer wins the race).
//
// Everything here is thread-safe: free functions of values, and Repository is thread-safe.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "git/git.h"

namespace gantry::update {

// An image reference: [host[:port]/]path[:tag][@digest].
struct ImageRef {
  std::string name;    // "registry.local:5000/team/web"
  std::string tag;     // "1.2.3"; empty when absent
  std::string digest;  // "sha256:…"; empty when absent

  // name[:tag][@digest]
  std::string ToString() const;
};

// Splits a reference. InvalidArgument for an empty name, whitespace, a name character other than
// letters, digits and . _ - / : [ ], an empty tag after ':' or a digest that is not algorithm:hex.
Result<ImageRef> ParseImageRef(std::string_view text);

// The repository in canonical form for comparisons: "docker.io/" added to a name whose first
// component is not a host, "library/" to a single-component Docker Hub name, index.docker.io
// written docker.io.
std::string NormalizeName(std::string_view name);

// Where the image lives in a Helm values file, as dotted key paths ("image.repository").
struct HelmKeys {
  std::string repository;  // required for the rule to apply to values files
  std::string tag;         // optional
  std::string digest;      // optional
};

// One image to update. At least one of new_name, new_tag, digest must be set.
struct ImageRule {
  std::string image;     // the repository to match; may be empty for a marker-only rule
  std::string name;      // optional policy name for markers: "flux-system:web" or "web"
  std::string new_name;  // optional: move to another repository
  std::string new_tag;   // optional
  std::string digest;    // optional "sha256:…"
  std::optional<HelmKeys> helm;

  // The repository the image ends up in: new_name, else image.
  const std::string& target_name() const { return new_name.empty() ? image : new_name; }
};

// A rule from the command-line form NAME=NEWREF: NAME is the repository to match; NEWREF is
// repo:tag, repo@digest or repo:tag@digest (repo ≠ NAME moves the image). InvalidArgument saying
// what is wrong.
Result<ImageRule> ParseImageRule(std::string_view text);

// Checks a rule: something to set, a name or image to match, a well-formed tag and digest.
Status ValidateRule(const ImageRule& rule);

// One rewritten scalar (or inserted key).
struct Change {
  std::string file;
  uint32_t line = 0;  // 1-based, in the original file (for an inserted key: the line it is on)
  uint32_t column = 0;
  std::string old_text;  // the scalar's value before ("" for an inserted key)
  std::string new_text;  // its value after
  std::string field;     // what was changed: "image", "newTag", "image.tag", "marker"…

  // "file:line:column: field: old → new"
  std::string ToString() const;
};

struct Rewrite {
  std::string content;  // the new bytes (equal to the input when changes is empty)
  std::vector<Change> changes;
};

// Rewrites one YAML file as described in the file comment. `filename` is used in changes, in
// errors and to recognise kustomization files. InvalidArgument for an invalid rule; the parser's
// errors (InvalidArgument / ResourceExhausted with file:line:column) when the file does not parse
// and a rule could apply to it (a file that mentions no rule's repository or marker is returned
// unchanged without being parsed).
Result<Rewrite> RewriteYaml(std::string_view content, std::string_view filename,
                            std::span<const ImageRule> rules);

// Whether `path` names a file RewriteYaml reads in a tree: *.yaml, *.yml and Kustomization.
bool IsYamlPath(std::string_view path);

// ---- A working tree ----

struct DirectoryUpdateResult {
  std::vector<Change> changes;       // file paths relative to the root, in directory walk order
  size_t files = 0;                  // files changed (or that would change, with dry_run)
  std::vector<std::string> skipped;  // "path:line:column: reason" for YAML files that could not be parsed
};

// Rewrites every YAML file (IsYamlPath) under `root` in place, keeping each file's mode; with
// `dry_run` computes the same changes without writing. Symlinks are not followed and .git
// directories are skipped. A file that does not parse is listed in `skipped` and the others are
// still rewritten. Errors: NotFound / FailedPrecondition when `root` is not a directory; the I/O
// error of a read or write (files written before it stay written).
Result<DirectoryUpdateResult> UpdateDirectory(const std::filesystem::path& root, std::span<const ImageRule> rules,
                                              bool dry_run);

// ---- Tag policies ----

struct TagPolicy {
  enum class Kind { kSemver, kAlphabetical, kNumerical };
  Kind kind = Kind::kSemver;
  std::string range;    // kSemver: a semver::VersionRange ("^1.2", ">=1.0.0-0" for pre-releases)
  bool ascending = true;  // kAlphabetical / kNumerical: asc picks the highest, desc the lowest
  // Optional filter (RE2 syntax, as Flux's Go regexp): tags that do not match are skipped; with
  // `extract` ("$ts", "${ts}", "$1", literal text around them) the policy orders the expansion
  // instead of the tag, and still returns the tag.
  std::string pattern;
  std::string extract;
};

// The tag `policy` selects among `tags`. InvalidArgument for a bad range or pattern, or an extract
// naming a group the pattern lacks; NotFound when no tag passes the filter (or the range, or
// parses as a number / version), naming the policy.
Result<std::string> SelectLatest(std::span<const std::string> tags, const TagPolicy& policy);

// ---- Git ----

struct GitUpdateOptions {
  std::string branch = "main";  // the branch to read (and to push to, without push_branch)
  std::string path;             // directory (or file) in the repository; "" for the root
  // When set, the commit goes to this branch instead, created from `branch`'s tip when missing
  // (for review). Updated on later runs like any branch.
  std::string push_branch;
  // With push_branch: rebuild it from `branch`'s tip on every update and force-push it, so it holds
  // exactly one commit on top of `branch` (the head of a release's pull request), instead of
  // adding a commit on top of what it holds.
  bool force_push = false;
  // Commit message; placeholders: {{images}} (the new references, comma-separated), {{changes}}
  // (one "file:line: old → new" line each), {{count}} (number of changes), {{branch}}, {{path}}.
  std::string message_template = "Update images: {{images}}\n\n{{changes}}\n";
  git::Signature author{"Gantry", "gantry@localhost"};
  std::vector<ImageRule> rules;
  int max_attempts = 10;  // pushes tried on lost races (ten simultaneous writers needed up to 7)
  // Signs the commit (git::PushRequest::sign); unset: unsigned.
  std::function<Result<std::string>(std::string_view commit)> sign;
  // Fetch and compute the changes at the tip without committing or pushing: the result has
  // committed false, commit the tip read, and the changes that a commit would hold.
  bool dry_run = false;
};

struct GitUpdateResult {
  std::string branch;            // where the commit went
  std::string commit;            // that branch's commit after the update
  bool committed = false;        // false: already up to date, nothing pushed
  std::vector<Change> changes;   // of the commit that landed (file paths relative to the repo root)
  std::vector<std::string> skipped;  // "path: reason" for YAML files that could not be parsed
};

// Reads options.path at the tip of the branch (push_branch when it exists, else branch), rewrites
// every YAML file under it, and commits and pushes the files that changed with the rendered message
// and author. On a lost race CommitAndPush fetches and recomputes on the new tip. When nothing
// changes, nothing is committed or pushed (no branch is created either). Errors: InvalidArgument
// for a bad rule, branch or template; NotFound when the branch or path does not exist; the
// errors of Fetch and CommitAndPush (Aborted after max_attempts lost races).
Result<GitUpdateResult> UpdateRepository(git::Repository& repo, const GitUpdateOptions& options);

// Renders a message template (see GitUpdateOptions::message_template). InvalidArgument for an
// unknown {{placeholder}}.
Result<std::string> RenderMessage(std::string_view tmpl, std::span<const ImageRule> rules,
                                  std::span<const Change> changes, std::string_view branch,
                                  std::string_view path);

}  // namespace gantry::update

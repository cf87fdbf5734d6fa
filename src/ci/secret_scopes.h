#pragma once
// ci/secret_scopes: which of the server's secrets a run may have.
//
// The secrets file of `gantry server` is the NAME=VALUE file of `gantry ci run` (# comments,
// blank lines, mode 0600 or stricter) with optional section headers that scope the lines after
// them:
//
//   NPM_TOKEN=...                         # before any header: every run of every repository
//   [repo=https://git.example/org/*]      # runs of these repositories (globs on the --repo URL)
//   REGISTRY_TOKEN=...
//   [repo=https://git.example/org/app branch=main,release/*]
//   STAGING_KEY=...
//   [protected]                           # production: trusted pushes to a protected branch
//   PROD_DEPLOY_TOKEN=...
//
// Keys of a header, all of which must match (a key's comma-separated globs are alternatives, with
// the `on:` filters' GlobMatch: `*` within a path segment, `**` across): repo= (the configured
// repository a run belongs to), branch= (the run's branch; a tag run has none), tag=, event=
// (push, tag, pull_request, manual), and the word `protected`: a trusted push to a branch matching
// the server's --protected-branch globs (default main) — never a pull request or a tag. A name defined in several
// matching sections takes the value of the last one in the file.
//
// Select() is pure: it returns the secrets in scope for a run and, for each secret defined only
// in sections that do not match, a sentence naming it and its scopes, for the run's message.

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace gantry::ci {

struct SecretScope {
  std::vector<std::string> repos, branches, tags, events;  // globs; empty = any
  bool protected_only = false;
  std::string header;  // as written, "[...]"; "" for the lines before any header
  std::map<std::string, std::string> values;
};

struct SecretScopes {
  std::vector<SecretScope> scopes;  // file order
  // Every value of every scope (for masking output whatever the scope).
  std::vector<std::string> AllValues() const;
};

// Where a run comes from, for Select().
struct SecretRequest {
  std::string repo;   // the configured repository (a fork's pull request: the base)
  std::string event;  // push, tag, pull_request, manual
  std::string branch;
  std::string tag;
  bool trusted = false;
  std::vector<std::string> protected_branches;  // globs
};

struct SelectedSecrets {
  std::map<std::string, std::string> in_scope;
  std::map<std::string, std::string> out_of_scope;  // name → "scoped to [branch=main]"
};

// Parses the text of a secrets file; `source` names it in errors. InvalidArgument naming the line
// for a malformed line, an unknown header key or an empty value list.
Result<SecretScopes> ParseSecretScopes(std::string_view text, std::string_view source);
// Reads and parses a secrets file. PermissionDenied when it is readable by group or others.
Result<SecretScopes> ReadSecretScopesFile(const std::filesystem::path& path);

SelectedSecrets Select(const SecretScopes& scopes, const SecretRequest& request);

}  // namespace gantry::ci

#pragma once
// server/links: web pages of what the release ledger names, for the API and the console to link
// to: a commit's page on its forge, an image's page in its registry.
//
// A commit URL is derived from the repository URL (https, ssh:// or scp-like git@host:path, with
// or without .git) when the host says which forge it is: github.com and hosts with "github" in
// their name use GitHub's pattern (https://HOST/PATH/commit/SHA), gitlab.com and hosts with
// "gitlab" GitLab's (https://HOST/PATH/-/commit/SHA), codeberg.org and hosts with "gitea" or
// "forgejo" Gitea's (https://HOST/PATH/commit/SHA). Any other host (plain https Git hosting, a
// forge under a name of its own) gets a URL only from a rule: `PREFIX=github|gitlab|gitea` applies
// that forge's pattern to repositories whose URL (credentials removed) starts with PREFIX, and
// `PREFIX=TEMPLATE` fills TEMPLATE's {sha}, {repo} (HOST/PATH without .git) and {path} (PATH).
//
// An image URL is derived for quay.io (its manifest page), ghcr.io (which redirects to the
// package) and Docker Hub (the repository page); other registries from a rule `PREFIX=TEMPLATE`
// over the image name with {registry}, {repository}, {digest} and {reference} (NAME@DIGEST).
// Rules are tried in the order given, before the derivation. Free functions of values; thread-safe.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace gantry::server {

struct LinkRule {
  std::string prefix;    // of the repository URL (credentials removed) or the image name
  std::string template_;  // a forge kind (github, gitlab, gitea) for commits, or a template
};

struct LinkOptions {
  std::vector<LinkRule> commits;  // --commit-url PREFIX=github|gitlab|gitea|TEMPLATE
  std::vector<LinkRule> images;   // --image-url PREFIX=TEMPLATE
};

// Parses a rule "PREFIX=TEMPLATE" of flag `flag`: InvalidArgument naming the flag and the value when
// there is no '=', the prefix is empty, or a commit template (`commit` true) names neither a
// forge kind nor {sha}, or an image template lacks {digest} and {reference}.
Result<LinkRule> ParseLinkRule(std::string_view flag, std::string_view text, bool commit);

// The web page of commit `sha` of the repository at `repo_url`; nullopt when neither a rule nor
// the host says how to build it (or either is empty).
std::optional<std::string> CommitUrl(const LinkOptions& options, std::string_view repo_url, std::string_view sha);

// The web page of image `name` (registry/repository, no tag) at `digest`; nullopt when neither a
// rule nor the registry says how.
std::optional<std::string> ImageUrl(const LinkOptions& options, std::string_view name, std::string_view digest);

}  // namespace gantry::server

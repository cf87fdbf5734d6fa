// Image references and rules: parsing, normalisation, validation.

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

#include "update/update.h"
#include "value/utf8.h"

namespace gantry::update {
namespace {

bool HasSpace(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return true;
  }
  return false;
}

// Docker's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
bool ValidTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  for (size_t i = 0; i < tag.size(); ++i) {
    char c = tag[i];
    bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!word && (i == 0 || (c != '.' && c != '-'))) return false;
  }
  return true;
}

// What a repository name may hold: letters, digits and the separators of host[:port] (an IPv6
// host in brackets) and of path components. Anything else would be written into YAML files as is.
bool ValidName(std::string_view name) {
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && std::string_view("._-/:[]").find(c) != std::string_view::npos);
  });
}

// algorithm:encoded, as the OCI image spec: [a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+ (encoded
// at least 32 characters, which every registered algorithm meets).
bool ValidDigest(std::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view algo = digest.substr(0, colon), hex = digest.substr(colon + 1);
  for (char c : algo) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  if (hex.size() < 32) return false;
  for (char c : hex) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '=' || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string ImageRef::ToString() const {
  std::string out = name;
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

Result<ImageRef> ParseImageRef(std::string_view text) {
  if (text.empty()) return InvalidArgumentError("empty image reference");
  if (HasSpace(text)) return InvalidArgumentError("image reference \"{}\" contains whitespace", text);
  ImageRef ref;
  std::string_view rest = text;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (!ValidDigest(ref.digest)) {
      return InvalidArgumentError("image reference \"{}\": digest \"{}\" is not algorithm:hex", text, ref.digest);
    }
  }
  size_t slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!ValidTag(ref.tag)) return InvalidArgumentError("image reference \"{}\": invalid tag \"{}\"", text, ref.tag);
  }
  if (rest.empty() || rest.front() == '/' || rest.back() == '/') {
    return InvalidArgumentError("image reference \"{}\": invalid repository name", text);
  }
  if (!ValidName(rest)) {
    return InvalidArgumentError("image reference {:?}: a repository name holds only letters, digits and . _ - / : [ ]",
                                text);
  }
  ref.name = std::string(rest);
  return ref;
}

std::string NormalizeName(std::string_view name) {
  size_t slash = name.find('/');
  std::string_view first = slash == std::string_view::npos ? std::string_view() : name.substr(0, slash);
  bool has_host = !first.empty() && (first.find('.') != std::string_view::npos ||
                                     first.find(':') != std::string_view::npos || first == "localhost");
  if (!has_host) {
    if (slash == std::string_view::npos) return fmt::format("docker.io/library/{}", name);
    return fmt::format("docker.io/{}", name);
  }
  if (first == "index.docker.io" || first == "registry-1.docker.io") {
    std::string_view path = name.substr(slash + 1);
    if (path.find('/') == std::string_view::npos) return fmt::format("docker.io/library/{}", path);
    return fmt::format("docker.io/{}", path);
  }
  if (first == "docker.io" && name.find('/', slash + 1) == std::string_view::npos) {
    return fmt::format("docker.io/library/{}", name.substr(slash + 1));
  }
  return std::string(name);
}

Status ValidateRule(const ImageRule& rule) {
  if (rule.image.empty() && rule.name.empty()) {
    return InvalidArgumentError("image rule: an image to match or a policy name is required");
  }
  std::string what = rule.image.empty() ? "policy " + rule.name : rule.image;
  if (rule.new_name.empty() && rule.new_tag.empty() && rule.digest.empty()) {
    return InvalidArgumentError("image rule for {}: nothing to set (a new name, tag or digest is required)", what);
  }
  if (!rule.new_tag.empty() && !ValidTag(rule.new_tag)) {
    return InvalidArgumentError("image rule for {}: invalid tag \"{}\"", what, rule.new_tag);
  }
  if (!rule.digest.empty() && !ValidDigest(rule.digest)) {
    return InvalidArgumentError("image rule for {}: digest \"{}\" is not algorithm:hex", what, rule.digest);
  }
  for (const std::string* n : {&rule.image, &rule.new_name}) {
    if (n->empty()) continue;
    auto ref = ParseImageRef(*n);
    if (!ref.ok() || !ref->tag.empty() || !ref->digest.empty()) {
      return InvalidArgumentError("image rule for {}: \"{}\" is not a repository name (no tag or digest)", what,
                                  *n);
    }
  }
  if (rule.helm && rule.helm->repository.empty()) {
    return InvalidArgumentError("image rule for {}: Helm keys need the repository key path", what);
  }
  if (rule.helm) {
    for (const std::string* path : {&rule.helm->repository, &rule.helm->tag, &rule.helm->digest}) {
      if (!value::IsValidUtf8(*path)) {
        return InvalidArgumentError("image rule for {}: Helm key path {:?} is not UTF-8, so no YAML file holds it",
                                    what, *path);
      }
    }
  }
  return OkStatus();
}

Result<ImageRule> ParseImageRule(std::string_view text) {
  size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size()) {
    return InvalidArgumentError("image rule \"{}\": expected NAME=NEWREF (e.g. registry/web=registry/web:1.2.3)", text);
  }
  auto match = ParseImageRef(text.substr(0, eq));
  if (!match.ok()) return match.status().WithContext(fmt::format("image rule \"{}\"", text));
  if (!match->tag.empty() || !match->digest.empty()) {
    return InvalidArgumentError("image rule \"{}\": NAME is a repository without tag or digest", text);
  }
  auto target = ParseImageRef(text.substr(eq + 1));
  if (!target.ok()) return target.status().WithContext(fmt::format("image rule \"{}\"", text));
  ImageRule rule;
  rule.image = match->name;
  if (NormalizeName(target->name) != NormalizeName(match->name)) rule.new_name = target->name;
  rule.new_tag = target->tag;
  rule.digest = target->digest;
  if (rule.new_tag.empty() && rule.digest.empty()) {
    return InvalidArgumentError("image rule \"{}\": NEWREF needs a tag, a digest or both", text);
  }
  GANTRY_RETURN_IF_ERROR(ValidateRule(rule));
  return rule;
}

std::string Change::ToString() const {
  if (old_text.empty()) return fmt::format("{}:{}:{}: {}: (added) {}", file, line, column, field, new_text);
  return fmt::format("{}:{}:{}: {}: {} → {}", file, line, column, field, old_text, new_text);
}

}  // namespace gantry::update

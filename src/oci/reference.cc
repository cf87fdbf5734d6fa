// Image references and platforms: parsing and printing (the grammar of distribution/reference,
// normalised as Docker does).

#include <cctype>

#include "oci/oci.h"

namespace gantry::oci {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// path-component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
bool ValidComponent(std::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  for (size_t i = 0; i < c.size();) {
    if (IsLowerAlnum(c[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < c.size() && !IsLowerAlnum(c[j])) ++j;
    std::string_view sep = c.substr(i, j - i);
    bool dashes = sep.find_first_not_of('-') == std::string_view::npos;
    if (sep != "." && sep != "_" && sep != "__" && !dashes) return false;
    i = j;
  }
  return true;
}

bool ValidTag(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t.front())) return false;
  for (char c : t)
    if (!word(c) && c != '.' && c != '-') return false;
  return true;
}

// host[:port]: DNS labels of [A-Za-z0-9-], or a bracketed IPv6 address; port all digits.
bool ValidHost(std::string_view h) {
  if (h.empty()) return false;
  std::string_view name = h, port;
  if (h.front() == '[') {
    size_t close = h.find(']');
    if (close == std::string_view::npos) return false;
    std::string_view rest = h.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
      if (port.empty()) return false;
    }
    for (char c : h.substr(1, close - 1))
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
  } else {
    if (size_t colon = h.rfind(':'); colon != std::string_view::npos) {
      name = h.substr(0, colon);
      port = h.substr(colon + 1);
      if (port.empty()) return false;
    }
    if (name.empty()) return false;
    for (char c : name)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') return false;
    if (name.front() == '.' || name.back() == '.' || name.front() == '-') return false;
  }
  for (char c : port)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

Result<Reference> ParseReference(std::string_view text) {
  const std::string quoted = fmt::format("{:?}", text);
  if (text.empty()) return InvalidArgumentError("image reference is empty");
  if (text.size() > 4096) return InvalidArgumentError("image reference is longer than 4096 bytes");
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c)))
      return InvalidArgumentError("image reference {}: contains whitespace or a control character",
                                  quoted);
  }
  if (text.find("://") != std::string_view::npos)
    return InvalidArgumentError(
        "image reference {}: a reference has no scheme (write host/repository:tag)", quoted);
  Reference ref;
  std::string_view rest = text;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (Status s = ValidateDigest(ref.digest); !s.ok())
      return s.WithContext(fmt::format("image reference {}: digest", quoted));
  }
  // A tag is after the last ':' that comes after the last '/' (a ':' before it is a port).
  size_t slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!ValidTag(ref.tag))
      return InvalidArgumentError(
          "image reference {}: tag {:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}", quoted,
          ref.tag);
  }
  if (rest.empty()) return InvalidArgumentError("image reference {}: no repository name", quoted);
  std::string_view first = rest.substr(0, rest.find('/'));
  bool has_host = rest.find('/') != std::string_view::npos &&
                  (first.find('.') != std::string_view::npos ||
                   first.find(':') != std::string_view::npos || first == "localhost" ||
                   first.front() == '[');
  std::string_view path = rest;
  if (has_host) {
    if (!ValidHost(first))
      return InvalidArgumentError("image reference {}: registry host {:?} is not host[:port]",
                                  quoted, first);
    ref.registry = std::string(first);
    path = rest.substr(first.size() + 1);
  } else {
    ref.registry = "docker.io";
  }
  if (ref.registry == "index.docker.io" || ref.registry == "registry-1.docker.io")
    ref.registry = "docker.io";
  size_t start = 0;
  while (true) {
    size_t end = path.find('/', start);
    std::string_view component = path.substr(start, end == std::string_view::npos ? end : end - start);
    if (!ValidComponent(component)) {
      bool upper = false;
      for (char c : component) upper |= std::isupper(static_cast<unsigned char>(c)) != 0;
      return InvalidArgumentError(
          "image reference {}: repository component {:?} {}", quoted, component,
          upper ? "must be lower-case"
                : "must be [a-z0-9] separated by '.', '_', '__' or dashes");
    }
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  ref.repository = std::string(path);
  if (ref.registry == "docker.io" && ref.repository.find('/') == std::string::npos)
    ref.repository = "library/" + ref.repository;
  if (ref.registry.size() + 1 + ref.repository.size() > 255)
    return InvalidArgumentError("image reference {}: name longer than 255 characters", quoted);
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

std::string Reference::ToString() const {
  std::string out = registry + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

std::string Platform::ToString() const {
  std::string out = os + "/" + architecture;
  if (!variant.empty()) out += "/" + variant;
  return out;
}

Result<Platform> ParsePlatform(std::string_view text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t end = text.find('/', start);
    parts.emplace_back(text.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  if (parts.size() < 2 || parts.size() > 3)
    return InvalidArgumentError("platform {:?}: expected os/arch or os/arch/variant", text);
  for (const std::string& p : parts) {
    if (p.empty()) return InvalidArgumentError("platform {:?}: empty component", text);
    for (char c : p)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
        return InvalidArgumentError("platform {:?}: component {:?} has a character other than "
                                    "[A-Za-z0-9_.-]", text, p);
  }
  Platform platform{parts[0], parts[1], parts.size() == 3 ? parts[2] : ""};
  return platform;
}

bool PlatformMatches(const Platform& want, const std::optional<Platform>& have) {
  return have && have->os == want.os && have->architecture == want.architecture &&
         (want.variant.empty() || have->variant == want.variant);
}

}  // namespace gantry::oci

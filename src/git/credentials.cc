// Repository credentials read from an Argo CD-shaped repository Secret mounted as files.

#include <system_error>

#include "base/path.h"
#include "git/git.h"
#include "git/internal/remote.h"

namespace gantry::git {

Result<Credentials> ReadRepositorySecret(const std::filesystem::path& dir, const std::string& known_hosts_path) {
  namespace fs = std::filesystem;
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("repository secret {}: {}", dir.string(), why);
  };
  // A key of the secret: its file's text without trailing newlines; nullopt when absent.
  auto read = [&](std::string_view key) -> Result<std::optional<std::string>> {
    std::error_code ec;
    fs::path file = dir / key;
    if (!fs::exists(file, ec)) return std::optional<std::string>();
    auto text = ReadFile(file, 1 << 20);
    if (!text.ok()) return bad(fmt::format("cannot read {}: {}", key, text.status().message()));
    std::string v = std::move(text).value();
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
    return std::optional<std::string>(std::move(v));
  };
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return bad("not a directory (mount the Secret as a volume)");
  GANTRY_ASSIGN_OR_RETURN(auto url, read("url"));
  if (!url || url->empty()) return bad("no url key: the repository URL the credentials are for");
  if (Status s = ValidateUrl(*url, false); !s.ok()) return bad(s.message());
  GANTRY_ASSIGN_OR_RETURN(internal::ParsedUrl parsed, internal::ParseUrl(*url));
  GANTRY_ASSIGN_OR_RETURN(auto username, read("username"));
  GANTRY_ASSIGN_OR_RETURN(auto password, read("password"));
  Credentials c{.host = HostOf(*url), .username = username.value_or("")};
  bool has_key = fs::exists(dir / "sshPrivateKey", ec);
  if (parsed.scheme == "ssh") {
    if (!has_key) return bad(fmt::format("url {} is SSH but there is no sshPrivateKey key", ScrubUrl(*url)));
    if (known_hosts_path.empty()) {
      return bad("SSH host keys are checked against a known_hosts file; give one (--ssh-known-hosts FILE)");
    }
    c.ssh_private_key_path = (dir / "sshPrivateKey").string();
    c.ssh_known_hosts_path = known_hosts_path;
    return c;
  }
  if (has_key) return bad(fmt::format("sshPrivateKey is given but url {} is not SSH", ScrubUrl(*url)));
  if (!password || password->empty()) return bad("no password key (or sshPrivateKey for an SSH url)");
  c.password = std::move(*password);
  return c;
}

}  // namespace gantry::git

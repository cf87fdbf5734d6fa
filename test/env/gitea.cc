#include "test/env/gitea.h"

#include <chrono>
#include <filesystem>
#include <thread>

#include "base/base64.h"
#include "base/path.h"
#include "base/process.h"

namespace gantry::testenv {
namespace {

value::Value Strings(const std::vector<std::string>& items) {
  value::Value seq = value::Value::Seq();
  for (const auto& s : items) seq.Append(s);
  return seq;
}

}  // namespace

Gitea::Gitea(const Server& server)
    : url_(server.Get("GITEA_URL")),
      user_(server.Get("GITEA_ADMIN_USER")),
      password_(server.Get("GITEA_ADMIN_PASSWORD")),
      token_(server.Get("GITEA_ADMIN_TOKEN")),
      client_({.timeout = std::chrono::seconds(30)}) {}

Result<value::Value> Gitea::Api(const std::string& method, const std::string& path, const std::string& body,
                                const std::string& token) const {
  http::ClientRequest req{.method = method, .url = url_ + "/api/v1" + path, .body = body};
  req.headers["authorization"] = "token " + (token.empty() ? token_ : token);
  if (!body.empty()) req.headers["content-type"] = "application/json";
  GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r, client_.Send(req));
  if (r.status < 200 || r.status >= 300) {
    return InternalError("gitea: {} {}: HTTP {}: {}", method, path, r.status, r.body);
  }
  if (r.body.empty()) return value::Value();
  return value::ParseJson(r.body, "gitea " + path);
}

Status Gitea::CreateUser(const std::string& name, const std::string& password) const {
  value::Value u = value::Value::Map();
  u.Set("username", name);
  u.Set("password", password);
  u.Set("email", name + "@example.com");
  u.Set("must_change_password", false);
  return Api("POST", "/admin/users", value::ToJson(u)).status();
}

Status Gitea::CreateOrg(const std::string& name) const {
  value::Value o = value::Value::Map();
  o.Set("username", name);
  return Api("POST", "/orgs", value::ToJson(o)).status();
}

Status Gitea::CreateRepo(const std::string& owner, const std::string& name) const {
  value::Value r = value::Value::Map();
  r.Set("name", name);
  r.Set("default_branch", "main");
  return Api("POST", "/orgs/" + owner + "/repos", value::ToJson(r)).status();
}

Result<std::string> Gitea::CreateToken(const std::string& user, const std::string& password, const std::string& name,
                                       const std::vector<std::string>& scopes) const {
  value::Value t = value::Value::Map();
  t.Set("name", name);
  t.Set("scopes", Strings(scopes));
  // Tokens are made with the user's password (basic auth), never with another token.
  http::ClientRequest req{.method = "POST", .url = url_ + "/api/v1/users/" + user + "/tokens", .body = value::ToJson(t)};
  req.headers["content-type"] = "application/json";
  req.headers["authorization"] = "Basic " + Base64Encode(user + ":" + password);
  GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r, client_.Send(req));
  if (r.status != 201) return InternalError("gitea: create token {} of {}: HTTP {}: {}", name, user, r.status, r.body);
  GANTRY_ASSIGN_OR_RETURN(value::Value v, value::ParseJson(r.body, "gitea token"));
  return value::StringAt(&v, {"sha1"});
}

Status Gitea::AddWebhook(const std::string& owner, const std::string& repo, const std::string& url,
                         const std::string& secret, const std::vector<std::string>& events) const {
  value::Value config = value::Value::Map();
  config.Set("url", url);
  config.Set("content_type", "json");
  config.Set("secret", secret);
  value::Value h = value::Value::Map();
  h.Set("type", "gitea");
  h.Set("config", config);
  h.Set("events", Strings(events));
  h.Set("active", true);
  return Api("POST", "/repos/" + owner + "/" + repo + "/hooks", value::ToJson(h)).status();
}

Result<std::vector<GiteaStatus>> Gitea::Statuses(const std::string& owner, const std::string& repo,
                                                 const std::string& sha) const {
  // Newest first: Gitea's "leastindex" orders by index descending (models/git/commit_status.go).
  GANTRY_ASSIGN_OR_RETURN(value::Value v,
                          Api("GET", "/repos/" + owner + "/" + repo + "/commits/" + sha + "/statuses?sort=leastindex"));
  std::vector<GiteaStatus> out;
  for (const value::Value& s : v.items()) {
    out.push_back({.state = value::StringAt(&s, {"status"}),
                   .context = value::StringAt(&s, {"context"}),
                   .description = value::StringAt(&s, {"description"}),
                   .target_url = value::StringAt(&s, {"target_url"})});
  }
  return out;
}

std::string Gitea::RepoUrl(const std::string& owner, const std::string& repo) const {
  return url_ + "/" + owner + "/" + repo + ".git";
}

Result<std::string> Gitea::Push(const std::string& owner, const std::string& repo, const std::string& dir,
                                const std::map<std::string, std::string>& files, const std::string& message,
                                const std::string& branch) const {
  namespace fs = std::filesystem;
  ProcessOptions po;
  po.cwd = dir;
  po.inherit_env = true;
  po.env = {{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@example.com"}, {"GIT_COMMITTER_NAME", "t"},
            {"GIT_COMMITTER_EMAIL", "t@example.com"}, {"GIT_TERMINAL_PROMPT", "0"}};
  fs::create_directories(dir);
  if (!fs::exists(fs::path(dir) / ".git")) GANTRY_RETURN_IF_ERROR(RunChecked({"git", "init", "-q", "-b", "main"}, po).status());
  for (const auto& [path, content] : files) {
    fs::create_directories((fs::path(dir) / path).parent_path());
    GANTRY_RETURN_IF_ERROR(WriteFileAtomic(fs::path(dir) / path, content));
  }
  GANTRY_RETURN_IF_ERROR(RunChecked({"git", "add", "-A"}, po).status());
  GANTRY_RETURN_IF_ERROR(RunChecked({"git", "commit", "-q", "-m", message}, po).status());
  // The admin's token as the password, in the URL of this one push only.
  std::string authed = url_;
  authed.insert(authed.find("://") + 3, user_ + ":" + token_ + "@");
  GANTRY_RETURN_IF_ERROR(
      RunChecked({"git", "push", "-q", authed + "/" + owner + "/" + repo + ".git", "HEAD:refs/heads/" + branch}, po).status());
  GANTRY_ASSIGN_OR_RETURN(ProcessResult head, RunChecked({"git", "rev-parse", "HEAD"}, po));
  const std::string sha = head.out.substr(0, 40);
  // Gitea records a pushed branch in its database after the push returns (and marks an empty
  // repository as filled then): until it has, opening a pull request from the branch answers 404.
  // Wait until its API shows the branch at the pushed commit, as a user clicking through would.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string last;
  while (true) {
    auto b = Api("GET", "/repos/" + owner + "/" + repo + "/branches/" + branch);
    if (b.ok() && value::StringAt(&*b, {"commit", "id"}) == sha) return sha;
    last = b.ok() ? "at " + value::StringAt(&*b, {"commit", "id"}) : b.status().ToString();
    if (std::chrono::steady_clock::now() > deadline) {
      return InternalError("gitea: pushed {} to {}/{} branch {}, but after 30 s its API still shows the branch {}", sha,
                           owner, repo, branch, last);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace gantry::testenv

#pragma once
// A client of Gitea's REST API (test/env/gitea.sh) for tests that need a forge: users,
// organisations, repositories, scoped tokens, webhooks and commit statuses, made as the admin
// (GITEA_ADMIN_TOKEN), and commits pushed with git over HTTP. Uses Gantry's http::Client.
//
//   auto& g = testenv::Shared("gitea.sh");
//   testenv::Gitea gitea(g);
//   ASSERT_TRUE(gitea.CreateOrg("shop").ok());
//   ASSERT_TRUE(gitea.CreateRepo("shop", "web").ok());
//   auto token = gitea.CreateToken("gantry-admin", "statuses", {"write:repository"});
//   auto sha = gitea.Push("shop", "web", dir, {{"README.md", "hi"}}, "first");
//
// Every failure names the call and carries Gitea's answer ("POST /orgs: HTTP 422: ...").
// Thread-safety: holds only URLs and credentials; calls may come from several threads.

#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "http/client.h"
#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry::testenv {

struct GiteaStatus {
  std::string state;  // "pending", "success", "failure", "error", "warning"
  std::string context;
  std::string description;
  std::string target_url;
};

class Gitea {
 public:
  explicit Gitea(const Server& server);

  const std::string& url() const { return url_; }  // http://127.0.0.1:PORT
  const std::string& admin_user() const { return user_; }
  const std::string& admin_token() const { return token_; }

  // Calls the API as the admin (or with `token`) and returns the parsed answer (null for none).
  // Internal with the HTTP status and body when it is not 2xx.
  Result<value::Value> Api(const std::string& method, const std::string& path, const std::string& body = "",
                           const std::string& token = "") const;

  Status CreateUser(const std::string& name, const std::string& password) const;
  Status CreateOrg(const std::string& name) const;
  // An empty repository of organisation `owner`, default branch main.
  Status CreateRepo(const std::string& owner, const std::string& name) const;
  // A new access token of `user` (basic auth with `password`, or the admin's own for the admin)
  // with `scopes` ("write:repository", "read:user", ...); returns its value.
  Result<std::string> CreateToken(const std::string& user, const std::string& password, const std::string& name,
                                  const std::vector<std::string>& scopes) const;
  // A Gitea webhook on owner/repo posting `events` (e.g. {"push"}) as JSON to `url`, signed with
  // `secret`.
  Status AddWebhook(const std::string& owner, const std::string& repo, const std::string& url,
                    const std::string& secret, const std::vector<std::string>& events) const;
  // The statuses of `sha`, newest first.
  Result<std::vector<GiteaStatus>> Statuses(const std::string& owner, const std::string& repo,
                                            const std::string& sha) const;
  // The clone URL of owner/repo (without credentials).
  std::string RepoUrl(const std::string& owner, const std::string& repo) const;
  // Writes `files` into the work tree `dir` (initialised and linked to owner/repo on first use),
  // commits them and pushes to `branch` as the admin; returns the commit's id.
  Result<std::string> Push(const std::string& owner, const std::string& repo, const std::string& dir,
                           const std::map<std::string, std::string>& files, const std::string& message,
                           const std::string& branch = "main") const;

 private:
  std::string url_, user_, password_, token_;
  http::Client client_;
};

}  // namespace gantry::testenv

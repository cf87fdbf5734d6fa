#include "webhook/webhook.h"

#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gantry::webhook {
namespace {

using testing::ElementsAre;
using testing::HasSubstr;
using testing::Not;

constexpr char kSecret[] = "s3cr3t-for-tests";

std::string Load(const std::string& name) {
  std::ifstream in("testdata/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << "testdata/" << name;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Config Cfg(Provider provider = Provider::kAuto, std::string secret = kSecret) {
  Config c;
  c.provider = provider;
  c.secret = std::move(secret);
  return c;
}

Headers GitHub(const std::string& event, const std::string& body,
               const std::string& secret = kSecret) {
  return {{"x-github-event", event},
          {"x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
          {"x-hub-signature-256", "sha256=" + HmacSha256Hex(secret, body)},
          {"content-type", "application/json"}};
}

Headers Gitea(const std::string& event, const std::string& body) {
  // Gitea sends its own headers and GitHub's; the signature only under its own names.
  return {{"x-gitea-event", event},
          {"x-gitea-delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"},
          {"x-gitea-signature", HmacSha256Hex(kSecret, body)},
          {"x-github-event", event},
          {"x-github-delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"}};
}

Headers Forgejo(const std::string& event, const std::string& body) {
  Headers h = Gitea(event, body);
  h["x-forgejo-event"] = event;
  h["x-forgejo-delivery"] = "a1b2c3d4-0000-4000-8000-forgejo00001";
  h["x-forgejo-signature"] = HmacSha256Hex(kSecret, body);
  return h;
}

Headers GitLab(const std::string& event, const std::string& token = kSecret) {
  return {{"x-gitlab-event", event},
          {"x-gitlab-token", token},
          {"x-gitlab-event-uuid", "13792a34-cac6-4fda-95a8-c58e00a3954e"},
          {"x-gitlab-instance", "https://gitlab.example.com"}};
}

Headers Bitbucket(const std::string& event, const std::string& body) {
  return {{"x-event-key", event},
          {"x-request-uuid", "3e8a2b1c-0d9e-4f1a-8b7c-6d5e4f3a2b1c"},
          {"x-hook-uuid", "{d1c2b3a4-0000-4000-8000-000000000001}"},
          {"x-hub-signature", "sha256=" + HmacSha256Hex(kSecret, body)}};
}

// --- Signatures ---------------------------------------------------------------------------

TEST(HmacTest, GitHubDocumentedVector) {
  EXPECT_EQ(HmacSha256Hex("It's a Secret to Everybody", "Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
}

TEST(VerifyTest, GitHubDocumentedVectorVerifies) {
  // The signature check passes; the body is then not a JSON payload.
  Headers h = {{"x-github-event", "push"},
               {"x-hub-signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}};
  auto r = Verify(h, "Hello, World!", Cfg(Provider::kGitHub, "It's a Secret to Everybody"));
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();
  // Upper-case hex is the same signature.
  h["x-hub-signature-256"] = "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17";
  EXPECT_EQ(Verify(h, "Hello, World!", Cfg(Provider::kGitHub, "It's a Secret to Everybody"))
                .status()
                .code(),
            Code::kInvalidArgument);
}

struct Case {
  std::string name;
  std::string file;
  std::function<Headers(const std::string& body)> headers;
  Provider provider;
};

std::vector<Case> Cases() {
  return {
      {"github", "github_push.json", [](const std::string& b) { return GitHub("push", b); },
       Provider::kGitHub},
      {"gitea", "gitea_push.json", [](const std::string& b) { return Gitea("push", b); },
       Provider::kGitea},
      {"forgejo", "gitea_push.json", [](const std::string& b) { return Forgejo("push", b); },
       Provider::kForgejo},
      {"bitbucket", "bitbucket_push.json",
       [](const std::string& b) { return Bitbucket("repo:push", b); }, Provider::kBitbucket},
      {"generic", "github_push.json",
       [](const std::string& b) {
         return Headers{{"x-gantry-event", "push"},
                        {"x-gantry-delivery", "d-1"},
                        {"x-gantry-signature", "sha256=" + HmacSha256Hex(kSecret, b)}};
       },
       Provider::kGeneric},
      {"gitlab", "gitlab_push.json", [](const std::string&) { return GitLab("Push Hook"); },
       Provider::kGitLab},
  };
}

TEST(VerifyTest, ValidSignatureEachProvider) {
  for (const Case& c : Cases()) {
    std::string body = Load(c.file);
    auto detected = Verify(c.headers(body), body, Cfg());
    ASSERT_TRUE(detected.ok()) << c.name << ": " << detected.status().ToString();
    EXPECT_EQ(detected->provider, c.provider) << c.name;
    auto configured = Verify(c.headers(body), body, Cfg(c.provider));
    EXPECT_TRUE(configured.ok()) << c.name << ": " << configured.status().ToString();
  }
}

TEST(VerifyTest, OneFlippedBodyByteIsRejectedWithoutEchoingTheSignature) {
  for (const Case& c : Cases()) {
    if (c.provider == Provider::kGitLab) continue;  // GitLab signs nothing
    std::string body = Load(c.file);
    Headers h = c.headers(body);
    std::string tampered = body;
    tampered[tampered.size() / 2] ^= 0x01;
    auto r = Verify(h, tampered, Cfg());
    EXPECT_EQ(r.status().code(), Code::kUnauthenticated) << c.name;
    EXPECT_THAT(r.status().message(), HasSubstr("signature does not match")) << c.name;
    EXPECT_THAT(r.status().message(), Not(HasSubstr(HmacSha256Hex(kSecret, tampered))));
    EXPECT_THAT(r.status().message(), Not(HasSubstr(HmacSha256Hex(kSecret, body))));
  }
}

TEST(VerifyTest, WrongSecretIsRejected) {
  for (const Case& c : Cases()) {
    std::string body = Load(c.file);
    auto r = Verify(c.headers(body), body, Cfg(c.provider, "another-secret"));
    EXPECT_EQ(r.status().code(), Code::kUnauthenticated) << c.name;
    EXPECT_THAT(r.status().message(), Not(HasSubstr("another-secret")));
    EXPECT_THAT(r.status().message(), Not(HasSubstr(kSecret)));
  }
}

TEST(VerifyTest, EmptyConfiguredSecretIsFailedPrecondition) {
  for (const Case& c : Cases()) {
    std::string body = Load(c.file);
    // Even a request "signed" with the empty key must not pass.
    Headers h = c.headers(body);
    for (auto& [name, v] : h) {
      if (name.find("signature") != std::string::npos) v = HmacSha256Hex("", body);
    }
    auto r = Verify(h, body, Cfg(c.provider, ""));
    EXPECT_EQ(r.status(), Status(Code::kFailedPrecondition, "webhook secret not configured"))
        << c.name;
  }
}

TEST(VerifyTest, MissingSignatureHeaderIsNamed) {
  struct Missing {
    Case c;
    std::vector<std::string> remove;
    std::string named;
  };
  auto cases = Cases();
  std::vector<Missing> missing = {
      {cases[0], {"x-hub-signature-256"}, "X-Hub-Signature-256"},
      {cases[1], {"x-gitea-signature"}, "X-Gitea-Signature"},
      {cases[2], {"x-forgejo-signature", "x-gitea-signature"}, "X-Forgejo-Signature"},
      {cases[3], {"x-hub-signature"}, "X-Hub-Signature"},
      {cases[4], {"x-gantry-signature"}, "X-Gantry-Signature"},
      {cases[5], {"x-gitlab-token"}, "X-Gitlab-Token"},
  };
  for (const auto& m : missing) {
    std::string body = Load(m.c.file);
    Headers h = m.c.headers(body);
    for (const auto& name : m.remove) h.erase(name);
    auto r = Verify(h, body, Cfg());
    EXPECT_EQ(r.status().code(), Code::kUnauthenticated) << m.c.name;
    EXPECT_THAT(r.status().message(), HasSubstr("missing " + m.named + " header")) << m.c.name;
  }
}

TEST(VerifyTest, GitHubSha1AloneIsRefused) {
  std::string body = Load("github_push.json");
  Headers h = GitHub("push", body);
  h.erase("x-hub-signature-256");
  h["x-hub-signature"] = "sha1=0123456789abcdef0123456789abcdef01234567";
  auto r = Verify(h, body, Cfg());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(r.status().message(), HasSubstr("only sha256 signatures are accepted"));

  // Another algorithm named in the sha256 header is refused too.
  h = GitHub("push", body);
  h["x-hub-signature-256"] = "sha1=0123456789abcdef0123456789abcdef01234567";
  r = Verify(h, body, Cfg());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(r.status().message(), HasSubstr("only sha256 signatures are accepted"));
}

TEST(VerifyTest, MalformedSignaturesDoNotMatch) {
  std::string body = Load("github_push.json");
  std::string good = HmacSha256Hex(kSecret, body);
  for (std::string bad : {std::string("sha256="), "sha256=" + good.substr(2),
                          "sha256=" + good + "00", "sha256=zz" + good.substr(2), good,
                          std::string("")}) {
    Headers h = GitHub("push", body);
    h["x-hub-signature-256"] = bad;
    auto r = Verify(h, body, Cfg());
    EXPECT_EQ(r.status().code(), Code::kUnauthenticated) << bad;
  }
}

TEST(VerifyTest, ForgejoSignatureWinsOverGitea) {
  std::string body = Load("gitea_push.json");
  Headers h = Forgejo("push", body);
  h["x-forgejo-signature"] = std::string(64, '0');  // a good X-Gitea-Signature does not rescue it
  EXPECT_EQ(Verify(h, body, Cfg()).status().code(), Code::kUnauthenticated);
}

TEST(VerifyTest, GitLabTokenCompare) {
  std::string body = Load("gitlab_push.json");
  EXPECT_TRUE(Verify(GitLab("Push Hook"), body, Cfg()).ok());
  for (std::string token : {std::string("s3cr3t-for-test"), std::string("s3cr3t-for-testss"),
                            std::string("S3CR3T-FOR-TESTS"), std::string("")}) {
    auto r = Verify(GitLab("Push Hook", token), body, Cfg());
    EXPECT_EQ(r.status().code(), Code::kUnauthenticated) << token;
    EXPECT_THAT(r.status().message(), Not(HasSubstr(kSecret)));
  }
}

TEST(VerifyTest, OversizedBodyIsResourceExhausted) {
  std::string body = Load("github_push.json");
  Config c = Cfg();
  c.max_body_bytes = body.size() - 1;
  EXPECT_TRUE(Verify(GitHub("push", body), body, c).status().Is(Code::kResourceExhausted, kBodyTooLarge));
  c.max_body_bytes = body.size();
  EXPECT_TRUE(Verify(GitHub("push", body), body, c).ok());
}

TEST(VerifyTest, UnknownEventIsUnimplementedButOnlyAfterVerification) {
  std::string body = R"({"action":"created","issue":{"number":1}})";
  auto r = Verify(GitHub("issues", body), body, Cfg());
  EXPECT_EQ(r.status().code(), Code::kUnimplemented);
  EXPECT_THAT(r.status().message(), HasSubstr("\"issues\""));
  // Unsigned, the same request is unauthenticated: nobody learns which events Gantry ignores.
  EXPECT_EQ(Verify(GitHub("issues", body, "wrong"), body, Cfg()).status().code(),
            Code::kUnauthenticated);
  EXPECT_EQ(Verify(GitLab("Pipeline Hook"), body, Cfg()).status().code(), Code::kUnimplemented);
  EXPECT_EQ(Verify(Bitbucket("repo:fork", body), body, Cfg()).status().code(),
            Code::kUnimplemented);
}

TEST(VerifyTest, MalformedJsonIsInvalidArgument) {
  std::string body = R"({"ref": "refs/heads/main", )";
  auto r = Verify(GitHub("push", body), body, Cfg());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  body = "[1, 2]";
  EXPECT_EQ(Verify(GitHub("push", body), body, Cfg()).status().code(), Code::kInvalidArgument);
  body = R"({"repository": {"full_name": "a/b"}})";  // a push without ref
  r = Verify(GitHub("push", body), body, Cfg());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("ref"));
}

TEST(VerifyTest, UnknownProviderAndMissingEventHeader) {
  std::string body = "{}";
  EXPECT_EQ(Verify({{"x-hub-signature-256", "sha256=00"}}, body, Cfg()).status().code(),
            Code::kInvalidArgument);
  Headers h = {{"x-hub-signature-256", "sha256=" + HmacSha256Hex(kSecret, body)}};
  auto r = Verify(h, body, Cfg(Provider::kGitHub));
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("x-github-event"));
}

// --- Normalised events ----------------------------------------------------------------------

TEST(EventTest, GitHubBranchPush) {
  std::string body = Load("github_push.json");
  auto e = Verify(GitHub("push", body), body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->kind, Kind::kPush);
  EXPECT_EQ(e->delivery_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
  EXPECT_EQ(e->repo_full_name, "octocat/hello-world");
  EXPECT_EQ(e->clone_url, "https://github.com/octocat/hello-world.git");
  EXPECT_EQ(e->ssh_url, "git@github.com:octocat/hello-world.git");
  EXPECT_EQ(e->ref, "refs/heads/main");
  EXPECT_EQ(e->branch, "main");
  EXPECT_EQ(e->tag, "");
  EXPECT_EQ(e->before, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
  EXPECT_EQ(e->after, "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c");
  EXPECT_FALSE(e->deleted);
  EXPECT_EQ(e->sender, "octocat");
  EXPECT_TRUE(e->changed_files_known);
  EXPECT_THAT(e->changed_files, ElementsAre("apps/web/deployment.yaml",
                                            "apps/web/kustomization.yaml",
                                            "apps/web/old-service.yaml"));
  EXPECT_FALSE(e->pull_request.has_value());
}

// A path no Git repository can hold (a NUL in it) leaves the changed paths unknown: the run then
// builds as a polled one would, and nothing unstorable reaches the runs table.
TEST(EventTest, AChangedPathWithANulLeavesThePathsUnknown) {
  std::string body = Load("github_push.json");
  const std::string path = R"("apps/web/deployment.yaml")";
  ASSERT_NE(body.find(path), std::string::npos);
  body.replace(body.find(path), path.size(), R"("apps/web/deploy\u0000ment.yaml")");
  auto e = Verify(GitHub("push", body), body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->kind, Kind::kPush);
  EXPECT_FALSE(e->changed_files_known);
  EXPECT_TRUE(e->changed_files.empty());
}

TEST(EventTest, GitHubTagPush) {
  std::string body = Load("github_push_tag.json");
  auto e = Verify(GitHub("push", body), body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->kind, Kind::kTag);
  EXPECT_EQ(e->ref, "refs/tags/v1.2.0");
  EXPECT_EQ(e->tag, "v1.2.0");
  EXPECT_EQ(e->branch, "");
  EXPECT_EQ(e->before, "0000000000000000000000000000000000000000");
  EXPECT_FALSE(e->changed_files_known);  // no commits listed: nothing to say
}

TEST(EventTest, GitHubPullRequestFromFork) {
  std::string body = Load("github_pull_request_fork.json");
  auto e = Verify(GitHub("pull_request", body), body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->kind, Kind::kPullRequest);
  ASSERT_TRUE(e->pull_request.has_value());
  const PullRequest& pr = *e->pull_request;
  EXPECT_EQ(pr.action, "synchronize");
  EXPECT_EQ(pr.normalized_action, PrAction::kSynchronized);
  EXPECT_EQ(pr.number, 42);
  EXPECT_EQ(pr.head_sha, "c0ffee0000000000000000000000000000000042");
  EXPECT_EQ(pr.head_ref, "bump-web");
  EXPECT_EQ(pr.base_ref, "main");
  EXPECT_EQ(pr.head_repo_full_name, "mallory/hello-world");
  EXPECT_EQ(pr.head_clone_url, "https://github.com/mallory/hello-world.git");
  EXPECT_TRUE(pr.from_fork);
  EXPECT_EQ(e->repo_full_name, "octocat/hello-world");
  EXPECT_EQ(e->ref, "refs/heads/main");
  EXPECT_EQ(e->after, pr.head_sha);
  EXPECT_EQ(e->sender, "mallory");
}

TEST(EventTest, GitHubPullRequestFromSameRepoMerged) {
  std::string body = Load("github_pull_request_same_repo.json");
  auto e = Verify(GitHub("pull_request", body), body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_FALSE(e->pull_request->from_fork);
  EXPECT_EQ(e->pull_request->normalized_action, PrAction::kMerged);
}

TEST(EventTest, GitHubPullRequestFromDeletedForkCountsAsFork) {
  std::string body = Load("github_pull_request_fork.json");
  size_t at = body.find("\"repo\": {");
  size_t end = body.find('}', at);
  body.replace(at, end - at + 1, "\"repo\": null");
  auto e = Verify(GitHub("pull_request", body), body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_TRUE(e->pull_request->from_fork);
}

TEST(EventTest, GitHubPing) {
  std::string body = Load("github_ping.json");
  auto e = Verify(GitHub("ping", body), body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->kind, Kind::kPing);
  EXPECT_EQ(e->repo_full_name, "octocat/hello-world");
}

TEST(EventTest, GiteaAndForgejoPush) {
  std::string body = Load("gitea_push.json");
  auto gitea = Verify(Gitea("push", body), body, Cfg());
  ASSERT_TRUE(gitea.ok()) << gitea.status().ToString();
  EXPECT_EQ(gitea->provider, Provider::kGitea);
  EXPECT_EQ(gitea->delivery_id, "f6266f16-1bf3-46a5-9ea4-602e06ead473");
  EXPECT_EQ(gitea->branch, "develop");
  EXPECT_EQ(gitea->clone_url, "http://localhost:3000/gitea/webhooks.git");
  EXPECT_EQ(gitea->ssh_url, "ssh://gitea@localhost:2222/gitea/webhooks.git");
  EXPECT_EQ(gitea->sender, "gitea");
  EXPECT_THAT(gitea->changed_files, ElementsAre("README.md", "deploy/values.yaml"));

  auto forgejo = Verify(Forgejo("push", body), body, Cfg());
  ASSERT_TRUE(forgejo.ok()) << forgejo.status().ToString();
  EXPECT_EQ(forgejo->provider, Provider::kForgejo);
  EXPECT_EQ(forgejo->delivery_id, "a1b2c3d4-0000-4000-8000-forgejo00001");
}

TEST(EventTest, GiteaPullRequestFromSameRepo) {
  std::string body = Load("gitea_pull_request.json");
  auto e = Verify(Gitea("pull_request", body), body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_TRUE(e->pull_request.has_value());
  EXPECT_EQ(e->pull_request->normalized_action, PrAction::kSynchronized);
  EXPECT_EQ(e->pull_request->number, 7);
  EXPECT_EQ(e->pull_request->head_ref, "scale-worker");
  EXPECT_EQ(e->pull_request->base_ref, "master");
  EXPECT_FALSE(e->pull_request->from_fork);
  EXPECT_EQ(e->sender, "alice");
}

TEST(EventTest, GitLabPushAndTagPush) {
  std::string body = Load("gitlab_push.json");
  Headers h = GitLab("Push Hook");
  auto e = Verify(h, body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->kind, Kind::kPush);
  EXPECT_EQ(e->delivery_id, "13792a34-cac6-4fda-95a8-c58e00a3954e");
  EXPECT_EQ(e->repo_full_name, "mike/diaspora");
  EXPECT_EQ(e->clone_url, "https://gitlab.example.com/mike/diaspora.git");
  EXPECT_EQ(e->ssh_url, "git@gitlab.example.com:mike/diaspora.git");
  EXPECT_EQ(e->branch, "main");
  EXPECT_EQ(e->sender, "jsmith");
  EXPECT_THAT(e->changed_files,
              ElementsAre("CHANGELOG", "README.md", "app/controller/application.rb", "docs/old.md"));

  // Idempotency-Key (GitLab 17.4+) is the delivery id when present: it survives retries.
  h["idempotency-key"] = "9a8b7c6d-retry-stable";
  EXPECT_EQ(Verify(h, body, Cfg())->delivery_id, "9a8b7c6d-retry-stable");

  // More commits than listed: the file list is incomplete.
  std::string truncated = body;
  truncated.replace(truncated.find("\"total_commits_count\": 2"), 24, "\"total_commits_count\": 40");
  auto t = Verify(GitLab("Push Hook"), truncated, Cfg());
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->changed_files_known);
  EXPECT_TRUE(t->changed_files.empty());

  std::string tag_body = Load("gitlab_tag_push.json");
  auto tag = Verify(GitLab("Tag Push Hook"), tag_body, Cfg());
  ASSERT_TRUE(tag.ok()) << tag.status().ToString();
  EXPECT_EQ(tag->kind, Kind::kTag);
  EXPECT_EQ(tag->tag, "v1.0.0");
  EXPECT_EQ(tag->after, "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7");
}

TEST(EventTest, GitLabMergeRequestFromFork) {
  std::string body = Load("gitlab_merge_request.json");
  auto e = Verify(GitLab("Merge Request Hook"), body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_TRUE(e->pull_request.has_value());
  const PullRequest& pr = *e->pull_request;
  EXPECT_EQ(pr.action, "update");
  EXPECT_EQ(pr.normalized_action, PrAction::kSynchronized);  // oldrev: new commits
  EXPECT_EQ(pr.number, 1);
  EXPECT_EQ(pr.head_sha, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
  EXPECT_EQ(pr.head_ref, "ms-viewport");
  EXPECT_EQ(pr.base_ref, "master");
  EXPECT_EQ(pr.head_repo_full_name, "awesome_space/awesome_project");
  EXPECT_EQ(pr.head_clone_url, "https://gitlab.example.com/awesome_space/awesome_project.git");
  EXPECT_TRUE(pr.from_fork);
  EXPECT_EQ(e->repo_full_name, "gitlabhq/gitlab-test");
  EXPECT_EQ(e->sender, "root");

  std::string same = body;
  same.replace(same.find("\"source_project_id\": 14"), 23, "\"source_project_id\": 1");
  EXPECT_FALSE(Verify(GitLab("Merge Request Hook"), same, Cfg())->pull_request->from_fork);
}

TEST(EventTest, BitbucketPushAndPullRequest) {
  std::string body = Load("bitbucket_push.json");
  auto e = Verify(Bitbucket("repo:push", body), body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->provider, Provider::kBitbucket);
  EXPECT_EQ(e->delivery_id, "3e8a2b1c-0d9e-4f1a-8b7c-6d5e4f3a2b1c");
  EXPECT_EQ(e->kind, Kind::kPush);
  EXPECT_EQ(e->repo_full_name, "acme/deployments");
  EXPECT_EQ(e->web_url, "https://bitbucket.org/acme/deployments");
  EXPECT_EQ(e->ref, "refs/heads/main");
  EXPECT_EQ(e->before, "8e6c7a5b4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a");
  EXPECT_EQ(e->after, "1f2e3d4c5b6a79880796a5b4c3d2e1f0a9b8c7d6");
  EXPECT_EQ(e->sender, "emma");
  EXPECT_FALSE(e->changed_files_known);

  std::string pr_body = Load("bitbucket_pullrequest.json");
  auto pr = Verify(Bitbucket("pullrequest:created", pr_body), pr_body, Cfg());
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_EQ(pr->pull_request->normalized_action, PrAction::kOpened);
  EXPECT_EQ(pr->pull_request->number, 12);
  EXPECT_EQ(pr->pull_request->head_sha, "d3022fc0ca3d");
  EXPECT_EQ(pr->pull_request->base_ref, "main");
  EXPECT_TRUE(pr->pull_request->from_fork);
}

TEST(EventTest, DeletedBranch) {
  std::string body = Load("github_push.json");
  const std::string after = "\"after\": \"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c\"";
  body.replace(body.find(after), after.size(),
               "\"after\": \"0000000000000000000000000000000000000000\"");
  auto e = Verify(GitHub("push", body), body, Cfg());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_TRUE(e->deleted);
  EXPECT_FALSE(e->changed_files_known);
}

// --- Helpers ----------------------------------------------------------------------------------

TEST(ProviderTest, NamesRoundTrip) {
  for (Provider p : {Provider::kAuto, Provider::kGitHub, Provider::kGitLab, Provider::kGitea,
                     Provider::kForgejo, Provider::kBitbucket, Provider::kGeneric}) {
    EXPECT_EQ(*ParseProvider(ProviderName(p)), p);
  }
  EXPECT_EQ(ParseProvider("svn").status().code(), Code::kInvalidArgument);
}

TEST(RecentDeliveriesTest, DropsRepeatsWithinCapacity) {
  RecentDeliveries recent(2);
  EXPECT_TRUE(recent.Insert(Provider::kGitHub, "a"));
  EXPECT_FALSE(recent.Insert(Provider::kGitHub, "a"));
  EXPECT_TRUE(recent.Insert(Provider::kGitLab, "a"));  // per provider
  EXPECT_TRUE(recent.Insert(Provider::kGitHub, ""));   // no id: cannot tell
  EXPECT_TRUE(recent.Insert(Provider::kGitHub, ""));
  EXPECT_TRUE(recent.Insert(Provider::kGitHub, "b"));  // evicts (github, a)
  EXPECT_TRUE(recent.Insert(Provider::kGitHub, "a"));
}

TEST(RecentDeliveriesTest, ConcurrentInsertsAcceptEachIdOnce) {
  RecentDeliveries recent(100000);
  std::atomic<int> accepted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (recent.Insert(Provider::kGitHub, std::to_string(i))) ++accepted;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(accepted.load(), 1000);
}

// A repository with a secret of its own: its events verify with that secret only; other
// repositories keep the shared one; the unverified payload only chooses the secret.
TEST(VerifyTest, ARepositoryWithItsOwnSecretAcceptsOnlyThatSecret) {
  std::string body = Load("github_push.json");
  auto probe = Verify(GitHub("push", body), body, Cfg());
  ASSERT_TRUE(probe.ok()) << probe.status().ToString();
  const std::string repo = probe->clone_url;
  constexpr char kOwn[] = "the-repositorys-own-secret";
  Config own = Cfg();
  own.secret_for = [&](const Event& e) { return e.clone_url == repo ? std::string(kOwn) : std::string(); };
  auto ok = Verify(GitHub("push", body, kOwn), body, own);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->clone_url, repo);
  EXPECT_EQ(Verify(GitHub("push", body), body, own).status().code(), Code::kUnauthenticated)
      << "the shared secret is refused for a repository with its own";
  EXPECT_EQ(Verify(GitHub("push", body, "wrong"), body, own).status().code(), Code::kUnauthenticated);

  Config others = Cfg();
  others.secret_for = [](const Event&) { return std::string(); };
  EXPECT_TRUE(Verify(GitHub("push", body), body, others).ok()) << "no own secret: the shared one";
  EXPECT_EQ(Verify(GitHub("push", body, kOwn), body, others).status().code(), Code::kUnauthenticated);

  std::string issue = R"({"action":"created","issue":{"number":1}})";
  EXPECT_EQ(Verify(GitHub("issues", issue, "wrong"), issue, own).status().code(), Code::kUnauthenticated)
      << "nobody learns which events Gantry ignores";
  EXPECT_EQ(Verify(GitHub("issues", issue), issue, own).status().code(), Code::kUnimplemented);
}

}  // namespace
}  // namespace gantry::webhook

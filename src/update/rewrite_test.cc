// RewriteYaml against the fixture corpus in testdata/<case>/: every file of in/ rewritten with the
// case's rules must equal the file of the same name in out/ byte for byte, and rewriting the output
// again must change nothing. A `rules` file holds one rule a line:
//   image NAME=NEWREF                 a rule as `gantry update --image` takes it
//   policy POLICY=NEWREF              a marker rule named POLICY for the repository of NEWREF
//   helm REPOKEY,TAGKEY[,DIGESTKEY]   Helm key paths for the rule on the line before

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "update/update.h"

namespace gantry::update {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<ImageRule> ReadRules(const fs::path& p) {
  std::vector<ImageRule> rules;
  std::istringstream in(Read(p));
  std::string kind, arg;
  while (in >> kind >> arg) {
    if (kind == "image" || kind == "policy") {
      size_t eq = arg.find('=');
      std::string spec = arg;
      if (kind == "policy") {
        auto ref = ParseImageRef(arg.substr(eq + 1));
        EXPECT_TRUE(ref.ok()) << arg;
        spec = ref->name + "=" + arg.substr(eq + 1);
      }
      auto rule = ParseImageRule(spec);
      EXPECT_TRUE(rule.ok()) << rule.status().ToString();
      if (kind == "policy") rule->name = arg.substr(0, eq);
      rules.push_back(*rule);
    } else if (kind == "helm") {
      HelmKeys keys;
      std::istringstream parts(arg);
      std::getline(parts, keys.repository, ',');
      std::getline(parts, keys.tag, ',');
      std::getline(parts, keys.digest, ',');
      rules.back().helm = keys;
    } else {
      ADD_FAILURE() << "unknown rule kind " << kind;
    }
  }
  return rules;
}

fs::path TestData() { return fs::path(std::getenv("GANTRY_SOURCE_DIR")) / "src/update/testdata"; }

TEST(RewriteYaml, FixtureCorpusIsRewrittenByteExactly) {
  size_t cases = 0, files = 0;
  for (const auto& dir : fs::directory_iterator(TestData())) {
    ++cases;
    std::vector<ImageRule> rules = ReadRules(dir.path() / "rules");
    for (const auto& in : fs::directory_iterator(dir.path() / "in")) {
      ++files;
      std::string name = in.path().filename().string();
      SCOPED_TRACE(dir.path().filename().string() + "/" + name);
      std::string input = Read(in.path());
      std::string expected = Read(dir.path() / "out" / name);
      auto got = RewriteYaml(input, name, rules);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(got->content, expected);
      EXPECT_EQ(got->changes.empty(), input == expected) << "changes reported iff bytes changed";
      // Idempotence: the output is already at every image.
      auto again = RewriteYaml(got->content, name, rules);
      ASSERT_TRUE(again.ok()) << again.status().ToString();
      EXPECT_EQ(again->content, got->content);
      EXPECT_TRUE(again->changes.empty()) << again->changes.front().ToString();
    }
  }
  EXPECT_GE(cases, 6u);
  EXPECT_GE(files, 10u);
}

std::vector<std::string> Strings(const std::vector<Change>& changes) {
  std::vector<std::string> out;
  for (const Change& c : changes) out.push_back(c.ToString());
  return out;
}

TEST(RewriteYaml, ReportsEachChangeWithFileLineAndValues) {
  auto rules = ReadRules(TestData() / "kustomize/rules");
  auto got = RewriteYaml(Read(TestData() / "kustomize/in/kustomization.yaml"), "envs/dev/kustomization.yaml", rules);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_THAT(Strings(got->changes),
              ::testing::ElementsAre(
                  "envs/dev/kustomization.yaml:8:13: newTag: 1.2.3 → 1.2.4",
                  "envs/dev/kustomization.yaml:10:13: newTag: 2.0.0 → 2.1.0",
                  "envs/dev/kustomization.yaml:11:5: digest: sha256:1111111111111111111111111111111111111111111111111111111111111111 → (removed)",
                  "envs/dev/kustomization.yaml:14:13: newTag: 0.9.0 → 1.0.0",
                  "envs/dev/kustomization.yaml:18:5: digest: (added) sha256:2222222222222222222222222222222222222222222222222222222222222222",
                  "envs/dev/kustomization.yaml:19:15: newTag: 2.0.0 → 3.0.0",
                  "envs/dev/kustomization.yaml:20:7: newName: (added) registry.local:5000/team/new"));
}

TEST(RewriteYaml, PlainScalarThatWouldChangeTypeIsQuoted) {
  ImageRule rule{.image = "web", .new_tag = "1.10"};
  auto got = RewriteYaml("images:\n- name: web\n  newTag: 1.9\n- name: web2\n", "kustomization.yaml",
                         std::span(&rule, 1));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->content, "images:\n- name: web\n  newTag: \"1.10\"\n- name: web2\n");
  rule.new_tag = "true";
  got = RewriteYaml("images:\n- name: web\n  newTag: '1.9'\n", "kustomization.yaml", std::span(&rule, 1));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->content, "images:\n- name: web\n  newTag: 'true'\n");
}

// Found by fuzz/image_update: a Helm tag key that was not UTF-8 was inserted as written, and the
// file Gantry would have committed no longer parsed. Such a path is refused; a key that a plain
// scalar would not read back is inserted quoted.
TEST(RewriteYaml, HelmKeyPathsAreUtf8AndInsertedKeysReadBack) {
  ImageRule rule{.image = "registry.local/api", .new_tag = "1.10",
                 .helm = HelmKeys{.repository = "image.repository", .tag = "image.t\xb6g"}};
  std::string text = "image:\n  repository: registry.local/api\n  pullPolicy: Always\n";
  auto got = RewriteYaml(text, "values.yaml", std::span(&rule, 1));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("Helm key path \"image.t\\xb6g\" is not UTF-8"));

  rule.helm->tag = "image.true";
  got = RewriteYaml(text, "values.yaml", std::span(&rule, 1));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->content, text + "  \"true\": \"1.10\"\n");
  auto again = RewriteYaml(got->content, "values.yaml", std::span(&rule, 1));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->changes.empty());
}

TEST(RewriteYaml, KustomizeImagesOnlyInKustomizations) {
  ImageRule rule{.image = "web", .new_tag = "2"};
  std::string text = "images:\n- name: web\n  newTag: \"1\"\n";
  auto got = RewriteYaml(text, "values.yaml", std::span(&rule, 1));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->content, text);
  got = RewriteYaml("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" + text, "any.yaml",
                    std::span(&rule, 1));
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(got->content, HasSubstr("newTag: \"2\""));
}

TEST(RewriteYaml, ParseErrorOfAFileThatMentionsTheImageNamesThePlace) {
  ImageRule rule{.image = "registry.local/web", .new_tag = "2"};
  auto got = RewriteYaml("a: b\nimage: registry.local/web:1\n  bad: [\n", "deploy.yaml", std::span(&rule, 1));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("deploy.yaml:"));
}

TEST(RewriteYaml, InvalidRulesAreRefused) {
  ImageRule nothing{.image = "web"};
  EXPECT_EQ(RewriteYaml("a: 1\n", "x.yaml", std::span(&nothing, 1)).status().code(), Code::kInvalidArgument);
  ImageRule bad_tag{.image = "web", .new_tag = "1 2"};
  EXPECT_EQ(RewriteYaml("a: 1\n", "x.yaml", std::span(&bad_tag, 1)).status().code(), Code::kInvalidArgument);
  ImageRule bad_digest{.image = "web", .digest = "sha256:xyz"};
  EXPECT_EQ(RewriteYaml("a: 1\n", "x.yaml", std::span(&bad_digest, 1)).status().code(), Code::kInvalidArgument);
}

TEST(RewriteYaml, MalformedMarkerIsAnError) {
  ImageRule rule{.image = "web", .name = "web", .new_tag = "2"};
  auto got = RewriteYaml("image: web:1 # {\"$imagepolicy\": \"a:b:c:d\"}\n", "x.yaml", std::span(&rule, 1));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("x.yaml:1: marker \"a:b:c:d\""));
}

TEST(ImageRefs, ParseAndNormalize) {
  auto r = ParseImageRef("registry.local:5000/team/web:1.2@sha256:1111111111111111111111111111111111111111111111111111111111111111");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->name, "registry.local:5000/team/web");
  EXPECT_EQ(r->tag, "1.2");
  EXPECT_EQ(r->digest, "sha256:1111111111111111111111111111111111111111111111111111111111111111");
  r = ParseImageRef("registry.local:5000/team/web");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->name, "registry.local:5000/team/web");
  EXPECT_EQ(r->tag, "");
  EXPECT_FALSE(ParseImageRef("web:").ok());
  EXPECT_FALSE(ParseImageRef("web@sha256:12").ok());
  EXPECT_EQ(NormalizeName("nginx"), "docker.io/library/nginx");
  EXPECT_EQ(NormalizeName("docker.io/nginx"), "docker.io/library/nginx");
  EXPECT_EQ(NormalizeName("index.docker.io/acme/web"), "docker.io/acme/web");
  EXPECT_EQ(NormalizeName("localhost/web"), "localhost/web");
  EXPECT_EQ(NormalizeName("acme/web"), "docker.io/acme/web");
}

// Found by fuzz/image_update_fuzz.cc: a rule whose new name held bytes 0xd9 was accepted and
// written as newName into a kustomization, which then no longer parsed as YAML.
TEST(ImageRefs, NameCharactersOutsideTheGrammarAreRefused) {
  EXPECT_FALSE(ParseImageRef("regis\xd9try.local:5000/team/web:1.2.4").ok());
  EXPECT_FALSE(ParseImageRef("team/we{b}:1").ok());
  EXPECT_FALSE(ParseImageRule("registry.local:5000/team/web=regis\xd9try.local:5000/team/web:1.2.4").ok());
  EXPECT_TRUE(ParseImageRef("[::1]:5000/Team_a/web-app.v2:1").ok());
}

TEST(ImageRules, ParseCommandLineForm) {
  auto r = ParseImageRule("registry/web=registry/web:1.2.3");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->image, "registry/web");
  EXPECT_EQ(r->new_name, "");
  EXPECT_EQ(r->new_tag, "1.2.3");
  r = ParseImageRule("registry/web=mirror/web@sha256:1111111111111111111111111111111111111111111111111111111111111111");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->new_name, "mirror/web");
  EXPECT_EQ(r->new_tag, "");
  EXPECT_FALSE(ParseImageRule("registry/web").ok());
  EXPECT_FALSE(ParseImageRule("registry/web=registry/web").ok());
  EXPECT_FALSE(ParseImageRule("registry/web:1=registry/web:2").ok());
}

TEST(RenderMessage, PlaceholdersAndUnknownOnes) {
  ImageRule rule{.image = "registry/web", .new_tag = "1.2.4"};
  Change c{.file = "envs/dev/k.yaml", .line = 3, .column = 5, .old_text = "1.2.3", .new_text = "1.2.4",
           .field = "newTag"};
  auto m = RenderMessage("Deploy {{images}} to {{ branch }}/{{path}} ({{count}})\n{{changes}}", std::span(&rule, 1),
                         std::span(&c, 1), "main", "envs/dev");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(*m, "Deploy registry/web:1.2.4 to main/envs/dev (1)\nenvs/dev/k.yaml:3: 1.2.3 → 1.2.4");
  EXPECT_EQ(RenderMessage("{{.Image}}", std::span(&rule, 1), {}, "", "").status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace gantry::update

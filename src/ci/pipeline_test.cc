#include "ci/pipeline.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gantry::ci {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ErrorOf(std::string_view yaml) {
  auto p = ParsePipeline(yaml, "p.yaml");
  return p.ok() ? "" : p.status().message();
}

TEST(Pipeline, ParsesStepsInDagOrderWithMatrix) {
  auto p = ParsePipeline(R"(
name: app
shell: bash
on: {push: {branches: [main]}, pull_request: {}}
env: {A: "1"}
steps:
  test:
    needs: build
    matrix: {os: [linux, bsd], v: [1, 2]}
    run: echo $MATRIX_OS
  build:
    run: [make, -j2]
    env: {B: two}
    timeout: 5m
    retry: 2
    network: false
    limits: {memory: 512Mi, open_files: 100}
    cache: {key: deps, paths: [.cache]}
    artifacts: [dist/**]
)");
  ASSERT_TRUE(p.ok()) << p.status().message();
  ASSERT_EQ(p->steps.size(), 5u);
  EXPECT_EQ(p->steps[0].name, "build");
  EXPECT_THAT(p->steps[0].argv, ElementsAre("make", "-j2"));
  EXPECT_EQ(p->steps[0].timeout, std::chrono::minutes(5));
  EXPECT_EQ(p->steps[0].retry, 2);
  EXPECT_FALSE(p->steps[0].network);
  EXPECT_EQ(p->steps[0].limits.memory_bytes, 512u << 20);
  EXPECT_EQ(p->steps[0].env.at("A"), "1");
  EXPECT_EQ(p->steps[0].env.at("B"), "two");
  EXPECT_EQ(p->steps[1].name, "test (linux, 1)");
  EXPECT_EQ(p->steps[1].env.at("MATRIX_OS"), "linux");
  EXPECT_THAT(p->steps[1].needs, ElementsAre("build"));
  // The script is passed unchanged to the shell: variables are never substituted.
  EXPECT_EQ(p->steps[1].argv.back(), "echo $MATRIX_OS");
  EXPECT_TRUE(p->triggers.push);
  EXPECT_TRUE(p->triggers.pull_request);
}

TEST(Pipeline, ErrorsPointAtFileLineColumn) {
  EXPECT_THAT(ErrorOf("steps:\n  a:\n    run: [x]\n    needs: [nope]\n"),
              HasSubstr("p.yaml:4:13: step \"a\" needs unknown step \"nope\"; expected one of: a"));
  EXPECT_THAT(ErrorOf("steps:\n  a:\n    run: echo\n"), HasSubstr("p.yaml:3:10: step \"a\": a run: script needs a named shell"));
  EXPECT_THAT(ErrorOf("steps:\n  a:\n    rn: [x]\n"), HasSubstr("p.yaml:3:5: unknown key \"rn\" in step a; expected one of: run"));
  EXPECT_THAT(ErrorOf("steps:\n  a:\n    run: [x]\n    timeout: soon\n"), HasSubstr("p.yaml:4:14: timeout \"soon\" is not a duration"));
  EXPECT_THAT(ErrorOf("steps:\n  a:\n    run: [x]\n    retry: many\n"), HasSubstr("p.yaml:4:12: retry: must be an integer"));
  EXPECT_THAT(ErrorOf("steps: [a]\n"), HasSubstr("p.yaml:1:8: steps: must be a non-empty map"));
  EXPECT_THAT(ErrorOf("steps:\n  a: {run: [x], shell: bash}\n"), HasSubstr("shell: is only for a run: script"));
  EXPECT_THAT(ErrorOf("steps:\n  a:\n    run: [x]\n  a:\n    run: [y]\n"), HasSubstr("p.yaml:4:"));  // duplicate key
  EXPECT_THAT(ErrorOf("shell: zsh\nsteps:\n  a: {run: x}\n"), HasSubstr("unknown shell \"zsh\"; expected bash or sh"));
}

// Issue 12, finding 4: a pipeline's LD_PRELOAD became bubblewrap's own environment on the host.
TEST(Pipeline, LoaderVariablesAreRefusedInStepEnvWithFileLineColumn) {
  EXPECT_THAT(ErrorOf("env:\n  LD_PRELOAD: ./evil.so\nsteps:\n  a: {run: [x]}\n"),
              HasSubstr("p.yaml:2:3: LD_PRELOAD is refused in env:"));
  EXPECT_THAT(ErrorOf("steps:\n  a:\n    run: [x]\n    env: {GCONV_PATH: .}\n"), HasSubstr("p.yaml:4:11: GCONV_PATH is refused"));
  EXPECT_THAT(ErrorOf("steps:\n  a:\n    run: [x]\n    env: {LD_LIBRARY_PATH: lib}\n"), HasSubstr("set it inside the step's script"));
  // An image's environment configures the image, not a host process.
  EXPECT_EQ(ErrorOf("steps:\n  a: {run: [x]}\nimage:\n  repository: r.local/a\n  env: {LD_LIBRARY_PATH: /app/lib}\n"
                    "  layers: [{src: ., dest: /app}]\n"), "");
}

TEST(Pipeline, ParseSize) {
  EXPECT_EQ(ParseSize("0"), 0u);
  EXPECT_EQ(ParseSize("512Mi"), 512ull << 20);
  EXPECT_EQ(ParseSize("20Gi"), 20ull << 30);
  EXPECT_EQ(ParseSize("500M"), 500000000u);
  EXPECT_EQ(ParseSize("1.5G"), std::nullopt);
  EXPECT_EQ(ParseSize("lots"), std::nullopt);
  EXPECT_EQ(ParseSize(""), std::nullopt);
}

TEST(Pipeline, CyclesAreNamed) {
  std::string e = ErrorOf("steps:\n  a: {run: [x], needs: [c]}\n  b: {run: [x], needs: [a]}\n  c: {run: [x], needs: [b]}\n");
  EXPECT_THAT(e, HasSubstr("needs: form a cycle: a -> c -> b -> a"));
  EXPECT_THAT(e, HasSubstr("p.yaml:2:3"));
  EXPECT_THAT(ErrorOf("steps:\n  a: {run: [x], needs: [a]}\n"), HasSubstr("needs itself"));
}

TEST(Pipeline, MatrixIsBounded) {
  EXPECT_THAT(ErrorOf("steps:\n  a:\n    run: [x]\n    matrix: {x: [1,2,3,4,5,6,7,8,9], y: [1,2,3,4,5,6,7,8,9]}\n"),
              HasSubstr("matrix expands to more than 64 combinations"));
}

TEST(Pipeline, TriggersAndWhen) {
  auto p = ParsePipeline("on:\n  push: {branches: [main, 'release/*'], tags: ['v*']}\nsteps:\n  a: {run: [x]}\n");
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_TRUE(TriggerMatches(p->triggers, {.event = "push", .branch = "main"}));
  EXPECT_TRUE(TriggerMatches(p->triggers, {.event = "push", .branch = "release/1.2"}));
  EXPECT_FALSE(TriggerMatches(p->triggers, {.event = "push", .branch = "dev"}));
  EXPECT_TRUE(TriggerMatches(p->triggers, {.event = "tag", .tag = "v1.0"}));
  EXPECT_FALSE(TriggerMatches(p->triggers, {.event = "pull_request", .branch = "main"}));
  EXPECT_FALSE(TriggerMatches(p->triggers, {.event = "manual"}));

  When w{.branches = {"main"}, .events = {"push"}, .paths = {"src/**"}};
  EXPECT_TRUE(WhenMatches(w, {.event = "push", .branch = "main", .changed_paths = {"src/a/b.cc"}, .changed_paths_known = true}));
  EXPECT_FALSE(WhenMatches(w, {.event = "push", .branch = "main", .changed_paths = {"docs/x.md"}, .changed_paths_known = true}));
  EXPECT_TRUE(WhenMatches(w, {.event = "push", .branch = "main"}));  // paths unknown: match
  EXPECT_FALSE(WhenMatches(w, {.event = "pull_request", .branch = "main"}));
  EXPECT_FALSE(WhenMatches(w, {.event = "push", .branch = "dev"}));
}

TEST(Pipeline, Globs) {
  EXPECT_TRUE(GlobMatch("src/**", "src/a/b/c.cc"));
  EXPECT_TRUE(GlobMatch("**/*.md", "a/b/x.md"));
  EXPECT_TRUE(GlobMatch("**/*.md", "x.md"));
  EXPECT_TRUE(GlobMatch("release/*", "release/1.2"));
  EXPECT_FALSE(GlobMatch("release/*", "release/1/2"));
  EXPECT_TRUE(GlobMatch("v?.*", "v1.0"));
  EXPECT_FALSE(GlobMatch("src/*", "docs/x"));
}

TEST(Pipeline, SelectStepsAddsWhatTheyNeed) {
  auto p = ParsePipeline("steps:\n  a: {run: [x]}\n  b: {run: [x], needs: [a]}\n  c: {run: [x]}\n");
  ASSERT_TRUE(p.ok());
  auto s = SelectSteps(*p, {"b"});
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(*s, ElementsAre("a", "b"));
  EXPECT_FALSE(SelectSteps(*p, {"zz"}).ok());
}

}  // namespace
}  // namespace gantry::ci

namespace gantry::ci {
namespace {

TEST(Pipeline, ImageAndReleaseSections) {
  auto p = ParsePipeline(R"(
steps:
  build: {run: [make]}
image:
  repository: 127.0.0.1:5000/team/web
  tags: ["{short_commit}", latest]
  layers:
    - dist
    - {src: static, dest: /srv/static, exclude: ["*.map"]}
  entrypoint: [/dist/server]
  env: {PORT: 8080}
  labels: {team: web}
  expose: [8080]
  user: 65532
release:
  repo: http://git.local/config.git
  path: envs
  app: web
  through: dev
)");
  ASSERT_TRUE(p.ok()) << p.status().message();
  ASSERT_TRUE(p->image.has_value());
  EXPECT_EQ(p->image->repository, "127.0.0.1:5000/team/web");
  EXPECT_THAT(p->image->tags, ElementsAre("{short_commit}", "latest"));
  ASSERT_EQ(p->image->layers.size(), 2u);
  EXPECT_EQ(p->image->layers[0].src, "dist");
  EXPECT_EQ(p->image->layers[1].dest, "/srv/static");
  EXPECT_THAT(p->image->layers[1].exclude, ElementsAre("*.map"));
  EXPECT_EQ(p->image->env.at("PORT"), "8080");
  EXPECT_EQ(p->image->user, "65532");
  EXPECT_EQ(p->image->from, "scratch");
  ASSERT_TRUE(p->release.has_value());
  EXPECT_EQ(p->release->branch, "main");
  EXPECT_EQ(p->release->path, "envs");
  EXPECT_EQ(p->release->app, "web");
  EXPECT_EQ(p->release->through, "dev");
}

TEST(Pipeline, ImageAndReleaseErrorsPointAtTheNode) {
  EXPECT_THAT(ErrorOf("steps: {b: {run: [x]}}\nimage: {layers: [d]}\n"), HasSubstr("p.yaml:2:8: image: needs repository:"));
  EXPECT_THAT(ErrorOf("steps: {b: {run: [x]}}\nimage: {repository: r/web:1, layers: [d]}\n"),
              HasSubstr("must be a repository without tag or digest"));
  EXPECT_THAT(ErrorOf("steps: {b: {run: [x]}}\nimage: {repository: r/web, layers: [../x]}\n"),
              HasSubstr("layer src \"../x\" must be relative to the workspace"));
  EXPECT_THAT(ErrorOf("steps: {b: {run: [x]}}\nimage: {repository: r/web, layers: [d], compression: xz}\n"),
              HasSubstr("expected gzip or zstd"));
  EXPECT_THAT(ErrorOf("steps: {b: {run: [x]}}\nrelease: {repo: x}\n"), HasSubstr("p.yaml:2:10: release: needs image:"));
  EXPECT_THAT(ErrorOf("steps: {b: {run: [x]}}\nimage: {repository: r/web, layers: [d]}\nrelease: {repo: x, through: dev}\n"),
              HasSubstr("release.through needs release.app"));
  EXPECT_THAT(ErrorOf("steps: {b: {run: [x]}}\nimage: {repository: r/web, layers: [d], size: 1}\n"),
              HasSubstr("unknown key \"size\" in image"));
}

TEST(Pipeline, ReleaseInPullRequestMode) {
  const std::string head = "steps: {b: {run: [x]}}\nimage: {repository: r/web, layers: [d]}\n";
  auto p = ParsePipeline(head + "release: {repo: x, path: apps/web/prod, mode: pull-request, auto_merge: true, "
                                "merge_method: squash, required_checks: [gantry/ci]}\n");
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_TRUE(p->release->pull_request);
  EXPECT_EQ(p->release->environment, "prod");  // the last segment of the path
  EXPECT_TRUE(p->release->auto_merge);
  EXPECT_EQ(p->release->merge_method, "squash");
  EXPECT_THAT(p->release->required_checks, ElementsAre("gantry/ci"));
  p = ParsePipeline(head + "release: {repo: x, app: web, through: staging, mode: pull-request}\n");
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->release->environment, "staging");
  EXPECT_EQ(p->release->merge_method, "merge");
  EXPECT_FALSE(p->release->auto_merge);
  EXPECT_FALSE(ParsePipeline(head + "release: {repo: x}\n")->release->pull_request);

  EXPECT_THAT(ErrorOf(head + "release: {repo: x, mode: pr}\n"), HasSubstr("p.yaml:3:26: release.mode \"pr\": expected push or pull-request"));
  EXPECT_THAT(ErrorOf(head + "release: {repo: x, auto_merge: true}\n"), HasSubstr("release.auto_merge needs release.mode: pull-request"));
  EXPECT_THAT(ErrorOf(head + "release: {repo: x, mode: pull-request, merge_method: ff}\n"),
              HasSubstr("expected merge, squash or rebase"));
  EXPECT_THAT(ErrorOf(head + "release: {repo: x, mode: pull-request, auto_merge: yes please}\n"),
              HasSubstr("release.auto_merge must be true or false"));
  EXPECT_THAT(ErrorOf(head + "release: {repo: x, mode: pull-request, push_branch: review}\n"),
              HasSubstr("exclude each other"));
  EXPECT_THAT(ErrorOf(head + "release: {repo: x, mode: pull-request, environment: \"a..b\"}\n"),
              HasSubstr("release.environment \"a..b\" cannot be part of a branch name"));
}

}  // namespace
}  // namespace gantry::ci

#include "project/project.h"

#include <gtest/gtest.h>

#include "base/clock.h"

namespace gantry::project {
namespace {

using namespace std::chrono;
using value::Value;

system_clock::time_point At(std::string_view s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0;
  GANTRY_CHECK(std::sscanf(std::string(s).c_str(), "%d-%d-%dT%d:%d", &y, &mo, &d, &h, &mi) == 5);
  return sys_days(year(y) / month(static_cast<unsigned>(mo)) / day(static_cast<unsigned>(d))) + hours(h) + minutes(mi);
}

Result<Project> Parse(std::string_view yaml) {
  auto docs = value::ParseYaml(yaml, "proj.yaml");
  GANTRY_CHECK(docs.ok() && docs->size() == 1);
  return ParseProject((*docs)[0]);
}

Project MustParse(std::string_view yaml) {
  auto p = Parse(yaml);
  if (!p.ok()) ADD_FAILURE() << p.status().ToString();
  GANTRY_CHECK(p.ok());
  return *p;
}

constexpr char kTeamA[] = R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: team-a, namespace: gantry}
spec:
  description: Team A
  sourceRepos:
  - "https://git.example.com/team-a/*"
  - "https://git.example.com/shared/**"
  - "!https://git.example.com/shared/secret/**"
  sourceNamespaces: [team-a, "team-a-*"]
  destinations:
  - {server: "*", namespace: "team-a-*"}
  - {name: in-cluster, namespace: team-a}
  - {server: "*", namespace: "!team-a-admin"}
  destinationServiceAccounts:
  - {server: "https://prod.example.com", namespace: "*", defaultServiceAccount: "team-a:prod-deployer"}
  - {server: "*", namespace: "team-a-*", defaultServiceAccount: deployer}
  clusterResourceWhitelist: [{group: "", kind: Namespace}]
  namespaceResourceBlacklist: [{group: "", kind: ResourceQuota}, {group: networking.k8s.io, kind: "*"}]
  releases: {imageRepos: ["registry.example.com/team-a/*"], configPaths: ["apps/team-a/**", "!apps/team-a/locked/**"]}
  credentials: [git-team-a, "registry-team-a-*"]
)";

TEST(ParseProject, AllFields) {
  Project p = MustParse(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: team-a, namespace: gantry}
spec:
  description: "Team A"
  sourceRepos: ["https://git.example.com/team-a/*"]
  sourceNamespaces: ["team-a", "team-a-*"]
  destinations:
  - {server: "*", name: "in-cluster", namespace: "team-a-*"}
  destinationServiceAccounts:
  - {server: "*", namespace: "team-a-*", defaultServiceAccount: "team-a:deployer"}
  clusterResourceWhitelist: [{group: "", kind: Namespace}]
  clusterResourceBlacklist: []
  namespaceResourceWhitelist: []
  namespaceResourceBlacklist: [{group: "", kind: ResourceQuota}]
  releases: {imageRepos: ["registry.example.com/team-a/*"], configPaths: ["apps/team-a/**"]}
  credentials: ["git-team-a", "registry-team-a"]
  syncWindows:
  - {kind: deny, schedule: "0 22 * * *", duration: 8h, environments: ["prod"],
     applications: ["*"], clusters: ["*"], namespaces: ["*"], manualSync: true, timeZone: "UTC"}
)");
  EXPECT_EQ(p.name, "team-a");
  EXPECT_EQ(p.namespace_, "gantry");
  EXPECT_EQ(p.description, "Team A");
  EXPECT_EQ(p.source, "proj.yaml:1:1");
  EXPECT_EQ(p.source_repos, std::vector<std::string>{"https://git.example.com/team-a/*"});
  EXPECT_EQ(p.source_namespaces, (std::vector<std::string>{"team-a", "team-a-*"}));
  ASSERT_EQ(p.destinations.size(), 1u);
  EXPECT_EQ(p.destinations[0].server, "*");
  EXPECT_EQ(p.destinations[0].name, "in-cluster");
  EXPECT_EQ(p.destinations[0].namespace_, "team-a-*");
  ASSERT_EQ(p.service_accounts.size(), 1u);
  EXPECT_EQ(p.service_accounts[0].service_account, "team-a:deployer");
  ASSERT_EQ(p.cluster_allow.size(), 1u);
  EXPECT_EQ(p.cluster_allow[0].group, "");
  EXPECT_EQ(p.cluster_allow[0].kind, "Namespace");
  EXPECT_TRUE(p.cluster_deny.empty());
  EXPECT_TRUE(p.namespace_allow.empty());
  ASSERT_EQ(p.namespace_deny.size(), 1u);
  EXPECT_EQ(p.image_repos, std::vector<std::string>{"registry.example.com/team-a/*"});
  EXPECT_EQ(p.config_paths, std::vector<std::string>{"apps/team-a/**"});
  EXPECT_EQ(p.credentials, (std::vector<std::string>{"git-team-a", "registry-team-a"}));
  ASSERT_EQ(p.windows.size(), 1u);
  const Window& w = p.windows[0];
  EXPECT_EQ(w.kind, WindowKind::kDeny);
  EXPECT_EQ(w.schedule, "0 22 * * *");
  EXPECT_EQ(w.duration, hours(8));
  EXPECT_EQ(w.environments, std::vector<std::string>{"prod"});
  EXPECT_TRUE(w.manual_sync);
  EXPECT_EQ(w.time_zone, "UTC");
  EXPECT_EQ(w.source, "proj.yaml:19:5");
}

TEST(ParseProject, AnArgoCdAppProjectWithNewApiVersionAndKindParses) {
  // Modelled on Argo CD's example AppProject (docs/operator-manual/project.yaml), without roles.
  Project p = MustParse(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata:
  name: my-project
  namespace: argocd
spec:
  description: Example Project
  sourceRepos:
  - '*'
  destinations:
  - namespace: guestbook
    server: https://kubernetes.default.svc
  clusterResourceWhitelist:
  - group: ''
    kind: Namespace
  namespaceResourceBlacklist:
  - group: ''
    kind: ResourceQuota
  - group: ''
    kind: LimitRange
  - group: ''
    kind: NetworkPolicy
  namespaceResourceWhitelist:
  - group: 'apps'
    kind: Deployment
  - group: 'apps'
    kind: StatefulSet
  syncWindows:
  - kind: allow
    schedule: '10 1 * * *'
    duration: 1h
    applications:
    - '*-prod'
    manualSync: true
  - kind: deny
    schedule: '0 22 * * *'
    duration: 1h
    namespaces:
    - default
)");
  EXPECT_EQ(p.windows.size(), 2u);
  EXPECT_TRUE(CheckDestination(p, "https://kubernetes.default.svc", "", "guestbook").ok());
}

TEST(ParseProject, MinimalProjectAllowsNothing) {
  Project p = MustParse("apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: empty}\n");
  EXPECT_EQ(CheckSourceRepo(p, "https://git.example.com/a").code(), Code::kPermissionDenied);
  EXPECT_EQ(CheckDestination(p, "https://x", "x", "a").code(), Code::kPermissionDenied);
  EXPECT_EQ(CheckCredential(p, "git").code(), Code::kPermissionDenied);
  EXPECT_EQ(CheckAppNamespace(p, "a").code(), Code::kPermissionDenied);
}

struct ErrorCase {
  const char* name;
  const char* spec;  // YAML under "spec:" (from line 5), or a whole object when it starts with "apiVersion"
  const char* message;
};

TEST(ParseProject, ErrorsNameFileLineAndColumn) {
  const ErrorCase cases[] = {
      {"argo kind", "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: a}\n",
       "proj.yaml:1:1: not a Project: expected apiVersion gantry.dev/v1alpha1 and kind Project (an Argo CD "
       "AppProject becomes a Project by changing apiVersion and kind)"},
      {"missing name", "apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {namespace: a}\n",
       "proj.yaml:1:1: Project: metadata.name is required"},
      {"bad name", "apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: Team_A}\n",
       "proj.yaml:3:18: project Team_A: metadata.name \"Team_A\" is not a valid name (lowercase letters, digits, "
       "'-' and '.'; at most 253)"},
      {"spec not a map", "  - a\n", "proj.yaml:5:3: project team-a: spec is a list, expected a map"},
      {"wrong type", "  sourceRepos: https://git.example.com/a\n",
       "proj.yaml:5:16: project team-a: spec.sourceRepos is a string, expected a list"},
      {"wrong item type", "  sourceRepos: [1]\n",
       "proj.yaml:5:17: project team-a: spec.sourceRepos[0] is an integer, expected a string"},
      {"typo under spec", "  sourceRepo: ['*']\n",
       "proj.yaml:5:3: project team-a: spec.sourceRepo is not a field of spec (known: description, sourceRepos, "
       "sourceNamespaces, destinations, destinationServiceAccounts, clusterResourceWhitelist, "
       "clusterResourceBlacklist, namespaceResourceWhitelist, namespaceResourceBlacklist, releases, credentials, "
       "syncWindows, verification)"},
      {"typo in a destination", "  destinations:\n  - {server: '*', namspace: a}\n",
       "proj.yaml:6:19: project team-a: spec.destinations[0].namspace is not a field of spec.destinations[0] "
       "(known: server, name, namespace)"},
      {"typo in releases", "  releases: {imageRepo: [a]}\n",
       "proj.yaml:5:14: project team-a: spec.releases.imageRepo is not a field of spec.releases (known: "
       "imageRepos, configPaths)"},
      {"argo roles", "  roles: []\n",
       "proj.yaml:5:3: project team-a: spec.roles is not supported: roles are not part of a Project: grant viewer, "
       "deployer or admin per project with Gantry's authorizer, and replace a role's JWT tokens with `gantry token "
       "create --project` (docs/access.md)"},
      {"unterminated class", "  sourceRepos:\n  - 'https://git.example.com/team-[ab'\n",
       "proj.yaml:6:5: project team-a: spec.sourceRepos[0] \"https://git.example.com/team-[ab\" has an "
       "unterminated class at character 30 ('[' without ']')"},
      {"empty pattern", "  sourceNamespaces: ['']\n",
       "proj.yaml:5:22: project team-a: spec.sourceNamespaces[0] is an empty pattern"},
      {"negation alone", "  credentials: ['!']\n",
       "proj.yaml:5:17: project team-a: spec.credentials[0] is an empty pattern"},
      {"destination without namespace", "  destinations:\n  - {server: '*'}\n",
       "proj.yaml:6:5: project team-a: spec.destinations[0].namespace is required (use \"*\" for every namespace)"},
      {"destination without cluster", "  destinations:\n  - {namespace: a}\n",
       "proj.yaml:6:5: project team-a: spec.destinations[0] needs server (an API server URL glob) or name (a "
       "cluster name glob)"},
      {"lowercase kind", "  clusterResourceWhitelist:\n  - {group: rbac.authorization.k8s.io, kind: clusterrole}\n",
       "proj.yaml:6:46: project team-a: spec.clusterResourceWhitelist[0].kind \"clusterrole\" is not a kind: a kind "
       "is a CamelCase name such as Deployment, or a glob (did you mean Clusterrole?)"},
      {"group with version", "  namespaceResourceBlacklist:\n  - {group: apps/v1, kind: Deployment}\n",
       "proj.yaml:6:13: project team-a: spec.namespaceResourceBlacklist[0].group \"apps/v1\" is not an API group: a "
       "group is a lowercase DNS name such as apps or rbac.authorization.k8s.io, \"\" for the core group, or a glob; "
       "no version"},
      {"missing kind", "  namespaceResourceWhitelist:\n  - {group: apps}\n",
       "proj.yaml:6:5: project team-a: spec.namespaceResourceWhitelist[0].kind is required (a kind such as "
       "Deployment, or \"*\")"},
      {"bad service account", "  destinationServiceAccounts:\n  - {server: '*', namespace: '*', defaultServiceAccount: 'a:b:c'}\n",
       "proj.yaml:6:58: project team-a: spec.destinationServiceAccounts[0].defaultServiceAccount \"a:b:c\" is not a "
       "service account: NAMESPACE:NAME, or NAME in the destination namespace"},
      {"window kind", "  syncWindows:\n  - {kind: block, schedule: '* * * * *', duration: 1h}\n",
       "proj.yaml:6:12: project team-a: spec.syncWindows[0].kind \"block\" must be allow or deny"},
      {"missing window kind", "  syncWindows:\n  - {schedule: '* * * * *', duration: 1h}\n",
       "proj.yaml:6:5: project team-a: spec.syncWindows[0].kind is required (allow or deny)"},
      {"missing schedule", "  syncWindows:\n  - {kind: deny, duration: 1h}\n",
       "proj.yaml:6:5: project team-a: spec.syncWindows[0].schedule is required (when each window starts, such as "
       "\"0 22 * * *\")"},
      {"cron", "  syncWindows:\n  - {kind: deny, schedule: '0 25 * * *', duration: 1h}\n",
       "proj.yaml:6:28: project team-a: spec.syncWindows[0].schedule hour 25 is out of range 0-23"},
      {"cron fields", "  syncWindows:\n  - kind: deny\n    schedule: '0 22 * *'\n    duration: 1h\n",
       "proj.yaml:7:15: project team-a: spec.syncWindows[0].schedule \"0 22 * *\" has 4 fields; a schedule has 5: "
       "minute hour day-of-month month day-of-week"},
      {"zero duration", "  syncWindows:\n  - {kind: deny, schedule: '0 22 * * *', duration: 0s}\n",
       "proj.yaml:6:52: project team-a: spec.syncWindows[0].duration \"0s\" must be a positive whole number of minutes"},
      {"negative duration", "  syncWindows:\n  - {kind: deny, schedule: '0 22 * * *', duration: -1h}\n",
       "proj.yaml:6:52: project team-a: spec.syncWindows[0].duration \"-1h\" is not a duration (such as 90s, 10m, "
       "1h30m, 250ms)"},
      {"seconds", "  syncWindows:\n  - {kind: deny, schedule: '0 22 * * *', duration: 90s}\n",
       "proj.yaml:6:52: project team-a: spec.syncWindows[0].duration \"90s\" must be a positive whole number of "
       "minutes"},
      {"year-long duration", "  syncWindows:\n  - {kind: deny, schedule: '0 22 * * *', duration: 8785h}\n",
       "proj.yaml:6:52: project team-a: spec.syncWindows[0].duration \"8785h\" is longer than a year (at most "
       "8784h)"},
      {"missing duration", "  syncWindows:\n  - {kind: deny, schedule: '0 22 * * *'}\n",
       "proj.yaml:6:5: project team-a: spec.syncWindows[0].duration is required (how long each window stays open, "
       "such as 1h or 30m)"},
      {"time zone", "  syncWindows:\n  - {kind: deny, schedule: '0 22 * * *', duration: 1h, timeZone: Europe/Berlin}\n",
       "proj.yaml:6:66: project team-a: spec.syncWindows[0].timeZone \"Europe/Berlin\" is not supported: only UTC "
       "(this build's C++ library has no time-zone database); write the schedule in UTC"},
      {"negation in a window", "  syncWindows:\n  - {kind: deny, schedule: '0 22 * * *', duration: 1h, namespaces: ['!a']}\n",
       "proj.yaml:6:69: project team-a: spec.syncWindows[0].namespaces[0] \"!a\": negation (\"!\") is not supported "
       "here"},
      {"or operator", "  syncWindows:\n  - {kind: deny, schedule: '0 22 * * *', duration: 1h, andOperator: false}\n",
       "proj.yaml:6:69: project team-a: spec.syncWindows[0].andOperator false is not supported: a window applies "
       "when every list it has matches (Argo CD's andOperator: true); split it into one window per list"},
      {"overlap",
       "  syncWindows:\n"
       "  - {kind: allow, schedule: '0 6 * * *', duration: 10h}\n"
       "  - {kind: deny, schedule: '0 12 * * *', duration: 1h, namespaces: [team-a]}\n",
       "proj.yaml:7:5: project team-a: sync windows overlap: allow \"0 6 * * *\" 10h (proj.yaml:6:5) and deny "
       "\"0 12 * * *\" 1h (proj.yaml:7:5) could apply to the same application and are both active at "
       "2028-01-01T12:00:00Z; make their schedules or their scopes disjoint"},
      {"overlap from before the span",
       "  syncWindows:\n"
       "  - {kind: deny, schedule: '0 22 * * *', duration: 8h}\n"
       "  - {kind: allow, schedule: '0 5 * * *', duration: 2h}\n",
       "proj.yaml:7:5: project team-a: sync windows overlap: deny \"0 22 * * *\" 8h (proj.yaml:6:5) and allow "
       "\"0 5 * * *\" 2h (proj.yaml:7:5) could apply to the same application and are both active at "
       "2028-01-01T05:00:00Z; make their schedules or their scopes disjoint"},
      {"overlap on a leap day only",
       "  syncWindows:\n"
       "  - {kind: deny, schedule: '0 0 29 2 *', duration: 1h}\n"
       "  - {kind: allow, schedule: '30 0 * * *', duration: 1h, environments: ['prod*']}\n",
       "proj.yaml:7:5: project team-a: sync windows overlap: deny \"0 0 29 2 *\" 1h (proj.yaml:6:5) and allow "
       "\"30 0 * * *\" 1h (proj.yaml:7:5) could apply to the same application and are both active at "
       "2028-02-29T00:30:00Z; make their schedules or their scopes disjoint"},
  };
  for (const auto& c : cases) {
    std::string yaml = c.spec;
    if (!yaml.starts_with("apiVersion")) {
      yaml = "apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: team-a}\nspec:\n" + yaml;
    }
    auto p = Parse(yaml);
    ASSERT_FALSE(p.ok()) << c.name;
    EXPECT_EQ(p.status().code(), Code::kInvalidArgument) << c.name;
    EXPECT_EQ(p.status().message(), c.message) << c.name;
  }
}

TEST(ParseProject, WindowsThatDoNotOverlap) {
  const char* cases[] = {
      // Disjoint scopes: literals that differ, a glob that does not match a literal.
      "  - {kind: allow, schedule: '0 6 * * *', duration: 10h, namespaces: [team-a]}\n"
      "  - {kind: deny, schedule: '0 12 * * *', duration: 1h, namespaces: [team-b]}\n",
      "  - {kind: allow, schedule: '0 6 * * *', duration: 10h, applications: ['web-*']}\n"
      "  - {kind: deny, schedule: '0 12 * * *', duration: 1h, applications: [db]}\n",
      // Disjoint times: weekdays and weekends; a deny ending as the allow begins.
      "  - {kind: allow, schedule: '0 6 * * 1-5', duration: 10h}\n"
      "  - {kind: deny, schedule: '0 6 * * sat,sun', duration: 10h}\n",
      "  - {kind: deny, schedule: '0 22 * * *', duration: 8h}\n"
      "  - {kind: allow, schedule: '0 6 * * *', duration: 16h}\n",
      // Two windows of the same kind may overlap.
      "  - {kind: deny, schedule: '0 22 * * *', duration: 8h}\n"
      "  - {kind: deny, schedule: '0 * * * *', duration: 30m}\n",
  };
  for (const char* windows : cases) {
    auto p = Parse(std::string("apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: a}\nspec:\n  syncWindows:\n") +
                   windows);
    EXPECT_TRUE(p.ok()) << windows << p.status().ToString();
  }
}

TEST(ParseProject, VerificationRules) {
  Project p = MustParse(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: prod, namespace: gantry}
spec:
  verification:
  - environments: [prod]
    images: ["registry.example/team/*"]
    keys:
    - secretRef: {name: release-keys, key: signing.pub}
    - file: /etc/gantry/old.pub
    - pem: |
        -----BEGIN PUBLIC KEY-----
        abc
        -----END PUBLIC KEY-----
    provenance:
      builderIds: ["https://gantry.example/ci"]
      sourceRepositories: ["https://git.example/team/*"]
      branches: [main]
    notAfter: 2027-06-30T00:00:00Z
  - images: ["**"]
    keys: [{secretRef: {name: k, key: k.pub, namespace: other}}]
)");
  ASSERT_EQ(p.verification.size(), 2u);
  const VerificationRule& r = p.verification[0];
  EXPECT_EQ(r.Name(), "verification[0] (proj.yaml:6:5)");
  EXPECT_EQ(r.environments, std::vector<std::string>{"prod"});
  ASSERT_EQ(r.keys.size(), 3u);
  EXPECT_EQ(r.keys[0].Describe(), "secret gantry/release-keys key signing.pub");
  EXPECT_EQ(r.keys[1].Describe(), "file /etc/gantry/old.pub");
  EXPECT_EQ(r.keys[2].Describe(), "inline key");
  EXPECT_EQ(r.keys[2].pem, "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n");
  ASSERT_TRUE(r.provenance.has_value());
  EXPECT_EQ(r.provenance->branches, std::vector<std::string>{"main"});
  ASSERT_TRUE(r.not_after.has_value());
  EXPECT_EQ(*r.not_after, At("2027-06-30T00:00"));
  EXPECT_EQ(p.verification[1].keys[0].secret_namespace, "other");
  EXPECT_FALSE(p.verification[1].provenance.has_value());

  // Which rules apply: the environment, then the image repository.
  EXPECT_EQ(RulesFor(p, "prod", "registry.example/team/web").size(), 2u);
  EXPECT_EQ(RulesFor(p, "dev", "registry.example/team/web").size(), 1u);
  EXPECT_EQ(RulesFor(p, "prod", "registry.example/other/web").size(), 1u);
  EXPECT_TRUE(RulesFor(MustParse("apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: x}\n"), "prod",
                       "a/b").empty());
}

// The error of a project whose only verification rule is `rule` (YAML flow, at line 6 column 5).
std::string VerificationError(std::string_view rule) {
  auto p = Parse(std::string("apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: p}\nspec:\n"
                             "  verification:\n  - ") +
                 std::string(rule) + "\n");
  EXPECT_FALSE(p.ok()) << rule;
  return p.ok() ? std::string() : p.status().message();
}

TEST(ParseProject, VerificationErrorsNameFileLineAndColumn) {
  auto err = VerificationError;
  EXPECT_EQ(err("{keys: [{pem: x}]}"),
            "proj.yaml:6:5: project p: spec.verification[0].images is required: the image repositories the rule "
            "covers (globs such as \"registry.example/team/*\"), unless the rule has commitKeys");
  EXPECT_EQ(err("{images: [a]}"),
            "proj.yaml:6:5: project p: spec.verification[0].keys is required: the public keys (any one of them) whose "
            "signature the images need");
  EXPECT_EQ(err("{images: [a], keys: [{pem: x, file: f}]}"),
            "proj.yaml:6:26: project p: spec.verification[0].keys[0] needs exactly one of file (a PEM public key "
            "file), secretRef ({name, key}) and pem (the PEM text)");
  EXPECT_EQ(err("{images: [a], keys: [{secretRef: {name: s}}]}"),
            "proj.yaml:6:38: project p: spec.verification[0].keys[0].secretRef needs name (the Secret) and key (the "
            "entry holding the PEM public key)");
  EXPECT_EQ(err("{images: [a], keys: [{pem: x}], notAfter: tomorrow}"),
            "proj.yaml:6:47: project p: spec.verification[0].notAfter \"tomorrow\" is not an RFC 3339 time (such as "
            "2027-06-30T00:00:00Z)");
  EXPECT_EQ(err("{images: [a], keys: [{pem: x}], provenance: {branch: main}}"),
            "proj.yaml:6:50: project p: spec.verification[0].provenance.branch is not a field of "
            "spec.verification[0].provenance (known: builderIds, sourceRepositories, branches)");
  EXPECT_EQ(err("{images: [\"[\"], keys: [{pem: x}]}").rfind("proj.yaml:6:15: project p: spec.verification[0].images[0] "
                                                        "\"[\" has an unterminated class", 0),
            0u);
}

TEST(ParseProject, CommitKeysMakeARuleOfTheirOwnOrJoinAnImageRule) {
  Project p = MustParse(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: p}
spec:
  verification:
  - environments: [prod]
    commitKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE release@example.com"]
  - images: [registry.example/team/*]
    keys: [{pem: x}]
    commitKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF"]
)");
  ASSERT_EQ(p.verification.size(), 2u);
  EXPECT_EQ(p.verification[0].commit_keys,
            std::vector<std::string>{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE release@example.com"});
  EXPECT_TRUE(p.verification[0].images.empty());
  // A commit-only rule checks no image; both rules check commits where they apply.
  EXPECT_EQ(RulesFor(p, "prod", "registry.example/team/web").size(), 1u);
  EXPECT_EQ(CommitRulesFor(p, "prod").size(), 2u);
  EXPECT_EQ(CommitRulesFor(p, "dev").size(), 1u);
  EXPECT_TRUE(CommitRulesFor(p, "dev")[0]->index == 1);
  auto err = VerificationError;

  EXPECT_EQ(err("{commitKeys: [\"AAAAC3Nz\"]}"),
            "proj.yaml:6:19: project p: spec.verification[0].commitKeys[0] is not an SSH public key line "
            "(\"ssh-ed25519 AAAA… comment\", as in authorized_keys or GET /api/v1/signing-keys' commits.public_key)");
  EXPECT_EQ(err("{commitKeys: [3]}").rfind("proj.yaml:6:19: project p: spec.verification[0].commitKeys[0] is not", 0), 0u);
  EXPECT_EQ(err("{commitKeys: [\"ssh-ed25519 AAAA\"], keys: [{pem: x}]}"),
            "proj.yaml:6:5: project p: spec.verification[0].images is required with keys: the image repositories "
            "the keys must have signed");
  EXPECT_EQ(err("{environments: [prod]}"),
            "proj.yaml:6:5: project p: spec.verification[0].images is required: the image repositories the rule "
            "covers (globs such as \"registry.example/team/*\"), unless the rule has commitKeys");
}

TEST(ParseProjects, SkipsOtherKindsAndRefusesDuplicates) {
  auto docs = value::ParseYaml(R"(apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {name: team-a}
---
apiVersion: project.openshift.io/v1
kind: Project
metadata: {name: team-a}
---
apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: team-a}
---
apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: team-b}
)",
                               "gantry.yaml");
  ASSERT_TRUE(docs.ok());
  auto projects = ParseProjects(*docs);
  ASSERT_TRUE(projects.ok()) << projects.status().ToString();
  ASSERT_EQ(projects->size(), 2u);
  EXPECT_EQ((*projects)[1].name, "team-b");

  auto twice = value::ParseYaml(R"(apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: team-a}
---
apiVersion: gantry.dev/v1alpha1
kind: Project
metadata: {name: team-a}
)",
                                "gantry.yaml");
  ASSERT_TRUE(twice.ok());
  auto dup = ParseProjects(*twice);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().message(), "gantry.yaml:5:1: project team-a is defined twice (first at gantry.yaml:1:1)");
}

TEST(ProjectCrd, IsAStructuralNamespacedCrd) {
  Value crd = ProjectCrd();
  EXPECT_EQ(value::StringAt(&crd, {"metadata", "name"}), "projects.gantry.dev");
  EXPECT_EQ(value::StringAt(&crd, {"spec", "scope"}), "Namespaced");
  EXPECT_EQ(value::StringAt(&crd, {"spec", "names", "kind"}), kKind);
  const Value* spec = crd.Find({"spec", "versions", 0, "schema", "openAPIV3Schema", "properties", "spec", "properties"});
  ASSERT_NE(spec, nullptr);
  // Every field ParseProject knows is in the schema (an unknown one would be pruned by the apiserver).
  for (const char* field : {"description", "sourceRepos", "sourceNamespaces", "destinations",
                            "destinationServiceAccounts", "clusterResourceWhitelist", "clusterResourceBlacklist",
                            "namespaceResourceWhitelist", "namespaceResourceBlacklist", "releases", "credentials",
                            "syncWindows"}) {
    EXPECT_NE(spec->Get(field), nullptr) << field;
  }
  EXPECT_EQ(value::StringAt(spec, {"clusterResourceBlacklist", "items", "properties", "kind", "type"}), "string");
  EXPECT_NE(value::ToJson(crd).find("additionalPrinterColumns"), std::string::npos);
}

// The decisions, each allowing and refusing.

struct Case {
  const char* what;
  Status status;
  const char* message;  // "" : OK
};

void ExpectCases(const std::vector<Case>& cases) {
  for (const auto& c : cases) {
    if (*c.message == '\0') {
      EXPECT_TRUE(c.status.ok()) << c.what << ": " << c.status.ToString();
      continue;
    }
    EXPECT_EQ(c.status.code(), Code::kPermissionDenied) << c.what;
    EXPECT_EQ(c.status.reason(), kReasonDenied) << c.what;
    EXPECT_EQ(c.status.message(), c.message) << c.what;
  }
}

TEST(CheckSourceRepo, GlobsNegationAndNormalisation) {
  Project p = MustParse(kTeamA);
  ExpectCases({
      {"listed", CheckSourceRepo(p, "https://git.example.com/team-a/web"), ""},
      {".git", CheckSourceRepo(p, "https://git.example.com/team-a/web.git"), ""},
      {"trailing slash", CheckSourceRepo(p, "https://git.example.com/team-a/web/"), ""},
      {"host case", CheckSourceRepo(p, "HTTPS://Git.Example.COM/team-a/web"), ""},
      {"path case matters", CheckSourceRepo(p, "https://git.example.com/Team-A/web"),
       "project team-a: sourceRepos does not allow repository https://git.example.com/Team-A/web (it lists "
       "https://git.example.com/team-a/*, https://git.example.com/shared/**, "
       "!https://git.example.com/shared/secret/**)"},
      {"** crosses /", CheckSourceRepo(p, "https://git.example.com/shared/libs/common"), ""},
      {"* does not cross /", CheckSourceRepo(p, "https://git.example.com/team-a/sub/web"),
       "project team-a: sourceRepos does not allow repository https://git.example.com/team-a/sub/web (it lists "
       "https://git.example.com/team-a/*, https://git.example.com/shared/**, "
       "!https://git.example.com/shared/secret/**)"},
      {"negated", CheckSourceRepo(p, "https://git.example.com/shared/secret/keys.git"),
       "project team-a: sourceRepos entry \"!https://git.example.com/shared/secret/**\" refuses repository "
       "https://git.example.com/shared/secret/keys.git"},
      {"dot segments", CheckSourceRepo(p, "https://git.example.com/team-a/../team-b/web"),
       "project team-a: repository https://git.example.com/team-a/../team-b/web has a \".\" or \"..\" path segment; "
       "sourceRepos are checked against a normalised URL"},
  });
}

TEST(CheckAppNamespace, SourceNamespacesAndTheProjectsOwn) {
  Project p = MustParse(kTeamA);
  ExpectCases({
      {"literal", CheckAppNamespace(p, "team-a"), ""},
      {"glob", CheckAppNamespace(p, "team-a-dev"), ""},
      {"the project's namespace", CheckAppNamespace(p, "gantry"), ""},
      {"other", CheckAppNamespace(p, "team-b"),
       "project team-a: sourceNamespaces does not allow Applications in namespace team-b (it lists team-a, "
       "team-a-*)"},
  });
}

TEST(CheckDestination, ServerOrNameAndNamespace) {
  Project p = MustParse(kTeamA);
  ExpectCases({
      {"server glob", CheckDestination(p, "https://dev.example.com", "dev", "team-a-dev"), ""},
      {"by name", CheckDestination(p, "", "in-cluster", "team-a"), ""},
      {"name entry needs the name", CheckDestination(p, "https://dev.example.com", "dev", "team-a"),
       "project team-a: destinations do not allow namespace team-a on cluster dev (https://dev.example.com)"},
      {"negated namespace", CheckDestination(p, "https://dev.example.com", "", "team-a-admin"),
       "project team-a: destinations entry {server: \"*\", namespace: \"!team-a-admin\"} refuses namespace "
       "team-a-admin on cluster https://dev.example.com"},
      {"kube-system", CheckDestination(p, "", "in-cluster", "kube-system"),
       "project team-a: destinations do not allow namespace kube-system on cluster in-cluster"},
  });
  Project none = p;
  none.destinations.clear();
  ExpectCases({{"empty destinations", CheckDestination(none, "https://x", "x", "team-a-dev"),
                "project team-a: destinations is empty: it allows no namespace team-a-dev on cluster x (https://x)"}});
}

Object Obj(std::string api_version, std::string kind, std::string ns, std::string name, bool namespaced = true,
           std::string source = "") {
  return Object{kube::ObjectRef{std::move(api_version), std::move(kind), std::move(ns), std::move(name)}, namespaced,
                std::move(source)};
}

TEST(CheckObjects, KindsAndNamespaces) {
  Project p = MustParse(kTeamA);
  auto check = [&](std::vector<Object> objects) { return CheckObjects(p, "https://dev.example.com", "dev", objects); };
  ExpectCases({
      {"allowed", check({Obj("v1", "Namespace", "", "team-a-dev", false), Obj("apps/v1", "Deployment", "team-a-dev", "web"),
                         Obj("v1", "ConfigMap", "team-a-x", "cfg")}),
       ""},
      {"cluster-scoped denied by default",
       check({Obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "admin-all", false,
                  "manifests/rbac.yaml:3:1")}),
       "project team-a: ClusterRoleBinding rbac.authorization.k8s.io/admin-all (manifests/rbac.yaml:3:1) is "
       "cluster-scoped and clusterResourceWhitelist does not list rbac.authorization.k8s.io/ClusterRoleBinding"},
      {"core blacklist", check({Obj("v1", "ResourceQuota", "team-a-dev", "q")}),
       "project team-a: ResourceQuota q in namespace team-a-dev is of a kind namespaceResourceBlacklist lists "
       "(ResourceQuota)"},
      {"group glob blacklist", check({Obj("networking.k8s.io/v1", "NetworkPolicy", "team-a-dev", "np")}),
       "project team-a: NetworkPolicy networking.k8s.io/np in namespace team-a-dev is of a kind "
       "namespaceResourceBlacklist lists (networking.k8s.io/*)"},
      {"core group entry does not match other groups",
       check({Obj("example.com/v1", "ResourceQuota", "team-a-dev", "q")}), ""},
      {"namespace outside destinations, and a count",
       check({Obj("apps/v1", "Deployment", "team-a-dev", "ok"), Obj("apps/v1", "Deployment", "kube-system", "evil", true, "a.yaml:1:1"),
              Obj("v1", "Secret", "team-b", "s"), Obj("v1", "ResourceQuota", "team-a-dev", "q")}),
       "project team-a: Deployment apps/evil in namespace kube-system (a.yaml:1:1) is outside the project's "
       "destinations: destinations do not allow namespace kube-system on cluster dev (https://dev.example.com); and "
       "2 more objects are refused"},
  });
  Project allow = p;
  allow.namespace_allow = {GroupKind{"apps", "Deployment"}};
  allow.cluster_deny = {GroupKind{"", "Namespace"}};
  ExpectCases({
      {"whitelist", CheckObjects(allow, "https://dev", "dev", std::vector<Object>{Obj("apps/v1", "Deployment", "team-a-x", "w")}), ""},
      {"not whitelisted", CheckObjects(allow, "https://dev", "dev", std::vector<Object>{Obj("v1", "ConfigMap", "team-a-x", "c")}),
       "project team-a: ConfigMap c in namespace team-a-x is of a kind namespaceResourceWhitelist does not list "
       "(ConfigMap)"},
      {"cluster blacklist wins", CheckObjects(allow, "https://dev", "dev", std::vector<Object>{Obj("v1", "Namespace", "", "n", false)}),
       "project team-a: Namespace n is cluster-scoped and clusterResourceBlacklist lists Namespace"},
  });
}

TEST(CheckRelease, ImageReposAndConfigPaths) {
  Project p = MustParse(kTeamA);
  ExpectCases({
      {"image", CheckRelease(p, "registry.example.com/team-a/web", ""), ""},
      {"image in a sub-path", CheckRelease(p, "registry.example.com/team-a/x/web", ""),
       "project team-a: releases.imageRepos does not allow image repository registry.example.com/team-a/x/web (it "
       "lists registry.example.com/team-a/*)"},
      {"config path", CheckRelease(p, "", "apps/team-a/web/prod/kustomization.yaml"), ""},
      {"config dir itself", CheckRelease(p, "", "apps/team-a"), ""},
      {"both", CheckRelease(p, "registry.example.com/team-a/web", "./apps/team-a/web"), ""},
      {"negated path", CheckRelease(p, "", "apps/team-a/locked/x"),
       "project team-a: releases.configPaths entry \"!apps/team-a/locked/**\" refuses config path apps/team-a/locked/x"},
      {"dot-dot into another team", CheckRelease(p, "", "apps/team-a/../team-b/web"),
       "project team-a: releases.configPaths does not allow config path apps/team-b/web (it lists apps/team-a/**, "
       "!apps/team-a/locked/**)"},
      {"leaves the repository", CheckRelease(p, "", "../outside"),
       "project team-a: config path ../outside leaves the config repository"},
  });
}

TEST(CheckCredential, Names) {
  Project p = MustParse(kTeamA);
  ExpectCases({
      {"literal", CheckCredential(p, "git-team-a"), ""},
      {"glob", CheckCredential(p, "registry-team-a-ro"), ""},
      {"other", CheckCredential(p, "git-team-b"),
       "project team-a: credentials does not allow credential git-team-b (it lists git-team-a, registry-team-a-*)"},
  });
}

TEST(ServiceAccountFor, FirstMatchingRule) {
  Project p = MustParse(kTeamA);
  EXPECT_EQ(ServiceAccountFor(p, "https://prod.example.com", "team-a-web"), "system:serviceaccount:team-a:prod-deployer");
  EXPECT_EQ(ServiceAccountFor(p, "https://dev.example.com", "team-a-web"), "system:serviceaccount:team-a-web:deployer");
  EXPECT_EQ(ServiceAccountFor(p, "https://dev.example.com", "team-b"), "");
  EXPECT_EQ(ServiceAccountFor(DefaultProject(), "https://dev.example.com", "x"), "");
}

TEST(DefaultProject, IsPermissive) {
  Project p = DefaultProject();
  EXPECT_EQ(p.name, "default");
  ExpectCases({
      {"repo", CheckSourceRepo(p, "ssh://git@example.com:22/any/path/repo.git"), ""},
      {"namespace", CheckAppNamespace(p, "anything"), ""},
      {"destination by server", CheckDestination(p, "https://kubernetes.default.svc", "", "kube-system"), ""},
      {"destination by name", CheckDestination(p, "", "prod", "x"), ""},
      {"objects", CheckObjects(p, "https://x", "x",
                               std::vector<Object>{Obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "c", false),
                                                   Obj("v1", "ResourceQuota", "x", "q")}),
       ""},
      {"release", CheckRelease(p, "registry.example.com/a/b/c", "any/where/at/all"), ""},
      {"credential", CheckCredential(p, "anything"), ""},
  });
  EXPECT_TRUE(CheckWindows(p, {.application = "a"}, At("2028-01-01T00:00"), false).allowed);
}

// Sync windows.

Project WithWindows(std::string windows) {
  return MustParse("apiVersion: gantry.dev/v1alpha1\nkind: Project\nmetadata: {name: team-a}\nspec:\n  syncWindows:\n" +
                   windows);
}

const WindowScope kWeb{.application = "web", .environment = "prod", .cluster = "prod-eu", .namespace_ = "team-a",
                       .cluster_server = "https://prod-eu.example.com"};

TEST(CheckWindows, ActiveDenyBlocksAndSaysWhenSyncsOpen) {
  Project p = WithWindows("  - {kind: deny, schedule: '0 22 * * *', duration: 8h, environments: [prod]}\n");
  WindowDecision d = CheckWindows(p, kWeb, At("2027-01-04T23:00"), false);
  EXPECT_FALSE(d.allowed);
  EXPECT_FALSE(d.manual_override);
  ASSERT_TRUE(d.opens_at);
  EXPECT_EQ(Rfc3339(*d.opens_at), "2027-01-05T06:00:00Z");  // across midnight
  EXPECT_EQ(d.message,
            "project team-a: sync window deny \"0 22 * * *\" 8h (proj.yaml:6:5) is active; syncs open at "
            "2027-01-05T06:00:00Z");
  Status s = ToStatus(d);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_EQ(s.reason(), kReasonOutsideWindow);
  EXPECT_EQ(s.message(), d.message);

  // Before and at the end of the window; another environment.
  EXPECT_TRUE(CheckWindows(p, kWeb, At("2027-01-04T21:59"), false).allowed);
  EXPECT_FALSE(CheckWindows(p, kWeb, At("2027-01-04T22:00"), false).allowed);
  EXPECT_FALSE(CheckWindows(p, kWeb, At("2027-01-05T05:59") + seconds(59), false).allowed);
  EXPECT_TRUE(CheckWindows(p, kWeb, At("2027-01-05T06:00"), false).allowed);
  WindowScope staging = kWeb;
  staging.environment = "staging";
  EXPECT_TRUE(CheckWindows(p, staging, At("2027-01-04T23:00"), false).allowed);
  EXPECT_TRUE(ToStatus(CheckWindows(p, staging, At("2027-01-04T23:00"), false)).ok());
}

TEST(CheckWindows, OpensAtAcrossMonthAndYearEnds) {
  struct OpensCase {
    const char* windows;
    const char* now;
    const char* opens;
  };
  const OpensCase cases[] = {
      {"  - {kind: deny, schedule: '0 18 * * *', duration: 12h}\n", "2027-01-31T23:00", "2027-02-01T06:00:00Z"},
      {"  - {kind: deny, schedule: '0 18 * * *', duration: 12h}\n", "2028-02-28T19:00", "2028-02-29T06:00:00Z"},
      {"  - {kind: allow, schedule: '0 6 * * 1-5', duration: 10h}\n", "2027-12-31T18:00", "2028-01-03T06:00:00Z"},
      {"  - {kind: allow, schedule: '0 9 1 * *', duration: 2h}\n", "2027-02-15T00:00", "2027-03-01T09:00:00Z"},
      {"  - {kind: allow, schedule: '0 9 1 * *', duration: 2h}\n", "2027-12-01T11:00", "2028-01-01T09:00:00Z"},
      // Past the deny, the allow window is still closed: the next opening is the allow's start.
      {"  - {kind: deny, schedule: '0 22 * * *', duration: 8h}\n"
       "  - {kind: allow, schedule: '0 9 * * *', duration: 8h}\n",
       "2027-01-04T23:00", "2027-01-05T09:00:00Z"},
      // Two deny windows back to back: one opening after both.
      {"  - {kind: deny, schedule: '0 22 * * *', duration: 4h}\n"
       "  - {kind: deny, schedule: '0 2 * * *', duration: 4h}\n",
       "2027-01-04T23:00", "2027-01-05T06:00:00Z"},
      // Activations of one window that overlap merge.
      {"  - {kind: deny, schedule: '0 0,2 * * *', duration: 3h}\n", "2027-01-04T00:30", "2027-01-04T05:00:00Z"},
  };
  for (const auto& c : cases) {
    WindowDecision d = CheckWindows(WithWindows(c.windows), kWeb, At(c.now), false);
    EXPECT_FALSE(d.allowed) << c.windows << c.now;
    ASSERT_TRUE(d.opens_at) << c.windows << c.now;
    EXPECT_EQ(Rfc3339(*d.opens_at), c.opens) << c.windows << c.now;
    EXPECT_TRUE(CheckWindows(WithWindows(c.windows), kWeb, *d.opens_at, false).allowed) << c.windows;
  }
}

TEST(CheckWindows, AllowOnly) {
  Project p = WithWindows("  - {kind: allow, schedule: '0 6 * * 1-5', duration: 10h, namespaces: ['team-*']}\n");
  EXPECT_TRUE(CheckWindows(p, kWeb, At("2028-01-03T06:00"), false).allowed);   // Monday
  EXPECT_TRUE(CheckWindows(p, kWeb, At("2028-01-03T15:59"), false).allowed);
  WindowDecision d = CheckWindows(p, kWeb, At("2028-01-03T16:00"), false);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.message,
            "project team-a: no allow sync window is active (allow \"0 6 * * 1-5\" 10h (proj.yaml:6:5) applies); "
            "syncs open at 2028-01-04T06:00:00Z");
  // An application the allow window does not apply to is not bound by it.
  WindowScope other = kWeb;
  other.namespace_ = "platform";
  EXPECT_TRUE(CheckWindows(p, other, At("2028-01-03T16:00"), false).allowed);
}

TEST(CheckWindows, DenyWinsOverAnActiveAllow) {
  // Built in code: ParseProject would refuse these overlapping windows.
  Project p;
  p.name = "team-a";
  p.windows = {Window{.kind = WindowKind::kAllow, .schedule = "0 6 * * *", .duration = hours(10)},
               Window{.kind = WindowKind::kDeny, .schedule = "0 12 * * *", .duration = hours(1)}};
  EXPECT_TRUE(CheckWindows(p, kWeb, At("2028-01-03T11:00"), false).allowed);
  WindowDecision d = CheckWindows(p, kWeb, At("2028-01-03T12:30"), false);
  EXPECT_FALSE(d.allowed);
  ASSERT_TRUE(d.opens_at);
  EXPECT_EQ(Rfc3339(*d.opens_at), "2028-01-03T13:00:00Z");
  EXPECT_EQ(d.message, "project team-a: sync window deny \"0 12 * * *\" 1h is active; syncs open at 2028-01-03T13:00:00Z");
}

TEST(CheckWindows, ManualOverride) {
  Project manual = WithWindows("  - {kind: deny, schedule: '0 22 * * *', duration: 8h, manualSync: true}\n");
  WindowDecision d = CheckWindows(manual, kWeb, At("2027-01-04T23:00"), true);
  EXPECT_TRUE(d.allowed);
  EXPECT_TRUE(d.manual_override);
  EXPECT_EQ(d.message,
            "project team-a: manual sync overrides: sync window deny \"0 22 * * *\" 8h (proj.yaml:6:5) is active "
            "(manualSync: true)");
  EXPECT_TRUE(ToStatus(d).ok());
  // Not manual: blocked all the same.
  EXPECT_FALSE(CheckWindows(manual, kWeb, At("2027-01-04T23:00"), false).allowed);
  // Outside the window a manual sync is no override.
  WindowDecision open = CheckWindows(manual, kWeb, At("2027-01-04T12:00"), true);
  EXPECT_TRUE(open.allowed);
  EXPECT_FALSE(open.manual_override);

  Project strict = WithWindows("  - {kind: deny, schedule: '0 22 * * *', duration: 8h}\n");
  WindowDecision refused = CheckWindows(strict, kWeb, At("2027-01-04T23:00"), true);
  EXPECT_FALSE(refused.allowed);
  EXPECT_FALSE(refused.manual_override);
  EXPECT_EQ(refused.message,
            "project team-a: sync window deny \"0 22 * * *\" 8h (proj.yaml:6:5) is active; syncs open at "
            "2027-01-05T06:00:00Z; a manual sync may not override it (manualSync is not true)");

  // Every blocking window must allow it.
  Project mixed = WithWindows(
      "  - {kind: deny, schedule: '0 22 * * *', duration: 8h, manualSync: true}\n"
      "  - {kind: deny, schedule: '0 23 * * *', duration: 1h}\n");
  EXPECT_FALSE(CheckWindows(mixed, kWeb, At("2027-01-04T23:30"), true).allowed);
  EXPECT_TRUE(CheckWindows(mixed, kWeb, At("2027-01-05T01:00"), true).allowed);

  // A missing allow window too.
  Project allow = WithWindows("  - {kind: allow, schedule: '0 6 * * *', duration: 1h, manualSync: true}\n");
  WindowDecision outside = CheckWindows(allow, kWeb, At("2027-01-04T12:00"), true);
  EXPECT_TRUE(outside.allowed);
  EXPECT_TRUE(outside.manual_override);
}

TEST(CheckWindows, ScopeMatching) {
  Project p = WithWindows(
      "  - {kind: deny, schedule: '0 0 * * *', duration: 1h, applications: ['web-*'], clusters: ['https://prod-*']}\n");
  WindowScope scope = kWeb;
  scope.application = "web-frontend";
  EXPECT_FALSE(CheckWindows(p, scope, At("2027-01-04T00:30"), false).allowed);  // cluster matched by its server
  scope.cluster_server = "";
  EXPECT_TRUE(CheckWindows(p, scope, At("2027-01-04T00:30"), false).allowed);
  EXPECT_TRUE(CheckWindows(p, kWeb, At("2027-01-04T00:30"), false).allowed);  // "web" is not "web-*"
}

TEST(CheckWindows, NeverOpeningWithinAYear) {
  Project p = WithWindows("  - {kind: allow, schedule: '0 9 29 2 *', duration: 1h}\n");
  WindowDecision d = CheckWindows(p, kWeb, At("2028-03-01T00:00"), false);
  EXPECT_FALSE(d.allowed);
  EXPECT_FALSE(d.opens_at);
  EXPECT_EQ(d.message,
            "project team-a: no allow sync window is active (allow \"0 9 29 2 *\" 1h (proj.yaml:6:5) applies); no sync "
            "opens within a year");
  Project always = WithWindows("  - {kind: deny, schedule: '* * * * *', duration: 1m}\n");
  WindowDecision closed = CheckWindows(always, kWeb, At("2028-03-01T00:00"), false);
  EXPECT_FALSE(closed.allowed);
  EXPECT_FALSE(closed.opens_at);
}

}  // namespace
}  // namespace gantry::project

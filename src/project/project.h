#pragma once
// Projects (gantry.dev/v1alpha1 Project): what a tenant's Applications may deploy, from where, to
// where, with which credentials and when. The fields are Argo CD AppProject's, so an AppProject
// migrates by changing apiVersion and kind (docs/tenancy.md lists what differs).
//
// This module parses Projects and makes every tenancy decision about them, as pure functions of
// values: no I/O, no clock (the time is passed in). The sync engine, the agent and push mode call
// it at plan time, before anything is applied.
//
// Lists of globs (project/glob.h) allow what any entry matches; an entry written "!glob" (in
// sourceRepos, sourceNamespaces, destinations, releases and credentials) refuses what it matches
// even when another entry allows it, and allows nothing by itself (Argo CD lets a list of only
// "!" entries allow everything else; Gantry fails closed). An empty list allows nothing, except
// namespaceResourceWhitelist (empty: every namespaced kind) and the blacklists.
//
// Sync windows (project/cron.h) are evaluated in UTC: this build's C++ library (libstdc++ 12) has
// no time-zone database, so timeZone must be "UTC" (or empty).

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "kube/kube.h"
#include "value/value.h"

namespace gantry::project {

inline constexpr char kApiVersion[] = "gantry.dev/v1alpha1";
inline constexpr char kKind[] = "Project";
inline constexpr char kReasonDenied[] = "ProjectDenied";         // reason of every PermissionDenied below
inline constexpr char kReasonOutsideWindow[] = "SyncWindowClosed";  // reason of ToStatus's FailedPrecondition
// Reason of every error of image verification (sign/policy.h): an image the project's
// verification rules refuse, or one that could not be verified (a registry error). Fails closed.
inline constexpr char kReasonImageVerification[] = "ImageVerificationFailed";
// Reason of a config commit the verification rules' commitKeys refuse (sign::CheckCommit).
inline constexpr char kReasonCommitVerification[] = "CommitVerificationFailed";

struct GroupKind {
  std::string group, kind;  // globs; group "" is the core group
};

struct Destination {
  std::string server, name, namespace_;  // globs ("!" allowed); server or name may be empty (unused)
};

struct ServiceAccountRule {
  std::string server, namespace_;  // globs over the destination cluster's server and namespace
  std::string service_account;     // "NS:NAME", or "NAME" (in the destination namespace)
};

enum class WindowKind { kAllow, kDeny };

struct Window {
  WindowKind kind = WindowKind::kAllow;
  std::string schedule;  // cron (project/cron.h), UTC
  std::chrono::minutes duration{0};
  std::vector<std::string> environments, applications, clusters, namespaces;  // globs; empty: any
  bool manual_sync = false;
  std::string time_zone = "UTC";
  std::string source;  // file:line:col of the window, "" when built in code
};

// A public key a verification rule trusts. Exactly one of: a PEM file on the machine that
// verifies (the server, or the agent's Pod), a key of a Secret (in secret_namespace, default the
// Project's namespace, read through the cluster the verifier runs against), or the PEM itself.
struct KeySource {
  std::string file;
  std::string secret_namespace, secret_name, secret_key;
  std::string pem;
  // "file /etc/gantry/release.pub", "secret gantry/release-keys key signing.pub", "inline key".
  std::string Describe() const;
};

// What the SLSA provenance of an image must say; empty lists allow anything.
struct ProvenanceRule {
  std::vector<std::string> builder_ids;          // globs over runDetails.builder.id
  std::vector<std::string> source_repositories;  // globs over the source repository URL
  std::vector<std::string> branches;             // globs over the branch the build ran on
};

// spec.verification[i]: images of the environments it names (globs; empty: every environment)
// whose repository ("registry/repository", no tag) matches `images` must carry a cosign signature
// by one of `keys`, and, when `provenance` is set, an SLSA provenance v1 attestation signed by one
// of them that satisfies it. With `commit_keys`, the config commit an application of the project
// is rendered from in those environments must carry an SSH signature by one of them. A rule has
// images and keys, commit_keys, or both. After not_after the rule refuses every image and commit
// it covers.
struct VerificationRule {
  size_t index = 0;  // its position in spec.verification
  std::vector<std::string> environments, images;
  std::vector<KeySource> keys;
  // commitKeys: SSH public keys in authorized_keys form ("ssh-ed25519 AAAA… comment").
  std::vector<std::string> commit_keys;
  std::optional<ProvenanceRule> provenance;
  std::optional<std::chrono::system_clock::time_point> not_after;
  std::string source;  // file:line:col of the rule, "" when built in code
  // "verification[0] (gantry.yaml:12:7)"
  std::string Name() const;
};

struct Project {
  std::string name, namespace_, description;
  std::string source;  // file:line:col of the object, "" when built in code
  std::vector<std::string> source_repos, source_namespaces, image_repos, config_paths, credentials;
  std::vector<Destination> destinations;
  std::vector<ServiceAccountRule> service_accounts;
  std::vector<GroupKind> cluster_allow, cluster_deny, namespace_allow, namespace_deny;
  std::vector<Window> windows;
  std::vector<VerificationRule> verification;
};

// Parses and validates one Project object (a value::Value from value::ParseYaml, with Marks).
// InvalidArgument "FILE:LINE:COL: project NAME: FIELD ..." for: a wrong apiVersion or kind, a
// missing or malformed name, a field of the wrong type, an unknown field under spec (or in one of
// its entries), an invalid glob, a resource entry whose group or kind has no valid shape, an
// invalid cron schedule, a duration that is not a whole number of minutes from 1m to 8784h (366
// days), a time zone other than UTC, an allow window that overlaps a deny window (both named
// with their positions), and a verification rule with neither images and keys nor commitKeys (or
// images without keys, keys without images), a key entry that is not exactly one of file,
// secretRef and pem, a commitKeys entry that is not an SSH public key line, or a notAfter that is
// not an RFC 3339 time.
Result<Project> ParseProject(const value::Value& object);

// Every Project of a stream of objects (other kinds are skipped). A name defined twice is
// InvalidArgument naming both places.
Result<std::vector<Project>> ParseProjects(std::span<const value::Value> objects);

// The CustomResourceDefinition projects.gantry.dev (namespaced, structural schema, printer
// columns), as an object to apply.
value::Value ProjectCrd();

// A permissive project named "default": every repository, namespace, destination, kind, release
// and credential, no windows, no service accounts. What an Application without spec.project gets
// when the operator has defined no Project named "default" (as Argo CD's default project).
Project DefaultProject();

// The decisions. Each returns OK or PermissionDenied with reason kReasonDenied and a message that
// names the project, the rule (its field name) and what was refused.

// sourceRepos over the repository URL. On both sides the scheme and host are lower-cased and a
// trailing "/" or ".git" is ignored; a URL with a "." or ".." path segment is refused.
Status CheckSourceRepo(const Project& p, std::string_view repo_url);
// sourceNamespaces over the namespace an Application lives in. The project's own namespace (where
// only the operator writes) is always allowed, as Argo CD allows its control-plane namespace.
Status CheckAppNamespace(const Project& p, std::string_view ns);
// destinations: some entry whose server matches cluster_server or whose name matches cluster_name
// (an empty argument matches no entry) and whose namespace matches ns; no "!" entry matching.
Status CheckDestination(const Project& p, std::string_view cluster_server, std::string_view cluster_name,
                        std::string_view ns);

struct Object {
  kube::ObjectRef ref;
  bool namespaced = true;
  std::string source;  // "file:line" (or file:line:col) of the manifest, or ""
};
// Every object: its kind against the cluster (cluster-scoped: only what clusterResourceWhitelist
// lists) or namespace allow and deny lists, and, for namespaced ones, its namespace against
// destinations. The first violation is returned; the message ends "; and N more objects are
// refused" when others are.
Status CheckObjects(const Project& p, std::string_view cluster_server, std::string_view cluster_name,
                    std::span<const Object> objects);
// releases: the image repository ("registry.example.com/team-a/web", no tag) against imageRepos
// and the config path (relative to the config repository; "." and ".." resolved, a path that
// leaves the repository refused) against configPaths. An empty argument is not checked.
Status CheckRelease(const Project& p, std::string_view image_repo, std::string_view config_path);
// credentials: the name of a credential entry (Git, registry, cluster).
Status CheckCredential(const Project& p, std::string_view credential_name);

// The verification rules that apply to an image of repository `image_repo` ("registry/repository")
// deployed to `environment`, in order.
std::vector<const VerificationRule*> RulesFor(const Project& p, std::string_view environment,
                                              std::string_view image_repo);

// The verification rules with commitKeys that apply in `environment`, in order.
std::vector<const VerificationRule*> CommitRulesFor(const Project& p, std::string_view environment);

// The user to impersonate for a destination: "system:serviceaccount:NS:NAME" from the first
// destinationServiceAccounts rule whose server and namespace match; "" when none matches (and for
// a rule naming a bare NAME when ns is empty).
std::string ServiceAccountFor(const Project& p, std::string_view cluster_server, std::string_view ns);

// Sync windows at `now`, for an application in an environment, cluster and namespace. A window
// applies when each of its non-empty lists has a glob matching the scope (an empty list: any).
// `clusters` globs match `cluster` (a cluster name) or `cluster_server` (its API server URL).
struct WindowScope {
  std::string application, environment, cluster, namespace_;
  std::string cluster_server;  // optional
};
struct WindowDecision {
  bool allowed = true;
  bool manual_override = false;  // allowed only because manual sync overrode a window: audit it
  std::string message;           // why it is blocked (or overridden); "" when simply allowed
  std::optional<std::chrono::system_clock::time_point> opens_at;  // when blocked: the next time it is not
};
// Windows built in code must have valid schedules and durations (as ParseProject checks); anything
// else is a programmer error (aborts).
// Argo CD semantics: an active deny window that applies blocks; if any allow window applies, sync
// is allowed only while one of them is active. manual=true passes a block only when every window
// blocking it has manualSync: true (then manual_override=true). opens_at is searched up to a year
// ahead (none: it stays closed that long). Message when blocked, e.g.
//   project team-a: sync window deny "0 22 * * *" 8h (gantry.yaml:12:7) is active; syncs open at 2027-01-05T06:00:00Z
WindowDecision CheckWindows(const Project& p, const WindowScope& scope, std::chrono::system_clock::time_point now,
                            bool manual);
// OK, or FailedPrecondition with reason kReasonOutsideWindow and the decision's message.
Status ToStatus(const WindowDecision& d);

}  // namespace gantry::project

#pragma once
// Helm charts from repositories: classic HTTP(S) Helm repositories (index.yaml) and OCI registries
// (oci://), fetched by Gantry itself and extracted into a cache, so that `helm template` (which
// never touches the network; its sandbox has none) renders a local directory.
//
// A chart is named by a ChartRef: the repository URL, the chart's name and a version, which is
// either exact ("18.6.1") or a semver range ("18.x", "^18.1", ">=1.0 <2"; base/semver.h). A range
// picks the highest matching version, releases only unless the range names a pre-release; an empty
// version or "*" or "latest" is the highest release.
//
// HTTP(S) repositories:
//   1. GET <repo>/index.yaml (parsed with value::ParseYaml under limits), kept for index_ttl and
//      fetched again when a caller asks for a fetch that began after the last one (fetch_after, as
//      GitSources does for Git).
//   2. The entry of the chart's chosen version gives the archive's URL (absolute, or relative to
//      the repository URL) and its sha256 `digest`.
//   3. The archive is downloaded, checked against the digest (DataLoss when it differs), and
//      extracted with oci::ExtractLayer (no path outside the directory is ever written: absolute
//      paths, "..", symlinks climbing out, and the size and entry limits are refused) into
//      <cache_dir>/<sha256(repo, chart, version, digest)>/, renamed into place when complete, so a
//      cached chart is never half written and is reused by every later fetch of the same digest.
// OCI registries: oci://host/path with chart NAME is the repository host/path/NAME; the tag is the
// version with '+' written as '_' (as Helm pushes it); a range lists the tags (oci::Registry). The
// manifest's config must be application/vnd.cncf.helm.config.v1+json and its chart layer
// application/vnd.cncf.helm.chart.content.v1.tar+gzip, pulled through oci::Registry (its
// credentials, TLS and token flow) and verified against its digest. The digest that identifies the
// chart is the manifest's.
//
// Credentials (username/password) are bound to their host exactly as Git's are
// (git::CredentialsFor): sent only to the repository's own host, never to an archive URL on another
// host. TLS is verified against the system store or ca_file.
//
// Errors name the repository and the chart. Failures to reach or read the repository (unreachable,
// 401/403, a 5xx, a malformed index, a digest mismatch) carry reason kFetchFailed; a chart or a
// version the repository does not have is NotFound listing a few of what it does have.
//
// Thread-safe: ChartRepos may be shared; concurrent fetches of one chart extract it at most once
// into the cache (the loser of a race keeps the winner's copy).

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "git/git.h"
#include "value/value.h"

namespace gantry::render {

inline constexpr std::string_view kHelmChartConfigMediaType = "application/vnd.cncf.helm.config.v1+json";
inline constexpr std::string_view kHelmChartLayerMediaType = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

struct ChartRef {
  std::string repo_url;  // https://charts.example.com[/path] or oci://host/path
  std::string chart;     // the chart's name
  std::string version;   // exact, a semver range, or "" / "*" / "latest" for the highest release
};

struct ChartRepoOptions {
  std::filesystem::path cache_dir;            // extracted charts (and OCI blobs) under it
  std::vector<git::Credentials> credentials;  // username/password, each sent only to its own host
  std::string ca_file;                        // PEM bundle trusted instead of the system store
  std::vector<std::string> insecure_http_hosts;  // OCI registries reached over plain HTTP
  std::chrono::seconds index_ttl{180};        // how long an index.yaml is reused
  size_t max_index_bytes = size_t{64} << 20;
  uint64_t max_archive_bytes = 64ull << 20;   // a chart archive; also its uncompressed size
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
};

// One version of a chart as a repository lists it.
struct ChartVersion {
  std::string version;
  std::string digest;             // "sha256:<hex>" ("" when the index has none)
  std::vector<std::string> urls;  // HTTP repositories: archive URLs, as written in the index
};

// A chart fetched and extracted.
struct FetchedChart {
  std::filesystem::path dir;  // the chart directory (holds Chart.yaml)
  std::string name;
  std::string version;
  std::string digest;  // "sha256:<hex>": the archive's (HTTP) or the manifest's (OCI)
  // What identifies the exact chart: "name@version sha256:...".
  std::string Revision() const;
};

// The versions of `chart` in the parsed index.yaml `index` (`where` names it in messages), in the
// index's order. InvalidArgument for a malformed index (naming the field); NotFound when the chart is
// not in it, listing up to ten chart names it has.
Result<std::vector<ChartVersion>> ChartVersions(const value::Value& index, std::string_view chart,
                                                std::string_view where);

// The version of `versions` that `wanted` picks (see the file comment). InvalidArgument for a range
// that does not parse; NotFound naming the range and the newest few versions when none matches.
// Versions that are not semver are only matched exactly.
Result<ChartVersion> ChooseVersion(const std::vector<ChartVersion>& versions, std::string_view wanted,
                                   std::string_view what);

class ChartRepos {
 public:
  explicit ChartRepos(ChartRepoOptions options);
  ~ChartRepos();
  ChartRepos(const ChartRepos&) = delete;
  ChartRepos& operator=(const ChartRepos&) = delete;

  // Resolves `ref` to one version and fetches it into the cache (or finds it there). An HTTP index
  // older than index_ttl, or fetched before `fetch_after`, is fetched again (time_point::max():
  // always; the epoch: only when there is none). Errors as in the file comment; InvalidArgument for
  // a URL that is neither http(s):// nor oci://, or an empty chart name.
  Result<FetchedChart> Fetch(const ChartRef& ref,
                             std::chrono::steady_clock::time_point fetch_after = std::chrono::steady_clock::time_point());

  const ChartRepoOptions& options() const { return options_; }

 private:
  struct Index {
    std::chrono::steady_clock::time_point fetched;
    value::Value doc;
  };
  Result<FetchedChart> FetchHttp(const ChartRef& ref, std::chrono::steady_clock::time_point fetch_after);
  Result<FetchedChart> FetchOci(const ChartRef& ref);
  Result<value::Value> IndexOf(const std::string& repo, std::chrono::steady_clock::time_point fetch_after);
  // Extracts the chart archive `archive` into the cache entry `key`; returns the chart directory.
  Result<std::filesystem::path> Extract(const std::filesystem::path& archive, const std::string& key,
                                        const std::string& chart);

  const ChartRepoOptions options_;
  Mutex mu_;
  std::map<std::string, Index> indexes_ GUARDED_BY(mu_);
};

// One chart, fetched with its own ChartRepos (no index kept between calls): for callers that fetch
// once, such as kustomize's helmCharts and `gantry render --chart`.
Result<FetchedChart> FetchChart(const ChartRef& ref, const ChartRepoOptions& options);

}  // namespace gantry::render

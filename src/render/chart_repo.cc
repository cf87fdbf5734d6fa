// Helm charts from HTTP(S) and OCI repositories; see chart_repo.h.

#include "render/chart_repo.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "base/base64.h"
#include "base/hash.h"
#include "base/path.h"
#include "base/semver.h"
#include "http/client.h"
#include "oci/build.h"
#include "oci/layout.h"
#include "oci/oci.h"
#include "oci/registry.h"
#include "render/git_sources.h"

namespace gantry::render {
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kTarGzip = "application/vnd.oci.image.layer.v1.tar+gzip";

Status Fetchfailed(Status s) { return std::move(s).set_reason(kFetchFailed); }

std::string TrimSlash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

// "a, b, c (and 12 more)".
std::string FewOf(const std::vector<std::string>& names, size_t n) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < n; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > n) out += fmt::format(" (and {} more)", names.size() - n);
  return out.empty() ? "none" : out;
}

// The error for an HTTP status other than 200 from `url` of `host`.
Status HttpError(int status, const std::string& url, bool had_credentials) {
  std::string host = git::HostOf(url);
  if (status == 401) {
    return Fetchfailed(UnauthenticatedError(
        "GET {}: 401 Unauthorized: {}", url,
        had_credentials ? fmt::format("the credentials for {} were refused", host)
                        : fmt::format("no credentials for {} (give the repository's username and password)", host)));
  }
  if (status == 403) {
    return Fetchfailed(PermissionDeniedError("GET {}: 403 Forbidden: {}", url,
                                             had_credentials
                                                 ? fmt::format("the credentials for {} were refused", host)
                                                 : fmt::format("no credentials for {}", host)));
  }
  if (status == 404) return Fetchfailed(NotFoundError("GET {}: 404 Not Found", url));
  return Fetchfailed(UnavailableError("GET {}: HTTP {}", url, status));
}

}  // namespace

std::string FetchedChart::Revision() const { return fmt::format("{}@{} {}", name, version, digest); }

Result<std::vector<ChartVersion>> ChartVersions(const value::Value& index, std::string_view chart,
                                                std::string_view where) {
  const value::Value* entries = index.Get("entries");
  if (!index.IsMap() || entries == nullptr || !(entries->IsMap() || entries->IsNull())) {
    return InvalidArgumentError("{}: not a Helm repository index (no entries map)", where);
  }
  const value::Value* list = entries->Get(chart);
  if (list == nullptr) {
    std::vector<std::string> names;
    for (const auto& e : entries->entries()) names.emplace_back(e.key.AsString());
    return NotFoundError("{}: no chart {:?} in the repository; it has {}", where, chart, FewOf(names, 10));
  }
  if (!list->IsSeq()) return InvalidArgumentError("{}: entries.{} is not a list", where, chart);
  std::vector<ChartVersion> out;
  for (size_t i = 0; i < list->size(); ++i) {
    const value::Value& v = *list->At(i);
    std::string field = fmt::format("entries.{}[{}]", chart, i);
    const value::Value* version = v.Get("version");
    if (!v.IsMap() || version == nullptr || !version->IsString() || version->AsString().empty()) {
      return InvalidArgumentError("{}: {}.version is missing or not a string", where, field);
    }
    ChartVersion c;
    c.version = std::string(version->AsString());
    if (const value::Value* d = v.Get("digest"); d != nullptr && !d->IsNull()) {
      std::string hex = d->IsString() ? std::string(d->AsString()) : "";
      if (hex.starts_with("sha256:")) hex.erase(0, 7);
      if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
        return InvalidArgumentError("{}: {}.digest is not a sha256 hex digest", where, field);
      }
      c.digest = "sha256:" + hex;
    }
    if (const value::Value* urls = v.Get("urls"); urls != nullptr && urls->IsSeq()) {
      for (const value::Value& u : urls->items()) {
        if (u.IsString() && !u.AsString().empty()) c.urls.emplace_back(u.AsString());
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

Result<ChartVersion> ChooseVersion(const std::vector<ChartVersion>& versions, std::string_view wanted,
                                   std::string_view what) {
  std::string range(wanted);
  if (range.empty() || range == "latest") range = "*";
  // Exact text first: a version that is not semver can still be named.
  for (const ChartVersion& v : versions) {
    if (v.version == range) return v;
  }
  auto parsed = semver::VersionRange::Parse(range);
  if (!parsed.ok()) {
    return InvalidArgumentError("{}: version {:?} is neither a version the repository has nor a semver range: {}",
                                what, wanted, parsed.status().message());
  }
  const ChartVersion* best = nullptr;
  semver::Version best_v;
  std::vector<std::pair<semver::Version, std::string>> all;
  for (const ChartVersion& v : versions) {
    auto sv = semver::ParseVersion(v.version);
    if (!sv.ok()) continue;
    all.emplace_back(*sv, v.version);
    if (parsed->Matches(*sv) && (best == nullptr || *sv > best_v)) {
      best = &v;
      best_v = *sv;
    }
  }
  if (best != nullptr) return *best;
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> newest;
  for (const auto& [v, text] : all) newest.push_back(text);
  return NotFoundError("{}: no version matches {:?}; the newest are {}", what, wanted, FewOf(newest, 5));
}

ChartRepos::ChartRepos(ChartRepoOptions options) : options_(std::move(options)) {}
ChartRepos::~ChartRepos() = default;

Result<FetchedChart> ChartRepos::Fetch(const ChartRef& ref, SteadyClock::time_point fetch_after) {
  if (ref.chart.empty() || ref.chart.find('/') != std::string::npos || ref.chart == "." || ref.chart == "..") {
    return InvalidArgumentError("chart name {:?} from {} is not a chart name", ref.chart, git::ScrubUrl(ref.repo_url));
  }
  if (ref.repo_url.starts_with("oci://")) return FetchOci(ref);
  if (ref.repo_url.starts_with("https://") || ref.repo_url.starts_with("http://")) return FetchHttp(ref, fetch_after);
  return InvalidArgumentError("chart {} from {:?}: a Helm repository URL starts with https://, http:// or oci://",
                              ref.chart, git::ScrubUrl(ref.repo_url));
}

Result<value::Value> ChartRepos::IndexOf(const std::string& repo, SteadyClock::time_point fetch_after) {
  SteadyClock::time_point now = SteadyClock::now();
  {
    MutexLock lock(mu_);
    auto it = indexes_.find(repo);
    if (it != indexes_.end() && it->second.fetched >= fetch_after && now - it->second.fetched < options_.index_ttl) {
      return it->second.doc;
    }
  }
  std::string url = repo + "/index.yaml";
  http::Client client({.timeout = options_.timeout, .ca_file = options_.ca_file,
                       .max_response_bytes = options_.max_index_bytes, .max_redirects = 3});
  http::ClientRequest req{.url = url};
  auto cred = git::CredentialsFor(options_.credentials, repo);
  if (cred && !cred->password.empty()) {
    req.headers["authorization"] = "Basic " + Base64Encode(cred->username + ":" + cred->password);
  }
  auto resp = client.Send(req);
  if (!resp.ok()) return Fetchfailed(resp.status().WithContext("Helm repository index"));
  if (resp->status != 200) return HttpError(resp->status, url, cred.has_value());
  value::ParseOptions limits{.max_depth = 64, .max_document_bytes = options_.max_index_bytes, .max_documents = 1};
  auto docs = value::ParseYaml(resp->body, url, limits);
  if (!docs.ok()) return Fetchfailed(docs.status().WithContext("Helm repository index"));
  if (docs->size() != 1 || !(*docs)[0].IsMap()) {
    return Fetchfailed(InvalidArgumentError("{}: not a Helm repository index (expected one YAML map)", url));
  }
  MutexLock lock(mu_);
  indexes_[repo] = Index{now, (*docs)[0]};
  return (*docs)[0];
}

Result<FetchedChart> ChartRepos::FetchHttp(const ChartRef& ref, SteadyClock::time_point fetch_after) {
  std::string repo = TrimSlash(ref.repo_url);
  std::string where = git::ScrubUrl(repo) + "/index.yaml";
  GANTRY_ASSIGN_OR_RETURN(value::Value index, IndexOf(repo, fetch_after));
  GANTRY_ASSIGN_OR_RETURN(std::vector<ChartVersion> versions, ChartVersions(index, ref.chart, where));
  GANTRY_ASSIGN_OR_RETURN(ChartVersion chosen,
                          ChooseVersion(versions, ref.version, fmt::format("chart {} in {}", ref.chart, where)));
  if (chosen.urls.empty()) {
    return Fetchfailed(InvalidArgumentError("{}: chart {} version {} has no urls", where, ref.chart, chosen.version));
  }
  FetchedChart out{.name = ref.chart, .version = chosen.version, .digest = chosen.digest};
  std::string key = Sha256Hex(fmt::format("{}\n{}\n{}\n{}", repo, ref.chart, chosen.version, chosen.digest));
  fs::path cached = options_.cache_dir / key / ref.chart;
  std::error_code ec;
  if (!chosen.digest.empty() && fs::is_regular_file(cached / "Chart.yaml", ec)) {
    out.dir = cached;
    return out;
  }
  // The archive's URL: absolute, or relative to the repository.
  std::string url = chosen.urls[0];
  if (!url.starts_with("https://") && !url.starts_with("http://")) {
    if (url.find("://") != std::string::npos || url.starts_with('/')) {
      return Fetchfailed(InvalidArgumentError("{}: chart {} version {}: archive URL {:?} is neither http(s) nor "
                                              "relative to the repository", where, ref.chart, chosen.version, url));
    }
    while (url.starts_with("./")) url.erase(0, 2);
    url = repo + "/" + url;
  }
  fs::create_directories(options_.cache_dir, ec);
  std::string tmpl = (options_.cache_dir / ".download-XXXXXX").string();
  int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0) return Fetchfailed(ErrnoError(errno, "create a file in the chart cache " + options_.cache_dir.string()));
  fs::path archive = tmpl;
  struct Remove {
    fs::path p;
    ~Remove() {
      std::error_code e;
      fs::remove(p, e);
    }
  } remove{archive};
  Sha256 hash;
  uint64_t bytes = 0;
  Status write_error;
  http::Client client({.timeout = options_.timeout, .ca_file = options_.ca_file, .max_redirects = 3});
  http::ClientRequest req{.url = url};
  // Credentials go to the repository's host only, never to an archive elsewhere.
  auto cred = git::CredentialsFor(options_.credentials, repo);
  bool send_cred = cred && !cred->password.empty() && git::HostOf(url) == git::HostOf(repo);
  if (send_cred) req.headers["authorization"] = "Basic " + Base64Encode(cred->username + ":" + cred->password);
  auto resp = client.Send(req, [&](std::string_view chunk) {
    bytes += chunk.size();
    if (bytes > options_.max_archive_bytes) {
      write_error = ResourceExhaustedError("GET {}: chart archive larger than {} bytes", git::ScrubUrl(url),
                                           options_.max_archive_bytes);
      return false;
    }
    hash.Update(chunk);
    if (::write(fd, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) {
      write_error = ErrnoError(errno, "write " + archive.string());
      return false;
    }
    return true;
  });
  ::close(fd);
  if (!write_error.ok()) return Fetchfailed(write_error);
  if (!resp.ok()) return Fetchfailed(resp.status().WithContext(fmt::format("chart {} {}", ref.chart, chosen.version)));
  if (resp->status != 200) return HttpError(resp->status, git::ScrubUrl(url), send_cred);
  std::string got = "sha256:" + hash.FinishHex();
  if (!chosen.digest.empty() && got != chosen.digest) {
    return Fetchfailed(DataLossError("chart {} {} from {}: digest mismatch: the index says {}, the archive is {}",
                                     ref.chart, chosen.version, git::ScrubUrl(url), chosen.digest, got));
  }
  out.digest = got;
  if (chosen.digest.empty()) {
    key = Sha256Hex(fmt::format("{}\n{}\n{}\n{}", repo, ref.chart, chosen.version, got));
  }
  GANTRY_ASSIGN_OR_RETURN(out.dir, Extract(archive, key, ref.chart));
  return out;
}

Result<FetchedChart> ChartRepos::FetchOci(const ChartRef& ref) {
  std::string rest = TrimSlash(ref.repo_url.substr(6));
  auto parsed = oci::ParseReference(rest + "/" + ref.chart);
  if (!parsed.ok()) {
    return InvalidArgumentError("chart {} from {}: {}", ref.chart, ref.repo_url, parsed.status().message());
  }
  oci::Reference repo = *parsed;
  repo.tag.clear();
  repo.digest.clear();
  std::string where = fmt::format("oci://{}/{}", repo.registry, repo.repository);
  oci::RegistryOptions ro{.docker_config = "none", .ca_file = options_.ca_file,
                          .insecure_http_hosts = options_.insecure_http_hosts};
  if (auto cred = git::CredentialsFor(options_.credentials, "oci://" + rest); cred && !cred->password.empty()) {
    ro.credentials.push_back({.host = repo.registry, .username = cred->username, .password = cred->password});
  }
  auto registry = oci::NewHttpRegistry(ro);
  if (!registry.ok()) return Fetchfailed(registry.status().WithContext(where));
  // The tag: the version itself, or the highest tag that matches the range.
  std::string version = ref.version;
  std::string tag;
  std::string exact = version;
  std::replace(exact.begin(), exact.end(), '+', '_');
  bool is_exact = semver::ParseVersion(version).ok();
  if (is_exact) {
    tag = exact;
  } else {
    auto tags = (*registry)->ListTags(repo);
    if (!tags.ok()) return Fetchfailed(tags.status().WithContext("list the tags of " + where));
    std::vector<ChartVersion> versions;
    for (std::string t : *tags) {
      std::replace(t.begin(), t.end(), '_', '+');
      versions.push_back({.version = t});
    }
    GANTRY_ASSIGN_OR_RETURN(ChartVersion chosen, ChooseVersion(versions, version, "chart " + where));
    version = chosen.version;
    tag = version;
    std::replace(tag.begin(), tag.end(), '+', '_');
  }
  oci::Reference ref_tag = repo;
  ref_tag.tag = tag;
  auto raw = (*registry)->GetManifest(ref_tag);
  if (!raw.ok()) {
    if (raw.status().code() == Code::kNotFound) {
      return NotFoundError("chart {}: no version {} (tag {})", where, version, tag);
    }
    return Fetchfailed(raw.status().WithContext(fmt::format("chart {}:{}", where, tag)));
  }
  auto manifest = oci::ParseManifest(raw->bytes, raw->media_type);
  if (!manifest.ok()) return Fetchfailed(manifest.status().WithContext(fmt::format("chart {}:{}", where, tag)));
  if (manifest->config.media_type != kHelmChartConfigMediaType) {
    return InvalidArgumentError("{}:{} is not a Helm chart: its config media type is {:?}, not {}", where, tag,
                                manifest->config.media_type, kHelmChartConfigMediaType);
  }
  const oci::Descriptor* layer = nullptr;
  for (const oci::Descriptor& l : manifest->layers) {
    if (l.media_type == kHelmChartLayerMediaType) layer = &l;
  }
  if (layer == nullptr) {
    return InvalidArgumentError("{}:{} has no layer of media type {}", where, tag, kHelmChartLayerMediaType);
  }
  if (layer->size < 0 || static_cast<uint64_t>(layer->size) > options_.max_archive_bytes) {
    return ResourceExhaustedError("{}:{}: chart archive of {} bytes is larger than {}", where, tag, layer->size,
                                  options_.max_archive_bytes);
  }
  FetchedChart out{.name = ref.chart, .version = version, .digest = raw->digest};
  std::string key = Sha256Hex(fmt::format("{}\n{}\n{}\n{}", where, ref.chart, version, raw->digest));
  fs::path cached = options_.cache_dir / key / ref.chart;
  std::error_code ec;
  if (fs::is_regular_file(cached / "Chart.yaml", ec)) {
    out.dir = cached;
    return out;
  }
  fs::create_directories(options_.cache_dir, ec);
  auto layout = oci::Layout::Open(options_.cache_dir / "oci-blobs", true);
  if (!layout.ok()) return Fetchfailed(layout.status().WithContext("chart cache"));
  if (!layout->HasBlob(layer->digest)) {
    GANTRY_ASSIGN_OR_RETURN(std::unique_ptr<oci::BlobWriter> writer, layout->NewBlob());
    Status s = (*registry)->FetchBlob(repo, *layer, *writer);
    if (!s.ok()) return Fetchfailed(s.WithContext(fmt::format("chart {}:{}", where, tag)));
    auto committed = writer->Commit(layer->media_type, layer->digest);
    if (!committed.ok()) return Fetchfailed(committed.status().WithContext(fmt::format("chart {}:{}", where, tag)));
  }
  GANTRY_ASSIGN_OR_RETURN(out.dir, Extract(layout->BlobPath(layer->digest), key, ref.chart));
  return out;
}

Result<fs::path> ChartRepos::Extract(const fs::path& archive, const std::string& key, const std::string& chart) {
  std::error_code ec;
  std::string tmpl = (options_.cache_dir / ".extract-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Fetchfailed(ErrnoError(errno, "create a directory in the chart cache " + options_.cache_dir.string()));
  }
  fs::path tmp = tmpl;
  oci::ExtractLimits limits{.max_file_bytes = options_.max_archive_bytes, .max_total_bytes = options_.max_archive_bytes,
                            .max_entries = 10'000};
  auto stats = oci::ExtractLayer(archive, kTarGzip, tmp, limits);
  if (!stats.ok()) {
    fs::remove_all(tmp, ec);
    return Fetchfailed(stats.status().WithContext(fmt::format("extract chart {}", chart)));
  }
  if (!fs::is_regular_file(tmp / chart / "Chart.yaml", ec) || fs::is_symlink(tmp / chart, ec)) {
    fs::remove_all(tmp, ec);
    return Fetchfailed(InvalidArgumentError("chart archive of {} has no {}/Chart.yaml", chart, chart));
  }
  fs::path final_dir = options_.cache_dir / key;
  fs::rename(tmp, final_dir, ec);
  if (ec) {
    // Another fetch put it there first: keep theirs.
    fs::remove_all(tmp, ec);
    if (!fs::is_regular_file(final_dir / chart / "Chart.yaml", ec)) {
      return Fetchfailed(InternalError("chart cache entry {} is incomplete", final_dir.string()));
    }
  }
  return final_dir / chart;
}

Result<FetchedChart> FetchChart(const ChartRef& ref, const ChartRepoOptions& options) {
  ChartRepos repos(options);
  return repos.Fetch(ref);
}

}  // namespace gantry::render

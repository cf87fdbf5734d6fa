#include "server/cluster_probe.h"

#include <filesystem>
#include <future>

#include <fmt/format.h>

#include "kube/kube.h"

namespace gantry::server {

ClusterProbe ProbeVersion(const deliver::Cluster& cluster, std::chrono::milliseconds timeout) {
  ClusterProbe out;
  std::error_code ec;
  if (cluster.kubeconfig.empty()) {
    out.error = "no kubeconfig file given";
    return out;
  }
  if (!std::filesystem::exists(cluster.kubeconfig, ec)) {
    out.error = fmt::format("kubeconfig {} does not exist", cluster.kubeconfig);
    return out;
  }
  auto config = kube::LoadConfig({.paths = {cluster.kubeconfig}, .context = cluster.context,
                                  .allowed_exec_plugins = cluster.allow_exec_plugins});
  if (!config.ok()) {
    out.error = config.status().message();
    return out;
  }
  out.server = config->server;
  auto client = kube::NewHttpClient(*config, {.request_timeout = timeout, .connect_timeout = timeout, .max_attempts = 1});
  if (!client.ok()) {
    out.error = client.status().message();
    return out;
  }
  auto version = (*client)->GetRaw("/version");
  if (!version.ok()) {
    out.error = fmt::format("GET {}/version: {}", out.server, version.status().message());
    return out;
  }
  auto parsed = kube::KubeVersionOf(*version);
  if (!parsed.ok()) {
    out.error = fmt::format("GET {}/version: {}", out.server, parsed.status().message());
    return out;
  }
  out.reachable = true;
  out.kube_version = *parsed;
  return out;
}

ProbeCache::ProbeCache(ProbeFn probe, std::chrono::milliseconds ttl, Clock* clock)
    : probe_(std::move(probe)), ttl_(ttl), clock_(clock != nullptr ? *clock : SystemClock()) {}

std::vector<ClusterProbe> ProbeCache::Get(const std::vector<const deliver::Cluster*>& clusters) {
  std::vector<ClusterProbe> out(clusters.size());
  std::vector<std::pair<size_t, std::future<ClusterProbe>>> pending;
  {
    MutexLock lock(mu_);
    const auto now = clock_.Now();
    for (size_t i = 0; i < clusters.size(); ++i) {
      auto it = cache_.find(clusters[i]->name);
      if (it != cache_.end() && now - it->second.at < ttl_) {
        out[i] = it->second.probe;
      } else {
        pending.emplace_back(i, std::async(std::launch::async, probe_, *clusters[i]));
      }
    }
  }
  for (auto& [i, f] : pending) out[i] = f.get();
  MutexLock lock(mu_);
  const auto now = clock_.Now();
  for (const auto& p : pending) cache_[clusters[p.first]->name] = {out[p.first], now};
  return out;
}

}  // namespace gantry::server

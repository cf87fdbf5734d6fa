#include "test/env/toxiproxy.h"

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <chrono>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <thread>
#include <iostream>

#include <fmt/format.h>

#include "test/env/testenv.h"
#include "value/value.h"

namespace gantry::testenv {

Toxiproxy::Toxiproxy(std::string admin_url)
    : url_(std::move(admin_url)), client_({.timeout = std::chrono::seconds(10)}) {}

Result<std::string> Toxiproxy::Call(const std::string& method, const std::string& path,
                                    const std::string& body, int want_status) {
  http::ClientRequest request{.method = method, .url = url_ + path, .body = body};
  if (!body.empty()) request.headers = {{"content-type", "application/json"}};
  auto response = client_.Send(request);
  if (!response.ok()) {
    return Status(response.status().code(), "toxiproxy: " + response.status().message());
  }
  if (response->status != want_status) {
    return Status(Code::kInternal, "toxiproxy: " + method + " " + path + ": HTTP " +
                                             std::to_string(response->status) + ": " + response->body);
  }
  return std::move(response->body);
}

Result<std::string> Toxiproxy::CreateProxy(const std::string& name, const std::string& upstream) {
  (void)Call("DELETE", "/proxies/" + name, "", 204);  // absent is fine
  value::Value proxy = value::Value::Map();
  proxy.Set("name", name);
  proxy.Set("listen", "127.0.0.1:0");
  proxy.Set("upstream", upstream);
  proxy.Set("enabled", true);
  auto body = Call("POST", "/proxies", value::ToJson(proxy), 201);
  if (!body.ok()) return body.status();
  auto created = value::ParseJson(*body, "toxiproxy response");
  if (!created.ok()) return created.status();
  std::string listen = value::StringAt(&*created, {"listen"});
  if (listen.empty()) {
    return Status(Code::kInternal, "toxiproxy: proxy " + name + " created without a listen address: " + *body);
  }
  return listen;
}

Status Toxiproxy::DeleteProxy(const std::string& name) {
  return Call("DELETE", "/proxies/" + name, "", 204).status();
}

Status Toxiproxy::SetEnabled(const std::string& name, bool enabled) {
  value::Value patch = value::Value::Map();
  patch.Set("enabled", enabled);
  return Call("POST", "/proxies/" + name, value::ToJson(patch), 200).status();
}

Status Toxiproxy::AddToxic(const std::string& proxy, const Toxic& toxic) {
  value::Value t = value::Value::Map();
  t.Set("name", toxic.name);
  t.Set("type", toxic.type);
  t.Set("stream", toxic.stream);
  t.Set("toxicity", toxic.toxicity);
  value::Value attributes = value::Value::Map();
  for (const auto& [key, v] : toxic.attributes) attributes.Set(key, v);
  t.Set("attributes", std::move(attributes));
  return Call("POST", "/proxies/" + proxy + "/toxics", value::ToJson(t), 200).status();
}

Status Toxiproxy::RemoveToxic(const std::string& proxy, const std::string& toxic) {
  return Call("DELETE", "/proxies/" + proxy + "/toxics/" + toxic, "", 204).status();
}

Status Toxiproxy::Reset() { return Call("POST", "/reset", "", 204).status(); }

Toxiproxy& SharedToxiproxy() {
  static auto* toxi = new Toxiproxy(Shared("toxiproxy.sh").Get("TOXIPROXY_URL"));
  return *toxi;
}

uint64_t FaultSeed() {
  const char* s = std::getenv("GANTRY_FAULT_SEED");
  return s != nullptr && *s != '\0' ? std::strtoull(s, nullptr, 10) : 1;
}

bool FullFaults() {
  const char* s = std::getenv("GANTRY_FAULTS_FULL");
  return s != nullptr && std::string_view(s) == "1";
}

SmallDisk::SmallDisk(const std::string& size) : dir_(std::filesystem::path(tmp_.path()) / "disk") {
  std::filesystem::create_directories(dir_);
  if (::geteuid() != 0) {
    why_not_ = "mounting a tmpfs needs root";
  } else if (::mount("tmpfs", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, ("size=" + size).c_str()) != 0) {
    why_not_ = fmt::format("mount -t tmpfs -o size={}: {}", size, std::strerror(errno));
  }
}

SmallDisk::~SmallDisk() {
  if (why_not_.empty() && ::umount2(dir_.c_str(), MNT_DETACH) != 0) {
    std::cerr << "umount " << dir_ << ": " << std::strerror(errno) << std::endl;
  }
}

std::filesystem::path SmallDisk::Fill() {
  std::filesystem::path filler = dir_ / "filler";
  std::string chunk(1 << 20, 'x');
  FILE* f = std::fopen(filler.c_str(), "a");
  GANTRY_CHECK(f != nullptr);
  std::setvbuf(f, nullptr, _IONBF, 0);
  for (size_t size : {size_t{1} << 20, size_t{4096}}) {
    while (std::fwrite(chunk.data(), 1, size, f) == size) {
    }
  }
  std::fclose(f);
  return filler;
}

Result<std::string> CreateSlicedSlowCloseProxy(Toxiproxy& toxi, const std::string& name, const std::string& upstream,
                                               std::mt19937_64& random, std::string& what) {
  GANTRY_ASSIGN_OR_RETURN(std::string listen, toxi.CreateProxy(name, upstream));
  const int64_t size = 16 + static_cast<int64_t>(random() % 241);
  const int64_t delay_us = static_cast<int64_t>(random() % 20);
  const int64_t close_ms = 200 + static_cast<int64_t>(random() % 800);
  for (const char* stream : {"downstream", "upstream"}) {
    // size_variation at most half the size: Toxiproxy's slicer panics beyond (its issue 541).
    GANTRY_RETURN_IF_ERROR(toxi.AddToxic(name, {.name = std::string("slicer-") + stream, .type = "slicer",
                                                .stream = stream,
                                                .attributes = {{"average_size", size},
                                                               {"size_variation", size / 2},
                                                               {"delay", delay_us}}}));
  }
  GANTRY_RETURN_IF_ERROR(toxi.AddToxic(name, {.name = "slow-close", .type = "slow_close",
                                              .attributes = {{"delay", close_ms}}}));
  what = fmt::format("slices of {} ± {} bytes {} µs apart, close delayed {} ms", size, size / 2, delay_us, close_ms);
  return listen;
}

std::future<Status> GoHalfOpenAfter(Toxiproxy& toxi, const std::string& proxy, std::chrono::milliseconds after) {
  return std::async(std::launch::async, [&toxi, proxy, after] {
    std::this_thread::sleep_for(after);  // the schedule, not a wait for a condition
    return toxi.AddToxic(proxy, {.name = "half-open", .type = "timeout", .attributes = {{"timeout", 0}}});
  });
}

std::string RandomBytes(size_t size, std::mt19937_64& random) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    uint64_t v = random();
    std::memcpy(&out[i], &v, std::min<size_t>(8, size - i));
  }
  return out;
}

void RecordFault(const std::string& scenario, const std::string& outcome, double fault_s, double recover_s) {
  std::string line = fmt::format("FAULT {} seed={} outcome={} fault_s={:.2f} recover_s={:.2f}", scenario,
                                 FaultSeed(), outcome, fault_s, recover_s);
  std::cout << line << std::endl;
  if (const char* report = std::getenv("GANTRY_FAULTS_REPORT"); report != nullptr && *report != '\0') {
    std::ofstream(report, std::ios::app) << line << "\n";
  }
}

}  // namespace gantry::testenv

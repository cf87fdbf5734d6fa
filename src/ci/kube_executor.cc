// KubernetesExecutor: one Pod per step (see NewKubernetesExecutor in executor.h for what is
// created). Run() creates the step's Secret (secrets only) and NetworkPolicy (network: false), then
// the Pod, and makes the Pod own them; it then polls the Pod until its container terminates, the
// Pod fails, the timeout passes or the step is cancelled, while a second thread polls the log. At
// the end it deletes the Pod, the Secret and the NetworkPolicy, whatever happened. Untrusted steps
// go to the untrusted namespace, made (with its default-deny NetworkPolicy) on first use.

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ctime>
#include <set>
#include <random>
#include <span>
#include <thread>

#include "base/log.h"
#include "base/path.h"
#include "base/mutex.h"
#include "ci/executor.h"
#include "kube/kube.h"
#include "oci/tree_tar.h"
#include "value/value.h"

namespace gantry::ci {
namespace {

using value::Value;

// Lower-case letters, digits and single '-' inside, at most `max` characters: valid in DNS names
// and label values.
std::string DnsName(std::string_view s, size_t max) {
  std::string out;
  for (char c : s) {
    char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool ok = std::isalnum(static_cast<unsigned char>(l)) != 0;
    if (ok) out += l;
    else if (!out.empty() && out.back() != '-') out += '-';
  }
  if (out.size() > max) out.resize(max);
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

Value Map(std::initializer_list<std::pair<std::string_view, Value>> kv) {
  Value m = Value::Map();
  for (const auto& [k, v] : kv) m.Set(k, v);
  return m;
}

Value Seq(std::initializer_list<Value> items) {
  Value s = Value::Seq();
  for (const auto& v : items) s.Append(v);
  return s;
}

std::string Str(const Value* v) { return v != nullptr && v->IsString() ? std::string(v->AsString()) : ""; }

Value Labels(const StepRequest& r, const std::string& pod_name) {
  return Map({{"app.kubernetes.io/managed-by", "gantry"},
              {"gantry.dev/run", DnsName(r.run_label, 63)},
              {"gantry.dev/step", DnsName(r.step, 63)},
              {"gantry.dev/pod", pod_name}});
}

Value Metadata(const StepRequest& r, const std::string& name, const std::string& pod_name, const std::string& ns) {
  return Map({{"name", name},
              {"namespace", ns},
              {"labels", Labels(r, pod_name)},
              {"annotations", Map({{"gantry.dev/run", r.run_label}, {"gantry.dev/step", r.step}})}});
}

// "2024-05-01T10:00:00.5Z" → "2024-05-01T10:00:00.500000000", which orders as text.
std::string TimestampKey(std::string_view ts) {
  if (ts.size() < 19) return std::string(ts);
  std::string key(ts.substr(0, 19));
  std::string frac;
  if (ts.size() > 20 && ts[19] == '.') {
    for (size_t i = 20; i < ts.size() && std::isdigit(static_cast<unsigned char>(ts[i])); ++i) frac += ts[i];
  }
  frac.resize(9, '0');
  return key + "." + frac;
}

// "2024-05-01T10:00:00..." → "2024-05-01T10:00:01Z"; "" when it is not such a time.
std::string NextSecond(std::string_view key) {
  std::tm tm{};
  std::string text(key.substr(0, 19));
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr || *end != '\0') return "";
  time_t next = timegm(&tm) + 1;
  std::tm out{};
  gmtime_r(&next, &out);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &out);
  return buf;
}

// The most one log request asks for (limitBytes): a step writing faster than this per poll is
// read in several polls, never all at once.
constexpr uint64_t kLogFetchBytes = 1 << 20;

// Incremental reading of pods/NAME/log?timestamps=true: the API has no byte offset, so each fetch
// asks for the lines since the last whole second seen and drops the lines already forwarded
// (ordered by timestamp; lines with an equal timestamp are counted). Each fetch is bounded by
// limitBytes; at most `max_bytes` are forwarded in all, then one line says the rest is dropped.
class LogReader {
 public:
  LogReader(kube::Client& client, std::string path, uint64_t max_bytes)
      : client_(client), path_(std::move(path)), max_bytes_(max_bytes) {}

  // Fetches and forwards new lines. Remembers the error of a failed fetch. Returns true when the
  // answer was full (limitBytes) and moved on, so more lines may be waiting for the next fetch.
  bool Fetch(const OutputFn& output) {
    if (capped_) return false;
    std::string url = path_ + fmt::format("?container=step&timestamps=true&limitBytes={}", kLogFetchBytes);
    if (!skip_to_.empty()) {
      url += "&sinceTime=" + skip_to_;
    } else if (!last_key_.empty()) {
      url += "&sinceTime=" + last_key_.substr(0, 19) + "Z";
    }
    auto text = client_.GetRaw(url);
    if (!text.ok()) {
      last_error_ = text.status().message();
      return false;
    }
    served_ = true;
    std::string out;
    std::string_view rest = *text;
    // A full answer may end inside a line: that line comes whole with the next fetch.
    if (rest.size() >= kLogFetchBytes && !rest.ends_with('\n')) rest = rest.substr(0, rest.rfind('\n') + 1);
    while (!rest.empty()) {
      size_t nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
      size_t sp = line.find(' ');
      std::string key = TimestampKey(line.substr(0, sp));
      std::string_view body = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
      if (!last_key_.empty() && key < last_key_) continue;
      if (key == last_key_) {
        if (++seen_here_ <= same_key_count_) continue;
        ++same_key_count_;
      } else {
        last_key_ = key;
        same_key_count_ = seen_here_ = 1;
      }
      if (forwarded_ + out.size() + body.size() + 1 > max_bytes_) {
        capped_ = true;
        out += fmt::format("gantry: the step's log passed {} bytes; the rest of it is not kept\n", max_bytes_);
        break;
      }
      out.append(body);
      out += '\n';
    }
    seen_here_ = 0;
    // A full answer with nothing new: more than kLogFetchBytes were written within the second
    // sinceTime names, and asking again would return the same. Go on from the next second.
    skip_to_.clear();
    if (out.empty() && text->size() >= kLogFetchBytes && !last_key_.empty()) {
      skip_to_ = NextSecond(last_key_);
      out = fmt::format("gantry: more than {} bytes of log within {}; the rest of that second is not shown\n",
                        kLogFetchBytes, last_key_.substr(0, 19));
    }
    forwarded_ += out.size();
    if (!out.empty()) output(out);
    // Asking again helps only when this answer moved on: a first answer that is one line longer
    // than kLogFetchBytes forwards nothing and names no second to skip to, and would come back
    // the same for ever (a step printing 2 MiB without a newline held its run there).
    return !capped_ && text->size() >= kLogFetchBytes && !out.empty();
  }
  bool served() const { return served_; }
  const std::string& last_error() const { return last_error_; }

 private:
  kube::Client& client_;
  std::string path_;
  const uint64_t max_bytes_;
  uint64_t forwarded_ = 0;
  bool capped_ = false;        // max_bytes_ reached: no more fetches
  std::string skip_to_;        // sinceTime of the next fetch after a second too full to read
  std::string last_key_;       // timestamp key of the last forwarded line
  size_t same_key_count_ = 0;  // lines forwarded with that key
  size_t seen_here_ = 0;       // lines with that key seen in the current fetch
  bool served_ = false;
  std::string last_error_;
};

// Whether the workspace goes to the Pod and back (see helper_image in executor.h).
bool Ships(const StepRequest& r, const KubernetesExecutorOptions& o) {
  return !o.helper_image.empty() && !r.workspace.empty();
}

// Where the helper containers mount the volumes, and the marker the init container waits for.
constexpr char kHelperRoot[] = "/gantry";
constexpr char kReadyMarker[] = "/gantry/control/ready";
constexpr char kHelperIn[] = "gantry-in";
constexpr char kHelperOut[] = "gantry-out";

// The status of container `name` in `list` (containerStatuses, initContainerStatuses).
const Value* ContainerStatus(const Value* list, std::string_view name) {
  for (const auto& c : list != nullptr && list->IsSeq() ? list->items() : std::span<const Value>()) {
    if (Str(c.Get("name")) == name) return &c;
  }
  return nullptr;
}

// Sends what it is given in pieces of about 256 KiB (the tar writer's 512-byte headers would
// otherwise be a WebSocket message each).
class Batcher {
 public:
  explicit Batcher(const std::function<Status(std::string_view)>& send) : send_(send) {}
  Status Write(std::string_view d) {
    buf_ += d;
    return buf_.size() >= (256 << 10) ? Flush() : OkStatus();
  }
  Status Flush() {
    if (buf_.empty()) return OkStatus();
    Status s = send_(buf_);
    buf_.clear();
    return s;
  }

 private:
  const std::function<Status(std::string_view)>& send_;
  std::string buf_;
};

// Moves the tree `src` into `dst` (both directories of this host, on one file system): a
// directory meets a directory by merging; anything else at the destination, a symbolic link
// included (the link itself, never its target), is replaced.
Status MergeInto(const std::filesystem::path& src, const std::filesystem::path& dst) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(src, ec)) {
    const fs::path to = dst / e.path().filename();
    const fs::file_status from = fs::symlink_status(e.path(), ec);
    const fs::file_status there = fs::symlink_status(to, ec);
    if (fs::is_directory(from) && fs::is_directory(there)) {
      if (Status s = MergeInto(e.path(), to); !s.ok()) return s;
      continue;
    }
    if (fs::exists(there)) {
      fs::remove_all(to, ec);
      if (ec) return ErrnoError(ec.value(), "remove " + to.string());
    }
    fs::rename(e.path(), to, ec);
    if (ec) return ErrnoError(ec.value(), "move " + e.path().string() + " to " + to.string());
  }
  if (ec) return ErrnoError(ec.value(), "list " + src.string());
  return OkStatus();
}

// A file or directory removed when it goes out of scope.
struct RemoveOnExit {
  std::filesystem::path path;
  ~RemoveOnExit() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
};

class KubernetesExecutor final : public Executor {
 public:
  KubernetesExecutor(kube::Client& client, KubernetesExecutorOptions options)
      : client_(client), options_(std::move(options)) {}

  std::string_view name() const override { return "kubernetes"; }
  bool Isolates() const override { return true; }
  std::string WorkspacePath(const std::filesystem::path&) const override { return "/workspace"; }
  std::string ArtifactsPath(const std::filesystem::path&) const override { return "/artifacts"; }

  Result<StepOutcome> Run(const StepRequest& r, const OutputFn& step_output, const std::atomic<bool>& cancel) override {
    Mutex output_mu;  // the log thread and this one both write
    OutputFn output = [&](std::string_view d) {
      MutexLock lock(output_mu);
      step_output(d);
    };
    if (r.argv.empty()) return InvalidArgumentError("step {}: empty argv", r.step);
    static std::atomic<uint32_t> counter{0};
    std::string pod_name = "gantry";
    for (const std::string& part : {DnsName(r.run_label, 20), DnsName(r.step, 28)}) {
      if (!part.empty()) pod_name += "-" + part;
    }
    pod_name += fmt::format("-{:06x}", (std::random_device{}() ^ counter.fetch_add(1)) & 0xffffff);
    const std::string ns = StepNamespace(r, options_);
    if (!r.trusted) GANTRY_RETURN_IF_ERROR(EnsureUntrustedNamespace(ns));
    kube::ObjectRef pod_ref{"v1", "Pod", ns, pod_name};
    std::vector<kube::ObjectRef> owned;  // deleted at the end
    std::vector<Value> to_adopt;
    auto cleanup = [&] {
      kube::DeleteOptions bg;
      bg.propagation = kube::Propagation::kBackground;
      for (const auto& ref : owned) {
        if (Status s = client_.Delete(ref, bg); !s.ok() && s.code() != Code::kNotFound) {
          log::Warn("ci: delete {}: {}", ref.ToString(), s.message());
        }
      }
    };

    bool has_secrets = false;
    Value data = Value::Map();
    for (const auto& name : r.secret_names) {
      auto it = r.env.find(name);
      if (it == r.env.end()) continue;
      data.Set(name, it->second);
      has_secrets = true;
    }
    if (has_secrets) {
      Value secret = Map({{"apiVersion", "v1"},
                          {"kind", "Secret"},
                          {"metadata", Metadata(r, pod_name + "-env", pod_name, ns)},
                          {"type", "Opaque"},
                          {"stringData", data}});
      auto created = client_.Create(secret);
      if (!created.ok()) return created.status().WithContext(fmt::format("create Secret {}/{}-env", ns, pod_name));
      owned.push_back(kube::RefOf(*created));
      to_adopt.push_back(*created);
    }
    if (!r.network) {
      Value np = Map({{"apiVersion", "networking.k8s.io/v1"},
                      {"kind", "NetworkPolicy"},
                      {"metadata", Metadata(r, pod_name + "-no-network", pod_name, ns)},
                      {"spec", Map({{"podSelector", Map({{"matchLabels", Map({{"gantry.dev/pod", pod_name}})}})},
                                    {"policyTypes", Seq({"Ingress", "Egress"})}})}});
      auto created = client_.Create(np);
      if (!created.ok()) {
        cleanup();
        return created.status().WithContext(fmt::format("create NetworkPolicy {}/{}-no-network", ns, pod_name));
      }
      owned.push_back(kube::RefOf(*created));
      to_adopt.push_back(*created);
    }
    auto created = client_.Create(KubernetesPodSpec(r, pod_name, options_));
    if (!created.ok()) {
      cleanup();
      return created.status().WithContext("create Pod " + pod_ref.ToString());
    }
    owned.insert(owned.begin(), pod_ref);
    // Owned by the Pod: the garbage collector removes them with it if Gantry dies mid-step.
    std::string uid = Str(created->Find({"metadata", "uid"}));
    for (Value obj : to_adopt) {
      Value meta = *obj.Get("metadata");
      meta.Set("ownerReferences",
               Seq({Map({{"apiVersion", "v1"}, {"kind", "Pod"}, {"name", pod_name}, {"uid", uid}})}));
      obj.Set("metadata", meta);
      if (auto s = client_.Replace(obj); !s.ok()) {
        log::Warn("ci: make Pod {} own {}: {}", pod_name, kube::RefOf(obj).ToString(), s.status().message());
      }
    }

    StepOutcome out;
    Clock& clock = options_.clock ? *options_.clock : SystemClock();
    const auto start = clock.Now();
    LogReader logs(client_, fmt::format("/api/v1/namespaces/{}/pods/{}/log", ns, pod_name),
                   options_.max_log_bytes);
    std::atomic<bool> container_started{false};
    struct {
      Mutex mu;
      CondVar cv;
      bool done GUARDED_BY(mu) = false;
    } step;
    // Reads the log every poll until the step is done. The cadence is real time, not `clock`: it
    // times nothing, and on a fake clock a loop of SleepFor() would spin and rush the step's time.
    std::thread log_thread([&] {
      MutexLock lock(step.mu);
      while (!step.done) {
        lock.Unlock();
        if (container_started.load()) logs.Fetch(output);
        lock.Lock();
        step.cv.WaitFor(step.mu, options_.poll, [&]() REQUIRES(step.mu) { return step.done; });
      }
    });
    bool finished = false;  // the container or the Pod ended by itself
    bool step_terminated = false;  // the step container's own state says it ended
    const bool ships = Ships(r, options_);
    bool shipped_in = !ships;
    if (!ships && !r.workspace.empty()) {
      output("gantry: the workspace is not shipped to the Pod (no helper image configured): /workspace starts empty\n");
    }
    std::string last_note;
    auto note = [&](const std::string& text) {
      if (text == last_note) return;
      last_note = text;
      output("gantry: " + text + "\n");
    };
    Status start_error;
    for (;;) {
      auto got = client_.Get(pod_ref);
      if (got.ok()) {
        std::string phase = Str(got->Find({"status", "phase"}));
        const Value* cs = ContainerStatus(got->Find({"status", "containerStatuses"}), "step");
        const Value* term = cs != nullptr ? cs->Find({"state", "terminated"}) : nullptr;
        const Value* waiting = cs != nullptr ? cs->Find({"state", "waiting"}) : nullptr;
        if (!shipped_in) {
          const Value* in = ContainerStatus(got->Find({"status", "initContainerStatuses"}), kHelperIn);
          if (in != nullptr && in->Find({"state", "running"}) != nullptr) {
            const auto t0 = clock.Now();
            auto sent = ShipIn(r, ns, pod_name);
            if (!sent.ok()) {
              start_error = sent.status().WithContext(fmt::format("step {}: ship the workspace to the Pod", r.step));
              break;
            }
            shipped_in = true;
            note(fmt::format("workspace shipped to the Pod ({} files, {} bytes, {} ms)", sent->entries, sent->bytes,
                             std::chrono::duration_cast<std::chrono::milliseconds>(clock.Now() - t0).count()));
          } else if (const Value* w = in != nullptr ? in->Find({"state", "waiting"}) : nullptr; w != nullptr) {
            std::string reason = Str(w->Get("reason"));
            if (reason == "InvalidImageName" || reason == "ErrImageNeverPull") {
              start_error = FailedPreconditionError("step {}: helper image {}: {}: {}", r.step, Str(in->Get("image")),
                                                    reason, Str(w->Get("message")));
              break;
            }
            if (!reason.empty() && reason != "PodInitializing") {
              note("helper container waiting: " + reason + ": " + Str(w->Get("message")));
            }
          }
        }
        if (phase == "Failed" && Str(got->Find({"status", "reason"})) == "DeadlineExceeded") {
          note("Pod failed: " + Str(got->Find({"status", "message"})));
          out.timed_out = true;
          finished = true;
          break;
        }
        if (term != nullptr) {
          const Value* code = term->Get("exitCode");
          out.exit_code = code != nullptr && code->IsInt() ? static_cast<int>(code->AsInt()) : -1;
          std::string reason = Str(term->Get("reason"));
          if (reason != "Completed" && reason != "Error") out.reason = reason;
          finished = true;
          step_terminated = true;
          break;
        }
        if (phase == "Succeeded" || phase == "Failed") {
          // Ended without a container status to read: deadline, eviction, node loss.
          std::string reason = Str(got->Find({"status", "reason"}));
          std::string message = Str(got->Find({"status", "message"}));
          if (!message.empty()) note("Pod " + phase + ": " + message);
          out.exit_code = phase == "Succeeded" ? 0 : -1;
          if (phase == "Failed") out.reason = reason.empty() ? "Pod failed" : reason;
          finished = true;
          break;
        }
        if (phase == "Running" || (cs != nullptr && cs->Find({"state", "running"}) != nullptr)) {
          container_started.store(true);
        }
        if (waiting != nullptr) {
          std::string reason = Str(waiting->Get("reason"));
          std::string message = Str(waiting->Get("message"));
          if (reason == "InvalidImageName" || reason == "ErrImageNeverPull") {
            start_error = FailedPreconditionError("step {}: image {}: {}: {}", r.step,
                                                  Str(cs->Get("image")), reason, message);
            break;
          }
          if (!reason.empty() && reason != "ContainerCreating") note("Pod waiting: " + reason + (message.empty() ? "" : ": " + message));
        }
        const Value* conditions = got->Find({"status", "conditions"});
        for (const auto& c : conditions != nullptr ? conditions->items() : std::span<const Value>()) {
          if (Str(c.Get("type")) == "PodScheduled" && Str(c.Get("status")) == "False") {
            note("Pod not scheduled: " + Str(c.Get("message")));
          }
        }
      } else if (got.status().code() == Code::kNotFound) {
        out.reason = "Pod deleted by someone else";
        note("the step's Pod was deleted by someone else");
        break;
      } else {
        note("cannot read the Pod: " + got.status().message());
      }
      if (clock.Now() - start >= r.timeout) {
        out.timed_out = true;
        break;
      }
      if (cancel.load()) {
        out.cancelled = true;
        break;
      }
      clock.SleepFor(options_.poll);
    }
    {
      MutexLock lock(step.mu);
      step.done = true;
    }
    step.cv.NotifyAll();
    log_thread.join();
    if (finished) {
      // What was written after the last poll: it may be more than one fetch holds.
      while (logs.Fetch(output)) {
      }
      if (!logs.served()) {
        note(fmt::format("no log from the Pod: {} (the cluster serves no container logs; on kwok there are none)",
                         logs.last_error()));
      }
    }
    if (ships && step_terminated && start_error.ok()) {
      // The step container ended; the sidecar keeps the Pod (and its volumes) until now.
      const auto t0 = clock.Now();
      auto back = ShipOut(r, ns, pod_name);
      if (back.ok()) {
        note(fmt::format("workspace brought back from the Pod ({} files, {} bytes, {} ms)", back->entries, back->bytes,
                         std::chrono::duration_cast<std::chrono::milliseconds>(clock.Now() - t0).count()));
      } else {
        note("the workspace was not brought back from the Pod: " + back.status().message());
        if (out.exit_code == 0) out.exit_code = -1;
        out.reason = "workspace not brought back";
      }
    }
    out.duration = std::chrono::duration_cast<std::chrono::milliseconds>(clock.Now() - start);
    cleanup();
    if (!start_error.ok()) return start_error;
    return out;
  }

 private:
  // Streams a tar of the workspace and the earlier artifacts into the init container, whose
  // `gantry internal untar` writes the ready marker last.
  Result<oci::TreeTarStats> ShipIn(const StepRequest& r, const std::string& ns, const std::string& pod) {
    std::vector<oci::TarTree> trees{{r.workspace, "workspace"}};
    if (!r.artifacts.empty()) trees.push_back({r.artifacts, "artifacts"});
    std::optional<oci::TreeTarStats> stats;
    std::string err;
    kube::ExecStreams streams;
    streams.write_stdin = [&](const std::function<Status(std::string_view)>& send) -> Status {
      Batcher batch(send);
      auto written = oci::WriteTreesTar(trees, [&](std::string_view d) { return batch.Write(d); },
                                        options_.max_transfer_bytes);
      if (!written.ok()) return written.status();
      stats = *written;
      return batch.Flush();
    };
    streams.on_stderr = [&](std::string_view d) {
      if (err.size() < 4096) err += d;
    };
    streams.timeout = std::max<std::chrono::milliseconds>(r.timeout, std::chrono::minutes(5));
    auto code = client_.Exec({ns, pod, kHelperIn,
                              {options_.helper_binary, "internal", "untar", kHelperRoot, "--marker", kReadyMarker,
                               "--max-bytes", std::to_string(options_.max_transfer_bytes + (64 << 20))}},
                             streams);
    if (!code.ok()) return code.status();
    if (*code != 0) return UnavailableError("gantry internal untar exited with {}: {}", *code, err);
    if (!stats) return InternalError("no tar was written");
    return *stats;
  }

  // Reads the workspace back from the sidecar into a file beside the host workspace, extracts it
  // beside it too, then replaces the workspace's contents with it.
  Result<oci::ExtractStats> ShipOut(const StepRequest& r, const std::string& ns, const std::string& pod) {
    namespace fs = std::filesystem;
    fs::path ws = fs::absolute(r.workspace).lexically_normal();
    if (ws.filename().empty()) ws = ws.parent_path();  // "/runs/12/ws/"
    const std::string base = fmt::format("{}.from-pod-{:06x}", ws.filename().string(), std::random_device{}() & 0xffffff);
    RemoveOnExit tar_file{ws.parent_path() / (base + ".tar")};
    RemoveOnExit tmp{ws.parent_path() / base};
    int fd = ::open(tar_file.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoError(errno, "create " + tar_file.path.string());
    uint64_t received = 0;
    // The tar's headers and padding on top of the files' bytes.
    const uint64_t max_tar = options_.max_transfer_bytes + options_.max_transfer_bytes / 8 + (64 << 20);
    std::string err;
    kube::ExecStreams streams;
    streams.on_stdout = [&](std::string_view d) -> Status {
      received += d.size();
      if (received > max_tar) {
        return ResourceExhaustedError("the workspace's tar passed {} bytes (max_transfer_bytes {})", max_tar,
                                      options_.max_transfer_bytes);
      }
      return WriteAll(fd, d, tar_file.path);
    };
    streams.on_stderr = [&](std::string_view d) {
      if (err.size() < 4096) err += d;
    };
    streams.timeout = std::max<std::chrono::milliseconds>(r.timeout, std::chrono::minutes(5));
    auto code = client_.Exec({ns, pod, kHelperOut,
                              {options_.helper_binary, "internal", "tar", kHelperRoot, "workspace", "--max-bytes",
                               std::to_string(options_.max_transfer_bytes)}},
                             streams);
    ::close(fd);
    if (!code.ok()) return code.status();
    if (*code != 0) return UnavailableError("gantry internal tar exited with {}: {}", *code, err);

    if (::mkdir(tmp.path.c_str(), 0700) != 0) return ErrnoError(errno, "create " + tmp.path.string());
    int in = ::open(tar_file.path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0) return ErrnoError(errno, "open " + tar_file.path.string());
    oci::ReadFn read = [&](char* buf, size_t n) -> Result<size_t> {
      for (;;) {
        ssize_t got = ::read(in, buf, n);
        if (got >= 0) return static_cast<size_t>(got);
        if (errno != EINTR) return ErrnoError(errno, "read " + tar_file.path.string());
      }
    };
    auto stats = oci::ExtractTreeTar(read, tmp.path,
                                     {.max_file_bytes = options_.max_transfer_bytes, .max_total_bytes = max_tar});
    ::close(in);
    if (!stats.ok()) return stats.status().WithContext("extract what the Pod sent");
    const fs::path got = tmp.path / "workspace";
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(got, ec))) {
      return InvalidArgumentError("what the Pod sent holds no workspace directory");
    }
    // Merged, not replaced: steps running in parallel each bring back their own copy, and neither
    // may wipe what the other (or the runner, keeping caches and artifacts) wrote meanwhile. One
    // merge at a time: MergeInto checks that a destination directory is not a link before it moves
    // into it, and a concurrent merge of a parallel step could otherwise swap that directory for a
    // link (to /etc, say) between the check and the move.
    MutexLock lock(merge_mu_);
    if (Status m = MergeInto(got, ws); !m.ok()) return m.WithContext("merge what the Pod sent into the workspace");
    return *stats;
  }

  // Creates `ns` and its default-deny NetworkPolicy where missing (once per executor and
  // namespace). An error names what could not be created: untrusted steps do not run without it.
  Status EnsureUntrustedNamespace(const std::string& ns) {
    MutexLock lock(ensure_mu_);
    if (ensured_.contains(ns)) return OkStatus();
    Value labels = Map({{"app.kubernetes.io/managed-by", "gantry"}, {"gantry.dev/trust", "untrusted"}});
    // Pod Security admission refuses, there, any Pod less locked down than the restricted profile.
    Value ns_labels = labels;
    ns_labels.Set("pod-security.kubernetes.io/enforce", "restricted");
    Value object = Map({{"apiVersion", "v1"},
                        {"kind", "Namespace"},
                        {"metadata", Map({{"name", ns}, {"labels", ns_labels}})}});
    if (auto c = client_.Create(object); !c.ok() && c.status().code() != Code::kAlreadyExists) {
      return c.status().WithContext(fmt::format("create the namespace {} for untrusted steps", ns));
    }
    Value deny = Map({{"apiVersion", "networking.k8s.io/v1"},
                      {"kind", "NetworkPolicy"},
                      {"metadata", Map({{"name", "gantry-default-deny"}, {"namespace", ns}, {"labels", labels}})},
                      {"spec", Map({{"podSelector", Value::Map()}, {"policyTypes", Seq({"Ingress", "Egress"})}})}});
    if (auto c = client_.Create(deny); !c.ok() && c.status().code() != Code::kAlreadyExists) {
      return c.status().WithContext(fmt::format("create NetworkPolicy {}/gantry-default-deny", ns));
    }
    ensured_.insert(ns);
    return OkStatus();
  }

  kube::Client& client_;
  KubernetesExecutorOptions options_;
  Mutex ensure_mu_;
  std::set<std::string> ensured_ GUARDED_BY(ensure_mu_);
  Mutex merge_mu_;  // held by ShipOut while it merges a Pod's workspace into the host's
};

}  // namespace

std::string StepNamespace(const StepRequest& r, const KubernetesExecutorOptions& options) {
  if (r.trusted) return options.namespace_;
  return options.untrusted_namespace.empty() ? options.namespace_ + "-untrusted" : options.untrusted_namespace;
}

Value KubernetesPodSpec(const StepRequest& r, const std::string& pod_name, const KubernetesExecutorOptions& options) {
  // Never root, whatever was configured: runAsNonRoot would refuse to start it anyway.
  int64_t uid = options.run_as_user > 0 ? options.run_as_user : 1000;
  Value cmd = Value::Seq();
  for (const auto& a : r.argv) cmd.Append(a);
  Value env = Value::Seq();
  for (const auto& [k, v] : r.env) {
    if (r.secret_names.contains(k)) {
      env.Append(Map({{"name", k},
                      {"valueFrom", Map({{"secretKeyRef", Map({{"name", pod_name + "-env"}, {"key", k}})}})}}));
    } else {
      env.Append(Map({{"name", k}, {"value", v}}));
    }
  }
  const bool ships = Ships(r, options);
  Value spec_init;
  Value security = Map({{"runAsNonRoot", true},
                        {"allowPrivilegeEscalation", false},
                        {"privileged", false},
                        {"readOnlyRootFilesystem", true},
                        {"capabilities", Map({{"drop", Seq({"ALL"})}})},
                        {"seccompProfile", Map({{"type", "RuntimeDefault"}})}});
  Value mounts = Seq({Map({{"name", "workspace"}, {"mountPath", "/workspace"}}),
                      Map({{"name", "tmp"}, {"mountPath", "/tmp"}})});
  if (ships) mounts.Append(Map({{"name", "artifacts"}, {"mountPath", "/artifacts"}, {"readOnly", true}}));
  Value c = Map({{"name", "step"},
                 {"image", r.image.empty() ? options.default_image : r.image},
                 {"command", cmd},
                 {"workingDir", "/workspace"},
                 {"env", env},
                 {"volumeMounts", mounts},
                 {"securityContext", security}});
  if (r.limits.memory_bytes > 0) {
    std::string mem = std::to_string(r.limits.memory_bytes);
    c.Set("resources", Map({{"limits", Map({{"memory", mem}})}, {"requests", Map({{"memory", mem}})}}));
  }
  Value containers = Seq({c});
  Value volumes = Seq({Map({{"name", "workspace"}, {"emptyDir", Value::Map()}}),
                       Map({{"name", "tmp"}, {"emptyDir", Value::Map()}})});
  int64_t deadline = std::max<int64_t>(1, (r.timeout.count() + 999) / 1000);
  if (ships) {
    // The transfers in and out happen within the Pod's life: give them time beyond the step's.
    deadline += 300;
    auto helper = [&](const char* name, std::initializer_list<const char*> args, Value helper_mounts) {
      Value argv = Seq({Value(options.helper_binary)});
      for (const char* a : args) argv.Append(a);
      return Map({{"name", name},
                  {"image", options.helper_image},
                  {"command", argv},
                  {"volumeMounts", helper_mounts},
                  {"securityContext", security}});
    };
    std::string wait = std::to_string(deadline);
    Value in_mounts = Seq({Map({{"name", "workspace"}, {"mountPath", "/gantry/workspace"}}),
                           Map({{"name", "artifacts"}, {"mountPath", "/gantry/artifacts"}}),
                           Map({{"name", "control"}, {"mountPath", "/gantry/control"}})});
    Value out_mounts = Seq({Map({{"name", "workspace"}, {"mountPath", "/gantry/workspace"}, {"readOnly", true}}),
                            Map({{"name", "control"}, {"mountPath", "/gantry/control"}})});
    Value in = helper(kHelperIn, {"internal", "await-file", kReadyMarker, "--timeout"}, in_mounts);
    in.MutableGet("command")->Append(wait);
    // Waits for a file nobody writes: it only keeps the Pod Running until the executor has read
    // the workspace back and deletes the Pod.
    Value out = helper(kHelperOut, {"internal", "await-file", "/gantry/control/never", "--timeout"}, out_mounts);
    out.MutableGet("command")->Append(wait);
    containers.Append(out);
    volumes.Append(Map({{"name", "artifacts"}, {"emptyDir", Value::Map()}}));
    volumes.Append(Map({{"name", "control"}, {"emptyDir", Value::Map()}}));
    spec_init = Seq({in});
  }
  Value spec = Map({{"restartPolicy", "Never"},
                    {"automountServiceAccountToken", false},
                    {"enableServiceLinks", false},
                    // A step is deleted only when it timed out or was cancelled: SIGTERM, then
                    // SIGKILL 5 s later, not the default 30 s of a step ignoring SIGTERM.
                    {"terminationGracePeriodSeconds", 5},
                    {"activeDeadlineSeconds", deadline},
                    {"securityContext", Map({{"runAsNonRoot", true},
                                             {"runAsUser", uid},
                                             {"runAsGroup", uid},
                                             {"fsGroup", uid},
                                             {"seccompProfile", Map({{"type", "RuntimeDefault"}})}})},
                    {"containers", containers},
                    {"volumes", volumes}});
  if (!spec_init.IsNull()) spec.Set("initContainers", spec_init);
  if (!options.service_account.empty()) spec.Set("serviceAccountName", options.service_account);
  if (!options.node_selector.empty()) {
    Value selector = Value::Map();
    for (const auto& [k, v] : options.node_selector) selector.Set(k, v);
    spec.Set("nodeSelector", selector);
  }
  if (!options.tolerate_taints.empty()) {
    Value tolerations = Value::Seq();
    for (const auto& key : options.tolerate_taints) tolerations.Append(Map({{"key", key}, {"operator", "Exists"}}));
    spec.Set("tolerations", tolerations);
  }
  return Map({{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", Metadata(r, pod_name, pod_name, StepNamespace(r, options))},
              {"spec", spec}});
}

std::unique_ptr<Executor> NewKubernetesExecutor(kube::Client& client, KubernetesExecutorOptions options) {
  return std::make_unique<KubernetesExecutor>(client, std::move(options));
}

}  // namespace gantry::ci

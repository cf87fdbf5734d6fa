// Cluster and Environment objects: parsing, promotion order, path templates.

#include <algorithm>
#include <set>

#include "base/duration.h"
#include "base/path.h"
#include "deliver/deliver.h"
#include "value/position.h"

namespace gantry::deliver {
namespace {

std::string Where(const value::Value& v) { return value::PositionPrefix(v); }

// `source` (file:line:column) to start a message with.
std::string Prefix(const std::string& source) { return source.empty() ? source : source + ": "; }

Result<std::string> StringField(const value::Value& parent, std::string_view key, bool required,
                                std::string_view what) {
  const value::Value* v = parent.Get(key);
  if (v == nullptr || v->IsNull()) {
    if (required) return InvalidArgumentError("{}{}: {} is required", Where(parent), what, key);
    return std::string();
  }
  if (!v->IsString()) return InvalidArgumentError("{}{}: {} must be a string", Where(*v), what, key);
  return std::string(v->AsString());
}

Result<std::vector<std::string>> NameList(const value::Value& parent, std::string_view key, std::string_view what) {
  std::vector<std::string> out;
  const value::Value* v = parent.Get(key);
  if (v == nullptr || v->IsNull()) return out;
  if (v->IsString()) {
    out.emplace_back(v->AsString());
    return out;
  }
  if (!v->IsSeq()) return InvalidArgumentError("{}{}: {} must be a name or a list of names", Where(*v), what, key);
  for (const auto& item : v->items()) {
    if (!item.IsString() || item.AsString().empty())
      return InvalidArgumentError("{}{}: {} must hold names (strings)", Where(item), what, key);
    out.emplace_back(item.AsString());
  }
  return out;
}

Result<bool> BoolField(const value::Value& parent, std::string_view key, bool fallback, std::string_view what) {
  const value::Value* v = parent.Get(key);
  if (v == nullptr || v->IsNull()) return fallback;
  if (!v->IsBool()) return InvalidArgumentError("{}{}: {} must be true or false", Where(*v), what, key);
  return v->AsBool();
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_')) return false;
  }
  return true;
}

Result<Cluster> ParseCluster(const value::Value& obj, const std::string& name) {
  Cluster c;
  c.name = name;
  c.source = value::PositionOf(obj);
  std::string what = "Cluster " + name;
  const value::Value* spec = obj.Get("spec");
  if (spec == nullptr || !spec->IsMap()) return InvalidArgumentError("{}{}: spec is required", Where(obj), what);
  GANTRY_ASSIGN_OR_RETURN(c.kubeconfig, StringField(*spec, "kubeconfig", true, what));
  GANTRY_ASSIGN_OR_RETURN(c.context, StringField(*spec, "context", false, what));
  GANTRY_ASSIGN_OR_RETURN(c.environment, StringField(*spec, "environment", false, what));
  GANTRY_ASSIGN_OR_RETURN(c.allow_exec_plugins, NameList(*spec, "allowExecPlugins", what));
  GANTRY_ASSIGN_OR_RETURN(std::string mode, StringField(*spec, "mode", false, what));
  if (mode != "" && mode != "push" && mode != "pull")
    return InvalidArgumentError("{}{}: spec.mode must be push or pull, not {:?}", Where(*spec->Get("mode")), what, mode);
  c.pull = mode == "pull";
  if (const value::Value* labels = spec->Get("labels"); labels != nullptr && !labels->IsNull()) {
    if (!labels->IsMap()) return InvalidArgumentError("{}{}: spec.labels must be a map", Where(*labels), what);
    for (const auto& e : labels->entries()) {
      if (!e.value.IsString()) return InvalidArgumentError("{}{}: label {} must be a string", Where(e.value), what, e.key.AsString());
      c.labels[std::string(e.key.AsString())] = std::string(e.value.AsString());
    }
  }
  return c;
}

Result<Environment> ParseEnvironment(const value::Value& obj, const std::string& name) {
  Environment e;
  e.name = name;
  e.source = value::PositionOf(obj);
  std::string what = "Environment " + name;
  static const value::Value kEmpty = value::Value::Map();
  const value::Value* spec = obj.Get("spec");
  if (spec == nullptr || spec->IsNull()) spec = &kEmpty;
  if (!spec->IsMap()) return InvalidArgumentError("{}{}: spec must be a map", Where(*spec), what);
  GANTRY_ASSIGN_OR_RETURN(e.after, NameList(*spec, "after", what));
  GANTRY_ASSIGN_OR_RETURN(e.clusters, NameList(*spec, "clusters", what));
  if (const value::Value* gates = spec->Get("gates"); gates != nullptr && !gates->IsNull()) {
    if (!gates->IsMap()) return InvalidArgumentError("{}{}: spec.gates must be a map", Where(*gates), what);
    for (const auto& entry : gates->entries()) {
      std::string_view k = entry.key.AsString();
      if (k != "healthy" && k != "approval" && k != "soak")
        return InvalidArgumentError("{}{}: unknown gate {:?} (healthy, approval, soak)", Where(entry.key), what, k);
    }
    GANTRY_ASSIGN_OR_RETURN(e.gates.healthy, BoolField(*gates, "healthy", true, what));
    GANTRY_ASSIGN_OR_RETURN(e.gates.approval, BoolField(*gates, "approval", false, what));
    if (const value::Value* soak = gates->Get("soak"); soak != nullptr && !soak->IsNull()) {
      std::string text = soak->IsString() ? std::string(soak->AsString())
                         : soak->IsInt()  ? std::to_string(soak->AsInt())
                                          : "";
      auto d = ParseDuration(text);
      if (!d.ok()) return InvalidArgumentError("{}{}: gates.soak: {}", Where(*soak), what, d.status().message());
      e.gates.soak = *d;
    }
  }
  return e;
}

}  // namespace

const Cluster* Config::FindCluster(std::string_view name) const {
  for (const auto& c : clusters)
    if (c.name == name) return &c;
  return nullptr;
}

const Environment* Config::FindEnvironment(std::string_view name) const {
  for (const auto& e : environments)
    if (e.name == name) return &e;
  return nullptr;
}

std::vector<const Cluster*> Config::ClustersOf(const Environment& env) const {
  std::vector<const Cluster*> out;
  if (!env.clusters.empty()) {
    for (const auto& name : env.clusters)
      if (const Cluster* c = FindCluster(name); c != nullptr && !c->pull) out.push_back(c);
    return out;
  }
  for (const auto& c : clusters)
    if (c.environment == env.name && !c.pull) out.push_back(&c);
  std::sort(out.begin(), out.end(), [](const Cluster* a, const Cluster* b) { return a->name < b->name; });
  return out;
}

Result<project::Project> Config::ProjectNamed(std::string_view name) const {
  std::vector<std::string> known;
  for (const auto& p : projects) {
    if (p.name == name) return p;
    known.push_back(p.name);
  }
  if (name == "default") return project::DefaultProject();
  return NotFoundError("no Project {:?} in the configuration (known: {})", name,
                       known.empty() ? "none" : fmt::format("{}", fmt::join(known, ", ")));
}

Result<Config> ParseConfig(const std::vector<value::Value>& objects) {
  Config config;
  for (const auto& obj : objects) {
    if (!obj.IsMap()) return InvalidArgumentError("{}expected a Cluster or Environment object", Where(obj));
    GANTRY_ASSIGN_OR_RETURN(std::string api, StringField(obj, "apiVersion", true, "object"));
    GANTRY_ASSIGN_OR_RETURN(std::string kind, StringField(obj, "kind", true, "object"));
    if (api != kApiVersion)
      return InvalidArgumentError("{}apiVersion {:?} is not supported (want {})", Where(*obj.Get("apiVersion")), api, kApiVersion);
    const value::Value* meta = obj.Get("metadata");
    if (meta == nullptr || !meta->IsMap()) return InvalidArgumentError("{}{}: metadata.name is required", Where(obj), kind);
    GANTRY_ASSIGN_OR_RETURN(std::string name, StringField(*meta, "name", true, kind));
    if (!ValidName(name))
      return InvalidArgumentError("{}{} name {:?}: use lower-case letters, digits, '-', '.' or '_' (at most 63)",
                                  Where(*meta->Get("name")), kind, name);
    if (kind == "Cluster") {
      if (config.FindCluster(name) != nullptr)
        return InvalidArgumentError("{}Cluster {} is defined twice (first at {})", Where(obj), name, config.FindCluster(name)->source);
      GANTRY_ASSIGN_OR_RETURN(Cluster c, ParseCluster(obj, name));
      config.clusters.push_back(std::move(c));
    } else if (kind == "Project") {
      GANTRY_ASSIGN_OR_RETURN(project::Project p, project::ParseProject(obj));
      for (const auto& other : config.projects) {
        if (other.name == p.name)
          return InvalidArgumentError("{}Project {} is defined twice (first at {})", Where(obj), p.name, other.source);
      }
      config.projects.push_back(std::move(p));
    } else if (kind == "Environment") {
      if (config.FindEnvironment(name) != nullptr)
        return InvalidArgumentError("{}Environment {} is defined twice (first at {})", Where(obj), name,
                                    config.FindEnvironment(name)->source);
      GANTRY_ASSIGN_OR_RETURN(Environment e, ParseEnvironment(obj, name));
      config.environments.push_back(std::move(e));
    } else {
      return InvalidArgumentError("{}kind {:?} is not supported here (want Cluster, Environment or Project)", Where(*obj.Get("kind")), kind);
    }
  }
  return config;
}

Result<Config> LoadConfig(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return NotFoundError("configuration {}: no such file or directory", path.string());
  std::vector<std::filesystem::path> files;
  if (std::filesystem::is_directory(path, ec)) {
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      auto ext = entry.path().extension();
      if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml") && entry.path().filename().string()[0] != '.')
        files.push_back(entry.path());
    }
    if (ec) return ErrnoError(ec.value(), "read " + path.string());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  std::vector<value::Value> objects;
  for (const auto& f : files) {
    GANTRY_ASSIGN_OR_RETURN(std::string text, ReadFile(f, 8u << 20));
    GANTRY_ASSIGN_OR_RETURN(auto docs, value::ParseYaml(text, f.string()));
    for (auto& d : docs) objects.push_back(std::move(d));
  }
  return ParseConfig(objects);
}

Result<Config> LoadConfigDirIfExists(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return Config{};
  return LoadConfig(dir);
}

Result<std::vector<std::string>> PromotionOrder(const Config& config) {
  std::map<std::string, std::string> env_of_cluster;
  for (const auto& e : config.environments) {
    for (const auto& a : e.after) {
      if (config.FindEnvironment(a) == nullptr)
        return InvalidArgumentError("{}Environment {}: after: names unknown environment {:?}", Prefix(e.source), e.name, a);
      if (a == e.name) return InvalidArgumentError("{}Environment {}: after: names itself", Prefix(e.source), e.name);
    }
    for (const auto& c : e.clusters) {
      if (config.FindCluster(c) == nullptr)
        return InvalidArgumentError("{}Environment {}: clusters: names unknown cluster {:?}", Prefix(e.source), e.name, c);
    }
    for (const Cluster* c : config.ClustersOf(e)) {
      auto [it, inserted] = env_of_cluster.emplace(c->name, e.name);
      if (!inserted)
        return InvalidArgumentError("{}cluster {} is in two environments: {} and {}", Prefix(e.source), c->name, it->second, e.name);
    }
  }
  // Kahn's algorithm, taking the earliest declared ready environment each time.
  std::vector<std::string> order;
  std::set<std::string> done;
  while (order.size() < config.environments.size()) {
    const Environment* next = nullptr;
    for (const auto& e : config.environments) {
      if (done.count(e.name)) continue;
      if (std::all_of(e.after.begin(), e.after.end(), [&](const std::string& a) { return done.count(a) > 0; })) {
        next = &e;
        break;
      }
    }
    if (next == nullptr) {
      // Every remaining environment waits for another remaining one: walk to find a cycle.
      const Environment* start = nullptr;
      for (const auto& e : config.environments)
        if (!done.count(e.name)) {
          start = &e;
          break;
        }
      std::vector<std::string> path;
      std::map<std::string, size_t> seen;
      const Environment* cur = start;
      while (!seen.count(cur->name)) {
        seen[cur->name] = path.size();
        path.push_back(cur->name);
        for (const auto& a : cur->after)
          if (!done.count(a)) {
            cur = config.FindEnvironment(a);
            break;
          }
      }
      std::string cycle;
      for (size_t i = seen[cur->name]; i < path.size(); ++i) cycle += path[i] + " → ";
      cycle += cur->name;
      return InvalidArgumentError("{}Environment {}: after: forms a cycle: {}", cur->source, cur->name, cycle);
    }
    done.insert(next->name);
    order.push_back(next->name);
  }
  return order;
}

value::Value ToObject(const Cluster& c) {
  value::Value obj = value::Value::Map();
  obj.Set("apiVersion", kApiVersion);
  obj.Set("kind", "Cluster");
  value::Value meta = value::Value::Map();
  meta.Set("name", c.name);
  obj.Set("metadata", meta);
  value::Value spec = value::Value::Map();
  spec.Set("kubeconfig", c.kubeconfig);
  if (!c.context.empty()) spec.Set("context", c.context);
  if (!c.allow_exec_plugins.empty()) {
    value::Value plugins = value::Value::Seq();
    for (const auto& p : c.allow_exec_plugins) plugins.Append(p);
    spec.Set("allowExecPlugins", plugins);
  }
  if (!c.environment.empty()) spec.Set("environment", c.environment);
  if (c.pull) spec.Set("mode", "pull");
  if (!c.labels.empty()) {
    value::Value labels = value::Value::Map();
    for (const auto& [k, v] : c.labels) labels.Set(k, v);
    spec.Set("labels", labels);
  }
  obj.Set("spec", spec);
  return obj;
}

value::Value ToObject(const Environment& e) {
  value::Value obj = value::Value::Map();
  obj.Set("apiVersion", kApiVersion);
  obj.Set("kind", "Environment");
  value::Value meta = value::Value::Map();
  meta.Set("name", e.name);
  obj.Set("metadata", meta);
  value::Value spec = value::Value::Map();
  auto list = [](const std::vector<std::string>& names) {
    value::Value s = value::Value::Seq();
    for (const auto& n : names) s.Append(n);
    return s;
  };
  if (!e.after.empty()) spec.Set("after", list(e.after));
  if (!e.clusters.empty()) spec.Set("clusters", list(e.clusters));
  value::Value gates = value::Value::Map();
  gates.Set("healthy", e.gates.healthy);
  gates.Set("approval", e.gates.approval);
  if (e.gates.soak.count() > 0) gates.Set("soak", fmt::format("{}ms", e.gates.soak.count()));
  spec.Set("gates", gates);
  obj.Set("spec", spec);
  return obj;
}

Result<std::string> ExpandPathTemplate(std::string_view tmpl, std::string_view app, std::string_view env) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] != '{') {
      if (tmpl[i] == '}') return InvalidArgumentError("path template {:?}: unmatched '}}'", tmpl);
      out += tmpl[i];
      continue;
    }
    size_t end = tmpl.find('}', i);
    if (end == std::string_view::npos) return InvalidArgumentError("path template {:?}: unterminated '{{'", tmpl);
    std::string_view key = tmpl.substr(i + 1, end - i - 1);
    if (key == "app") {
      out += app;
    } else if (key == "env") {
      out += env;
    } else {
      return InvalidArgumentError("path template {:?}: unknown placeholder {{{}}} (use {{app}} and {{env}})", tmpl, key);
    }
    i = end;
  }
  return out;
}

}  // namespace gantry::deliver

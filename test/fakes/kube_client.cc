#include "test/fakes/kube_client.h"

#include <algorithm>
#include <charconv>

#include "base/mutex.h"
#include "kube/selector.h"

namespace gantry::fakes {
namespace {

using kube::EventType;
using value::Value;

constexpr std::string_view kVerbs[] = {"resolve", "get",   "list",     "create",  "replace",
                                       "delete",  "apply", "apply_status", "watch", "get_raw",
                                       "invalidate_discovery"};

bool KnownVerb(std::string_view verb) {
  return std::find(std::begin(kVerbs), std::end(kVerbs), verb) != std::end(kVerbs);
}

std::string GroupKind(std::string_view group, std::string_view kind) {
  return fmt::format("{}/{}", group, kind);
}

// metadata fields the server owns: never taken from an applied object.
constexpr const char* kServerMetadata[] = {"uid", "resourceVersion", "generation", "creationTimestamp",
                                           "managedFields", "selfLink", "deletionTimestamp"};

std::string NotFoundText(const kube::ResourceInfo& info, std::string_view name) {
  return fmt::format("{} \"{}\" not found (reason NotFound)", info.resource, name);
}

std::string ConflictText(const kube::ResourceInfo& info, std::string_view name, std::string_view why) {
  return fmt::format("Operation cannot be fulfilled on {} \"{}\": {} (reason Conflict)", info.resource, name,
                     why);
}

const Value* SpecOf(const Value& object) { return object.Get("spec"); }

bool SameSpec(const Value& a, const Value& b) {
  const Value* x = SpecOf(a);
  const Value* y = SpecOf(b);
  if (!x || !y) return x == y;
  return *x == *y;
}

void SetMeta(Value& object, std::string_view key, Value v) {
  Value* meta = object.MutableGet("metadata");
  GANTRY_CHECK(meta != nullptr);
  meta->Set(key, std::move(v));
}

// The fieldsV1 set of the fields a map sets: {"f:key": {} for a leaf, or the set of a map}.
Value FieldSet(const Value& map) {
  Value out = Value::Map();
  for (const value::MapEntry& e : map.entries()) {
    if (e.value.IsNull()) continue;
    std::string key = fmt::format("f:{}", e.key.AsString());
    out.Set(key, e.value.IsMap() && e.value.size() > 0 ? FieldSet(e.value) : Value::Map());
  }
  return out;
}

// Removes from `object` the fields of `old_set` that `new_set` no longer names, unless a set of
// `others` (at the same level) still names them.
void Prune(Value& object, const Value& old_set, const Value* new_set, const std::vector<const Value*>& others) {
  for (const value::MapEntry& e : old_set.entries()) {
    std::string_view fk = e.key.AsString();
    if (!fk.starts_with("f:")) continue;
    std::string_view name = fk.substr(2);
    const Value* new_child = new_set ? new_set->Get(fk) : nullptr;
    std::vector<const Value*> other_children;
    bool owned_whole_by_other = false;
    for (const Value* o : others) {
      if (const Value* c = o->Get(fk)) {
        other_children.push_back(c);
        if (c->size() == 0) owned_whole_by_other = true;
      }
    }
    if (owned_whole_by_other || !object.Get(name)) continue;
    bool kept = new_child != nullptr || !other_children.empty();
    if (e.value.size() == 0 || !object.Get(name)->IsMap()) {
      if (!kept) object.Erase(name);
      continue;
    }
    Value* field = object.MutableGet(name);
    Prune(*field, e.value, new_child && new_child->size() > 0 ? new_child : nullptr, other_children);
    if (!kept && field->size() == 0) object.Erase(name);
  }
}

// Merges the fields of `src` into `dst`: maps key by key, everything else replaced; nulls skipped.
void Merge(Value& dst, const Value& src) {
  for (const value::MapEntry& e : src.entries()) {
    std::string_view key = e.key.AsString();
    if (e.value.IsNull()) continue;
    Value* cur = dst.MutableGet(key);
    if (cur && cur->IsMap() && e.value.IsMap()) {
      Merge(*cur, e.value);
    } else {
      dst.Set(key, e.value);
    }
  }
}

}  // namespace

FakeKubeClient::FakeKubeClient() : FakeKubeClient(Options{}) {}

FakeKubeClient::FakeKubeClient(Options options) : options_(options) {
  struct Builtin {
    const char* group;
    const char* version;
    const char* kind;
    const char* resource;
    bool namespaced;
    bool status;
  };
  static constexpr Builtin kBuiltins[] = {
      {"", "v1", "Namespace", "namespaces", false, true},
      {"", "v1", "ConfigMap", "configmaps", true, false},
      {"", "v1", "Secret", "secrets", true, false},
      {"", "v1", "Service", "services", true, true},
      {"", "v1", "ServiceAccount", "serviceaccounts", true, false},
      {"", "v1", "Pod", "pods", true, true},
      {"", "v1", "Event", "events", true, false},
      {"coordination.k8s.io", "v1", "Lease", "leases", true, false},
      {"apps", "v1", "Deployment", "deployments", true, true},
      {"apps", "v1", "StatefulSet", "statefulsets", true, true},
      {"apps", "v1", "DaemonSet", "daemonsets", true, true},
      {"batch", "v1", "Job", "jobs", true, true},
      {"apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, true},
      {"gantry.dev", "v1alpha1", "Application", "applications", true, true},
  };
  for (const Builtin& b : kBuiltins) {
    AddKind({b.group, b.version, b.kind, b.resource, b.namespaced,
             {"create", "delete", "get", "list", "patch", "update", "watch"}},
            b.status);
  }
  raw_["/version"] = R"({"major":"1","minor":"31","gitVersion":"v1.31.0-fake","platform":"linux/amd64"})";
}

FakeKubeClient::~FakeKubeClient() {
  // Watches must have returned: their threads belong to the test, which must join them first.
  MutexLock lock(mu_);
  GANTRY_CHECK(active_watches_ == 0);
}

void FakeKubeClient::AddKind(kube::ResourceInfo info, bool status_subresource) {
  MutexLock lock(mu_);
  std::string key = GroupKind(info.group, info.kind);
  kinds_[key] = Kind{std::move(info), status_subresource};
}

void FakeKubeClient::FailNext(std::string_view verb, Status status, int n) {
  GANTRY_CHECK(KnownVerb(verb));
  GANTRY_CHECK(!status.ok());
  MutexLock lock(mu_);
  auto& queue = failures_[std::string(verb)];
  for (int i = 0; i < n; ++i) queue.push_back(status);
}

uint64_t FakeKubeClient::count(std::string_view verb) const {
  GANTRY_CHECK(KnownVerb(verb));
  MutexLock lock(mu_);
  auto it = counts_.find(verb);
  return it == counts_.end() ? 0 : it->second;
}

uint64_t FakeKubeClient::request_count() const {
  MutexLock lock(mu_);
  uint64_t n = 0;
  for (const auto& [verb, c] : counts_) {
    if (verb != "resolve" && verb != "invalidate_discovery") n += c;
  }
  return n;
}

void FakeKubeClient::EndWatches() {
  MutexLock lock(mu_);
  ++watch_epoch_;
  cv_.NotifyAll();
}

void FakeKubeClient::Compact() {
  MutexLock lock(mu_);
  events_.clear();
  compacted_rv_ = rv_;
  cv_.NotifyAll();
}

int FakeKubeClient::active_watches() const {
  MutexLock lock(mu_);
  return active_watches_;
}

std::string FakeKubeClient::resource_version() const {
  MutexLock lock(mu_);
  return std::to_string(rv_);
}

void FakeKubeClient::SetRaw(std::string path, std::string body) {
  MutexLock lock(mu_);
  raw_[std::move(path)] = std::move(body);
}

Status FakeKubeClient::Call(std::string_view verb) {
  MutexLock lock(mu_);
  ++counts_[std::string(verb)];
  auto it = failures_.find(verb);
  if (it == failures_.end() || it->second.empty()) return OkStatus();
  Status s = std::move(it->second.front());
  it->second.pop_front();
  return s;
}

Result<FakeKubeClient::Kind> FakeKubeClient::KindOf(std::string_view api_version, std::string_view kind) const {
  auto [group, version] = kube::SplitApiVersion(api_version);
  auto it = kinds_.find(GroupKind(group, kind));
  if (it == kinds_.end() || it->second.info.version != version) {
    return NotFoundError("the server does not serve kind {:?} in {}", kind, api_version);
  }
  return it->second;
}

Result<FakeKubeClient::Key> FakeKubeClient::KeyOf(const kube::ObjectRef& ref, const Kind& kind,
                                                  std::string_view what) const {
  if (kind.info.namespaced && ref.namespace_.empty()) {
    return InvalidArgumentError("{}: {} is namespaced but the object has no metadata.namespace", what,
                                ref.kind);
  }
  if (!kind.info.namespaced && !ref.namespace_.empty()) {
    return InvalidArgumentError("{}: {} is cluster-scoped and cannot have a namespace", what, ref.kind);
  }
  if (ref.name.empty()) return InvalidArgumentError("{}: object has no name", what);
  return Key{ref.namespace_, ref.name};
}

std::string FakeKubeClient::Timestamp() const {
  return Rfc3339((options_.clock ? *options_.clock : SystemClock()).WallNow());
}

Value FakeKubeClient::Write(const std::string& group_kind, const Key& key, Value object, EventType type,
                            Value previous) {
  ++rv_;
  SetMeta(object, "resourceVersion", std::to_string(rv_));
  auto& objects = objects_[group_kind];
  if (type == EventType::kDeleted) {
    objects.erase(key);
  } else {
    objects[key] = object;
  }
  events_.push_back(Event{rv_, group_kind, key.first, type, object, std::move(previous)});
  while (events_.size() > std::max<size_t>(options_.event_log_size, 1)) {
    compacted_rv_ = events_.front().rv;
    events_.pop_front();
  }
  cv_.NotifyAll();
  return object;
}

Result<kube::ResourceInfo> FakeKubeClient::Resolve(std::string_view api_version, std::string_view kind) {
  GANTRY_RETURN_IF_ERROR(Call("resolve"));
  MutexLock lock(mu_);
  GANTRY_ASSIGN_OR_RETURN(Kind k, KindOf(api_version, kind));
  return k.info;
}

Result<std::vector<kube::ResourceInfo>> FakeKubeClient::ServedKinds() {
  MutexLock lock(mu_);
  std::vector<kube::ResourceInfo> out;
  for (const auto& [key, kind] : kinds_) out.push_back(kind.info);
  return out;
}

void FakeKubeClient::InvalidateDiscovery() { Call("invalidate_discovery").IgnoreError(); }

Result<std::string> FakeKubeClient::GetRaw(std::string_view path) {
  std::string what = fmt::format("get {}", path);
  GANTRY_RETURN_IF_ERROR(Call("get_raw").WithContext(what));
  MutexLock lock(mu_);
  auto it = raw_.find(std::string(path));
  if (it == raw_.end()) return NotFoundError("{}: the server could not find the requested resource", what);
  return it->second;
}

Result<Value> FakeKubeClient::Get(const kube::ObjectRef& ref) {
  std::string what = "get " + ref.ToString();
  GANTRY_RETURN_IF_ERROR(Call("get").WithContext(what));
  MutexLock lock(mu_);
  GANTRY_ASSIGN_OR_RETURN(Kind kind, KindOf(ref.api_version, ref.kind));
  GANTRY_ASSIGN_OR_RETURN(Key key, KeyOf(ref, kind, what));
  const auto& objects = objects_[GroupKind(kind.info.group, kind.info.kind)];
  auto it = objects.find(key);
  if (it == objects.end()) return NotFoundError("{}: {}", what, NotFoundText(kind.info, ref.name));
  return it->second;
}

Result<kube::ObjectList> FakeKubeClient::List(std::string_view api_version, std::string_view kind_name,
                                              std::string_view namespace_, const kube::ListOptions& options) {
  std::string what = fmt::format("list {} {}", api_version, kind_name);
  GANTRY_RETURN_IF_ERROR(Call("list").WithContext(what));
  GANTRY_ASSIGN_OR_RETURN(kube::LabelSelector selector, kube::LabelSelector::Parse(options.label_selector));
  // Field selectors: metadata.name and metadata.namespace, =, == or !=, comma-separated.
  struct FieldReq {
    bool name;
    bool equal;
    std::string value;
  };
  std::vector<FieldReq> fields;
  std::string_view rest = options.field_selector;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view req = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    size_t op = req.find_first_of("!=");
    if (op == std::string_view::npos) {
      return InvalidArgumentError("{}: field selector {:?}: {:?} has no operator", what, options.field_selector, req);
    }
    std::string_view field = req.substr(0, op);
    bool equal = req[op] == '=';
    std::string_view value = req.substr(op + (req.substr(op).starts_with("==") || req.substr(op).starts_with("!=") ? 2 : 1));
    if (field != "metadata.name" && field != "metadata.namespace") {
      return InvalidArgumentError("{}: field selector {:?}: field {:?} is not supported by the fake", what,
                                  options.field_selector, field);
    }
    fields.push_back({field == "metadata.name", equal, std::string(value)});
  }
  MutexLock lock(mu_);
  GANTRY_ASSIGN_OR_RETURN(Kind kind, KindOf(api_version, kind_name));
  kube::ObjectList out;
  out.resource_version = std::to_string(rv_);
  for (const auto& [key, object] : objects_[GroupKind(kind.info.group, kind.info.kind)]) {
    if (kind.info.namespaced && !namespace_.empty() && key.first != namespace_) continue;
    if (!selector.MatchesObject(object)) continue;
    bool ok = true;
    for (const FieldReq& f : fields) {
      ok = ok && ((f.name ? key.second : key.first) == f.value) == f.equal;
    }
    if (ok) out.items.push_back(object);
  }
  lock.Unlock();  // `each` may call the client
  if (options.each) {
    for (Value& item : out.items) options.each(std::move(item));
    out.items.clear();
  }
  return out;
}

Result<Value> FakeKubeClient::Create(const Value& object, const kube::CreateOptions& options) {
  kube::ObjectRef ref = kube::RefOf(object);
  std::string what = "create " + ref.ToString();
  GANTRY_RETURN_IF_ERROR(Call("create").WithContext(what));
  if (!object.IsMap() || !object.Get("metadata") || !object.Get("metadata")->IsMap()) {
    return InvalidArgumentError("{}: the object has no metadata map", what);
  }
  MutexLock lock(mu_);
  GANTRY_ASSIGN_OR_RETURN(Kind kind, KindOf(ref.api_version, ref.kind));
  Value obj = object;
  if (ref.name.empty()) {
    std::string prefix = value::StringAt(&object, {"metadata", "generateName"});
    if (!prefix.empty()) {
      ref.name = fmt::format("{}{:05x}", prefix, (rv_ * 2654435761u) & 0xfffff);
      SetMeta(obj, "name", ref.name);
    }
  }
  GANTRY_ASSIGN_OR_RETURN(Key key, KeyOf(ref, kind, what));
  if (!value::StringAt(&object, {"metadata", "resourceVersion"}).empty()) {
    return InvalidArgumentError("{}: resourceVersion should not be set on objects to be created", what);
  }
  std::string gk = GroupKind(kind.info.group, kind.info.kind);
  if (objects_[gk].contains(key)) {
    return Status(Code::kAlreadyExists, fmt::format("{}: {} \"{}\" already exists (reason AlreadyExists)", what,
                                                    kind.info.resource, ref.name));
  }
  SetMeta(obj, "uid", fmt::format("fake-uid-{}", options.dry_run ? 0 : ++uid_counter_));
  SetMeta(obj, "creationTimestamp", Timestamp());
  SetMeta(obj, "generation", 1);
  if (options.dry_run) return obj;
  return Write(gk, key, std::move(obj), EventType::kAdded, Value());
}

Result<Value> FakeKubeClient::Replace(const Value& object) {
  kube::ObjectRef ref = kube::RefOf(object);
  std::string what = "replace " + ref.ToString();
  GANTRY_RETURN_IF_ERROR(Call("replace").WithContext(what));
  if (!object.IsMap() || !object.Get("metadata") || !object.Get("metadata")->IsMap()) {
    return InvalidArgumentError("{}: the object has no metadata map", what);
  }
  MutexLock lock(mu_);
  GANTRY_ASSIGN_OR_RETURN(Kind kind, KindOf(ref.api_version, ref.kind));
  GANTRY_ASSIGN_OR_RETURN(Key key, KeyOf(ref, kind, what));
  std::string gk = GroupKind(kind.info.group, kind.info.kind);
  auto it = objects_[gk].find(key);
  if (it == objects_[gk].end()) return NotFoundError("{}: {}", what, NotFoundText(kind.info, ref.name));
  const Value& existing = it->second;
  std::string want_rv = value::StringAt(&object, {"metadata", "resourceVersion"});
  std::string have_rv = value::StringAt(&existing, {"metadata", "resourceVersion"});
  if (!want_rv.empty() && want_rv != have_rv) {
    return FailedPreconditionError(
        "{}: {}", what,
        ConflictText(kind.info, ref.name,
                     "the object has been modified; please apply your changes to the latest version and try again"));
  }
  Value obj = object;
  const Value& old_meta = *existing.Get("metadata");
  for (const char* field : {"uid", "creationTimestamp", "generation", "resourceVersion"}) {
    if (const Value* v = old_meta.Get(field)) SetMeta(obj, field, *v);
  }
  if (!obj.Find({"metadata", "managedFields"})) {
    if (const Value* mf = old_meta.Get("managedFields")) SetMeta(obj, "managedFields", *mf);
  }
  if (kind.status_subresource) {
    if (const Value* st = existing.Get("status")) {
      obj.Set("status", *st);
    } else {
      obj.Erase("status");
    }
  }
  if (obj == existing) return existing;
  if (!SameSpec(obj, existing)) SetMeta(obj, "generation", value::IntAt(&existing, {"metadata", "generation"}) + 1);
  Value previous = existing;
  return Write(gk, key, std::move(obj), EventType::kModified, std::move(previous));
}

Status FakeKubeClient::Delete(const kube::ObjectRef& ref, const kube::DeleteOptions& options) {
  std::string what = "delete " + ref.ToString();
  GANTRY_RETURN_IF_ERROR(Call("delete").WithContext(what));
  MutexLock lock(mu_);
  GANTRY_ASSIGN_OR_RETURN(Kind kind, KindOf(ref.api_version, ref.kind));
  GANTRY_ASSIGN_OR_RETURN(Key key, KeyOf(ref, kind, what));
  std::string gk = GroupKind(kind.info.group, kind.info.kind);
  auto it = objects_[gk].find(key);
  if (it == objects_[gk].end()) return NotFoundError("{}: {}", what, NotFoundText(kind.info, ref.name));
  std::string uid = value::StringAt(&it->second, {"metadata", "uid"});
  if (options.precondition_uid && *options.precondition_uid != uid) {
    return FailedPreconditionError(
        "{}: {}", what,
        ConflictText(kind.info, ref.name,
                     fmt::format("Precondition failed: UID in precondition: {}, UID in object meta: {}",
                                 *options.precondition_uid, uid)));
  }
  if (options.dry_run) return OkStatus();
  Value last = it->second;
  Write(gk, key, std::move(last), EventType::kDeleted, Value());
  return OkStatus();
}

Result<Value> FakeKubeClient::Apply(const Value& object, const kube::ApplyOptions& options) {
  return DoApply(object, options, false);
}

Result<Value> FakeKubeClient::ApplyStatus(const Value& object, const kube::ApplyOptions& options) {
  return DoApply(object, options, true);
}

Result<Value> FakeKubeClient::DoApply(const Value& object, const kube::ApplyOptions& options, bool status) {
  kube::ObjectRef ref = kube::RefOf(object);
  std::string what = (status ? "apply status of " : "apply ") + ref.ToString();
  GANTRY_RETURN_IF_ERROR(Call(status ? "apply_status" : "apply").WithContext(what));
  if (!object.IsMap() || !object.Get("metadata") || !object.Get("metadata")->IsMap()) {
    return InvalidArgumentError("{}: the object has no metadata map", what);
  }
  if (options.field_manager.empty()) return InvalidArgumentError("{}: fieldManager is required", what);
  MutexLock lock(mu_);
  GANTRY_ASSIGN_OR_RETURN(Kind kind, KindOf(ref.api_version, ref.kind));
  GANTRY_ASSIGN_OR_RETURN(Key key, KeyOf(ref, kind, what));
  std::string gk = GroupKind(kind.info.group, kind.info.kind);

  // The applied fields: the object without apiVersion, kind, name, namespace and server metadata.
  Value body = Value::Map();
  if (status) {
    if (const Value* st = object.Get("status")) body.Set("status", *st);
  } else {
    for (const value::MapEntry& e : object.entries()) {
      std::string_view k = e.key.AsString();
      if (k == "apiVersion" || k == "kind" || (k == "status" && kind.status_subresource)) continue;
      body.Set(k, e.value);
    }
    if (Value* meta = body.MutableGet("metadata")) {
      for (const char* f : kServerMetadata) meta->Erase(f);
      meta->Erase("name");
      meta->Erase("namespace");
      meta->Erase("generateName");
      if (meta->size() == 0) body.Erase("metadata");
    }
  }
  Value fields = FieldSet(body);

  auto& objects = objects_[gk];
  auto it = objects.find(key);
  const Value* existing = it == objects.end() ? nullptr : &it->second;
  if (status && !existing) return NotFoundError("{}: {}", what, NotFoundText(kind.info, ref.name));
  Value obj;
  if (existing) {
    obj = *existing;
  } else {
    obj = Value::Map();
    obj.Set("apiVersion", ref.api_version);
    obj.Set("kind", ref.kind);
    Value meta = Value::Map();
    meta.Set("name", ref.name);
    if (!ref.namespace_.empty()) meta.Set("namespace", ref.namespace_);
    obj.Set("metadata", std::move(meta));
  }

  // This manager's entry (for this subresource) and everyone else's field sets.
  std::string_view subresource = status ? "status" : "";
  Value managed = Value::Seq();
  const Value* old_entry = nullptr;
  size_t old_position = 0;
  std::vector<const Value*> others;
  if (const Value* mf = obj.Find({"metadata", "managedFields"}); mf && mf->IsSeq()) managed = *mf;
  {
    // Pointers into `managed`, which nothing edits below.
    for (size_t i = 0; i < managed.size(); ++i) {
      const Value& entry = *managed.At(i);
      const Value* set = entry.Get("fieldsV1");
      if (value::StringAt(&entry, {"manager"}) == options.field_manager &&
          value::StringAt(&entry, {"operation"}) == "Apply" &&
          value::StringAt(&entry, {"subresource"}) == subresource) {
        old_entry = &entry;
        old_position = i;
      } else if (set && set->IsMap()) {
        others.push_back(set);
      }
    }
  }
  if (old_entry) {
    if (const Value* old_set = old_entry->Get("fieldsV1"); old_set && old_set->IsMap()) {
      Prune(obj, *old_set, &fields, others);
    }
  }
  Merge(obj, body);
  obj.Set("apiVersion", ref.api_version);

  Value entry = Value::Map();
  entry.Set("manager", options.field_manager);
  entry.Set("operation", "Apply");
  entry.Set("apiVersion", ref.api_version);
  bool same_fields = old_entry && old_entry->Get("fieldsV1") && *old_entry->Get("fieldsV1") == fields;
  entry.Set("time", same_fields && old_entry->Get("time") ? *old_entry->Get("time") : Value(Timestamp()));
  entry.Set("fieldsType", "FieldsV1");
  entry.Set("fieldsV1", fields);
  if (status) entry.Set("subresource", "status");
  Value new_managed = Value::Seq();
  for (size_t i = 0; i < managed.size(); ++i) {
    if (old_entry && i == old_position) {
      if (fields.size() > 0) new_managed.Append(entry);
    } else {
      new_managed.Append(*managed.At(i));
    }
  }
  if (!old_entry && fields.size() > 0) new_managed.Append(entry);
  if (new_managed.size() > 0) {
    SetMeta(obj, "managedFields", std::move(new_managed));
  } else if (Value* meta = obj.MutableGet("metadata")) {
    meta->Erase("managedFields");
  }

  if (existing && obj == *existing) return *existing;
  if (existing) {
    if (!SameSpec(obj, *existing)) {
      SetMeta(obj, "generation", value::IntAt(&*existing, {"metadata", "generation"}) + 1);
    }
  } else {
    SetMeta(obj, "uid", fmt::format("fake-uid-{}", options.dry_run ? 0 : ++uid_counter_));
    SetMeta(obj, "creationTimestamp", Timestamp());
    SetMeta(obj, "generation", 1);
  }
  if (options.dry_run) return obj;
  Value previous = existing ? *existing : Value();
  return Write(gk, key, std::move(obj), existing ? EventType::kModified : EventType::kAdded, std::move(previous));
}

Status FakeKubeClient::Watch(std::string_view api_version, std::string_view kind_name, std::string_view namespace_,
                             const kube::WatchOptions& options, const kube::WatchHandler& handler) {
  std::string what = fmt::format("watch {} {}", api_version, kind_name);
  GANTRY_RETURN_IF_ERROR(Call("watch").WithContext(what));
  GANTRY_ASSIGN_OR_RETURN(kube::LabelSelector selector, kube::LabelSelector::Parse(options.label_selector));
  auto stopped = [&] { return options.stop != nullptr && options.stop->load(); };

  MutexLock lock(mu_);
  GANTRY_ASSIGN_OR_RETURN(Kind kind, KindOf(api_version, kind_name));
  std::string gk = GroupKind(kind.info.group, kind.info.kind);
  std::string ns = kind.info.namespaced ? std::string(namespace_) : "";
  std::vector<kube::WatchEvent> batch;
  uint64_t cursor = 0;
  if (options.resource_version.empty() || options.resource_version == "0") {
    for (const auto& [key, object] : objects_[gk]) {
      if ((ns.empty() || key.first == ns) && selector.MatchesObject(object)) {
        batch.push_back({EventType::kAdded, object});
      }
    }
    cursor = rv_;
  } else {
    const std::string& rv = options.resource_version;
    auto [end, ec] = std::from_chars(rv.data(), rv.data() + rv.size(), cursor);
    if (ec != std::errc() || end != rv.data() + rv.size()) {
      return InvalidArgumentError("{}: invalid resourceVersion {:?}", what, rv);
    }
  }
  uint64_t reported = cursor;
  const uint64_t epoch = watch_epoch_;
  const bool has_deadline = options.timeout.count() > 0;
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  ++active_watches_;
  Status result;
  while (true) {
    if (cursor < compacted_rv_) {
      result = OutOfRangeError("{}: too old resource version: {} ({}) (reason Expired)", what, cursor,
                               compacted_rv_ + 1);
      break;
    }
    auto first = std::upper_bound(events_.begin(), events_.end(), cursor,
                                  [](uint64_t rv, const Event& e) { return rv < e.rv; });
    for (auto e = first; e != events_.end(); ++e) {
      cursor = e->rv;
      if (e->group_kind != gk || (!ns.empty() && e->namespace_ != ns)) continue;
      bool now = selector.MatchesObject(e->object);
      bool before = e->type == EventType::kModified && selector.MatchesObject(e->previous);
      EventType type = e->type;
      if (e->type == EventType::kModified && now != before) type = now ? EventType::kAdded : EventType::kDeleted;
      if (now || before) {
        batch.push_back({type, e->object});
        reported = cursor;
      }
    }
    if (batch.empty() && options.bookmarks && reported < rv_) {
      Value bookmark = Value::Map();
      bookmark.Set("apiVersion", kind.info.api_version());
      bookmark.Set("kind", kind.info.kind);
      Value meta = Value::Map();
      meta.Set("resourceVersion", std::to_string(rv_));
      bookmark.Set("metadata", std::move(meta));
      batch.push_back({EventType::kBookmark, std::move(bookmark)});
      cursor = reported = rv_;
    }
    if (!batch.empty()) {
      lock.Unlock();
      bool go_on = true;
      for (const kube::WatchEvent& ev : batch) {
        if (stopped() || !handler(ev)) {
          go_on = false;
          break;
        }
      }
      batch.clear();
      lock.Lock();
      if (!go_on) break;
      continue;
    }
    if (stopped() || watch_epoch_ != epoch) break;
    if (has_deadline && std::chrono::steady_clock::now() >= deadline) break;
    cv_.WaitFor(mu_, std::chrono::milliseconds(20));
  }
  --active_watches_;
  return result;
}

}  // namespace gantry::fakes

// Compare, RenderDiff and Redact; the rules are in diff.h.
//
// Shape: one Differ per call holds what the options and live.metadata.managedFields say about the
// object (matching ignore rules, field sets of Gantry and of the other managers). Compare walks
// desired against live with Steps on the stack (a linked path, no allocation), then walks Gantry's
// field set against desired to find fields SSA would remove. Everything that needs the path as a
// whole (ignore rules, co-ownership, the text of `changed`) runs only once a difference is found.
// RenderDiff reuses the same predicates to build the live view (Project).

#include "diff/diff.h"

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "base/base64.h"
#include "diff/internal/schema.h"
#include "diff/internal/unified.h"

namespace gantry::diff {
namespace {

using internal::FieldContext;
using internal::ListSpec;
using value::MapEntry;
using value::Value;

constexpr std::string_view kPlaceholder = "+++++++++";
constexpr std::string_view kChangedPlaceholder = "+++++++++ (changed)";
constexpr std::string_view kLastApplied = "kubectl.kubernetes.io/last-applied-configuration";
constexpr size_t kNone = SIZE_MAX;

// metadata fields the apiserver sets; never compared.
bool IsServerMetadata(std::string_view k) {
  return k == "managedFields" || k == "resourceVersion" || k == "uid" ||
         k == "creationTimestamp" || k == "generation" || k == "selfLink" ||
         k == "deletionTimestamp" || k == "deletionGracePeriodSeconds";
}

// value::StringAt, borrowing instead of copying: the view lives as long as `v`'s tree. Kept because
// the comparison is the hot path: copying here made diff_bench 5% slower (6.71 vs 7.10 us/object).
std::string_view ViewAt(const Value& v, std::initializer_list<Value::PathElem> path) {
  const Value* f = v.Find(path);
  return f && f->IsString() ? f->AsString() : std::string_view();
}

bool IsSecret(const Value& object) {
  return ViewAt(object, {"kind"}) == "Secret" && ViewAt(object, {"apiVersion"}) == "v1";
}

// What JSON omitempty drops: null, false, 0, "", {}, [], and maps holding only such values.
bool IsZero(const Value& v) {
  switch (v.type()) {
    case Value::Type::kNull: return true;
    case Value::Type::kBool: return !v.AsBool();
    case Value::Type::kInt: return v.AsInt() == 0;
    case Value::Type::kDouble: return v.AsDouble() == 0;
    case Value::Type::kString: return v.AsString().empty();
    case Value::Type::kSeq: return v.size() == 0;
    case Value::Type::kMap:
      for (const MapEntry& e : v.entries()) {
        if (!IsZero(e.value)) return false;
      }
      return true;
  }
  return false;
}

// A fieldsV1 node that owns its field whole: no children other than ".".
bool IsLeafFields(const Value& node) {
  for (const MapEntry& e : node.entries()) {
    if (e.key.AsString() != ".") return false;
  }
  return true;
}

// ---- scalars ----

bool IntEqualsNumber(int64_t i, const Value& n) {
  if (n.IsInt()) return n.AsInt() == i;
  if (!n.IsDouble()) return false;
  double d = n.AsDouble();
  // 2^63 is exact as a double; anything at or beyond it is no int64.
  return std::isfinite(d) && d == std::trunc(d) && d >= -9223372036854775808.0 &&
         d < 9223372036854775808.0 && static_cast<int64_t>(d) == i;
}

bool NumbersEqual(const Value& a, const Value& b) {
  if (!a.IsNumber() || !b.IsNumber()) return false;
  if (a.IsInt()) return IntEqualsNumber(a.AsInt(), b);
  if (b.IsInt()) return IntEqualsNumber(b.AsInt(), a);
  return a.AsDouble() == b.AsDouble();
}

std::optional<int64_t> ParseDecimal(std::string_view s) {
  int64_t i = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return i;
}

// Equal as JSON values; with `integer_field`, a decimal string also equals the same number.
bool ScalarsMatch(const Value& a, const Value& b, bool integer_field) {
  if (a == b || NumbersEqual(a, b)) return true;
  if (!integer_field) return false;
  const Value& s = a.IsString() ? a : b;
  const Value& n = a.IsString() ? b : a;
  if (!s.IsString() || !n.IsNumber()) return false;
  std::optional<int64_t> i = ParseDecimal(s.AsString());
  return i && IntEqualsNumber(*i, n);
}

std::optional<Quantity> ParsedQuantity(std::string_view text) {
  Result<Quantity> q = ParseQuantity(text);
  if (!q.ok()) return std::nullopt;
  return *q;
}

std::optional<Quantity> AsQuantity(const Value& v) {
  if (v.IsInt()) return Quantity{v.AsInt(), 0};
  if (v.IsDouble()) {
    if (!std::isfinite(v.AsDouble())) return std::nullopt;
    char buf[64];
    auto r = fmt::format_to_n(buf, sizeof buf, "{}", v.AsDouble());
    return ParsedQuantity(std::string_view(buf, static_cast<size_t>(r.out - buf)));
  }
  if (!v.IsString()) return std::nullopt;
  std::string_view s = v.AsString();  // the apiserver trims spaces around a quantity
  size_t b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
  return ParsedQuantity(b == std::string_view::npos ? s : s.substr(b, e - b + 1));
}

// Secret data values: equal when their decoded bytes are.
bool SecretBytesEqual(const Value& a, const Value& b) {
  if (a == b) return true;
  if (!a.IsString() || !b.IsString()) return false;
  std::optional<std::string> da = Base64Decode(a.AsString()), db = Base64Decode(b.AsString());
  return da && db && *da == *db;
}

// ---- fieldsV1 keys: k:{"name":"web"}, v:"x", i:3 ----

// A scalar of a small JSON text; strings decoded.
struct JsonScalar {
  enum class Type : uint8_t { kString, kNumber, kBool, kNull } type = Type::kNull;
  std::string_view text;  // string contents or number text
  bool b = false;
  std::string storage;  // for strings with escapes
};

class JsonCursor {
 public:
  explicit JsonCursor(std::string_view s) : s_(s) {}
  void Skip() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' ||
                                s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Consume(char c) {
    Skip();
    if (pos_ < s_.size() && s_[pos_] == c) return ++pos_, true;
    return false;
  }
  bool AtEnd() {
    Skip();
    return pos_ == s_.size();
  }
  bool String(std::string_view* out, std::string* storage) {
    if (!Consume('"')) return false;
    size_t begin = pos_;
    bool escaped = false;
    for (; pos_ < s_.size() && s_[pos_] != '"'; ++pos_) {
      if (s_[pos_] == '\\') escaped = true, ++pos_;
    }
    if (pos_ >= s_.size()) return false;
    std::string_view raw = s_.substr(begin, pos_++ - begin);
    if (!escaped) return *out = raw, true;
    storage->clear();
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '\\') {
        *storage += raw[i];
        continue;
      }
      char c = raw[++i];
      switch (c) {
        case 'n': *storage += '\n'; break;
        case 't': *storage += '\t'; break;
        case 'r': *storage += '\r'; break;
        case 'b': *storage += '\b'; break;
        case 'f': *storage += '\f'; break;
        case 'u': {
          if (i + 4 >= raw.size()) return false;
          uint32_t cp = 0;
          auto [p, ec] = std::from_chars(raw.data() + i + 1, raw.data() + i + 5, cp, 16);
          if (ec != std::errc() || p != raw.data() + i + 5) return false;
          i += 4;
          if (cp < 0x80) {
            *storage += static_cast<char>(cp);
          } else if (cp < 0x800) {
            *storage += static_cast<char>(0xc0 | (cp >> 6));
            *storage += static_cast<char>(0x80 | (cp & 0x3f));
          } else {  // surrogate pairs never occur in Kubernetes keys; kept as three bytes
            *storage += static_cast<char>(0xe0 | (cp >> 12));
            *storage += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            *storage += static_cast<char>(0x80 | (cp & 0x3f));
          }
          break;
        }
        default: *storage += c;  // \" \\ \/
      }
    }
    *out = *storage;
    return true;
  }
  bool Scalar(JsonScalar* out) {
    Skip();
    if (pos_ >= s_.size()) return false;
    char c = s_[pos_];
    if (c == '"') {
      out->type = JsonScalar::Type::kString;
      return String(&out->text, &out->storage);
    }
    size_t begin = pos_;
    while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != '}' && s_[pos_] != ']' &&
           s_[pos_] != ' ') {
      ++pos_;
    }
    std::string_view t = s_.substr(begin, pos_ - begin);
    if (t == "true" || t == "false") {
      out->type = JsonScalar::Type::kBool;
      out->b = t == "true";
    } else if (t == "null") {
      out->type = JsonScalar::Type::kNull;
    } else if (!t.empty() && (t[0] == '-' || (t[0] >= '0' && t[0] <= '9'))) {
      out->type = JsonScalar::Type::kNumber;
      out->text = t;
    } else {
      return false;
    }
    return true;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

// `integer_field`: a decimal string in `v` also matches the same number.
bool ScalarMatches(const JsonScalar& j, const Value* v, bool integer_field = false) {
  if (integer_field && j.type == JsonScalar::Type::kNumber && v && v->IsString()) {
    std::optional<int64_t> a = ParseDecimal(j.text), b = ParseDecimal(v->AsString());
    return a && b && *a == *b;
  }
  switch (j.type) {
    case JsonScalar::Type::kNull: return !v || v->IsNull();
    case JsonScalar::Type::kBool: return v && v->IsBool() && v->AsBool() == j.b;
    case JsonScalar::Type::kString: return v && v->IsString() && v->AsString() == j.text;
    case JsonScalar::Type::kNumber: {
      if (!v || !v->IsNumber()) return false;
      if (std::optional<int64_t> i = ParseDecimal(j.text)) return IntEqualsNumber(*i, *v);
      double d = 0;
      auto [p, ec] = std::from_chars(j.text.data(), j.text.data() + j.text.size(), d);
      return ec == std::errc() && p == j.text.data() + j.text.size() && v->AsDouble() == d;
    }
  }
  return false;
}

// Calls fn(name, scalar) for each member of the flat JSON object `json`; false if malformed.
template <typename Fn>
bool ForEachMember(std::string_view json, Fn&& fn) {
  JsonCursor c(json);
  if (!c.Consume('{')) return false;
  if (c.Consume('}')) return c.AtEnd();
  std::string name_storage;
  JsonScalar value;
  do {
    std::string_view name;
    if (!c.String(&name, &name_storage) || !c.Consume(':') || !c.Scalar(&value)) return false;
    if (!fn(name, value)) return false;
  } while (c.Consume(','));
  return c.Consume('}') && c.AtEnd();
}

// Does the fieldsV1 key `fk` (k:/v:/i:) name `item`, at `index` in its list?
bool FieldsKeyMatches(std::string_view fk, const Value& item, size_t index) {
  if (fk.size() < 2 || fk[1] != ':') return false;
  std::string_view rest = fk.substr(2);
  switch (fk[0]) {
    case 'k':
      if (!item.IsMap()) return false;
      return ForEachMember(rest, [&](std::string_view name, const JsonScalar& j) {
        const Value* v = item.Get(name);
        if ((!v || v->IsNull()) && j.type == JsonScalar::Type::kString) {
          std::string_view def = internal::KeyFieldDefault(name);
          return !def.empty() && def == j.text;
        }
        return ScalarMatches(j, v, internal::IsIntegerField({.field = name}));
      });
    case 'v': {
      if (item.IsMap() || item.IsSeq()) {
        Result<Value> parsed = value::ParseJson(rest);
        return parsed.ok() && *parsed == item;
      }
      JsonCursor c(rest);
      JsonScalar j;
      return c.Scalar(&j) && c.AtEnd() && ScalarMatches(j, &item);
    }
    case 'i': {
      std::optional<int64_t> i = ParseDecimal(rest);
      return i && static_cast<size_t>(*i) == index;
    }
    default: return false;
  }
}

// ---- paths ----

// One step from the root: a map key, or a list item (by desired index, live index, key, or the
// fieldsV1 key that names it). Lives on the stack of the walk; `parent` is null at top level.
struct Step {
  const Step* parent = nullptr;
  std::string_view key;  // map key, when !item
  bool item = false;
  size_t d_index = kNone;
  size_t l_index = kNone;
  const Value* d_item = nullptr;
  const Value* l_item = nullptr;
  const ListSpec* spec = nullptr;  // how the list holding this item is keyed
  std::string_view fields_key;     // "f:x", "k:{..}", "v:..", "i:N" for a step from fieldsV1
};

std::vector<const Step*> Chain(const Step* s) {
  std::vector<const Step*> chain;
  for (; s; s = s->parent) chain.push_back(s);
  return std::vector<const Step*>(chain.rbegin(), chain.rend());
}

FieldContext ContextOf(std::string_view kind, const Step* s) {
  FieldContext w{.kind = kind, .field = s->key};
  const Step* p = s->parent;
  w.in_item = p && p->item;
  while (p && p->item) p = p->parent;
  if (p) {
    w.parent = p->key;
    w.parent_top_level = p->parent == nullptr;
  }
  return w;
}

void AppendSegment(std::string& out, std::string_view segment) {
  out += '/';
  for (char c : segment) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
}

std::string ScalarText(const Value& v) {
  switch (v.type()) {
    case Value::Type::kString: return std::string(v.AsString());
    case Value::Type::kInt: return std::to_string(v.AsInt());
    case Value::Type::kBool: return v.AsBool() ? "true" : "false";
    case Value::Type::kNull: return "null";
    default: return value::ToJson(v);
  }
}

// The readable path of `changed` (see diff.h).
std::string Display(const Step* s) {
  std::string out;
  for (const Step* st : Chain(s)) {
    if (!st->item) {
      AppendSegment(out, st->key);
      continue;
    }
    std::string seg;
    std::string_view fk = st->fields_key;
    if (fk.size() > 2 && fk[0] == 'k') {
      bool ok = ForEachMember(fk.substr(2), [&](std::string_view name, const JsonScalar& j) {
        if (!seg.empty()) seg += ',';
        seg += fmt::format("{}={}", name, j.type == JsonScalar::Type::kNull ? "null" : j.text);
        return true;
      });
      if (!ok) seg = fk.substr(2);
    } else if (fk.size() > 2) {
      JsonCursor c(fk.substr(2));
      JsonScalar j;
      seg = c.Scalar(&j) ? std::string(j.text) : std::string(fk.substr(2));
    } else if (st->spec && st->spec->type == ListSpec::Type::kMap) {
      const Value* item = st->d_item ? st->d_item : st->l_item;
      for (size_t k = 0; k < st->spec->num_keys && item; ++k) {
        std::string_view name = st->spec->keys[k];
        const Value* v = item->Get(name);
        std::string text;
        if (v && !v->IsNull()) text = ScalarText(*v);
        else if (!internal::KeyFieldDefault(name).empty()) text = internal::KeyFieldDefault(name);
        else continue;
        if (!seg.empty()) seg += ',';
        seg += fmt::format("{}={}", name, text);
      }
    } else if (st->spec && st->spec->type == ListSpec::Type::kSet && st->d_item) {
      seg = ScalarText(*st->d_item);
    } else {
      seg = std::to_string(st->d_index != kNone ? st->d_index : st->l_index);
    }
    AppendSegment(out, seg);
  }
  if (out.empty()) out = "/";
  return out;
}

// RFC 6901: "" or "/"-separated tokens with ~0 and ~1 escapes.
Status ValidatePointer(std::string_view p) {
  if (!p.empty() && p[0] != '/') return InvalidArgumentError("must be empty or start with '/'");
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '~' && (i + 1 == p.size() || (p[i + 1] != '0' && p[i + 1] != '1'))) {
      return InvalidArgumentError("'~' must be followed by 0 or 1");
    }
  }
  return OkStatus();
}

Status Validate(const Options& options) {
  for (const IgnoreRule& r : options.ignore) {
    if (r.kind.empty()) {
      return InvalidArgumentError(
          "ignore rule (group \"{}\", name \"{}\"): kind is required; use \"*\" for every kind",
          r.group, r.name);
    }
    for (const std::string& p : r.json_pointers) {
      if (Status s = ValidatePointer(p); !s.ok()) {
        return InvalidArgumentError("ignore rule for kind {}: invalid JSON pointer \"{}\": {}",
                                    r.kind, p, s.message());
      }
    }
  }
  return OkStatus();
}

// ---- the comparison ----

struct Identity {
  std::string_view api_version, group, kind, name, namespace_;
};

Identity IdentityOf(const Value* desired, const Value* live) {
  const Value& o = desired ? *desired : *live;
  Identity id;
  id.api_version = ViewAt(o, {"apiVersion"});
  id.kind = ViewAt(o, {"kind"});
  id.name = ViewAt(o, {"metadata", "name"});
  id.namespace_ = ViewAt(o, {"metadata", "namespace"});
  if (id.namespace_.empty() && live) id.namespace_ = ViewAt(*live, {"metadata", "namespace"});
  size_t slash = id.api_version.find('/');
  id.group = slash == std::string_view::npos ? "" : id.api_version.substr(0, slash);
  return id;
}

class Differ {
 public:
  // desired and live are non-null and outlive the Differ.
  Differ(const Value& desired, const Value& live, const Options& options)
      : desired_(desired), live_(live) {
    id_ = IdentityOf(&desired, &live);
    secret_ = IsSecret(desired);
    if (secret_) string_data_ = desired.Get("stringData");
    for (const IgnoreRule& r : options.ignore) {
      if ((r.group == "*" || r.group == id_.group) && (r.kind == "*" || r.kind == id_.kind) &&
          (r.name.empty() || r.name == id_.name) &&
          (r.namespace_.empty() || r.namespace_ == id_.namespace_)) {
        rules_.push_back(&r);
      }
    }
    const Value* managed = live.Find({"metadata", "managedFields"});
    for (const Value& entry : managed ? managed->items() : std::span<const Value>()) {
      const Value* fields = entry.Get("fieldsV1");
      if (!fields || !fields->IsMap()) continue;
      std::string_view manager = ViewAt(entry, {"manager"});
      std::string_view version = ViewAt(entry, {"apiVersion"});
      if (!options.field_manager.empty() && manager == options.field_manager &&
          ViewAt(entry, {"operation"}) == "Apply" && ViewAt(entry, {"subresource"}).empty() &&
          (version.empty() || version == id_.api_version)) {
        gantry_.push_back(fields);
      } else {
        others_.push_back(fields);
      }
      for (const IgnoreRule* r : rules_) {
        for (const std::string& m : r->managers) {
          if (m == manager) ignored_.push_back(fields);
        }
      }
    }
  }

  ObjectDiff Compare() {
    Cmp(desired_, &live_, nullptr);
    for (const Value* g : gantry_) Owned(*g, desired_, nullptr);
    return std::move(out_);
  }

  Value Project(const Value* d, const Value& l, const Step* s, const Value* g) const;
  const Value* GantryFields() const { return gantry_.empty() ? nullptr : gantry_.front(); }

 private:
  // -- the desired walk --

  void Cmp(const Value& d, const Value* l, const Step* s) {
    if (d.IsNull()) return;
    if (!l || l->IsNull()) {
      if (!IsZero(d) && !AllIgnored(d, s)) Record(s);
      return;
    }
    if (d.IsMap()) {
      if (!l->IsMap()) return Mismatch(s);
      return CmpMap(d, *l, s);
    }
    if (d.IsSeq()) {
      if (!l->IsSeq()) return Mismatch(s);
      return CmpSeq(d, *l, s);
    }
    if (!ScalarEqual(d, *l, s)) Mismatch(s);
  }

  // True for the keys of desired's map at `s` that are not compared (status, server metadata,
  // Secret data that stringData overrides).
  bool Skipped(const Step* s, std::string_view k) const {
    if (!s) return k == "status" || (secret_ && k == "stringData");
    if (s->item || s->parent) return false;
    if (s->key == "metadata") return IsServerMetadata(k);
    if (secret_ && s->key == "data" && string_data_) {
      const Value* v = string_data_->Get(k);
      return v && !v->IsNull();
    }
    return false;
  }

  void CmpMap(const Value& d, const Value& l, const Step* s) {
    for (const MapEntry& e : d.entries()) {
      std::string_view k = e.key.AsString();
      if (Skipped(s, k)) {
        if (!s && k == "stringData") CmpStringData(e.value, l);
        continue;
      }
      Step c{.parent = s, .key = k};
      Cmp(e.value, l.Get(k), &c);
    }
  }

  void CmpStringData(const Value& sd, const Value& l) {
    const Value* data = l.Get("data");
    Step sd_step{.key = "stringData"};
    for (const MapEntry& e : sd.entries()) {
      if (e.value.IsNull()) continue;
      Step c{.parent = &sd_step, .key = e.key.AsString()};
      const Value* lv = data ? data->Get(c.key) : nullptr;
      bool equal = false;
      if (lv && lv->IsString() && e.value.IsString()) {
        std::optional<std::string> decoded = Base64Decode(lv->AsString());
        equal = decoded && *decoded == e.value.AsString();
      }
      if (!equal) Mismatch(&c);
    }
  }

  const ListSpec& SpecOf(const Step* list) const {
    static constexpr ListSpec kAtomic{};
    if (!list || list->item) return kAtomic;
    return internal::ListSpecFor(ContextOf(id_.kind, list));
  }

  static bool KeyedList(const ListSpec& spec, const Value& d) {
    return spec.type == ListSpec::Type::kMap && (d.size() == 0 || d.items()[0].IsMap());
  }

  void CmpSeq(const Value& d, const Value& l, const Step* s) {
    const ListSpec& spec = SpecOf(s);
    if (KeyedList(spec, d)) {
      for (size_t i = 0; i < d.size(); ++i) {
        const Value& di = d.items()[i];
        size_t j = FindKeyed(spec, di, l, i);
        Step c{.parent = s, .item = true, .d_index = i, .l_index = j, .d_item = &di,
               .l_item = j == kNone ? nullptr : &l.items()[j], .spec = &spec};
        Cmp(di, c.l_item, &c);
      }
    } else if (spec.type == ListSpec::Type::kSet) {
      for (size_t i = 0; i < d.size(); ++i) {
        const Value& di = d.items()[i];
        Step c{.parent = s, .item = true, .d_index = i, .d_item = &di, .spec = &spec};
        if (!di.IsNull() && FindEqual(di, l) == kNone) Mismatch(&c);
      }
    } else if (d.size() != l.size()) {
      Mismatch(s);
    } else {
      // Atomic: SSA replaces the list whole, so a difference anywhere is reported for the list.
      ObjectDiff outer = std::move(out_);
      out_ = ObjectDiff();
      for (size_t i = 0; i < d.size() && out_.status == SyncStatus::kSynced; ++i) {
        Step c{.parent = s, .item = true, .d_index = i, .l_index = i, .d_item = &d.items()[i],
               .l_item = &l.items()[i]};
        Cmp(d.items()[i], &l.items()[i], &c);
      }
      bool differs = out_.status != SyncStatus::kSynced;
      out_ = std::move(outer);
      if (differs) Mismatch(s);
    }
  }

  static size_t FindEqual(const Value& item, const Value& list) {
    for (size_t j = 0; j < list.size(); ++j) {
      if (ScalarsMatch(item, list.items()[j], false)) return j;
    }
    return kNone;
  }

  // The live item with the same key as desired item `di`; tries index `hint` first.
  static size_t FindKeyed(const ListSpec& spec, const Value& di, const Value& l, size_t hint) {
    auto same = [&](const Value& li) {
      for (size_t k = 0; k < spec.num_keys; ++k) {
        std::string_view name = spec.keys[k];
        const Value* a = di.Get(name);
        const Value* b = li.Get(name);
        bool has_a = a && !a->IsNull(), has_b = b && !b->IsNull();
        std::string_view def = internal::KeyFieldDefault(name);
        if (!has_a && !has_b) continue;
        if (!has_a || !has_b) {
          const Value* present = has_a ? a : b;
          if (def.empty() || !present->IsString() || present->AsString() != def) return false;
          continue;
        }
        if (!ScalarsMatch(*a, *b, internal::IsIntegerField({.field = name}))) return false;
      }
      return true;
    };
    if (hint < l.size() && same(l.items()[hint])) return hint;
    for (size_t j = 0; j < l.size(); ++j) {
      if (same(l.items()[j])) return j;
    }
    return kNone;
  }

  bool ScalarEqual(const Value& d, const Value& l, const Step* s) const {
    if (d == l) return true;
    if (!s || s->item) return NumbersEqual(d, l);
    if (secret_ && s->parent && !s->parent->item && !s->parent->parent &&
        s->parent->key == "data") {
      return SecretBytesEqual(d, l);
    }
    FieldContext w = ContextOf(id_.kind, s);
    if (internal::IsQuantityField(w)) {
      std::optional<Quantity> qd = AsQuantity(d), ql = AsQuantity(l);
      if (qd && ql) return *qd == *ql;
    }
    return ScalarsMatch(d, l, internal::IsIntegerField(w));
  }

  // -- the ownership walk: fields Gantry owns that desired no longer sets --

  void Owned(const Value& fields, const Value& d, const Step* s) {
    size_t ordinal = 0;  // position among the item keys, tried first in desired
    for (const MapEntry& e : fields.entries()) {
      std::string_view fk = e.key.AsString();
      if (fk.size() < 2 || fk[1] != ':') continue;
      Step c{.parent = s, .fields_key = fk};
      const Value* dc = nullptr;
      if (fk[0] == 'f') {
        c.key = fk.substr(2);
        // Skipped: status, server metadata, data keys stringData sets; but desired's stringData
        // must still hold what Gantry owns there.
        if (Skipped(s, c.key) && !(secret_ && !s && c.key == "stringData")) continue;
        dc = d.Get(c.key);  // null when d is not a map
      } else {
        c.item = true;
        std::span<const Value> items = d.items();  // empty when d is not a list
        size_t hint = ordinal++;
        if (hint < items.size() && FieldsKeyMatches(fk, items[hint], hint)) {
          c.d_index = hint;
        } else {
          for (size_t j = 0; j < items.size() && c.d_index == kNone; ++j) {
            if (FieldsKeyMatches(fk, items[j], j)) c.d_index = j;
          }
        }
        if (c.d_index != kNone) dc = c.d_item = &items[c.d_index];
      }
      if (!dc || dc->IsNull()) {
        if (IsRemoval(&c)) Record(&c);
        continue;
      }
      if (!IsLeafFields(e.value)) Owned(e.value, *dc, &c);
    }
  }

  // -- predicates on whole paths (only once something differs) --

  struct Resolved {
    std::vector<const Step*> steps;
    std::vector<const Value*> live;  // live node at each step, or null
    std::vector<size_t> live_index;  // live index of each item step
  };

  Resolved Resolve(const Step* s) const {
    Resolved r{.steps = Chain(s)};
    const Value* node = &live_;
    for (const Step* st : r.steps) {
      size_t index = kNone;
      if (!node) {
        // Absent from live: so is everything below.
      } else if (!st->item) {
        node = node->Get(st->key);
      } else if (st->l_item) {
        node = st->l_item, index = st->l_index;
      } else if (!st->fields_key.empty()) {
        const Value* found = nullptr;
        std::span<const Value> items = node->items();
        for (size_t j = 0; j < items.size() && !found; ++j) {
          if (FieldsKeyMatches(st->fields_key, items[j], j)) found = &items[j], index = j;
        }
        node = found;
      } else {
        node = nullptr;
      }
      r.live.push_back(node);
      r.live_index.push_back(index);
    }
    return r;
  }

  // The node of a fieldsV1 tree at the path, or null; *ancestor_leaf when the tree owns an
  // ancestor whole.
  static const Value* FieldsAt(const Value& root, const Resolved& r, bool* ancestor_leaf) {
    *ancestor_leaf = false;
    const Value* node = &root;
    for (size_t i = 0; i < r.steps.size(); ++i) {
      if (i > 0 && IsLeafFields(*node)) {
        *ancestor_leaf = true;
        return nullptr;
      }
      const Step* st = r.steps[i];
      const Value* child = nullptr;
      if (!st->fields_key.empty()) {
        child = node->Get(st->fields_key);
      } else if (!st->item) {
        child = node->Get(fmt::format("f:{}", st->key));
      } else if (r.live[i]) {
        for (const MapEntry& e : node->entries()) {
          if (FieldsKeyMatches(e.key.AsString(), *r.live[i], r.live_index[i])) {
            child = &e.value;
            break;
          }
        }
      }
      if (!child) return nullptr;
      node = child;
    }
    return node;
  }

  static bool PointerCovers(std::string_view ptr, const Resolved& r) {
    size_t i = 0, pos = 0;
    while (pos < ptr.size()) {
      ++pos;  // the '/'
      size_t end = std::min(ptr.find('/', pos), ptr.size());
      std::string token;
      for (size_t k = pos; k < end; ++k) {
        if (ptr[k] == '~') token += ptr[++k] == '0' ? '~' : '/';
        else token += ptr[k];
      }
      pos = end;
      if (i == r.steps.size()) return false;  // the pointer is below the difference
      const Step* st = r.steps[i];
      if (st->item) {
        std::optional<int64_t> index = ParseDecimal(token);
        if (!index || *index < 0) return false;
        size_t idx = static_cast<size_t>(*index);
        if (idx != st->d_index && idx != r.live_index[i]) return false;
      } else if (token != st->key) {
        return false;
      }
      ++i;
    }
    return true;
  }

  // Is a difference at `s` suppressed by an ignore rule?
  bool IsIgnored(const Step* s) const {
    if (rules_.empty()) return false;
    return IsIgnored(Resolve(s));
  }
  bool IsIgnored(const Resolved& r) const {
    for (const IgnoreRule* rule : rules_) {
      for (const std::string& p : rule->json_pointers) {
        if (PointerCovers(p, r)) return true;
      }
    }
    for (const Value* f : ignored_) {
      bool ancestor_leaf = false;
      const Value* node = FieldsAt(*f, r, &ancestor_leaf);
      if (ancestor_leaf || (node && IsLeafFields(*node))) return true;
    }
    return false;
  }

  // Would SSA delete the Gantry-owned field at `s` that desired dropped? Not when it is ignored
  // or another manager owns it too.
  bool IsRemoval(const Step* s) const {
    Resolved r = Resolve(s);
    if (IsIgnored(r)) return false;
    for (const Value* f : others_) {
      bool ancestor_leaf = false;
      if (FieldsAt(*f, r, &ancestor_leaf) || ancestor_leaf) return false;
    }
    return true;
  }

  // True when every non-zero value under `d` (absent from live) is ignored.
  bool AllIgnored(const Value& d, const Step* s) const {
    if (rules_.empty()) return false;
    if (IsIgnored(s)) return true;
    if (d.IsMap()) {
      for (const MapEntry& e : d.entries()) {
        Step c{.parent = s, .key = e.key.AsString()};
        if (!IsZero(e.value) && !AllIgnored(e.value, &c)) return false;
      }
      return true;
    }
    if (d.IsSeq()) {
      for (size_t i = 0; i < d.size(); ++i) {
        Step c{.parent = s, .item = true, .d_index = i, .d_item = &d.items()[i]};
        if (!IsZero(d.items()[i]) && !AllIgnored(d.items()[i], &c)) return false;
      }
      return true;
    }
    return false;
  }

  void Mismatch(const Step* s) {
    if (!IsIgnored(s)) Record(s);
  }

  void Record(const Step* s) {
    out_.status = SyncStatus::kOutOfSync;
    std::string path = Display(s);
    for (const std::string& c : out_.changed) {
      if (c == path) return;
    }
    out_.changed.push_back(std::move(path));
  }

  // -- the live view of RenderDiff --

  Value OwnedView(const Value& l, const Value* g, const Step* s) const;

  const Value& desired_;
  const Value& live_;
  Identity id_;
  bool secret_ = false;
  const Value* string_data_ = nullptr;
  std::vector<const IgnoreRule*> rules_;
  std::vector<const Value*> ignored_;  // fieldsV1 of the managers named by rules_
  std::vector<const Value*> gantry_;   // fieldsV1 of Gantry's Apply entries
  std::vector<const Value*> others_;   // fieldsV1 of every other entry
  ObjectDiff out_;
};

const Value* FieldsChild(const Value* g, std::string_view key) {
  return g ? g->Get(fmt::format("f:{}", key)) : nullptr;
}

const MapEntry* FieldsItem(const Value* g, const Value& item, size_t index) {
  if (!g) return nullptr;
  for (const MapEntry& e : g->entries()) {
    if (FieldsKeyMatches(e.key.AsString(), item, index)) return &e;
  }
  return nullptr;
}

// The part of live `l` that the fieldsV1 node `g` owns.
Value Differ::OwnedView(const Value& l, const Value* g, const Step* s) const {
  if (!g || IsLeafFields(*g)) return l;
  if (l.IsMap()) {
    Value out = Value::Map();
    for (const MapEntry& e : g->entries()) {
      std::string_view fk = e.key.AsString();
      if (fk.substr(0, 2) != "f:") continue;
      Step c{.parent = s, .key = fk.substr(2), .fields_key = fk};
      if (const Value* lc = l.Get(c.key)) out.Set(c.key, OwnedView(*lc, &e.value, &c));
    }
    return out;
  }
  if (l.IsSeq()) {
    Value out = Value::Seq();
    for (size_t j = 0; j < l.size(); ++j) {
      if (const MapEntry* e = FieldsItem(g, l.items()[j], j)) {
        Step c{.parent = s, .item = true, .l_index = j, .l_item = &l.items()[j],
               .fields_key = e->key.AsString()};
        out.Append(OwnedView(l.items()[j], &e->value, &c));
      }
    }
    return out;
  }
  return l;
}

// Live `l` as RenderDiff shows it next to desired `d`: see diff.h. `g` is Gantry's fieldsV1 node
// at this position.
Value Differ::Project(const Value* d, const Value& l, const Step* s, const Value* g) const {
  if (!d || d->IsNull()) return OwnedView(l, g, s);
  if (IsIgnored(s)) return *d;
  if (d->IsMap() && l.IsMap()) {
    Value out = Value::Map();
    for (const MapEntry& e : d->entries()) {
      std::string_view k = e.key.AsString();
      if (Skipped(s, k)) continue;
      Step c{.parent = s, .key = k};
      const Value* lc = l.Get(k);
      if (e.value.IsNull()) {  // unset: shown as desired writes it, unless SSA would remove it
        const Value* gc = FieldsChild(g, k);
        bool removal = gc && lc && IsRemoval(&c);
        out.Set(k, removal ? OwnedView(*lc, gc, &c) : e.value);
        continue;
      }
      if (!lc || lc->IsNull()) {
        if (IsZero(e.value) || AllIgnored(e.value, &c)) out.Set(k, e.value);
        continue;
      }
      out.Set(k, Project(&e.value, *lc, &c, FieldsChild(g, k)));
    }
    for (const MapEntry& e : g ? g->entries() : std::span<const MapEntry>()) {
      std::string_view fk = e.key.AsString();
      if (fk.substr(0, 2) != "f:") continue;
      Step c{.parent = s, .key = fk.substr(2), .fields_key = fk};
      const Value* dv = d->Get(c.key);
      const Value* lc = l.Get(c.key);
      if (dv || !lc || Skipped(s, c.key) || !IsRemoval(&c)) continue;
      out.Set(c.key, OwnedView(*lc, &e.value, &c));
    }
    return out;
  }
  if (d->IsSeq() && l.IsSeq()) {
    const ListSpec& spec = SpecOf(s);
    Value out = Value::Seq();
    std::vector<bool> used(l.size());
    if (KeyedList(spec, *d) || spec.type == ListSpec::Type::kSet) {
      for (size_t i = 0; i < d->size(); ++i) {
        const Value& di = d->items()[i];
        size_t j = spec.type == ListSpec::Type::kSet ? FindEqual(di, l) : FindKeyed(spec, di, l, i);
        Step c{.parent = s, .item = true, .d_index = i, .l_index = j, .d_item = &di,
               .l_item = j == kNone ? nullptr : &l.items()[j], .spec = &spec};
        if (j == kNone) {
          if (AllIgnored(di, &c)) out.Append(di);
          continue;
        }
        used[j] = true;
        const MapEntry* ge = FieldsItem(g, l.items()[j], j);
        out.Append(Project(&di, l.items()[j], &c, ge ? &ge->value : nullptr));
      }
      for (size_t j = 0; j < l.size(); ++j) {
        const MapEntry* ge = used[j] ? nullptr : FieldsItem(g, l.items()[j], j);
        if (!ge) continue;
        Step c{.parent = s, .item = true, .l_index = j, .l_item = &l.items()[j], .spec = &spec,
               .fields_key = ge->key.AsString()};
        if (IsRemoval(&c)) out.Append(OwnedView(l.items()[j], &ge->value, &c));
      }
      return out;
    }
    if (d->size() != l.size()) return l;
    for (size_t i = 0; i < d->size(); ++i) {
      Step c{.parent = s, .item = true, .d_index = i, .l_index = i, .d_item = &d->items()[i],
             .l_item = &l.items()[i]};
      out.Append(Project(&d->items()[i], l.items()[i], &c, nullptr));
    }
    return out;
  }
  bool scalars = !d->IsMap() && !d->IsSeq() && !l.IsMap() && !l.IsSeq();
  return scalars && ScalarEqual(*d, l, s) ? *d : l;
}

// ---- display ----

void RedactLastApplied(Value& object) {
  Value* annotations = object.MutableGet("metadata");
  if (annotations) annotations = annotations->MutableGet("annotations");
  if (annotations && annotations->IsMap() && annotations->Get(kLastApplied)) {
    annotations->Set(kLastApplied, kPlaceholder);
  }
}

// Desired without status and server metadata.
Value DisplayCopy(const Value& object) {
  Value out = object;
  if (!out.IsMap()) return out;
  out.Erase("status");
  if (Value* metadata = out.MutableGet("metadata"); metadata && metadata->IsMap()) {
    for (std::string_view k : {"managedFields", "resourceVersion", "uid", "creationTimestamp",
                               "generation", "selfLink", "deletionTimestamp",
                               "deletionGracePeriodSeconds"}) {
      metadata->Erase(k);
    }
  }
  return out;
}

// Desired Secret for display: stringData folded into data, every value a placeholder that says
// whether it differs from live.
Value SecretDisplay(const Value& desired, const Value& live) {
  Value out = desired;
  const Value* data = desired.Get("data");
  const Value* string_data = desired.Get("stringData");
  const Value* live_data = live.Get("data");
  Value shown = Value::Map();
  for (const MapEntry& e : data && data->IsMap() ? data->entries() : std::span<const MapEntry>()) {
    std::string_view k = e.key.AsString();
    const Value* sd = string_data ? string_data->Get(k) : nullptr;
    if (e.value.IsNull() || (sd && !sd->IsNull())) continue;
    const Value* lv = live_data ? live_data->Get(k) : nullptr;
    shown.Set(k, !lv || SecretBytesEqual(e.value, *lv) ? kPlaceholder : kChangedPlaceholder);
  }
  for (const MapEntry& e : string_data && string_data->IsMap() ? string_data->entries()
                                                               : std::span<const MapEntry>()) {
    if (e.value.IsNull()) continue;
    std::string_view k = e.key.AsString();
    const Value* lv = live_data ? live_data->Get(k) : nullptr;
    bool equal = !lv;
    if (lv && lv->IsString() && e.value.IsString()) {
      std::optional<std::string> decoded = Base64Decode(lv->AsString());
      equal = decoded && *decoded == e.value.AsString();
    }
    shown.Set(k, equal ? kPlaceholder : kChangedPlaceholder);
  }
  out.Erase("stringData");
  if (data || string_data) out.Set("data", shown);
  RedactLastApplied(out);
  return out;
}

std::string Title(std::string_view side, const Identity& id) {
  if (id.namespace_.empty()) {
    return fmt::format("{} {} {} {}", side, id.api_version, id.kind, id.name);
  }
  return fmt::format("{} {} {} {}/{}", side, id.api_version, id.kind, id.namespace_, id.name);
}

const Value* Present(const Value* v) { return v && !v->IsNull() ? v : nullptr; }

}  // namespace

std::string_view Name(SyncStatus status) {
  switch (status) {
    case SyncStatus::kSynced: return "Synced";
    case SyncStatus::kOutOfSync: return "OutOfSync";
    case SyncStatus::kMissing: return "Missing";
    case SyncStatus::kExtra: return "Extra";
  }
  return "Unknown";
}

Result<ObjectDiff> Compare(const Value* desired, const Value* live, const Options& options) {
  GANTRY_RETURN_IF_ERROR(Validate(options));
  desired = Present(desired);
  live = Present(live);
  ObjectDiff out;
  if (!desired && !live) return out;
  if (!live) {
    out.status = SyncStatus::kMissing;
    return out;
  }
  if (!desired) {
    out.status = SyncStatus::kExtra;
    return out;
  }
  return Differ(*desired, *live, options).Compare();
}

Result<std::string> RenderDiff(const Value* desired, const Value* live,
                               const RenderOptions& options) {
  GANTRY_RETURN_IF_ERROR(Validate(options.compare));
  desired = Present(desired);
  live = Present(live);
  if (!desired && !live) return std::string();
  Identity id = IdentityOf(desired, live);
  std::string live_text, desired_text;
  if (!live) {
    desired_text = value::ToYaml(DisplayCopy(Redact(*desired)));
  } else if (!desired) {
    live_text = value::ToYaml(DisplayCopy(Redact(*live)));
  } else {
    Value d = DisplayCopy(*desired);
    Value l = *live;
    if (IsSecret(d)) {
      d = SecretDisplay(d, l);
      l = Redact(l);
    }
    Differ differ(d, l, options.compare);
    live_text = value::ToYaml(differ.Project(&d, l, nullptr, differ.GantryFields()));
    desired_text = value::ToYaml(d);
  }
  return internal::UnifiedDiff(live_text, desired_text, Title("live", id), Title("desired", id),
                               options.context, options.color);
}

Value Redact(const Value& object) {
  if (!IsSecret(object)) return object;
  Value out = object;
  for (std::string_view field : {"data", "stringData"}) {
    Value* m = out.MutableGet(field);
    if (!m || !m->IsMap()) continue;
    Value redacted = Value::Map();
    for (const MapEntry& e : m->entries()) {
      redacted.Set(e.key.AsString(), e.value.IsNull() ? Value() : Value(kPlaceholder));
    }
    *m = redacted;
  }
  RedactLastApplied(out);
  return out;
}

}  // namespace gantry::diff

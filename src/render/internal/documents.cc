#include "render/internal/documents.h"

#include <algorithm>
#include <utility>

#include "value/position.h"

namespace gantry::render::internal {

std::string Where(const value::Value& v) { return value::PositionOf(v, "<generated>"); }

Status AddDocument(value::Value doc, const std::string& source, std::vector<Manifest>& out) {
  // A list, as kubectl reads one: `kind: List` or a typed list (ConfigMapList, RoleList, ...) with
  // `items`. A kind that merely ends in "List" (a custom resource AccessList) has no items.
  const value::Value* kind = doc.IsMap() ? doc.Get("kind") : nullptr;
  const value::Value* items = doc.IsMap() ? doc.Get("items") : nullptr;
  if (kind && kind->IsString() && kind->AsString().ends_with("List") && items) {
    std::string list = fmt::format("{} at {}", kind->AsString(), Where(doc));
    if (items->IsNull()) return OkStatus();
    if (!items->IsSeq()) return InvalidArgumentError("{}: items of {} must be a sequence", Where(*items), list);
    for (size_t i = 0; i < items->size(); ++i) {
      const value::Value& item = *items->At(i);
      if (item.IsMap() && (!item.Get("apiVersion") || !item.Get("kind"))) {
        return InvalidArgumentError("{}: item {} of {} has no {}: each item of a list needs its own apiVersion "
                                    "and kind", Where(item), i, list, item.Get("apiVersion") ? "kind" : "apiVersion");
      }
      GANTRY_RETURN_IF_ERROR(AddDocument(item, source, out));
    }
    return OkStatus();
  }
  GANTRY_RETURN_IF_ERROR(ValidateObject(doc));
  std::string where = source.empty() ? Where(doc) : source;
  out.push_back(Manifest{std::move(doc), std::move(where)});
  return OkStatus();
}

Result<std::vector<Manifest>> ParseRendered(std::string_view text, const std::string& filename,
                                            const Limits& limits, bool helm_sources) {
  GANTRY_ASSIGN_OR_RETURN(std::vector<value::Value> docs, value::ParseYaml(text, filename, limits.parse));
  // Offsets and paths of Helm's "# Source: chart/templates/x.yaml" lines, in order.
  std::vector<std::pair<size_t, std::string>> sources;
  if (helm_sources) {
    constexpr std::string_view kPrefix = "# Source: ";
    for (size_t pos = 0; pos < text.size();) {
      size_t eol = text.find('\n', pos);
      std::string_view line = text.substr(pos, eol == std::string_view::npos ? eol : eol - pos);
      if (line.starts_with(kPrefix)) sources.emplace_back(pos, std::string(line.substr(kPrefix.size())));
      if (eol == std::string_view::npos) break;
      pos = eol + 1;
    }
  }
  std::vector<Manifest> out;
  for (value::Value& doc : docs) {
    std::string source;
    size_t begin = doc.mark().begin;
    auto it = std::upper_bound(sources.begin(), sources.end(), begin,
                               [](size_t b, const auto& s) { return b < s.first; });
    if (it != sources.begin()) source = fmt::format("{}: {}", filename, std::prev(it)->second);
    GANTRY_RETURN_IF_ERROR(AddDocument(std::move(doc), source, out));
  }
  return out;
}

namespace {

// Per node: the header (reference count, type, mark) and, for a map or sequence, its entry table,
// plus the allocator's rounding; measured against the parser's arenas with heaptrack.
constexpr size_t kNodeBytes = 64;

size_t ValueBytes(const value::Value& v) {
  size_t n = kNodeBytes;
  switch (v.type()) {
    case value::Value::Type::kString:
      n += v.AsString().size();
      break;
    case value::Value::Type::kSeq:
      for (const value::Value& item : v.items()) n += sizeof(value::Value) * 2 + ValueBytes(item);
      break;
    case value::Value::Type::kMap:
      for (const value::MapEntry& e : v.entries()) n += sizeof(value::MapEntry) * 2 + ValueBytes(e.key) + ValueBytes(e.value);
      break;
    default:
      break;
  }
  return n;
}

}  // namespace

size_t ManifestBytes(const std::vector<Manifest>& manifests) {
  size_t n = 0;
  for (const Manifest& m : manifests) n += sizeof(Manifest) + m.source.capacity() + ValueBytes(m.object);
  return n;
}

}  // namespace gantry::render::internal

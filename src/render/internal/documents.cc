#include "render/internal/documents.h"

#include <algorithm>
#include <utility>

namespace gantry::render::internal {

std::string Where(const value::Value& v) {
  value::Mark m = v.mark();
  if (m.file.empty()) return "<generated>";
  return fmt::format("{}:{}:{}", m.file, m.line, m.column);
}

Status AddDocument(value::Value doc, const std::string& source, std::vector<Manifest>& out) {
  if (doc.IsMap()) {
    const value::Value* kind = doc.Get("kind");
    const value::Value* items = doc.Get("items");
    if (kind && kind->IsString() && kind->AsString() == "List" && items && items->IsSeq()) {
      for (const value::Value& item : items->items()) {
        GANTRY_RETURN_IF_ERROR(AddDocument(item, source, out));
      }
      return OkStatus();
    }
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

}  // namespace gantry::render::internal

// RewriteYaml: finds the scalars the rules apply to in the parsed tree and splices new text into
// their byte ranges (see update.h for what is rewritten).
//
// The file is parsed once; every candidate edit is a byte range of the original text and its
// replacement (an insertion has an empty range). Markers are looked at first and claim their
// scalar; then the kustomize, Helm and container passes. Edits are sorted and applied in one pass
// over the text, so the output is the input with exactly those ranges replaced.

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "update/update.h"
#include "value/value.h"

namespace gantry::update {
namespace {

using value::Value;

struct Edit {
  size_t begin = 0;
  size_t end = 0;
  std::string text;
  Change change;
};

enum class Style { kPlain, kSingle, kDouble, kBlock };

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// A scalar's own source bytes: the node's range without its anchor and tag properties.
struct Scalar {
  size_t begin = 0;
  size_t end = 0;
  Style style = Style::kPlain;
  std::string value;  // the string a reader sees (for a plain non-string scalar, its text)
};

std::optional<Scalar> ScalarOf(std::string_view text, const Value& v) {
  if (v.IsSeq() || v.IsMap()) return std::nullopt;
  value::Mark m = v.mark();
  if (m.end <= m.begin || m.end > text.size()) return std::nullopt;
  size_t b = m.begin;
  while (b < m.end && (text[b] == '&' || text[b] == '!')) {  // properties: &anchor, !tag
    while (b < m.end && !IsSpace(text[b])) ++b;
    while (b < m.end && IsSpace(text[b])) ++b;
  }
  if (b >= m.end) return std::nullopt;
  Scalar s{b, m.end, Style::kPlain, {}};
  switch (text[b]) {
    case '\'': s.style = Style::kSingle; break;
    case '"': s.style = Style::kDouble; break;
    case '|':
    case '>': s.style = Style::kBlock; break;
    default: break;
  }
  if (v.IsString()) {
    s.value = std::string(v.AsString());
  } else if (s.style == Style::kPlain) {
    s.value = std::string(text.substr(b, m.end - b));
  } else {
    return std::nullopt;
  }
  return s;
}

// Whether `s` can be written as a plain scalar and read back as this very string.
bool PlainSafe(std::string_view s) {
  if (s.empty() || IsSpace(s.front()) || IsSpace(s.back()) || s.back() == ':') return false;
  if (std::string_view("-?:,[]{}#&*!|>'\"%@`").find(s.front()) != std::string_view::npos) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || s[i] == ',' || s[i] == '[' || s[i] == ']' || s[i] == '{' || s[i] == '}') {
      return false;
    }
    if (s[i] == ':' && i + 1 < s.size() && IsSpace(s[i + 1])) return false;
    if (s[i] == '#' && i > 0 && IsSpace(s[i - 1])) return false;
  }
  Value resolved = value::ResolvePlainScalar(s);
  return resolved.IsString() && resolved.AsString() == s;
}

std::string DoubleQuoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// `s` in the given style, or double-quoted when a plain scalar would not read back as `s`.
std::string Encode(std::string_view s, Style style) {
  if (style == Style::kSingle) {
    bool printable = std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x20; });
    if (printable) {
      std::string out = "'";
      for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
      return out + "'";
    }
  }
  if (style == Style::kPlain && PlainSafe(s)) return std::string(s);
  return DoubleQuoted(s);
}

std::string_view Basename(std::string_view name) {
  size_t slash = name.rfind('/');
  return slash == std::string_view::npos ? name : name.substr(slash + 1);
}

struct PreparedRule {
  const ImageRule* rule;
  std::string norm_image;  // NormalizeName(image) or "" for a marker-only rule
};

// The reference after applying `rule` to `ref` (name moved, tag and digest set; a digest pinned
// next to a replaced tag dropped when the rule gives none).
ImageRef Apply(const ImageRule& rule, ImageRef ref) {
  if (!rule.new_name.empty()) ref.name = rule.new_name;
  if (!rule.new_tag.empty() && rule.new_tag != ref.tag) {
    ref.tag = rule.new_tag;
    if (rule.digest.empty()) ref.digest.clear();
  }
  if (!rule.digest.empty()) ref.digest = rule.digest;
  return ref;
}

class Rewriter {
 public:
  Rewriter(std::string_view text, std::string_view file, std::vector<PreparedRule> rules)
      : text_(text), file_(file), rules_(std::move(rules)) {}

  Result<Rewrite> Run(bool kustomization_file) {
    GANTRY_ASSIGN_OR_RETURN(docs_, value::ParseYaml(text_, file_));
    if (text_.find("$imagepolicy") != std::string_view::npos) GANTRY_RETURN_IF_ERROR(Markers());
    for (const Value& doc : docs_) {
      if (IsKustomization(doc, kustomization_file)) Kustomize(doc);
      Helm(doc);
      Containers(doc);
    }
    return Apply();
  }

 private:
  static bool IsKustomization(const Value& doc, bool kustomization_file) {
    if (kustomization_file) return true;
    const Value* kind = doc.Get("kind");
    const Value* api = doc.Get("apiVersion");
    return kind && kind->IsString() && kind->AsString() == "Kustomization" && api && api->IsString() &&
           api->AsString().starts_with("kustomize.config.k8s.io/");
  }

  const PreparedRule* MatchName(std::string_view name) const {
    auto ref = ParseImageRef(name);
    if (!ref.ok()) return nullptr;
    std::string norm = NormalizeName(ref->name);
    for (const PreparedRule& r : rules_) {
      if (!r.norm_image.empty() && r.norm_image == norm) return &r;
    }
    return nullptr;
  }

  // Replaces scalar `v` with `new_value` unless it is already that, a block scalar, or claimed by
  // a marker.
  void Replace(const Value& v, std::string_view new_value, std::string field) {
    auto s = ScalarOf(text_, v);
    if (!s || s->style == Style::kBlock || s->value == new_value) return;
    if (claimed_.contains(s->begin)) return;
    claimed_.insert(s->begin);
    value::Mark m = v.mark();
    edits_.push_back(Edit{s->begin, s->end, Encode(new_value, s->style),
                          Change{std::string(file_), m.line, m.column, s->value, std::string(new_value),
                                 std::move(field)}});
  }

  size_t LineStart(size_t pos) const {
    size_t nl = text_.rfind('\n', pos == 0 ? 0 : pos - 1);
    return pos == 0 || nl == std::string_view::npos ? 0 : nl + 1;
  }

  std::string_view Eol() const {
    size_t nl = text_.find('\n');
    return nl != std::string_view::npos && nl > 0 && text_[nl - 1] == '\r' ? "\r\n" : "\n";
  }

  // Sets `key` of `map` to `new_value`: replaces its scalar, or inserts "key: value" as the map's
  // last entry with the indentation of its first key (or before the `}` of a flow map).
  void Set(const Value& map, std::string_view key, std::string_view new_value, const std::string& field) {
    if (const Value* existing = map.Get(key)) {
      Replace(*existing, new_value, field);
      return;
    }
    if (map.size() == 0) return;
    value::Mark mm = map.mark();
    std::string entry = fmt::format("{}: {}", Encode(key, Style::kPlain), Encode(new_value, Style::kPlain));
    if (mm.begin < text_.size() && text_[mm.begin] == '{') {  // flow map: before its '}'
      size_t close = text_.rfind('}', mm.end == 0 ? 0 : mm.end - 1);
      if (close == std::string_view::npos || close < mm.begin) return;
      size_t pos = close;
      while (pos > mm.begin && IsSpace(text_[pos - 1])) --pos;
      Insert(pos, ", " + entry, map.entries().back().key.mark(), new_value, field);
      return;
    }
    // Block map: after the line of the last entry whose value is a one-line scalar.
    const value::MapEntry* anchor = nullptr;
    for (const value::MapEntry& e : map.entries()) {
      auto s = ScalarOf(text_, e.value);
      if (s && s->style != Style::kBlock &&
          text_.substr(e.key.mark().begin, s->end - e.key.mark().begin).find('\n') == std::string_view::npos) {
        anchor = &e;
      }
    }
    if (anchor == nullptr) return;
    const value::Mark first = map.entries().front().key.mark();
    size_t line_start = LineStart(first.begin);
    std::string indent(first.begin - line_start, ' ');
    for (size_t i = line_start; i < first.begin; ++i) {
      if (text_[i] == '\t') indent[i - line_start] = '\t';
    }
    size_t nl = text_.find('\n', anchor->value.mark().end);
    if (nl == std::string_view::npos) {
      Insert(text_.size(), std::string(Eol()) + indent + entry, anchor->key.mark(), new_value, field);
    } else {
      std::string_view eol = nl > 0 && text_[nl - 1] == '\r' ? "\r\n" : "\n";
      Insert(nl + 1, indent + entry + std::string(eol), anchor->key.mark(), new_value, field);
    }
  }

  void Insert(size_t pos, std::string text, const value::Mark& near, std::string_view new_value,
              const std::string& field) {
    edits_.push_back(Edit{pos, pos, std::move(text),
                          Change{std::string(file_), near.line + 1, near.column, "", std::string(new_value), field}});
  }

  // Removes the line of `key: value` from a block map (a digest that pinned a replaced tag).
  // Returns false when the entry does not stand alone on its line.
  bool RemoveLine(const value::MapEntry& e, const std::string& field) {
    auto s = ScalarOf(text_, e.value);
    if (!s) return false;
    size_t start = LineStart(e.key.mark().begin);
    for (size_t i = start; i < e.key.mark().begin; ++i) {
      if (text_[i] != ' ') return false;
    }
    size_t nl = text_.find('\n', s->end);
    size_t end = nl == std::string_view::npos ? text_.size() : nl + 1;
    std::string_view rest = text_.substr(s->end, end - s->end);
    size_t k = 0;
    while (k < rest.size() && (rest[k] == ' ' || rest[k] == '\t')) ++k;
    if (k < rest.size() && rest[k] != '#' && rest[k] != '\r' && rest[k] != '\n') return false;
    claimed_.insert(s->begin);
    edits_.push_back(Edit{start, end, "",
                          Change{std::string(file_), e.key.mark().line, e.key.mark().column, s->value, "(removed)",
                                 field}});
    return true;
  }

  void Kustomize(const Value& doc) {
    const Value* images = doc.Get("images");
    if (images == nullptr) return;
    for (const Value& entry : images->items()) {
      if (!entry.IsMap()) continue;
      const Value* name = entry.Get("name");
      const Value* new_name = entry.Get("newName");
      if (name == nullptr || !name->IsString()) continue;
      const PreparedRule* match = MatchName(name->AsString());
      if (match == nullptr && new_name != nullptr && new_name->IsString()) match = MatchName(new_name->AsString());
      if (match == nullptr) continue;
      const ImageRule& rule = *match->rule;
      if (!rule.new_name.empty()) {
        bool same_as_name = NormalizeName(rule.new_name) == NormalizeName(name->AsString());
        if (new_name != nullptr || !same_as_name) Set(entry, "newName", rule.new_name, "newName");
      }
      const Value* digest = entry.Get("digest");
      const Value* tag = entry.Get("newTag");
      if (!rule.new_tag.empty()) {
        auto old_tag = tag ? ScalarOf(text_, *tag) : std::nullopt;
        bool tag_changes = !old_tag || old_tag->value != rule.new_tag;
        Set(entry, "newTag", rule.new_tag, "newTag");
        if (tag_changes && rule.digest.empty() && digest != nullptr) {
          for (const value::MapEntry& e : entry.entries()) {
            if (e.key.AsString() == "digest" && !RemoveLine(e, "digest")) {
              errors_.push_back(fmt::format("{}:{}:{}: cannot drop the digest pinning the old tag of {}", file_,
                                            e.key.mark().line, e.key.mark().column, name->AsString()));
            }
          }
        }
      }
      if (!rule.digest.empty()) Set(entry, "digest", rule.digest, "digest");
    }
  }

  static const Value* FindDotted(const Value& root, std::string_view path, const Value** parent,
                                 std::string_view* last) {
    const Value* node = &root;
    *parent = nullptr;
    while (true) {
      size_t dot = path.find('.');
      std::string_view key = path.substr(0, dot);
      if (!node->IsMap()) return nullptr;
      if (dot == std::string_view::npos) {
        *parent = node;
        *last = key;
        return node->Get(key);
      }
      node = node->Get(key);
      if (node == nullptr) return nullptr;
      path.remove_prefix(dot + 1);
    }
  }

  void Helm(const Value& doc) {
    for (const PreparedRule& r : rules_) {
      const ImageRule& rule = *r.rule;
      if (!rule.helm || r.norm_image.empty()) continue;
      const Value* parent = nullptr;
      std::string_view key;
      const Value* repo = FindDotted(doc, rule.helm->repository, &parent, &key);
      if (repo == nullptr || !repo->IsString() || MatchName(repo->AsString()) != &r) continue;
      if (!rule.new_name.empty()) Replace(*repo, rule.new_name, rule.helm->repository);
      bool tag_changes = false;
      if (!rule.new_tag.empty() && !rule.helm->tag.empty()) {
        const Value* tag = FindDotted(doc, rule.helm->tag, &parent, &key);
        auto old = tag ? ScalarOf(text_, *tag) : std::nullopt;
        tag_changes = !old || old->value != rule.new_tag;
        if (tag != nullptr) Replace(*tag, rule.new_tag, rule.helm->tag);
        else if (parent != nullptr) Set(*parent, key, rule.new_tag, rule.helm->tag);
      }
      if (!rule.helm->digest.empty() && (!rule.digest.empty() || tag_changes)) {
        const Value* digest = FindDotted(doc, rule.helm->digest, &parent, &key);
        if (digest != nullptr) Replace(*digest, rule.digest, rule.helm->digest);  // "" drops a stale pin
        else if (parent != nullptr && !rule.digest.empty()) Set(*parent, key, rule.digest, rule.helm->digest);
      }
    }
  }

  void ContainerImage(const Value& image) {
    if (!image.IsString()) return;
    auto ref = ParseImageRef(image.AsString());
    if (!ref.ok()) return;
    const PreparedRule* match = MatchName(ref->name);
    if (match == nullptr) return;
    Replace(image, update::Apply(*match->rule, *ref).ToString(), "image");
  }

  // Every map with containers / initContainers / ephemeralContainers, anywhere in the document.
  void Containers(const Value& doc) {
    std::vector<const Value*> stack = {&doc};
    while (!stack.empty()) {
      const Value* v = stack.back();
      stack.pop_back();
      if (v->IsSeq()) {
        for (const Value& item : v->items()) {
          if (item.IsSeq() || item.IsMap()) stack.push_back(&item);
        }
        continue;
      }
      for (const value::MapEntry& e : v->entries()) {
        std::string_view k = e.key.AsString();
        if ((k == "containers" || k == "initContainers" || k == "ephemeralContainers") && e.value.IsSeq()) {
          for (const Value& c : e.value.items()) {
            if (const Value* image = c.Get("image")) ContainerImage(*image);
          }
        }
        if (e.value.IsSeq() || e.value.IsMap()) stack.push_back(&e.value);
      }
    }
  }

  const ImageRule* RuleByPolicy(std::string_view ns, std::string_view name) const {
    std::string full = ns.empty() ? std::string(name) : fmt::format("{}:{}", ns, name);
    for (const PreparedRule& r : rules_) {
      if (r.rule->name.empty()) continue;
      if (r.rule->name == full || r.rule->name == name) return r.rule;
    }
    return nullptr;
  }

  // {"$imagepolicy": "ns:name[:tag|:name|:digest]"} comments: the scalar that ends before the
  // comment on its line is rewritten.
  Status Markers() {
    std::vector<std::pair<size_t, const Value*>> scalars;  // by end offset
    std::vector<const Value*> stack;
    for (const Value& doc : docs_) stack.push_back(&doc);
    while (!stack.empty()) {
      const Value* v = stack.back();
      stack.pop_back();
      if (v->IsSeq()) {
        for (const Value& item : v->items()) stack.push_back(&item);
      } else if (v->IsMap()) {
        for (const value::MapEntry& e : v->entries()) stack.push_back(&e.value);
      } else {
        scalars.emplace_back(v->mark().end, v);
      }
    }
    std::sort(scalars.begin(), scalars.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    constexpr std::string_view kKey = "\"$imagepolicy\"";
    for (size_t at = text_.find(kKey); at != std::string_view::npos; at = text_.find(kKey, at + 1)) {
      size_t line_start = LineStart(at);
      size_t hash = text_.rfind('#', at);
      if (hash == std::string_view::npos || hash < line_start) continue;
      size_t p = at + kKey.size();
      while (p < text_.size() && (text_[p] == ' ' || text_[p] == '\t')) ++p;
      if (p >= text_.size() || text_[p] != ':') continue;
      ++p;
      while (p < text_.size() && (text_[p] == ' ' || text_[p] == '\t')) ++p;
      if (p >= text_.size() || text_[p] != '"') continue;
      size_t close = text_.find('"', p + 1);
      if (close == std::string_view::npos) continue;
      std::string_view policy = text_.substr(p + 1, close - p - 1);
      // The scalar right before the '#', on the same line.
      auto it = std::upper_bound(scalars.begin(), scalars.end(), hash,
                                 [](size_t pos, const auto& s) { return pos < s.first; });
      if (it == scalars.begin()) continue;
      const Value& node = *std::prev(it)->second;
      size_t end = std::prev(it)->first;
      if (end < line_start || text_.substr(end, hash - end).find_first_not_of(" \t") != std::string_view::npos) {
        continue;
      }
      std::vector<std::string_view> parts;
      for (size_t b = 0;;) {
        size_t c = policy.find(':', b);
        parts.push_back(policy.substr(b, c == std::string_view::npos ? std::string_view::npos : c - b));
        if (c == std::string_view::npos) break;
        b = c + 1;
      }
      std::string_view field;
      if (parts.size() == 3 || (parts.size() == 2 && (parts[1] == "tag" || parts[1] == "name" || parts[1] == "digest") &&
                                RuleByPolicy(parts[0], parts[1]) == nullptr)) {
        field = parts.back();
        parts.pop_back();
      }
      if (parts.size() > 2 || (field != "" && field != "tag" && field != "name" && field != "digest")) {
        return InvalidArgumentError("{}:{}: marker \"{}\": expected \"namespace:name\" with an optional "
                                    ":tag, :name or :digest",
                                    file_, node.mark().line, policy);
      }
      const ImageRule* rule = parts.size() == 2 ? RuleByPolicy(parts[0], parts[1]) : RuleByPolicy("", parts[0]);
      if (rule == nullptr) continue;
      auto s = ScalarOf(text_, node);
      if (!s) continue;
      std::string wanted;
      if (field.empty()) {
        auto ref = ParseImageRef(s->value);
        if (!ref.ok()) {
          return InvalidArgumentError("{}:{}:{}: marker \"{}\" is on \"{}\", which is not an image reference", file_,
                                      node.mark().line, node.mark().column, policy, s->value);
        }
        if (!rule->target_name().empty()) ref->name = rule->target_name();
        ImageRule applied = *rule;
        applied.new_name.clear();
        wanted = update::Apply(applied, *ref).ToString();
      } else if (field == "tag") {
        wanted = rule->new_tag;
      } else if (field == "name") {
        wanted = rule->target_name();
      } else {
        wanted = rule->digest;
      }
      if (wanted.empty()) continue;
      std::string label = fmt::format("marker {}", policy);
      if (s->value == wanted) {
        claimed_.insert(s->begin);  // already right: no other pass may change it
      } else {
        Replace(node, wanted, label);
      }
    }
    return OkStatus();
  }

  Result<Rewrite> Apply() {
    if (!errors_.empty()) return FailedPreconditionError("{}", fmt::join(errors_, "; "));
    std::stable_sort(edits_.begin(), edits_.end(), [](const Edit& a, const Edit& b) { return a.begin < b.begin; });
    Rewrite out;
    out.content.reserve(text_.size() + 64);
    size_t pos = 0;
    for (Edit& e : edits_) {
      if (e.begin < pos) {
        return InternalError("{}:{}: overlapping rewrites (a bug): {}", file_, e.change.line, e.change.ToString());
      }
      out.content.append(text_.substr(pos, e.begin - pos));
      out.content += e.text;
      pos = e.end;
      out.changes.push_back(std::move(e.change));
    }
    out.content.append(text_.substr(pos));
    std::sort(out.changes.begin(), out.changes.end(),
              [](const Change& a, const Change& b) { return std::tie(a.line, a.column) < std::tie(b.line, b.column); });
    return out;
  }

  std::string_view text_;
  std::string_view file_;
  std::vector<PreparedRule> rules_;
  std::vector<Value> docs_;
  std::vector<Edit> edits_;
  std::set<size_t> claimed_;  // begin offsets of scalars already decided
  std::vector<std::string> errors_;
};

}  // namespace

bool IsYamlPath(std::string_view path) {
  std::string_view base = Basename(path);
  return base.ends_with(".yaml") || base.ends_with(".yml") || base == "Kustomization";
}

Result<Rewrite> RewriteYaml(std::string_view content, std::string_view filename,
                            std::span<const ImageRule> rules) {
  std::vector<PreparedRule> prepared;
  bool mentioned = false;
  for (const ImageRule& rule : rules) {
    GANTRY_RETURN_IF_ERROR(ValidateRule(rule));
    prepared.push_back({&rule, rule.image.empty() ? "" : NormalizeName(rule.image)});
    if (!rule.image.empty() && content.find(Basename(rule.image)) != std::string_view::npos) mentioned = true;
    if (!rule.name.empty() && content.find("$imagepolicy") != std::string_view::npos) mentioned = true;
  }
  if (!mentioned) return Rewrite{std::string(content), {}};
  std::string_view base = Basename(filename);
  bool kustomization = base == "kustomization.yaml" || base == "kustomization.yml" || base == "Kustomization";
  return Rewriter(content, filename, std::move(prepared)).Run(kustomization);
}

}  // namespace gantry::update

// ToJson and ToYaml.

#include <charconv>
#include <cmath>
#include <string>

#include "value/internal/node.h"
#include "value/internal/resolve.h"
#include "value/utf8.h"
#include "value/value.h"

namespace gantry::value {
namespace {

using Type = Value::Type;
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

size_t internal::DecodeUtf8(std::string_view s, size_t i, uint32_t* cp) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = s.size() - i;
  if (c < 0x80) return *cp = c, 1;
  auto cont = [&](size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF && n >= 2 && cont(i + 1)) {
    *cp = (c & 0x1Fu) << 6 | (b(i + 1) & 0x3Fu);
    return 2;
  }
  if (c >= 0xE0 && c <= 0xEF && n >= 3 && cont(i + 1) && cont(i + 2)) {
    uint32_t v = (c & 0x0Fu) << 12 | (b(i + 1) & 0x3Fu) << 6 | (b(i + 2) & 0x3Fu);
    if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    return *cp = v, 3;
  }
  if (c >= 0xF0 && c <= 0xF4 && n >= 4 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
    uint32_t v = (c & 0x07u) << 18 | (b(i + 1) & 0x3Fu) << 12 | (b(i + 2) & 0x3Fu) << 6 |
                 (b(i + 3) & 0x3Fu);
    if (v < 0x10000 || v > 0x10FFFF) return 0;
    return *cp = v, 4;
  }
  return 0;
}

bool IsValidUtf8(std::string_view text) {
  uint32_t cp;
  for (size_t i = 0; i < text.size();) {
    size_t n = internal::DecodeUtf8(text, i, &cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

namespace {

using internal::DecodeUtf8;

void AppendInt(std::string& out, int64_t i) {
  char buf[24];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, i);
  out.append(buf, ptr);
}

// ---- JSON ----

void JsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  size_t i = 0, run = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++i;
      continue;
    }
    out.append(s.data() + run, i - run);
    if (c >= 0x80) {
      uint32_t cp;
      size_t n = DecodeUtf8(s, i, &cp);
      if (n == 0) {
        out += kReplacement;
        n = 1;
      } else {
        out.append(s.data() + i, n);
      }
      i += n;
    } else {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
      }
      ++i;
    }
    run = i;
  }
  out.append(s.data() + run, i - run);
  out += '"';
}

void WriteJson(std::string& out, const Value& v) {
  switch (v.type()) {
    case Type::kNull:
      out += "null";
      return;
    case Type::kBool:
      out += v.AsBool() ? "true" : "false";
      return;
    case Type::kInt:
      AppendInt(out, v.AsInt());
      return;
    case Type::kDouble:
      if (std::isfinite(v.AsDouble())) {
        internal::AppendDouble(out, v.AsDouble(), /*yaml=*/false);
      } else {
        out += "null";
      }
      return;
    case Type::kString:
      JsonString(out, v.AsString());
      return;
    case Type::kSeq: {
      out += '[';
      bool first = true;
      for (const Value& item : v.items()) {
        if (!first) out += ',';
        first = false;
        WriteJson(out, item);
      }
      out += ']';
      return;
    }
    case Type::kMap: {
      out += '{';
      bool first = true;
      for (const MapEntry& e : v.entries()) {
        if (!first) out += ',';
        first = false;
        JsonString(out, internal::KeyOf(e));
        out += ':';
        WriteJson(out, e.value);
      }
      out += '}';
      return;
    }
  }
}

// ---- YAML ----

// Printable in YAML and not a line break or BOM (which libyaml folds or drops).
bool PlainPrintable(uint32_t cp) {
  if (cp >= 0x20 && cp <= 0x7E) return true;
  if (cp >= 0xA0 && cp <= 0xD7FF) return cp != 0x2028 && cp != 0x2029;
  if (cp >= 0xE000 && cp <= 0xFFFD) return cp != 0xFEFF;
  return cp >= 0x10000 && cp <= 0x10FFFF;
}

bool IsDigits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// True when s reads back unchanged as an untagged plain scalar on one line.
bool PlainSafe(std::string_view s) {
  if (s.empty()) return false;
  if (internal::ResolvePlain(s).type != Type::kString || s == "<<") return false;
  // Dates read back as strings here, but as timestamps in YAML 1.1 parsers elsewhere.
  if (s.size() >= 5 && IsDigits(s.substr(0, 4)) && s[4] == '-') return false;
  char first = s[0];
  if (std::string_view("?:,[]{}#&*!|>'\"%@` \t").find(first) != std::string_view::npos) {
    return false;
  }
  if (first == '-' && (s.size() == 1 || s[1] == ' ' || s.starts_with("---"))) return false;
  if (s.starts_with("...")) return false;
  char last = s.back();
  if (last == ' ' || last == ':') return false;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == ':' && i + 1 < s.size() && s[i + 1] == ' ') return false;
    if (c == ' ' && i + 1 < s.size() && s[i + 1] == '#') return false;
    uint32_t cp;
    size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0 || !PlainPrintable(cp)) return false;
    i += n;
  }
  return true;
}

void DoubleQuoted(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out += '"';
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    if (cp == '"') {
      out += "\\\"";
    } else if (cp == '\\') {
      out += "\\\\";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (PlainPrintable(cp)) {
      out.append(s.data() + i, n);
    } else if (cp <= 0xFF) {
      out += "\\x";
      out += kHex[cp >> 4];
      out += kHex[cp & 0xF];
    } else if (cp <= 0xFFFF) {
      out += "\\u";
      for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(cp >> shift) & 0xF];
    } else {
      out += "\\U";
      for (int shift = 28; shift >= 0; shift -= 4) out += kHex[(cp >> shift) & 0xF];
    }
    i += n;
  }
  out += '"';
}

// A multi-line string that a | block scalar reproduces exactly.
bool LiteralSafe(std::string_view s) {
  if (s.find('\n') == std::string_view::npos) return false;
  if (s.find_first_not_of('\n') == std::string_view::npos) return false;
  size_t line_start = 0;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) return false;
    if (cp == '\n') {
      std::string_view line = s.substr(line_start, i - line_start);
      if (!line.empty() && line.find_first_not_of(" \t") == std::string_view::npos) return false;
      line_start = i + 1;
    } else if (cp != '\t' && !PlainPrintable(cp)) {
      return false;
    }
    i += n;
  }
  std::string_view tail = s.substr(line_start);
  return tail.empty() || tail.find_first_not_of(" \t") != std::string_view::npos;
}

void Indent(std::string& out, size_t n) { out.append(n, ' '); }

void Literal(std::string& out, std::string_view s, size_t indent) {
  size_t trailing = 0;
  while (trailing < s.size() && s[s.size() - 1 - trailing] == '\n') ++trailing;
  out += '|';
  std::string_view body = s.substr(0, s.size() - trailing);
  size_t first = body.find_first_not_of('\n');
  if (body[first] == ' ' || body[first] == '\t') out += '2';
  out += trailing == 0 ? "-" : trailing == 1 ? "" : "+";
  out += '\n';
  size_t start = 0;
  for (;;) {
    size_t nl = body.find('\n', start);
    std::string_view line = body.substr(start, nl == std::string_view::npos ? nl : nl - start);
    if (!line.empty()) {
      Indent(out, indent);
      out += line;
    }
    out += '\n';
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  for (size_t i = 1; i < trailing; ++i) out += '\n';
}

void Scalar(std::string& out, const Value& v, size_t indent) {
  switch (v.type()) {
    case Type::kNull:
      out += "null\n";
      return;
    case Type::kBool:
      out += v.AsBool() ? "true\n" : "false\n";
      return;
    case Type::kInt:
      AppendInt(out, v.AsInt());
      out += '\n';
      return;
    case Type::kDouble:
      internal::AppendDouble(out, v.AsDouble(), /*yaml=*/true);
      out += '\n';
      return;
    default: {
      std::string_view s = v.AsString();
      if (PlainSafe(s)) {
        out += s;
        out += '\n';
      } else if (LiteralSafe(s)) {
        Literal(out, s, indent);
      } else {
        DoubleQuoted(out, s);
        out += '\n';
      }
    }
  }
}

void WriteMap(std::string& out, const Value& v, size_t indent, bool inline_first);
void WriteSeq(std::string& out, const Value& v, size_t indent, bool inline_first);

// Writes what follows "key:" or "-" (the cursor is right after it).
void AfterIndicator(std::string& out, const Value& v, size_t indent, bool in_seq,
                    size_t seq_indent) {
  if (v.IsMap() && v.size() > 0) {
    if (in_seq) {
      out += ' ';
      WriteMap(out, v, indent + 2, true);
    } else {
      out += '\n';
      WriteMap(out, v, indent + 2, false);
    }
  } else if (v.IsSeq() && v.size() > 0) {
    if (in_seq) {
      out += ' ';
      WriteSeq(out, v, indent + 2, true);
    } else {
      out += '\n';
      WriteSeq(out, v, seq_indent, false);
    }
  } else if (v.IsMap()) {
    out += " {}\n";
  } else if (v.IsSeq()) {
    out += " []\n";
  } else {
    out += ' ';
    Scalar(out, v, indent + 2);
  }
}

void WriteMap(std::string& out, const Value& v, size_t indent, bool inline_first) {
  bool first = true;
  for (const MapEntry& e : v.entries()) {
    if (!(first && inline_first)) Indent(out, indent);
    first = false;
    std::string_view key = internal::KeyOf(e);
    if (PlainSafe(key) && key.size() <= 1000) {
      out += key;
      out += ':';
      AfterIndicator(out, e.value, indent, false, indent);
    } else {
      std::string quoted;
      DoubleQuoted(quoted, key);
      if (quoted.size() <= 1000) {
        out += quoted;
        out += ':';
        AfterIndicator(out, e.value, indent, false, indent);
      } else {
        out += "? ";
        out += quoted;
        out += '\n';
        Indent(out, indent);
        out += ':';
        AfterIndicator(out, e.value, indent, false, indent + 2);
      }
    }
  }
}

void WriteSeq(std::string& out, const Value& v, size_t indent, bool inline_first) {
  bool first = true;
  for (const Value& item : v.items()) {
    if (!(first && inline_first)) Indent(out, indent);
    first = false;
    out += '-';
    AfterIndicator(out, item, indent, true, indent + 2);
  }
}

}  // namespace

std::string ToJson(const Value& v) {
  std::string out;
  WriteJson(out, v);
  return out;
}

std::string ToYaml(const Value& v) {
  std::string out;
  if (v.IsMap() && v.size() > 0) {
    WriteMap(out, v, 0, false);
  } else if (v.IsSeq() && v.size() > 0) {
    WriteSeq(out, v, 0, false);
  } else if (v.IsMap()) {
    out += "{}\n";
  } else if (v.IsSeq()) {
    out += "[]\n";
  } else if (v.IsString() && LiteralSafe(v.AsString()) &&
             (v.AsString()[v.AsString().find_first_not_of('\n')] == ' ' ||
              v.AsString()[v.AsString().find_first_not_of('\n')] == '\t')) {
    DoubleQuoted(out, v.AsString());  // a root block scalar cannot take an indentation indicator
    out += '\n';
  } else {
    Scalar(out, v, 2);
  }
  return out;
}

}  // namespace gantry::value

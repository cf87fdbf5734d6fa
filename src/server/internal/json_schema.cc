#include "server/internal/json_schema.h"

#include <set>

namespace gantry::server::internal {
namespace {

using value::Value;

std::string_view JsonTypeName(const Value& v) {
  switch (v.type()) {
    case Value::Type::kNull: return "null";
    case Value::Type::kBool: return "boolean";
    case Value::Type::kInt: return "integer";
    case Value::Type::kDouble: return "number";
    case Value::Type::kString: return "string";
    case Value::Type::kSeq: return "array";
    case Value::Type::kMap: return "object";
  }
  return "?";
}

bool HasType(const Value& v, std::string_view type) {
  std::string_view t = JsonTypeName(v);
  return t == type || (type == "number" && t == "integer");
}

const std::set<std::string, std::less<>> kKnown = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "$ref", "anyOf", "oneOf", "allOf",
    // Annotations and limits this subset does not check.
    "description", "format", "minimum", "maximum", "default", "title", "example"};

Result<const Value*> Resolve(const Value& document, std::string_view ref) {
  if (!ref.starts_with("#/")) return InvalidArgumentError("$ref {:?}: only #/... references are supported", ref);
  const Value* at = &document;
  std::string_view rest = ref.substr(2);
  while (!rest.empty()) {
    size_t slash = rest.find('/');
    at = at->Get(rest.substr(0, slash));
    if (at == nullptr) return InvalidArgumentError("$ref {:?} does not resolve", ref);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  }
  return at;
}

}  // namespace

Status ValidateJson(const Value& document, const Value& schema, const Value& instance, const std::string& where) {
  if (!schema.IsMap()) return InvalidArgumentError("{}: the schema is not an object", where);
  for (const auto& e : schema.entries()) {
    if (!kKnown.contains(e.key.AsString())) {
      return InvalidArgumentError("{}: schema keyword {:?} is not supported by this validator", where, e.key.AsString());
    }
  }
  if (const Value* ref = schema.Get("$ref")) {
    GANTRY_ASSIGN_OR_RETURN(const Value* target, Resolve(document, ref->AsString()));
    GANTRY_RETURN_IF_ERROR(ValidateJson(document, *target, instance, where));
  }
  if (const Value* type = schema.Get("type")) {
    bool ok = false;
    if (type->IsString()) {
      ok = HasType(instance, type->AsString());
    } else {
      for (const auto& t : type->items()) ok = ok || HasType(instance, t.AsString());
    }
    if (!ok) return InvalidArgumentError("{}: {} is not of type {}", where, JsonTypeName(instance), value::ToJson(*type));
  }
  if (const Value* c = schema.Get("const"); c != nullptr && !(*c == instance)) {
    return InvalidArgumentError("{}: {} is not {}", where, value::ToJson(instance), value::ToJson(*c));
  }
  if (const Value* e = schema.Get("enum")) {
    bool found = false;
    for (const auto& v : e->items()) found = found || v == instance;
    if (!found) return InvalidArgumentError("{}: {} is not one of {}", where, value::ToJson(instance), value::ToJson(*e));
  }
  if (const Value* all = schema.Get("allOf")) {
    for (const auto& s : all->items()) GANTRY_RETURN_IF_ERROR(ValidateJson(document, s, instance, where));
  }
  for (const char* keyword : {"anyOf", "oneOf"}) {
    const Value* any = schema.Get(keyword);
    if (any == nullptr) continue;
    int matched = 0;
    std::string why;
    for (const auto& s : any->items()) {
      Status st = ValidateJson(document, s, instance, where);
      if (st.ok()) ++matched;
      else why += (why.empty() ? "" : "; ") + st.message();
    }
    if (matched == 0) return InvalidArgumentError("{}: matches none of {}: {}", where, keyword, why);
    if (matched > 1 && std::string_view(keyword) == "oneOf") {
      return InvalidArgumentError("{}: matches {} schemas of oneOf", where, matched);
    }
  }
  if (instance.IsMap()) {
    const Value* props = schema.Get("properties");
    if (const Value* required = schema.Get("required")) {
      for (const auto& r : required->items()) {
        if (instance.Get(r.AsString()) == nullptr) return InvalidArgumentError("{}: {:?} is missing", where, r.AsString());
      }
    }
    const Value* additional = schema.Get("additionalProperties");
    for (const auto& e : instance.entries()) {
      std::string at = where + "." + std::string(e.key.AsString());
      if (const Value* p = props != nullptr ? props->Get(e.key.AsString()) : nullptr) {
        GANTRY_RETURN_IF_ERROR(ValidateJson(document, *p, e.value, at));
      } else if (additional != nullptr && additional->IsBool() && !additional->AsBool()) {
        return InvalidArgumentError("{}: not in the schema (additionalProperties is false)", at);
      } else if (additional != nullptr && additional->IsMap()) {
        GANTRY_RETURN_IF_ERROR(ValidateJson(document, *additional, e.value, at));
      }
    }
  }
  if (instance.IsSeq()) {
    if (const Value* items = schema.Get("items")) {
      for (size_t i = 0; i < instance.items().size(); ++i) {
        GANTRY_RETURN_IF_ERROR(ValidateJson(document, *items, instance.items()[i], fmt::format("{}[{}]", where, i)));
      }
    }
  }
  return OkStatus();
}

}  // namespace gantry::server::internal

#include "ci/mask.h"

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>

#include "base/base64.h"

namespace gantry::ci {
namespace {

std::string Base64Core(std::string_view secret, size_t offset, bool url) {
  std::string data(offset, '\0');
  data.append(secret);
  std::string enc = Base64Encode(data);
  if (url) {
    for (char& c : enc) c = c == '+' ? '-' : c == '/' ? '_' : c;
  }
  // Character i covers bits [6i, 6i + 6); keep those entirely inside the secret's bits.
  size_t first = (8 * offset + 5) / 6;
  size_t end = (8 * (offset + secret.size())) / 6;
  if (end <= first) return "";
  return enc.substr(first, end - first);
}

std::string UrlEncode(std::string_view s, bool lower, bool plus) {
  static const char* kUpper = "0123456789ABCDEF";
  static const char* kLower = "0123456789abcdef";
  const char* hex = lower ? kLower : kUpper;
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else if (c == ' ' && plus) {
      out += '+';
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string JsonEscape(std::string_view s, bool slash) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '/':
        out += slash ? "\\/" : "/";
        break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> SecretForms(std::string_view secret) {
  std::set<std::string> forms;
  if (secret.empty()) return {};
  forms.insert(std::string(secret));
  if (secret.size() >= kMinSecretBytes) {
    for (bool url : {false, true}) {
      for (size_t off = 0; off < 3; ++off) forms.insert(Base64Core(secret, off, url));
      forms.insert(url ? Base64Core(secret, 0, true) : Base64Encode(secret));
    }
    for (bool lower : {false, true}) {
      for (bool plus : {false, true}) forms.insert(UrlEncode(secret, lower, plus));
    }
    forms.insert(JsonEscape(secret, false));
    forms.insert(JsonEscape(secret, true));
    size_t start = 0;
    while (start <= secret.size()) {
      size_t nl = secret.find('\n', start);
      std::string_view line = secret.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() >= kMinSecretBytes && line.size() != secret.size()) {
        for (auto& f : SecretForms(line)) forms.insert(f);
      }
      if (nl == std::string_view::npos) break;
      start = nl + 1;
    }
  }
  std::vector<std::string> out;
  for (const auto& f : forms) {
    if (f == secret || f.size() >= kMinSecretBytes) out.push_back(f);
  }
  return out;
}

Masker::Masker(const std::vector<std::string>& secrets) {
  std::set<std::string> all;
  for (const auto& s : secrets) {
    for (auto& f : SecretForms(s)) all.insert(std::move(f));
  }
  forms_.assign(all.begin(), all.end());
  std::stable_sort(forms_.begin(), forms_.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& f : forms_) first_[static_cast<unsigned char>(f[0])] = true;
}

size_t Masker::Scan(std::string_view buf, bool final, std::string& out) const {
  size_t i = 0;
  size_t plain_start = 0;
  while (i < buf.size()) {
    if (!first_[static_cast<unsigned char>(buf[i])]) {
      ++i;
      continue;
    }
    std::string_view rest = buf.substr(i);
    bool matched = false, partial = false;
    for (const auto& f : forms_) {
      if (rest.size() >= f.size()) {
        if (rest.compare(0, f.size(), f) == 0) {
          out.append(buf.substr(plain_start, i - plain_start));
          out += "***";
          i += f.size();
          plain_start = i;
          matched = true;
          break;
        }
      } else if (!final && f.compare(0, rest.size(), rest) == 0) {
        partial = true;  // a longer form might complete with the next chunk
      }
    }
    if (matched) continue;
    if (partial) {
      out.append(buf.substr(plain_start, i - plain_start));
      return i;
    }
    ++i;
  }
  out.append(buf.substr(plain_start));
  return buf.size();
}

std::string Masker::Write(std::string_view data) {
  if (forms_.empty()) return std::string(data);
  pending_.append(data);
  std::string out;
  size_t held = Scan(pending_, false, out);
  pending_.erase(0, held);
  return out;
}

std::string Masker::Flush() {
  std::string out;
  Scan(pending_, true, out);
  pending_.clear();
  return out;
}

std::string Masker::MaskAll(std::string_view text) const {
  std::string out;
  Scan(text, true, out);
  return out;
}

}  // namespace gantry::ci

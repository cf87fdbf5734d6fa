#pragma once
// Helpers shared by the libFuzzer targets: failing with the input's evidence, splitting one input
// into several fields, and a scratch directory for the targets whose parser reads files.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace gantry::fuzz {

// Reports a broken property (what, then the evidence) and aborts, which libFuzzer records as a
// crash with the input that caused it.
[[noreturn]] inline void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "%s\n%s\n", what, detail.c_str());
  std::abort();
}

inline std::string_view Text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// The first n-1 lines of `text` and then the rest (fewer parts when it has fewer lines), so one
// input carries several fields: "a\nb\nc\nd" with n = 3 gives {"a", "b", "c\nd"}.
inline std::vector<std::string_view> Fields(std::string_view text, size_t n) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < n) {
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos) break;
    out.push_back(text.substr(0, nl));
    text.remove_prefix(nl + 1);
  }
  out.push_back(text);
  return out;
}

// A directory of this process's own under $TMPDIR (created on first use, removed at exit).
inline const std::filesystem::path& ScratchDir() {
  static const std::filesystem::path* dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "gantry-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) Fail("mkdtemp failed", tmpl);
    auto* path = new std::filesystem::path(tmpl);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ScratchDir(), ec);
    });
    return path;
  }();
  return *dir;
}

}  // namespace gantry::fuzz

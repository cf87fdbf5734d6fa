// Fuzzes the image updater over the files of a config repository, which anyone with push access
// to it writes: RewriteYaml with Kustomize `images:` entries, Helm values key paths, container
// `image:` fields and Flux marker comments, and the rules users give (ParseImageRule,
// ParseImageRef). The input is four fields:
//   line 1  the file name (kustomization.yaml, values.yaml, ... decides what is looked for)
//   line 2  a rule NAME=NEWREF, then optionally a space and a marker policy name
//   line 3  Helm key paths REPOSITORY_KEY,TAG_KEY[,DIGEST_KEY], or empty
//   rest    the YAML file
// Any input must be rewritten or refused cleanly. A rewrite must be a no-op when run again on its
// own output, change nothing when it reports no change, and leave a file that still parses.

#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz.h"
#include "update/update.h"
#include "value/value.h"

using namespace gantry;

namespace {

std::vector<std::string> SplitCommas(std::string_view text) {
  std::vector<std::string> parts;
  while (true) {
    size_t comma = text.find(',');
    parts.emplace_back(text.substr(0, comma));
    if (comma == std::string_view::npos) return parts;
    text.remove_prefix(comma + 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string_view> f = fuzz::Fields(fuzz::Text(data, size), 4);
  if (f.size() < 4) {
    (void)update::ParseImageRef(f[0]);
    return 0;
  }
  const std::string_view filename = f[0], content = f[3];
  std::string_view spec = f[1], policy;
  if (size_t space = spec.find(' '); space != std::string_view::npos) {
    policy = spec.substr(space + 1);
    spec = spec.substr(0, space);
  }
  (void)update::ParseImageRef(spec);
  auto rule = update::ParseImageRule(spec);
  if (!rule.ok()) return 0;
  rule->name = std::string(policy);
  if (!f[2].empty()) {
    std::vector<std::string> keys = SplitCommas(f[2]);
    rule->helm = update::HelmKeys{.repository = keys[0],
                                  .tag = keys.size() > 1 ? keys[1] : "",
                                  .digest = keys.size() > 2 ? keys[2] : ""};
  }
  const std::vector<update::ImageRule> rules = {*rule};

  auto once = update::RewriteYaml(content, filename, rules);
  if (!once.ok()) return 0;
  if (once->changes.empty() && once->content != content) fuzz::Fail("content changed without a change", once->content);
  if (once->changes.empty()) return 0;
  auto twice = update::RewriteYaml(once->content, filename, rules);
  if (!twice.ok()) fuzz::Fail("the rewritten file is refused", twice.status().ToString() + "\n" + once->content);
  if (!twice->changes.empty() || twice->content != once->content) {
    std::string what = twice->changes.empty() ? "content differs" : twice->changes[0].ToString();
    fuzz::Fail("a second rewrite is not a no-op", what + "\n" + once->content);
  }
  value::ParseOptions roomy;
  roomy.max_alias_nodes = 1 << 30;
  if (auto docs = value::ParseYaml(once->content, filename, roomy); !docs.ok()) {
    fuzz::Fail("the rewritten file does not parse", docs.status().ToString() + "\n" + once->content);
  }
  return 0;
}

// Differential tests: Gantry's own scanner (ParseYamlFast) against the libyaml path
// (ParseYamlLibyaml): the same Values, the same marks on every node and key, or the scanner
// leaves the input to libyaml. The fixtures and the cases below say which.

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "value/internal/yaml_fast.h"
#include "value/value.h"

namespace gantry::value {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string left_because;  // why the scanner left the last input to libyaml

// True when the scanner took `text`; fails the test when the two paths disagree. The scanner
// may stop at an error the builder finds (a duplicate key...): then with libyaml's code.
bool Same(std::string_view text, const ParseOptions& options = {}) {
  auto fast = internal::ParseYamlFast(text, "t.yaml", options);
  auto slow = internal::ParseYamlLibyaml(text, "t.yaml", options);
  if (!fast.ok()) {
    left_because = fast.status().ToString();
    if (fast.status().code() != Code::kFailedPrecondition) {
      EXPECT_FALSE(slow.ok()) << left_because;
      EXPECT_EQ(fast.status().code(), slow.status().code()) << left_because;
    }
    return false;
  }
  std::string diff = DiffParses(fast, slow);
  EXPECT_EQ(diff, "") << "input:\n" << text;
  return true;
}

TEST(YamlDiff, FixturesTakenByTheScannerAndIdentical) {
  for (const char* name : {"deployment_anchors", "helm_output", "crd_big_schema", "bom_crlf", "yaml_diff/kitchen_sink",
                           "yaml_diff/kube_prometheus_crd"}) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(Same(ReadFile(std::string("testdata/") + name + ".yaml"))) << left_because;
  }
}

TEST(YamlDiff, ExplicitKeysAreLeftToLibyaml) {
  std::string text = ReadFile("testdata/configmap_scalars.yaml");
  EXPECT_FALSE(Same(text));
  EXPECT_NE(left_because.find("complex key"), std::string::npos) << left_because;
  EXPECT_TRUE(ParseYaml(text).ok());
}

// Constructs the scanner takes: each must give libyaml's values and marks.
TEST(YamlDiff, TakenCasesMatchLibyaml) {
  const char* cases[] = {
      "",
      "# only a comment\n",
      "a: 1\n",
      "a: 1\nb: two\nc: [x, y, 'z']\nd: {e: f, \"g\": h}\n",
      "a:\n  b:\n    c: d\n  e: f\ng: h\n",
      "a:\n- 1\n- 2\nb: 3\n",
      "a:\n  - 1\n  -\n  - x: y\n    z: w\n  - - p\n    - q\n",
      "- a\n- b: c\n  d: e\n-\n- [1, 2]\n",
      "a: |\n  line 1\n   line 2\n\n  line 4\n\nb: >\n  folded\n  text\n\n  para\n   indented\n  back\nc: x\n",
      "a: |-\n  x\n\n\nb: |+\n  y\n\n\nc: >-\n  z\n  w\nd: |2\n    four\n  two\n",
      "a: |\nb: >\n\n\nc: 1\n",
      "s: 'it''s'\nd: \"tab\\there \\u00e9 \\x41 \\U0001F600 \\\\ \\\" \\/\"\n",
      "s: 'multi\n  line\n\n  para '\nd: \"a\\\n  b\n   c  \"\n",
      "plain: this is\n  a multi-line\n\n  plain scalar\nnext: 1\n",
      "- item one\n  continues\n- two\n",
      "base: &base\n  a: 1\n  b: 2\nderived:\n  <<: *base\n  b: 3\nlist: &l [1, 2]\nref: *l\n",
      "m:\n  <<: [*a]\n",
      "x: &a {k: v}\ny:\n  <<: [*a, {k2: v2}]\n  k: mine\n",
      "t: !!str 123\ni: !!int \"42\"\nf: !!float 1\nb: !!bool yes\nn: !!null ''\nr: !Ref foo\ne: ! bare\n",
      "yes: no\non: off\n1: one\n1.5: x\n~x: y\n",
      "---\na: 1\n---\nb: 2\n...\n---\n- c\n",
      "--- # comment\nfoo\n...\n",
      "---\n---\n",
      "a: 1 # trailing\n# between\nb: 2\n   # indented comment\nc: 3\n",
      "a: \"x\" # c\nb: 'y'#c\n",
      "empty:\nnull1: ~\nnull2: null\nkey with spaces: value with spaces\n",
      "url: http://example.com:8080/path?q=1#frag\ntime: 12:30:00\n",
      "flow: [a, [b, c], {d: e}, \"f\", 'g', 1, -2, -x]\n",
      "flow: [\n  a,\n  b,\n]\nm: {\n  a: 1,\n  b: [2],\n}\n",
      "json: {\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}\n",
      "e1: []\ne2: {}\ne3: [ ]\n",
      "a: &x\n  b: 1\nc: *x\nd: &y\n- 1\ne: *y\nf: &z\ng: *z\n",
      "- &a x\n- *a\n- &b\n  k: v\n- *b\n",
      "\xEF\xBB\xBF" "a: 1\r\nb:\r\n  - c\r\n  - d\r\ne: |\r\n  x\r\n  y\r\n",
      "name: caf\xC3\xA9\nk\xC3\xA9y: v\xC3\xA0lue\n- x\n",
      "a: b\t# tab before comment\nc: d\t\n",
      "a: \"\"\nb: ''\nc: \" \"\n",
      "  indented: root\n  second: key\n",
      "a:\n  b: 1\n\n\n  c: 2\n",
      "top\n",
      "|\n  root block\n",
      "[a, b]\n",
      "quoted key\": 1\n",
      "\"quoted key\": 1\n'single': 2\n",
      "a: -1\nb: +2\nc: 0x1F\nd: 0o17\ne: 1e3\nf: .5\ng: .inf\nh: -.Inf\ni: .nan\nj: 1_000\n",
      "a: b: c\n",
      "a:\n  b\n  c: d\n",
      "a: 'unterminated\n",
      "dup: 1\ndup: 2\n",
      "? complex\n: key\n",
      "%YAML 1.1\n---\na: 1\n",
      "a: *unknown\n",
      "a:\tb\n",
      "- a\nb: c\n",
      "a:\n  - b\n c: d\n",
      "a: [b, c\n",
      "a: {b: c, d}\n",
      "a: [b: c]\n",
      "{a: [1, {b: c}]}\n",
      "a: !!int abc\n",
  };
  int taken = 0;
  for (const char* text : cases) {
    SCOPED_TRACE(text);
    bool took = Same(text);
    taken += took;
    if (!took) std::printf("left to libyaml: %s\n", left_because.c_str());
  }
  EXPECT_GE(taken, 43);  // the rest are errors or constructs left to libyaml
}

TEST(YamlDiff, LimitsAreLeftToLibyaml) {
  ParseOptions tight;
  tight.max_depth = 2;
  EXPECT_FALSE(Same("a:\n  b:\n    c: 1\n", tight));
  tight = ParseOptions{};
  tight.max_documents = 1;
  EXPECT_FALSE(Same("a: 1\n---\nb: 2\n", tight));
  tight = ParseOptions{};
  tight.max_document_bytes = 10;
  EXPECT_FALSE(Same("a: 1234567890\n", tight));
  // Through ParseYaml, the error is libyaml's path's.
  auto r = ParseYaml("a:\n  b:\n    c: 1\n", "t.yaml", ParseOptions{.max_depth = 2});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(r.status().message(), "t.yaml:3:5: nesting deeper than 2 levels (limit 2)");
}

TEST(YamlDiff, DeepNestingIsLeftToLibyaml) {
  std::string deep(200, '[');
  deep += std::string(200, ']');
  EXPECT_FALSE(Same(deep));
  EXPECT_TRUE(ParseYaml(deep).ok());
}

}  // namespace
}  // namespace gantry::value

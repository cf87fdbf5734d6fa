#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "value/internal/node.h"
#include "value/internal/yaml_fast.h"
#include "value/value.h"

namespace gantry::value {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<Value> MustParse(std::string_view text, std::string_view file = "t.yaml") {
  auto r = ParseYaml(text, file);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<Value>{};
}

Value One(std::string_view text) {
  auto docs = MustParse(text);
  EXPECT_EQ(docs.size(), 1u);
  return docs.empty() ? Value() : docs[0];
}

// Equality that treats ints and doubles as numbers, as JSON does (for the Kubernetes goldens).
bool SameJson(const Value& a, const Value& b) {
  if (a.IsNumber() && b.IsNumber()) return a.AsDouble() == b.AsDouble();
  if (a.type() != b.type()) return false;
  if (a.IsSeq()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!SameJson(a.items()[i], b.items()[i])) return false;
    }
    return true;
  }
  if (a.IsMap()) {
    if (a.size() != b.size()) return false;
    for (const MapEntry& e : a.entries()) {
      const Value* other = b.Get(e.key.AsString());
      if (!other || !SameJson(e.value, *other)) return false;
    }
    return true;
  }
  return a == b;
}

const char* kFixtures[] = {"deployment_anchors", "helm_output", "configmap_scalars",
                           "crd_big_schema", "bom_crlf"};

// The .k8s.json goldens are what sigs.k8s.io/yaml (Kubernetes) makes of each fixture:
//   cd bench/yaml_parse/go && go run . -tojson ../../../src/value/testdata/X.yaml > .../X.k8s.json
TEST(YamlFixtures, MatchWhatKubernetesReads) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    std::string dir = "testdata/";
    auto docs = MustParse(ReadFile(dir + name + ".yaml"), name);
    std::istringstream golden(ReadFile(dir + name + ".k8s.json"));
    std::string line;
    size_t i = 0;
    while (std::getline(golden, line)) {
      auto want = ParseJson(line);
      ASSERT_TRUE(want.ok()) << want.status().ToString();
      ASSERT_LT(i, docs.size());
      EXPECT_TRUE(SameJson(docs[i], *want)) << ToJson(docs[i]) << "\n" << line;
      ++i;
    }
    EXPECT_EQ(i, docs.size());
  }
}

TEST(YamlFixtures, RoundTripThroughYamlAndJson) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    for (const Value& doc : MustParse(ReadFile(std::string("testdata/") + name + ".yaml"))) {
      std::string yaml = ToYaml(doc);
      auto again = ParseYaml(yaml);
      ASSERT_TRUE(again.ok()) << again.status().ToString() << "\n" << yaml;
      ASSERT_EQ(again->size(), 1u);
      EXPECT_EQ((*again)[0], doc) << yaml;
      EXPECT_EQ(ToYaml((*again)[0]), yaml) << "canonical output is a fixed point";
      auto json = ParseJson(ToJson(doc));
      ASSERT_TRUE(json.ok()) << json.status().ToString();
      EXPECT_EQ(*json, doc);
    }
  }
}

// A kept document keeps its arena: with a fixed 4 KiB first chunk, a hundred small objects held
// 400 KiB for 100 KiB of nodes (the pull agent's render cache of 10,000 ConfigMaps held 41 MB).
TEST(YamlParse, SmallDocumentsKeepLittleUnusedArena) {
  std::string text;
  for (int i = 0; i < 100; ++i) {
    text += "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-" + std::to_string(i) + "}\ndata: {index: \"" +
            std::to_string(i) + "\"}\n---\n";
  }
  auto docs = MustParse(text);
  ASSERT_EQ(docs.size(), 100u);
  for (size_t i = 1; i < docs.size(); ++i) {
    const internal::SourceFile* arena = internal::Node::Get(docs[i])->file;
    ASSERT_NE(arena, nullptr);
    EXPECT_EQ(arena->chunks.size(), 1u) << i;
    EXPECT_LE(static_cast<size_t>(arena->end - arena->cur), arena->used / 8) << i;
  }
}

TEST(YamlParse, MarksGiveLineColumnAndExactBytes) {
  std::string text = ReadFile("testdata/deployment_anchors.yaml");
  Value doc = One(text);
  const Value* replicas = doc.Find({"spec", "replicas"});
  ASSERT_NE(replicas, nullptr);
  Mark m = replicas->mark();
  EXPECT_EQ(m.file, "t.yaml");
  EXPECT_EQ(m.line, 11u);
  EXPECT_EQ(m.column, 13u);
  EXPECT_EQ(text.substr(m.begin, m.end - m.begin), "3");

  const Value* image = doc.Find({"spec", "template", "spec", "containers", 0, "image"});
  ASSERT_NE(image, nullptr);
  m = image->mark();
  EXPECT_EQ(m.line, 25u);
  EXPECT_EQ(text.substr(m.begin, m.end - m.begin), "ghcr.io/stefanprodan/podinfo:6.5.4");

  // Keys carry their own marks.
  const MapEntry& spec = doc.entries()[3];
  EXPECT_EQ(spec.key.AsString(), "spec");
  EXPECT_EQ(spec.key.mark().line, 10u);
  EXPECT_EQ(spec.key.mark().column, 1u);
  // A quoted scalar's range includes its quotes.
  m = doc.Find({"spec", "template", "metadata", "annotations", "prometheus.io/port"})->mark();
  EXPECT_EQ(text.substr(m.begin, m.end - m.begin), "\"9898\"");
}

TEST(YamlParse, MarksAreByteOffsetsWithBomCrlfAndUtf8) {
  std::string text = ReadFile("testdata/bom_crlf.yaml");
  Value doc = One(text);
  Mark m = doc.Find({"stringData", "password"})->mark();
  EXPECT_EQ(m.line, 7u);
  EXPECT_EQ(m.column, 13u);
  EXPECT_EQ(text.substr(m.begin, m.end - m.begin), "\"p@ss: word\"");
  EXPECT_EQ(doc.Find({"stringData", "script"})->AsString(), "echo one\necho two\n");

  std::string utf8 = "name: héllo wörld\nimage: nginx:1.25\n";
  Value u = One(utf8);
  m = u.Get("image")->mark();
  EXPECT_EQ(utf8.substr(m.begin, m.end - m.begin), "nginx:1.25");
  m = u.Get("name")->mark();
  EXPECT_EQ(utf8.substr(m.begin, m.end - m.begin), "héllo wörld");
}

TEST(YamlParse, AnchorsAliasesAndMergeKeys) {
  Value doc = One(ReadFile("testdata/deployment_anchors.yaml"));
  const Value* labels = doc.Find({"spec", "template", "metadata", "labels"});
  ASSERT_NE(labels, nullptr);
  EXPECT_EQ(labels->size(), 3u);
  EXPECT_EQ(labels->Get("tier")->AsString(), "frontend");
  EXPECT_EQ(labels->Get("app.kubernetes.io/name")->AsString(), "web");
  const Value* res = doc.Find({"spec", "template", "spec", "containers", 1, "resources"});
  EXPECT_EQ(ToJson(*res), R"({"limits":{"cpu":"50m"},"requests":{"cpu":"100m","memory":"64Mi"}})");
  // An alias shares the anchored node.
  EXPECT_EQ(doc.Find({"spec", "selector", "matchLabels"})->mark().line, 7u);
}

TEST(YamlParse, ExplicitKeysWinOverMergedOnesWhereverTheyAre) {
  Value v = One("a: 1\n<<: {a: 2, b: 2}\nc: 3\n<<: [{c: 4, d: 4}, {d: 5, e: 5}]\n");
  EXPECT_EQ(ToJson(v), R"({"a":1,"b":2,"c":3,"d":4,"e":5})");
  v = One("base: &b {x: 1, z: 2}\nm:\n  <<: *b\n  x: 9\n");
  EXPECT_EQ(ToJson(*v.Get("m")), R"({"x":9,"z":2})");
  // A quoted "<<" is an ordinary key.
  v = One("'<<': {a: 1}\n");
  EXPECT_EQ(ToJson(v), R"({"<<":{"a":1}})");
  auto bad = ParseYaml("<<: 3\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
}

TEST(YamlParse, ScalarsResolveAsKubernetesDoes) {
  struct Case {
    const char* text;
    const char* json;
  } cases[] = {
      {"yes", "true"},   {"Y", "true"},         {"on", "true"},     {"ON", "true"},
      {"True", "true"},  {"no", "false"},       {"n", "false"},     {"Off", "false"},
      {"FALSE", "false"}, {"yES", "\"yES\""},   {"~", "null"},      {"Null", "null"},
      {"", "null"},      {"0", "0"},            {"-17", "-17"},     {"+5", "5"},
      {"0755", "493"},   {"0o17", "15"},        {"0x1F", "31"},     {"-0x10", "-16"},
      {"0b101", "5"},    {"1_000_000", "1000000"}, {"08", "8.0"},   {"1.5", "1.5"},
      {"1e3", "1000.0"}, {".5", "0.5"},         {"-.5e1", "-5.0"},  {"1.", "1.0"},
      {"9223372036854775807", "9223372036854775807"},
      {"-9223372036854775808", "-9223372036854775808"},
      {"9223372036854775808", "9223372036854775808.0"},
      {"1e400", "\"1e400\""}, {"0x", "\"0x\""}, {"2024-01-02", "\"2024-01-02\""},
      {"1.10", "1.1"},   {"-", "\"-\""},        {"v1", "\"v1\""},   {".", "\".\""},
      {"0x1p3", "\"0x1p3\""}, {"1_0.5", "10.5"}, {"true1", "\"true1\""},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(ToJson(ResolvePlainScalar(c.text)), c.json) << c.text;
  }
  EXPECT_TRUE(std::isinf(ResolvePlainScalar("-.Inf").AsDouble()));
  EXPECT_TRUE(std::isnan(ResolvePlainScalar(".NaN").AsDouble()));
  EXPECT_TRUE(ResolvePlainScalar(".nAn").IsString());

  // Quoted and block scalars are strings; tags are honoured.
  Value v = One("a: 'yes'\nb: \"1\"\nc: |\n  true\nd: !!str 12\ne: !!float 3\nf: !!int '7'\ng: !Ref x\n");
  EXPECT_EQ(ToJson(v), R"({"a":"yes","b":"1","c":"true\n","d":"12","e":3.0,"f":7,"g":"x"})");
  auto bad = ParseYaml("a: !!int abc\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), StartsWith("t.yaml:1:4: cannot read \"abc\" as !!int"));
}

TEST(YamlParse, NonStringKeysBecomeStringsLikeSigsYaml) {
  Value v = One("on: 1\n2: b\n1.5: c\nfalse: d\n");
  EXPECT_EQ(ToJson(v), R"({"true":1,"2":"b","1.5":"c","false":"d"})");
  auto bad = ParseYaml("~: x\n", "k.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("k.yaml:1:1: null map key"));
  bad = ParseYaml("? [a]\n: x\n", "k.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("cannot be a map key"));
}

TEST(YamlParse, DuplicateKeyIsAnErrorWithBothPositions) {
  auto r = ParseYaml("metadata:\n  name: a\n  labels: {}\n  name: b\n", "dup.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "dup.yaml:4:3: duplicate key \"name\" (first at line 2 column 3)");
  // Large maps use the hash index for the same check.
  std::string big;
  for (int i = 0; i < 100; ++i) big += "k" + std::to_string(i) + ": 1\n";
  EXPECT_TRUE(ParseYaml(big).ok());
  EXPECT_FALSE(ParseYaml(big + "k42: 2\n").ok());
}

TEST(YamlParse, DocumentsCommentsAndEmptyOnes) {
  EXPECT_TRUE(MustParse("").empty());
  EXPECT_TRUE(MustParse("# only a comment\n").empty());
  EXPECT_TRUE(MustParse("---\n---\n...\n").empty());
  EXPECT_TRUE(MustParse("--- null\n--- ~\n").empty());
  auto docs = MustParse(ReadFile("testdata/helm_output.yaml"));
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].Get("kind")->AsString(), "Service");
  EXPECT_EQ(docs[1].Get("kind")->AsString(), "HorizontalPodAutoscaler");
  EXPECT_EQ(docs[1].Get("kind")->mark().line, 21u);
  docs = MustParse("--- 1\n--- text\n");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[1].AsString(), "text");
}

TEST(YamlLimits, BillionLaughsIsCutOff) {
  std::string bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  for (char c = 'b'; c <= 'i'; ++c) {
    bomb += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 9; ++i) bomb += std::string(i ? "," : "") + "*" + static_cast<char>(c - 1);
    bomb += "]\n";
  }
  auto r = ParseYaml(bomb, "bomb.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_THAT(r.status().message(), StartsWith("bomb.yaml:"));
  EXPECT_THAT(r.status().message(), HasSubstr("(limit 1048576)"));
  ParseOptions small;
  small.max_alias_nodes = 10;
  EXPECT_FALSE(ParseYaml("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n", "x", small).ok());
  EXPECT_TRUE(ParseYaml("a: &a [1, 2, 3]\nb: [*a, *a]\n", "x", small).ok());
}

TEST(YamlLimits, DeepNestingIsAnErrorNotACrash) {
  std::string flow(100000, '[');
  auto r = ParseYaml(flow, "deep.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(r.status().message(), "deep.yaml:1:1001: nesting deeper than 1000 levels (limit 1000)");

  // Block style: 100k levels of compact sequences on one line, and nested keys (each level one
  // space deeper, so 3000 levels already make 4.5 MB).
  std::string dashes;
  for (int i = 0; i < 100000; ++i) dashes += "- ";
  r = ParseYaml(dashes + "x\n", "deep.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(r.status().message(), "deep.yaml:1:2001: nesting deeper than 1000 levels (limit 1000)");
  std::string block;
  for (int i = 0; i < 3000; ++i) block += std::string(static_cast<size_t>(i), ' ') + "a:\n";
  r = ParseYaml(block, "deep.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(r.status().message(), "deep.yaml:1001:1001: nesting deeper than 1000 levels (limit 1000)");

  // Aliases count the depth of what they bring.
  ParseOptions o;
  o.max_depth = 5;
  EXPECT_TRUE(ParseYaml("a: &x [[[1]]]\n", "x", o).ok());
  r = ParseYaml("a: &x [[[1]]]\nb: [[*x]]\n", "x", o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("nests deeper than 5 levels"));
}

TEST(YamlLimits, DocumentSizeAndCount) {
  ParseOptions o;
  o.max_documents = 2;
  auto r = ParseYaml("a: 1\n---\nb: 2\n---\nc: 3\n", "n.yaml", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(r.status().message(), "n.yaml:4:1: too many documents (limit 2)");
  o = ParseOptions();
  o.max_document_bytes = 20;
  EXPECT_TRUE(ParseYaml("a: 1\n---\nb: 2\n---\nc: 3\n", "n.yaml", o).ok());
  r = ParseYaml("a: 1\n---\nlong: " + std::string(100, 'x') + "\n", "n.yaml", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_THAT(r.status().message(), StartsWith("n.yaml:3:"));
  EXPECT_THAT(r.status().message(), HasSubstr("(limit 20)"));
}

TEST(YamlErrors, SyntaxErrorsCarryPositions) {
  auto r = ParseYaml("a: 1\nb: \"unterminated\n", "s.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(), StartsWith("s.yaml:3:1: found unexpected end of stream"));
  r = ParseYaml("a: [1, 2\n", "s.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), StartsWith("s.yaml:2:1:"));
  r = ParseYaml("a: *nope\n", "s.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "s.yaml:1:4: unknown anchor \"nope\" (or an alias inside its own anchor)");
  r = ParseYaml("a: &x [*x]\n", "s.yaml");
  EXPECT_FALSE(r.ok());
  r = ParseYaml("a: 1\n\x01\n", "s.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), StartsWith("s.yaml:2:1: control characters are not allowed"));
  r = ParseYaml("a: \xff\n", "s.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), StartsWith("s.yaml:1:4: invalid leading UTF-8 octet"));
}

TEST(YamlErrors, EveryTruncationOfAFixtureParsesOrFailsCleanly) {
  for (const char* name : kFixtures) {
    std::string text = ReadFile(std::string("testdata/") + name + ".yaml");
    for (size_t n = 0; n < text.size(); n += 7) {
      auto r = ParseYaml(std::string_view(text).substr(0, n), "cut.yaml");
      if (!r.ok()) {
        EXPECT_THAT(r.status().message(), StartsWith("cut.yaml:")) << n;
      }
    }
  }
  auto r = ParseYaml("spec:\n  containers:\n  - name: \"we", "cut.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), StartsWith("cut.yaml:3:"));
}

// ---- Differential tests: Gantry's own scanner (ParseYamlFast) against the libyaml path
// (ParseYamlLibyaml): the same Values, the same marks on every node and key, or the scanner
// leaves the input to libyaml. The fixtures and the cases below say which.

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
      "\uFEFFa: 1\r\nb:\r\n  - c\r\n  - d\r\ne: |\r\n  x\r\n  y\r\n",
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

// Found by fuzz/yaml_diff_fuzz.cc: libyaml puts an empty value of a flow map at the next token
// (',' or '}'), not right after the ':' as in a block map.
TEST(YamlDiff, EmptyFlowMapValueSitsAtTheNextToken) {
  EXPECT_TRUE(Same("m: {\n  a: 1,\n  b:  }\n"));
  EXPECT_TRUE(Same("m: {a: , b: c}\n"));
  auto docs = ParseYaml("m: {b:  }\n");
  ASSERT_TRUE(docs.ok());
  EXPECT_EQ((*docs)[0].Find({"m", "b"})->mark().begin, 8u);
}

// Found by fuzz/yaml_diff_fuzz.cc: properties before a '-' on the same line are an error in
// libyaml ("block sequence entries are not allowed in this context"), not a tagged sequence.
TEST(YamlDiff, PropertiesBeforeADashOnItsLineAreLeftToLibyaml) {
  EXPECT_FALSE(Same("!!-- -"));
  EXPECT_FALSE(Same("&a - x\n"));
  EXPECT_FALSE(ParseYaml("!!-- -").ok());
  EXPECT_TRUE(Same("a: &x\n  - 1\nb: *x\n"));
}

// Found by fuzz/yaml_diff_fuzz.cc in CI: "\'" is not an escape in YAML 1.1 (libyaml refuses it:
// "found unknown escape character"); the scanner took it as a quote.
TEST(YamlDiff, BackslashQuoteIsAnUnknownEscape) {
  EXPECT_FALSE(Same("a: \"it\\'s\"\n"));
  auto docs = ParseYaml("a: \"it\\'s\"\n");
  ASSERT_FALSE(docs.ok());
  EXPECT_NE(docs.status().message().find("unknown escape"), std::string::npos) << docs.status().ToString();
  EXPECT_TRUE(Same("a: \"it's \\\" \\\\ \\/\"\n"));
}

// What the builder's direct paths touch: map keys (resolved, merged, duplicated), reused
// collection frames at every depth, merges overriding entries of a map past its hash index
// threshold, tags kept as written until a scalar has one; and the scanner's reuse of a plain
// scalar's look past its line (comment lines, blank lines, document markers, the end).
TEST(YamlDiff, KeysFramesMergesAndLookaheadMatchLibyaml) {
  std::string big = "base: &b\n";
  for (int i = 0; i < 20; ++i) big += "  k" + std::to_string(i) + ": v" + std::to_string(i) + "\n";
  big += "m:\n  k1: first\n  <<: *b\n";
  for (int i = 0; i < 20; i += 3) big += "  k" + std::to_string(i) + ": mine\n";
  big += "  extra: 1\nafter: *b\n";
  const std::string cases[] = {
      big,
      "a: 1\n---\nb:\n  c: d\n---\n- e\n- f: g\n",
      "a: x\n# comment\nb: y\n",
      "a: x\n  # indented comment\nb: y\n",
      "a: x\n\n\n   \nb: y\n",
      "a: x\n---\nb: y\n",
      "a: x\n...\n",
      "a: x",
      "a: x   \nb: y\t\n",
      "- x\n- y\n# end\n",
      "k: v\r\n# c\r\nk2: v2\r\n",
      "on: 1\n1: a\n0x10: b\n1.5: c\nno: d\n.inf: e\n",
      "<<: {a: 1}\nb: 2\n",
      "m: {<<: {a: 1}, b: 2, 1: x, \"q\": y}\n",
      "a: !!str 1\nb: !Ref x\nc: ! y\nd: !!int 0x10\ne: !!float 2\nf: !!null ~\n",
      "a: &x !!str 5\nb: *x\nc: &y !custom\n  d: 1\ne: !!binary aGk=\n",
      "s:\n- a: 1\n  b: 2\n- c: 3\n  d:\n  - e\n  - f: g\n    h: i\n",
      "a: {b: {c: {d: e}}}\nf: [[[g]]]\ni: {}\nj: []\n",
      "a:\n  b:\n    c:\n      d: 1\n  e: 2\nf: 3\n---\na:\n  z: 9\n",
      "long key with spaces and \xC3\xBC" "n\xC3\xAF" "c\xC3\xB6" "d\xC3\xA9: v\xC3\xA4" "lue\nnext: x\n",
      "dup: 1\nother: 2\ndup: 3\n",
      "m:\n  a: 1\n  b: 2\n  a: 3\n",
      "~: null key\n",
      "a: !!int x\n",
  };
  int taken = 0;
  for (const std::string& text : cases) {
    SCOPED_TRACE(text);
    bool took = Same(text);
    taken += took;
    if (!took) std::printf("left to libyaml: %s\n", left_because.c_str());
  }
  EXPECT_EQ(taken, 20);  // the last four are errors (duplicate keys, a null key, a bad !!int)
  auto dup = ParseYaml("m:\n  a: 1\n  b: 2\n  a: 3\n", "t.yaml");
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().message(), "t.yaml:4:3: duplicate key \"a\" (first at line 2 column 3)");
}

// Marks count from each document's start inside a node; mark() gives offsets in the whole text.
TEST(YamlParse, MarksOfLaterDocumentsAreOffsetsInTheWholeText) {
  std::string text = "a: 1\n---\nb: xyz\n---\n- [p, q]\n";
  for (bool libyaml : {false, true}) {
    SCOPED_TRACE(libyaml);
    auto docs = ParseYaml(text, "t.yaml", ParseOptions{.use_libyaml = libyaml});
    ASSERT_TRUE(docs.ok()) << docs.status().ToString();
    ASSERT_EQ(docs->size(), 3u);
    Mark b = (*docs)[1].Find({"b"})->mark();
    EXPECT_EQ(b.line, 3u);
    EXPECT_EQ(b.column, 4u);
    EXPECT_EQ(text.substr(b.begin, b.end - b.begin), "xyz");
    Mark q = (*docs)[2].Find({0, 1})->mark();
    EXPECT_EQ(text.substr(q.begin, q.end - q.begin), "q");
    EXPECT_EQ(q.line, 5u);
    // A copy edited elsewhere keeps its marks.
    Value copy = (*docs)[1];
    copy.Set("c", 1);
    EXPECT_EQ(copy.Find({"b"})->mark().begin, b.begin);
  }
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

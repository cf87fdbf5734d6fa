#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "value/value.h"

namespace gantry::value {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

Value MustParse(std::string_view text) {
  auto r = ParseJson(text, "t.json");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : Value();
}

TEST(ParseJson, ObjectsKeepOrderAndTypes) {
  Value v = MustParse(R"({"kind":"Pod","spec":{"replicas":2,"ratio":0.5,"on":true,"x":null},
                          "list":[1,"two",[],{}]})");
  ASSERT_TRUE(v.IsMap());
  EXPECT_EQ(v.entries()[0].key.AsString(), "kind");
  EXPECT_EQ(v.Find({"spec", "replicas"})->AsInt(), 2);
  EXPECT_EQ(v.Find({"spec", "ratio"})->AsDouble(), 0.5);
  EXPECT_TRUE(v.Find({"spec", "on"})->AsBool());
  EXPECT_TRUE(v.Find({"spec", "x"})->IsNull());
  EXPECT_EQ(v.Find({"list", 1})->AsString(), "two");
  EXPECT_EQ(ToJson(v),
            R"({"kind":"Pod","spec":{"replicas":2,"ratio":0.5,"on":true,"x":null},"list":[1,"two",[],{}]})");
  EXPECT_EQ(ToJson(MustParse("  \"scalar\"  ")), "\"scalar\"");
  EXPECT_EQ(ToJson(MustParse("17")), "17");
}

TEST(ParseJson, EscapesAndUnicode) {
  Value v = MustParse(R"(["a\"b\\c\/d\n\t\u00e9\ud83d\ude00\u0000"])");
  EXPECT_EQ(v.At(0)->AsString(), std::string("a\"b\\c/d\n\té\xF0\x9F\x98\x80\0", 16));
  EXPECT_EQ(ToJson(v), "[\"a\\\"b\\\\c/d\\n\\té\xF0\x9F\x98\x80\\u0000\"]");
  EXPECT_FALSE(ParseJson("[\"\xff\"]").ok()) << "invalid UTF-8 is rejected";
}

TEST(ParseJson, IntegersBeyondInt64BecomeDoubles) {
  Value v = MustParse("[9223372036854775807,-9223372036854775808,9223372036854775808,"
                      "18446744073709551616,1e2,1.0]");
  EXPECT_EQ(v.At(0)->AsInt(), INT64_MAX);
  EXPECT_EQ(v.At(1)->AsInt(), INT64_MIN);
  EXPECT_TRUE(v.At(2)->IsDouble());
  EXPECT_EQ(v.At(2)->AsDouble(), 9223372036854775808.0);
  EXPECT_TRUE(v.At(3)->IsDouble());
  EXPECT_EQ(v.At(3)->AsDouble(), 18446744073709551616.0);
  EXPECT_TRUE(v.At(4)->IsDouble());
  EXPECT_TRUE(v.At(5)->IsDouble());
}

TEST(ParseJson, MarksGiveLineColumnAndBytes) {
  std::string text = "{\n  \"a\": [1, \"x\"],\n  \"b\": true\n}";
  Value v = MustParse(text);
  Mark m = v.Find({"a", 1})->mark();
  EXPECT_EQ(m.file, "t.json");
  EXPECT_EQ(m.line, 2u);
  EXPECT_EQ(m.column, 12u);
  EXPECT_EQ(text.substr(m.begin, m.end - m.begin), "\"x\"");
  m = v.Get("b")->mark();
  EXPECT_EQ(text.substr(m.begin, m.end - m.begin), "true");
  EXPECT_EQ(v.entries()[1].key.mark().line, 3u);
  EXPECT_EQ(v.entries()[1].key.mark().column, 3u);
}

TEST(ParseJson, ErrorsCarryPositions) {
  auto r = ParseJson("{\"a\": 1,\n \"b\": }", "e.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(), StartsWith("e.json:2:"));
  r = ParseJson("{\"a\": 1, \"a\": 2}", "e.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "e.json:1:10: duplicate key \"a\"");
  r = ParseJson("{} x", "e.json");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), StartsWith("e.json:1:4:"));
  r = ParseJson("[1, 2", "e.json");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), StartsWith("e.json:1:"));
  EXPECT_FALSE(ParseJson("").ok());
  EXPECT_FALSE(ParseJson("[1e400]").ok());
  EXPECT_FALSE(ParseJson("{\"a\" 1}").ok());
  EXPECT_FALSE(ParseJson("tru").ok());
}

TEST(ParseJson, LimitsOnDepthAndSize) {
  auto r = ParseJson(std::string(100000, '['), "d.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("(limit 1000)"));
  ParseOptions o;
  o.max_document_bytes = 4;
  r = ParseJson("[1,2,3]", "d.json", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(r.status().message(), "d.json:1:1: document is larger than 4 bytes (limit 4)");
}

TEST(ParseJson, RoundTripsThroughToJsonAndToYaml) {
  const char* texts[] = {
      R"({"a":[1,2.5,-0.0,1e-300,"s"],"b":{"c":null,"d":false},"e":"line\nbreak"})",
      R"([{"":""},{"yes":"no"},["nested",[[]]]])",
  };
  for (const char* t : texts) {
    Value v = MustParse(t);
    auto again = ParseJson(ToJson(v));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, v);
    auto yaml = ParseYaml(ToYaml(v));
    ASSERT_TRUE(yaml.ok()) << ToYaml(v);
    EXPECT_EQ((*yaml)[0], v) << ToYaml(v);
  }
}

}  // namespace
}  // namespace gantry::value

namespace gantry::value {
namespace {

// API responses are a single line of JSON: columns on a long line must be right (and are counted
// incrementally; recounting from the line start made a 1,000-object list take a minute).
TEST(ParseJson, ColumnsOnOneLongLineWithUtf8) {
  std::string text = "[";
  for (int i = 0; i < 2000; ++i) text += std::string(i ? "," : "") + "{\"k\":\"é\",\"n\":" + std::to_string(i) + "}";
  text += "]";
  auto v = ParseJson(text, "list.json");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  const Value* last = v->At(1999)->Get("n");
  ASSERT_NE(last, nullptr);
  // Characters before the last "n" value: count them the slow way.
  size_t off = text.rfind(":1999");
  size_t chars = 0;
  for (size_t i = 0; i <= off; ++i) chars += (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80;
  EXPECT_EQ(last->mark().line, 1u);
  EXPECT_EQ(last->mark().column, chars + 1);
  EXPECT_EQ(v->At(0)->mark().column, 2u);
}

}  // namespace
}  // namespace gantry::value

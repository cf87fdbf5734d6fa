#include <cmath>
#include <limits>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "value/value.h"
#include "value/internal/node.h"

namespace gantry::value {
namespace {

TEST(Value, IsOnePointerAndCopiesShareNodes) {
  EXPECT_EQ(sizeof(Value), sizeof(void*));
  Value a = Value::Map();
  a.Set("name", "web");
  Value b = a;
  EXPECT_EQ(a.Get("name"), b.Get("name")) << "a copy shares the node";
}

TEST(Value, ScalarsAndTypes) {
  EXPECT_TRUE(Value().IsNull());
  EXPECT_TRUE(Value(nullptr).IsNull());
  EXPECT_EQ(Value(true).AsBool(), true);
  EXPECT_EQ(Value(42).AsInt(), 42);
  EXPECT_EQ(Value(int64_t{1} << 40).AsInt(), int64_t{1} << 40);
  EXPECT_EQ(Value(42).AsDouble(), 42.0);
  EXPECT_EQ(Value(2.5).AsDouble(), 2.5);
  EXPECT_EQ(Value("x").AsString(), "x");
  EXPECT_EQ(Value(std::string("y")).type(), Value::Type::kString);
  EXPECT_EQ(Value(std::string_view("a\0b", 3)).AsString().size(), 3u);
  EXPECT_DEATH((void)Value("x").AsInt(), "check failed");
}

TEST(Value, CopyOnWriteLeavesOtherCopiesAlone) {
  Value original = Value::Map();
  original.Set("replicas", 1);
  Value containers = Value::Seq();
  Value c = Value::Map();
  c.Set("image", "nginx:1.0");
  containers.Append(c);
  original.Set("containers", containers);

  Value edited = original;
  edited.MutableGet("containers")->MutableAt(0)->Set("image", "nginx:2.0");
  edited.Set("replicas", 3);
  EXPECT_EQ(original.Find({"containers", 0, "image"})->AsString(), "nginx:1.0");
  EXPECT_EQ(original.Get("replicas")->AsInt(), 1);
  EXPECT_EQ(edited.Find({"containers", 0, "image"})->AsString(), "nginx:2.0");
  EXPECT_EQ(edited.Get("replicas")->AsInt(), 3);
  EXPECT_EQ(c.Get("image")->AsString(), "nginx:1.0");
}

TEST(Value, MapsKeepInsertionOrderAndIndexLargeOnes) {
  Value m;
  for (int i = 99; i >= 0; --i) m.Set("k" + std::to_string(i), i);
  ASSERT_EQ(m.size(), 100u);
  EXPECT_EQ(m.entries()[0].key.AsString(), "k99");
  for (int i = 0; i < 100; ++i) EXPECT_EQ(m.Get("k" + std::to_string(i))->AsInt(), i);
  EXPECT_TRUE(m.Erase("k50"));
  EXPECT_FALSE(m.Erase("k50"));
  EXPECT_EQ(m.Get("k50"), nullptr);
  EXPECT_EQ(m.Get("k49")->AsInt(), 49);
  EXPECT_EQ(m.size(), 99u);
  m.Set("k7", "seven");
  EXPECT_EQ(m.Get("k7")->AsString(), "seven");
  EXPECT_EQ(m.size(), 99u);
  EXPECT_EQ(m.Get("missing"), nullptr);
  EXPECT_EQ(Value(3).Get("x"), nullptr);
}

TEST(Value, FindFollowsKeysAndIndexes) {
  Value v = Value::Map();
  Value seq;
  seq.Append("a");
  seq.Append("b");
  v.Set("list", seq);
  EXPECT_EQ(v.Find({"list", 1})->AsString(), "b");
  EXPECT_EQ(v.Find({"list", 2}), nullptr);
  EXPECT_EQ(v.Find({"list", "x"}), nullptr);
  EXPECT_EQ(v.Find({}), &v);
  EXPECT_EQ(v.At(0), nullptr);
}

TEST(Value, EqualityIsDeepAndIgnoresMapOrder) {
  Value a, b;
  a.Set("x", 1);
  a.Set("y", "s");
  b.Set("y", "s");
  b.Set("x", 1);
  EXPECT_EQ(a, b);
  b.Set("x", 1.0);
  EXPECT_NE(a, b) << "int and double differ";
  EXPECT_EQ(Value(std::nan("")), Value(std::nan("")));
  EXPECT_NE(Value(), Value(false));
  Value s1, s2;
  s1.Append(1);
  s2.Append(2);
  EXPECT_NE(s1, s2);
}

TEST(Value, CopiesAreSafeToReadAndDropFromManyThreads) {
  Value doc;
  for (int i = 0; i < 50; ++i) doc.Set("k" + std::to_string(i), "v");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([doc] {
      for (int i = 0; i < 1000; ++i) {
        Value copy = doc;
        copy.Set("k1", i);  // copy-on-write: never touches the shared node
        EXPECT_EQ(doc.Get("k1")->AsString(), "v");
      }
    });
  }
  for (auto& t : threads) t.join();
}

// Parsed maps and sequences keep their entries in the document's arena; an edit that grows one
// moves it to the heap, and a shared one is copied out, so edits never write into the arena.
TEST(Value, EditsOfParsedDocumentsLeaveTheArena) {
  auto docs = ParseYaml("metadata:\n  name: web\n  labels: {a: x1, b: y1}\nargs: [--v, --w]\n");
  ASSERT_TRUE(docs.ok());
  Value doc = (*docs)[0];
  Value shared = doc;
  doc.MutableGet("metadata")->Set("namespace", "prod");  // grows a full arena array
  doc.MutableGet("args")->Append("--x");
  EXPECT_TRUE(doc.MutableGet("metadata")->MutableGet("labels")->Erase("a"));
  EXPECT_EQ(ToJson(doc), R"({"metadata":{"name":"web","labels":{"b":"y1"},"namespace":"prod"},)"
                         R"("args":["--v","--w","--x"]})");
  EXPECT_EQ(ToJson(shared), R"({"metadata":{"name":"web","labels":{"a":"x1","b":"y1"}},)"
                            R"("args":["--v","--w"]})");
  docs->clear();
  shared = Value();  // the arena now lives through the nodes doc still shares with it
  EXPECT_EQ(doc.Find({"metadata", "labels", "b"})->AsString(), "y1");
  EXPECT_EQ(doc.Find({"args", 0})->mark().line, 4u);
}

TEST(Detach, CopiesIntoMemoryOfItsOwn) {
  auto doc = ParseJson(R"({"items": [{"metadata": {"name": "a", "labels": {"x": "y"}},
      "data": {"i": 1, "d": 2.5, "b": true, "n": null, "s": [1, "two"]}}], "big": "padding"})", "list");
  ASSERT_TRUE(doc.ok());
  Value item = *doc->Find({"items", 0});
  Value copy = Detach(item);
  EXPECT_EQ(copy, item);
  EXPECT_EQ(copy.mark().line, 0u) << "marks are not copied";
  const internal::Node* original = internal::Node::Get(item);
  const internal::Node* detached = internal::Node::Get(copy);
  EXPECT_NE(detached->file, original->file) << "the copy keeps the document alive";
  EXPECT_EQ(internal::Node::Get(*copy.Find({"data", "s", 1}))->file, detached->file) << "one block";
  EXPECT_EQ(detached->file->chunks.size(), 1u);
  EXPECT_EQ(detached->file->used, static_cast<size_t>(detached->file->end - static_cast<char*>(detached->file->chunks[0])));
  *doc = Value();
  item = Value();
  copy.Set("extra", "edit");  // copy-on-write works on detached nodes
  EXPECT_EQ(copy.Find({"metadata", "labels", "x"})->AsString(), "y");
  EXPECT_TRUE(Detach(Value()).IsNull());
  EXPECT_EQ(Detach(Value(3)).AsInt(), 3);
}

TEST(Detach, SharesKeysThroughAPoolAndForgetsUnusedOnes) {
  KeyPool pool;
  auto doc = ParseJson(R"({"metadata": {"name": "a"}, "data": {"x": "1"}})");
  ASSERT_TRUE(doc.ok());
  Value a = Detach(*doc, &pool);
  Value b = Detach(*doc, &pool);
  EXPECT_EQ(a, *doc);
  EXPECT_EQ(pool.size(), 4u);
  EXPECT_EQ(internal::Node::Get(a.entries()[0].key), internal::Node::Get(b.entries()[0].key));
  EXPECT_NE(internal::Node::Get(a.entries()[0].value), internal::Node::Get(b.entries()[0].value));
  a = Value();
  b = Value();
  // Past the first pruning threshold, keys nobody holds are dropped.
  std::vector<Value> held;
  for (int i = 0; i < 3000; ++i) {
    Value m = Value::Map();
    m.Set("k" + std::to_string(i), i);
    Value d = Detach(m, &pool);
    if (i % 2 == 0) held.push_back(d);
  }
  EXPECT_LT(pool.size(), 2600u);
  EXPECT_GE(pool.size(), held.size());
  for (size_t i = 0; i < held.size(); ++i) {
    EXPECT_EQ(held[i].entries()[0].key.AsString(), "k" + std::to_string(2 * i));
  }
}

TEST(Detach, ScalarsAlone) {
  EXPECT_EQ(Detach(Value(3)).AsInt(), 3);
}

TEST(ToJson, EscapesAndNumbers) {
  Value v;
  v.Set("s", "quote\" back\\ nl\n tab\t ctl\x01 é");
  v.Set("bad", std::string_view("a\xff" "b"));
  v.Set("i", std::numeric_limits<int64_t>::min());
  v.Set("d", 0.1);
  v.Set("whole", 2.0);
  v.Set("big", 1e300);
  v.Set("inf", std::numeric_limits<double>::infinity());
  v.Set("n", Value());
  v.Set("e", Value::Seq());
  v.Set("m", Value::Map());
  EXPECT_EQ(ToJson(v),
            "{\"s\":\"quote\\\" back\\\\ nl\\n tab\\t ctl\\u0001 é\",\"bad\":\"a\xEF\xBF\xBD" "b\","
            "\"i\":-9223372036854775808,\"d\":0.1,\"whole\":2.0,\"big\":1e+300,\"inf\":null,"
            "\"n\":null,\"e\":[],\"m\":{}}");
}

TEST(ToYaml, CanonicalShape) {
  Value v;
  v.Set("apiVersion", "v1");
  v.Set("kind", "ConfigMap");
  Value meta;
  meta.Set("name", "x");
  meta.Set("labels", Value::Map());
  v.Set("metadata", meta);
  Value data;
  data.Set("script", "echo 1\necho 2\n");
  data.Set("flag", "yes");
  data.Set("num", "8080");
  data.Set("empty", "");
  v.Set("data", data);
  Value items;
  Value item;
  item.Set("name", "a");
  item.Set("args", Value::Seq());
  items.Append(item);
  Value inner;
  inner.Append(1);
  inner.Append(2.5);
  items.Append(inner);
  items.Append("--port=80");
  v.Set("items", items);
  EXPECT_EQ(ToYaml(v),
            "apiVersion: v1\n"
            "kind: ConfigMap\n"
            "metadata:\n"
            "  name: x\n"
            "  labels: {}\n"
            "data:\n"
            "  script: |\n"
            "    echo 1\n"
            "    echo 2\n"
            "  flag: \"yes\"\n"
            "  num: \"8080\"\n"
            "  empty: \"\"\n"
            "items:\n"
            "- name: a\n"
            "  args: []\n"
            "- - 1\n"
            "  - 2.5\n"
            "- --port=80\n");
}

TEST(ToYaml, TrickyStringsRoundTrip) {
  const std::string strings[] = {
      "yes", "No", "~", "null", "1.0", "0x10", "08", "1_000", ".5", ".inf", "<<", "", " lead",
      "trail ", "a: b", "a:b", "x #c", "#c", "- x", "-x", "---", "...", "?", ":", "a:",
      "[x]", "{x}", "*a", "&a", "!t", "|", ">", "'q'", "\"q\"", "%p", "@a", "`b`",
      "multi\nline", "multi\nline\n", "keep\n\n\n", "\n\nlead newlines", "  indented\nblock",
      "\tTab\nx", "tab\there", "ctrl\x01", "del\x7f", "é ü", "line\xE2\x80\xA8sep", "nel\xC2\x85",
      "bom\xEF\xBB\xBF", "cr\r\nlf", "trailing spaces  \nx", "  \n", "a\n  \nb", "\n", "x\n ",
      std::string(1500, 'k'), "2024-01-02", "1e400", "true1", "-", "- ", "#",
  };
  for (const std::string& s : strings) {
    Value v;
    v.Set(s, s);
    Value seq;
    seq.Append(s);
    seq.Append(v);
    v.Set("seq", seq);
    for (const Value& candidate : {v, Value(s)}) {
      std::string yaml = ToYaml(candidate);
      auto back = ParseYaml(yaml);
      ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << yaml;
      Value got = back->empty() ? Value() : (*back)[0];
      EXPECT_EQ(got, candidate) << yaml;
    }
  }
  // Invalid UTF-8 is written as U+FFFD.
  Value bad(std::string_view("a\xff"));
  EXPECT_EQ(ToYaml(bad), "\"a\xEF\xBF\xBD\"\n");
}

TEST(ToYaml, NumbersAndSpecials) {
  Value v;
  v.Set("i", -3);
  v.Set("d", 3.0);
  v.Set("inf", -std::numeric_limits<double>::infinity());
  v.Set("nan", std::nan(""));
  v.Set("b", false);
  v.Set("n", Value());
  std::string yaml = ToYaml(v);
  EXPECT_EQ(yaml, "i: -3\nd: 3.0\ninf: -.inf\nnan: .nan\nb: false\n\"n\": null\n");
  auto back = ParseYaml(yaml);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)[0], v);
}

TEST(ValueAt, ReadsOptionalFieldsOrTheirZero) {
  auto v = ParseJson(R"({"metadata": {"name": "web", "generation": 3, "x": true}, "items": ["a"]})");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(StringAt(&*v, {"metadata", "name"}), "web");
  EXPECT_EQ(StringAt(&*v, {"items", 0}), "a");
  EXPECT_EQ(StringAt(&*v, {"metadata", "generation"}), "");  // an int is not a string
  EXPECT_EQ(StringAt(nullptr, {"metadata"}), "");
  EXPECT_EQ(IntAt(&*v, {"metadata", "generation"}), 3);
  EXPECT_EQ(IntAt(&*v, {"metadata", "missing"}), 0);
  EXPECT_TRUE(BoolAt(&*v, {"metadata", "x"}));
  EXPECT_FALSE(BoolAt(&*v, {"metadata", "name"}));
}

}  // namespace
}  // namespace gantry::value

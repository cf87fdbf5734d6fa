#include "kube/selector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gantry::kube {
namespace {

using value::Value;

bool Match(std::string_view selector, std::string_view labels_yaml) {
  auto s = LabelSelector::Parse(selector);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  auto labels = value::ParseYaml(labels_yaml);
  EXPECT_TRUE(labels.ok());
  return s.ok() && s->Matches(labels->empty() ? nullptr : &(*labels)[0]);
}

TEST(LabelSelector, RequirementsOfTheApiSyntax) {
  EXPECT_TRUE(Match("", "{}"));
  EXPECT_TRUE(Match("", ""));
  EXPECT_TRUE(Match("gantry.dev/app", "{gantry.dev/app: web}"));
  EXPECT_FALSE(Match("gantry.dev/app", "{other: web}"));
  EXPECT_FALSE(Match("gantry.dev/app", ""));
  EXPECT_TRUE(Match("!a", "{b: x}"));
  EXPECT_FALSE(Match("!a", "{a: x}"));
  EXPECT_TRUE(Match("a=x", "{a: x}"));
  EXPECT_TRUE(Match("a==x", "{a: x}"));
  EXPECT_FALSE(Match("a=x", "{a: w}"));
  EXPECT_TRUE(Match("a!=x", "{a: w}"));
  EXPECT_TRUE(Match("a!=x", "{}")) << "!= holds when the label is not set";
  EXPECT_TRUE(Match("a=x,b", "{a: x, b: ''}"));
  EXPECT_FALSE(Match("a=x, b", "{a: x}"));
  EXPECT_TRUE(Match("a in (x, w)", "{a: w}"));
  EXPECT_FALSE(Match("a in (x,w)", "{a: z}"));
  EXPECT_TRUE(Match("a notin (x,w)", "{a: z}"));
  EXPECT_FALSE(Match("a notin (x,w)", "{a: x}"));
  EXPECT_TRUE(Match("a notin (x,w)", "{}"));
  EXPECT_TRUE(Match("in=notin", "{in: notin}")) << "in and notin are also plain names";
  EXPECT_TRUE(Match("a=", "{a: ''}"));
}

TEST(LabelSelector, MalformedSelectorsNameThePosition) {
  for (std::string_view bad : {"a in x", "a in (x", "a b", ",", "a,", "!", "a=(x)"}) {
    auto s = LabelSelector::Parse(bad);
    EXPECT_EQ(s.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_THAT(s.status().message(), ::testing::HasSubstr("position")) << bad;
  }
}

}  // namespace
}  // namespace gantry::kube

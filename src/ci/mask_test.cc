#include "ci/mask.h"

#include <gtest/gtest.h>

#include "base/base64.h"

namespace gantry::ci {
namespace {

TEST(Mask, SecretSplitAcrossChunksAtEveryPosition) {
  const std::string secret = "hunter2-canary";
  const std::string text = "before " + secret + " after " + secret;
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    for (size_t cut2 = cut; cut2 <= text.size(); cut2 += 3) {
      Masker m({secret});
      std::string out = m.Write(text.substr(0, cut));
      out += m.Write(text.substr(cut, cut2 - cut));
      out += m.Write(text.substr(cut2));
      out += m.Flush();
      EXPECT_EQ(out, "before *** after ***") << cut << "," << cut2;
    }
  }
}

TEST(Mask, EveryEncoding) {
  const std::string secret = "p@ss w/rd\"x";
  Masker m({secret});
  for (const std::string& enc :
       {secret, Base64Encode(secret), Base64Encode(secret + "\n"), Base64Encode("x" + secret), Base64Encode("xy" + secret),
        std::string("p%40ss%20w%2Frd%22x"), std::string("p%40ss+w%2Frd%22x"), std::string("p%40ss%20w%2frd%22x"),
        std::string("p@ss w/rd\\\"x")}) {
    std::string out = m.MaskAll("[" + enc + "]");
    EXPECT_EQ(out.find(secret), std::string::npos) << enc;
    EXPECT_NE(out.find("***"), std::string::npos) << enc << " -> " << out;
  }
}

TEST(Mask, MultiLineSecretLines) {
  Masker m({"line-one-secret\nline-two-secret"});
  EXPECT_EQ(m.MaskAll("a line-two-secret b"), "a *** b");
}

TEST(Mask, NoSecretsPassesThrough) {
  Masker m({});
  EXPECT_EQ(m.Write("abc"), "abc");
  EXPECT_EQ(m.Flush(), "");
}

}  // namespace
}  // namespace gantry::ci

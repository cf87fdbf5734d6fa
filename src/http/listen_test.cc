#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "http/http.h"

namespace gantry::http {
namespace {

using ::testing::HasSubstr;

TEST(ParseListenTest, AcceptsHostPortAnyInterfaceAndBracketedIpv6) {
  auto a = ParseListen("127.0.0.1:8080", "--listen");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  auto any = ParseListen(":9090", "--listen");
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any->host, "0.0.0.0");
  EXPECT_EQ(any->port, 9090);
  auto v6 = ParseListen("[::1]:0", "--listen");
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 0);
  auto v6any = ParseListen("[::]:65535", "--listen");
  ASSERT_TRUE(v6any.ok());
  EXPECT_EQ(v6any->host, "::");
  EXPECT_EQ(v6any->port, 65535);
}

// `gantry server --listen :abc` ended the process (std::stoi threw) and `:99999` was silently
// truncated to 34463.
TEST(ParseListenTest, ANonNumericOrOutOfRangePortIsAnErrorNamingTheFlag) {
  for (const char* bad : {":abc", ":99999", ":65536", ":-1", ":+80", ": 80", ":80x", ":", "127.0.0.1:", ":4294967297"}) {
    auto r = ParseListen(bad, "--metrics-listen");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("--metrics-listen")) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("0 to 65535")) << bad << ": " << r.status().message();
  }
}

TEST(ParseListenTest, RefusesWhatIsNotAnAddressWithAPort) {
  struct Case {
    const char* listen;
    const char* says;
  };
  for (const Case& c : {Case{"", "empty"}, Case{"8080", "no ':' before the port"}, Case{"localhost", "no :PORT"},
                        Case{"localhost:8080", "not an IPv4 address"}, Case{"::1:8080", "brackets"},
                        Case{"[::1]8080", "no :PORT after"}, Case{"[::1:8080", "no ']'"},
                        Case{"[127.0.0.1]:80", "not an IPv6 address"}, Case{"300.1.1.1:80", "not an IPv4 address"}}) {
    auto r = ParseListen(c.listen, "--listen");
    ASSERT_FALSE(r.ok()) << c.listen;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(c.says)) << c.listen;
    EXPECT_THAT(r.status().message(), HasSubstr("--listen")) << c.listen;
  }
}

}  // namespace
}  // namespace gantry::http

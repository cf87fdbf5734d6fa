// The registry of test/env/registry.sh speaks the OCI distribution API to a plain libcurl client:
// anonymously over HTTP, and with htpasswd basic auth over TLS verified against the CA the script
// made. A blob pushed (POST upload, PUT with digest) comes back byte for byte under its digest.

#include <cctype>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <curl/curl.h>
#include <gtest/gtest.h>

#include "base/hash.h"
#include "test/env/testenv.h"

namespace gantry {
namespace {

struct Request {
  std::string method = "GET";
  std::string url;
  std::string body;
  std::vector<std::string> headers;
  std::string user;      // basic auth when not empty
  std::string password;
  std::string ca_file;   // trust only this CA when not empty (verification is always on)
};

struct Response {
  CURLcode error = CURLE_OK;
  std::string error_text;
  long status = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
};

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t AppendHeader(char* data, size_t size, size_t n, void* out) {
  auto& headers = *static_cast<std::map<std::string, std::string>*>(out);
  std::string line(data, size * n);
  if (line.starts_with("HTTP/")) headers.clear();  // a new response (after 100 Continue)
  size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t begin = line.find_first_not_of(" \t", colon + 1);
    size_t end = line.find_last_not_of(" \t\r\n");
    bool empty = begin == std::string::npos || end < begin;
    headers[name] = empty ? "" : line.substr(begin, end - begin + 1);
  }
  return size * n;
}

Response Send(const Request& request) {
  Response response;
  CURL* curl = curl_easy_init();
  char error[CURL_ERROR_SIZE] = "";
  curl_slist* headers = nullptr;
  for (const auto& h : request.headers) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, AppendHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response.headers);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!request.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, request.ca_file.c_str());
  if (!request.user.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERNAME, request.user.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, request.password.c_str());
  }
  if (request.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
  }
  response.error = curl_easy_perform(curl);
  response.error_text = error[0] != '\0' ? error : curl_easy_strerror(response.error);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return response;
}

std::string RandomBlob(size_t size) {
  std::random_device seed;
  std::mt19937_64 random(seed());
  std::string blob(size, '\0');
  for (char& c : blob) c = static_cast<char>(random());
  return blob;
}

// Pushes a fresh blob to `repository` as `request` says (auth, CA) and pulls it back.
void PushAndPullBlob(const testenv::Server& registry, const Request& auth,
                     const std::string& repository) {
  const std::string base = registry.Get("REGISTRY_URL");
  const std::string blob = RandomBlob(300 * 1024) + "gantry registry smoke test";
  const std::string digest = "sha256:" + Sha256Hex(blob);

  Request start = auth;
  start.method = "POST";
  start.url = base + "/v2/" + repository + "/blobs/uploads/";
  Response started = Send(start);
  ASSERT_EQ(started.error, CURLE_OK) << started.error_text;
  ASSERT_EQ(started.status, 202) << started.body;
  ASSERT_TRUE(started.headers.contains("location"));
  std::string location = started.headers["location"];
  if (location.starts_with("/")) location = base + location;

  Request put = auth;
  put.method = "PUT";
  put.url = location + (location.find('?') == std::string::npos ? "?" : "&") + "digest=" + digest;
  put.body = blob;
  put.headers = {"Content-Type: application/octet-stream"};
  Response stored = Send(put);
  ASSERT_EQ(stored.error, CURLE_OK) << stored.error_text;
  ASSERT_EQ(stored.status, 201) << stored.body;
  EXPECT_EQ(stored.headers["docker-content-digest"], digest);

  Request get = auth;
  get.url = base + "/v2/" + repository + "/blobs/" + digest;
  Response pulled = Send(get);
  ASSERT_EQ(pulled.error, CURLE_OK) << pulled.error_text;
  ASSERT_EQ(pulled.status, 200) << pulled.body.substr(0, 500);
  EXPECT_EQ(pulled.headers["docker-content-digest"], digest);
  EXPECT_EQ(pulled.body.size(), blob.size());
  EXPECT_TRUE(pulled.body == blob) << "the blob came back with different bytes";
  EXPECT_EQ("sha256:" + Sha256Hex(pulled.body), digest);

  // A digest that was never pushed is not there: the registry really looks.
  Request missing = auth;
  missing.method = "HEAD";
  missing.url = base + "/v2/" + repository + "/blobs/sha256:" + Sha256Hex("never pushed");
  Response absent = Send(missing);
  ASSERT_EQ(absent.error, CURLE_OK) << absent.error_text;
  EXPECT_EQ(absent.status, 404);
}

TEST(RegistrySmokeTest, AnonymousPushAndPullBlob) {
  auto& registry = testenv::Shared("registry.sh");
  ASSERT_TRUE(registry.Get("REGISTRY_URL").starts_with("http://127.0.0.1:"));
  EXPECT_EQ(registry.Find("REGISTRY_PASSWORD"), std::nullopt);
  PushAndPullBlob(registry, Request{}, "smoke/anonymous");
}

TEST(RegistrySmokeTest, AuthRejectsMissingAndWrongCredentials) {
  auto& registry = testenv::Shared("registry.sh", {"--auth"});
  Request request;
  request.url = registry.Get("REGISTRY_URL") + "/v2/";
  request.ca_file = registry.Get("REGISTRY_CA");

  Response anonymous = Send(request);
  ASSERT_EQ(anonymous.error, CURLE_OK) << anonymous.error_text;
  EXPECT_EQ(anonymous.status, 401);
  const std::string& challenge = anonymous.headers["www-authenticate"];
  EXPECT_TRUE(challenge.starts_with("Basic ")) << challenge;

  request.user = registry.Get("REGISTRY_USER");
  request.password = registry.Get("REGISTRY_PASSWORD") + "x";
  Response wrong = Send(request);
  ASSERT_EQ(wrong.error, CURLE_OK) << wrong.error_text;
  EXPECT_EQ(wrong.status, 401);

  request.password = registry.Get("REGISTRY_PASSWORD");
  Response right = Send(request);
  ASSERT_EQ(right.error, CURLE_OK) << right.error_text;
  EXPECT_EQ(right.status, 200);
}

TEST(RegistrySmokeTest, TlsIsVerifiedAgainstTheScriptsCa) {
  auto& registry = testenv::Shared("registry.sh", {"--auth"});
  ASSERT_TRUE(registry.Get("REGISTRY_URL").starts_with("https://127.0.0.1:"));
  Request request;
  request.url = registry.Get("REGISTRY_URL") + "/v2/";
  // The system trust store does not know the self-signed CA.
  Response untrusted = Send(request);
  EXPECT_EQ(untrusted.error, CURLE_PEER_FAILED_VERIFICATION) << untrusted.error_text;
  // The certificate also names localhost.
  std::string port = registry.Get("REGISTRY_HOST").substr(std::string("127.0.0.1:").size());
  request.url = "https://localhost:" + port + "/v2/";
  request.ca_file = registry.Get("REGISTRY_CA");
  Response trusted = Send(request);
  ASSERT_EQ(trusted.error, CURLE_OK) << trusted.error_text;
  EXPECT_EQ(trusted.status, 401);
}

TEST(RegistrySmokeTest, AuthenticatedPushAndPullBlobOverTls) {
  auto& registry = testenv::Shared("registry.sh", {"--auth"});
  Request auth;
  auth.user = registry.Get("REGISTRY_USER");
  auth.password = registry.Get("REGISTRY_PASSWORD");
  auth.ca_file = registry.Get("REGISTRY_CA");
  PushAndPullBlob(registry, auth, "smoke/authenticated");

  // The blob is there, but not for an anonymous client.
  Request anonymous;
  anonymous.method = "HEAD";
  anonymous.url = registry.Get("REGISTRY_URL") + "/v2/smoke/authenticated/blobs/sha256:" +
                  Sha256Hex("never pushed");
  anonymous.ca_file = registry.Get("REGISTRY_CA");
  Response denied = Send(anonymous);
  ASSERT_EQ(denied.error, CURLE_OK) << denied.error_text;
  EXPECT_EQ(denied.status, 401);
}

}  // namespace
}  // namespace gantry

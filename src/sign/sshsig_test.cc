// SSH signatures against ssh-keygen's own output: Ed25519 signatures are deterministic, so the
// armored signature of a fixed message must equal what `ssh-keygen -Y sign -n git` wrote for it
// (test/fixtures below were made with OpenSSH 9.2), byte for byte.

#include "sign/sshsig.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gantry::sign {
namespace {

using ::testing::HasSubstr;

// ssh-keygen -t ed25519 -N '' -C gantry-test -f k
constexpr std::string_view kOpenSshKey = R"(-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDUzGNbSKJwLQAVWR+Z6Sgt3+2XmJoOBs/HWBISiwiuRAAAAJBY9izIWPYs
yAAAAAtzc2gtZWQyNTUxOQAAACDUzGNbSKJwLQAVWR+Z6Sgt3+2XmJoOBs/HWBISiwiuRA
AAAEDArvWDXi1zRHkZaOKwkT4y5icqFnwRVIBXgpb5CS0EVNTMY1tIonAtABVZH5npKC3f
7ZeYmg4Gz8dYEhKLCK5EAAAAC2dhbnRyeS10ZXN0AQI=
-----END OPENSSH PRIVATE KEY-----
)";
constexpr std::string_view kPublicLine = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINTMY1tIonAtABVZH5npKC3f7ZeYmg4Gz8dYEhKLCK5E gantry-test";
// A commit object's text, and `ssh-keygen -Y sign -n git -f k` of it.
constexpr std::string_view kMessage = R"(tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904
author A <a@x> 1700000000 +0000
committer A <a@x> 1700000000 +0000

message
)";
constexpr std::string_view kSshKeygenSignature = R"(-----BEGIN SSH SIGNATURE-----
U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAg1MxjW0iicC0AFVkfmekoLd/tl5
iaDgbPx1gSEosIrkQAAAADZ2l0AAAAAAAAAAZzaGE1MTIAAABTAAAAC3NzaC1lZDI1NTE5
AAAAQEIgNUl5evWnnoGVW4A+Z/rIUE/UJHEvrV1JdlqqYnX8qRldljEZ3wZklXUZ7Q7njs
5bnEJQwMcz2l5LwyavwwU=
-----END SSH SIGNATURE-----)";

TEST(SshSigTest, SignsExactlyAsSshKeygenDoes) {
  auto signer = SshSigner::Parse(kOpenSshKey, "k");
  ASSERT_TRUE(signer.ok()) << signer.status().ToString();
  EXPECT_EQ(signer->PublicKeyLine("gantry-test"), kPublicLine);
  auto sig = signer->Sign(kMessage);
  ASSERT_TRUE(sig.ok()) << sig.status().ToString();
  EXPECT_EQ(*sig, kSshKeygenSignature);
  EXPECT_TRUE(VerifySshSignature(kSshKeygenSignature, kMessage, "git", kPublicLine).ok());
}

TEST(SshSigTest, TamperingAnotherKeyOrNamespaceIsRefused) {
  std::string tampered(kMessage);
  tampered[tampered.find("message")] = 'M';
  Status s = VerifySshSignature(kSshKeygenSignature, tampered, "git", kPublicLine);
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.ToString();

  auto other = GenerateKey(KeyType::kEd25519);
  ASSERT_TRUE(other.ok());
  auto other_signer = SshSigner::Parse(other->Pem(), "other.pem");
  ASSERT_TRUE(other_signer.ok()) << other_signer.status().ToString();
  s = VerifySshSignature(kSshKeygenSignature, kMessage, "git", other_signer->PublicKeyLine());
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("another key"));
  auto mine = other_signer->Sign(kMessage, "file");
  ASSERT_TRUE(mine.ok());
  s = VerifySshSignature(*mine, kMessage, "git", other_signer->PublicKeyLine());
  EXPECT_THAT(s.message(), HasSubstr("namespace \"file\", not \"git\""));
  EXPECT_TRUE(VerifySshSignature(*mine, kMessage, "file", other_signer->PublicKeyLine()).ok());
  EXPECT_EQ(VerifySshSignature("garbage", kMessage, "git", kPublicLine).code(), Code::kInvalidArgument);
}

TEST(SshSigTest, KeysOtherThanUnencryptedEd25519AreRefused) {
  // ssh-keygen -t ed25519 -N pw: encrypted.
  constexpr std::string_view kEncrypted = R"(-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABBv8fM7EY
JScUXTD8RJ22A+AAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIN/3NuPbBK9eDfhb
s9WWFUCzIvfH45v/vPfyCatdDZZ9AAAAkIxhkkJ8QyKHfZJcubkJ8NNNIIsUZwjsVIvDkz
/79Q/3iREH/4rFyQ0RZnVG0Sl21MDyK3TT9jJ8rGIsj9nPk/EHk1JkvEjCGtiitf0TQspe
F9zU8QD7HgJnPiXTTNQT6Xga4TeTtMKu/ov5BAjTdbJOyxCOhEBg6el0E6EJ3ZFgd6rMn8
5mvARZIhKi653g1Q==
-----END OPENSSH PRIVATE KEY-----
)";
  auto enc = SshSigner::Parse(kEncrypted, "enc");
  ASSERT_EQ(enc.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(enc.status().message(), HasSubstr("enc: the key is encrypted (aes256-ctr)"));
  auto ecdsa = GenerateKey(KeyType::kEcdsaP256);
  ASSERT_TRUE(ecdsa.ok());
  auto refused = SshSigner::Parse(ecdsa->Pem(), "ec.pem");
  ASSERT_EQ(refused.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("ec.pem: ECDSA P-256 key: only Ed25519 keys sign commits"));
  std::string truncated(kOpenSshKey.substr(0, 120));
  truncated += "\n-----END OPENSSH PRIVATE KEY-----\n";
  EXPECT_EQ(SshSigner::Parse(truncated, "t").status().code(), Code::kInvalidArgument);
}

// Found by fuzz/sshsig: an OpenSSH key file whose private seed was damaged (two characters swapped)
// still parsed, with the file's public key, so Gantry would publish a key its signatures do not
// verify with.
TEST(SshSigTest, AKeyFileWhosePublicKeyIsNotItsPrivateKeysIsRefused) {
  constexpr std::string_view kDamaged =
      "-----BEGIN OPENSSH PRIVATE KEY-----\n"
      "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
      "QyNTUxOQAAACDQ42g9k7gQK8xCydfszrykSSzP44iLEjVBdTSlBouzHwAAAJCTMHGBkzBx\n"
      "gQAAAAtzc2gtZWQyNTUxOQAAACDQ42g9k7gQK8xCydfszrykSSzP44iLEjVBdTSlBouzHw\n"
      "AAAECm1YDu/Uz0t/y5ir6lQ6payydT+2Lknu0qbYa7+6r+ztDjaD2TuBArzELJ1+zOvKRJ\n"
      "LM/jiIsSNUF1NKUGi7MfAAAAC2Z1enpAZ2FudHJ5AQI=\n"
      "-----END OPENSSH PRIVATE KEY-----\n";
  auto damaged = SshSigner::Parse(kDamaged, "commit-key");
  ASSERT_FALSE(damaged.ok());
  EXPECT_EQ(damaged.status().message(),
            "commit-key: the public key in the file is not its private key's (the file is damaged)");
  // The same file undamaged (the seed of fuzz/corpus/sshsig/openssh-key) signs what verifies.
  std::string intact(kDamaged);
  intact.replace(intact.find("payydT+2"), 8, "payyTd+2");
  auto signer = SshSigner::Parse(intact, "commit-key");
  ASSERT_TRUE(signer.ok()) << signer.status().ToString();
  EXPECT_TRUE(VerifySshSignature(*signer->Sign("commit"), "commit", "git", signer->PublicKeyLine()).ok());
}

}  // namespace
}  // namespace gantry::sign

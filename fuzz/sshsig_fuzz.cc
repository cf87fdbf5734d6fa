// Fuzzes SSH signatures (sign/sshsig.h), which a verification rule's commitKeys check on config
// commits anyone can push: the first byte picks what the rest is.
//   0: an armored signature ("-----BEGIN SSH SIGNATURE-----"...), checked against a fixed message
//      and the key that signed the seed;
//   1: the signature's binary form, armored here, so the fuzzer reaches the wire parser without
//      having to find valid base64 first;
//   2: "PUBLIC KEY LINE\nARMORED SIGNATURE": the allowed key's line too;
//   3: a private key file (SshSigner::Parse: OpenSSH or PEM), whose key must then sign and verify.
// Any input must verify or fail cleanly; a signature that verifies for the message must not also
// verify for another message, nor in another namespace.

#include <cstdint>
#include <string>

#include "base/base64.h"
#include "fuzz/fuzz.h"
#include "sign/sshsig.h"

using namespace gantry;

namespace {

// The public key of fuzz/corpus/sshsig/openssh-key (ssh-keygen -t ed25519), which signed kMessage in
// namespace git for the other seeds (ssh-keygen -Y sign -n git).
constexpr std::string_view kPublicLine =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINDjaD2TuBArzELJ1+zOvKRJLM/jiIsSNUF1NKUGi7Mf fuzz@gantry";
constexpr std::string_view kMessage = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor Fuzz <f@x> 1 +0000\n\nseed\n";

void Check(std::string_view armored, std::string_view public_line) {
  if (!sign::VerifySshSignature(armored, kMessage, "git", public_line).ok()) return;
  if (sign::VerifySshSignature(armored, std::string(kMessage) + "x", "git", public_line).ok()) {
    fuzz::Fail("a signature verifies for two messages", std::string(armored));
  }
  if (sign::VerifySshSignature(armored, kMessage, "file", public_line).ok()) {
    fuzz::Fail("a signature verifies in two namespaces", std::string(armored));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text = fuzz::Text(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      Check(text, kPublicLine);
      break;
    case 1:
      Check("-----BEGIN SSH SIGNATURE-----\n" + Base64Encode(text) + "\n-----END SSH SIGNATURE-----", kPublicLine);
      break;
    case 2: {
      auto fields = fuzz::Fields(text, 2);
      if (fields.size() == 2) Check(fields[1], fields[0]);
      break;
    }
    case 3: {
      auto signer = sign::SshSigner::Parse(text, "fuzz key");
      if (!signer.ok()) break;
      auto signature = signer->Sign(kMessage);
      if (!signature.ok()) fuzz::Fail("a parsed key does not sign", signature.status().ToString());
      Status verified = sign::VerifySshSignature(*signature, kMessage, "git", signer->PublicKeyLine());
      if (!verified.ok()) fuzz::Fail("a parsed key's signature does not verify", verified.ToString());
      break;
    }
  }
  return 0;
}

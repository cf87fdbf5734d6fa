#pragma once
// SSH signatures (OpenSSH's PROTOCOL.sshsig), what `ssh-keygen -Y sign` writes and what Git stores
// in a commit's `gpgsig` header when gpg.format=ssh: Gantry signs its config commits with them,
// and `git verify-commit` (with gpg.ssh.allowedSignersFile) checks them.
//
// The armored signature ("-----BEGIN SSH SIGNATURE-----", base64 in lines of 70) holds
//   "SSHSIG" uint32(1) string(public key) string(namespace) string("") string("sha512")
//   string(signature)
// where the signature is over
//   "SSHSIG" string(namespace) string("") string("sha512") string(SHA-512(message))
// (strings are uint32 big-endian length + bytes; keys and signatures in SSH wire format).
//
// Keys: Ed25519 only (OpenSSH's default), from an unencrypted OpenSSH private key file
// ("-----BEGIN OPENSSH PRIVATE KEY-----", as `ssh-keygen -t ed25519 -N ''` writes) or a PKCS#8
// PEM. Thread-safe: a signer is immutable.

#include <string>
#include <string_view>

#include "base/status.h"
#include "sign/sign.h"

namespace gantry::sign {

class SshSigner {
 public:
  // Parses a private key file's text; `where` (its name) prefixes errors. InvalidArgument for an
  // encrypted OpenSSH key (ssh-keygen -p -N '' decrypts it), a key of another type ("ssh-rsa
  // key: only Ed25519 keys sign commits"), or text that is no key.
  static Result<SshSigner> Parse(std::string_view text, std::string_view where);

  // The public key as an authorized_keys / allowed_signers line: "ssh-ed25519 AAAA… comment".
  std::string PublicKeyLine(std::string_view comment = {}) const;
  // The armored SSH signature of `message` in `ns` ("git" for commits), without a final newline.
  // Internal on an OpenSSL failure.
  Result<std::string> Sign(std::string_view message, std::string_view ns = "git") const;

 private:
  SshSigner(PrivateKey key, std::string public_raw) : key_(std::move(key)), public_raw_(std::move(public_raw)) {}
  PrivateKey key_;
  std::string public_raw_;  // the 32 bytes of the Ed25519 public key
};

// Checks an armored SSH signature of `message` in namespace `ns` made by the key of `public_line`
// ("ssh-ed25519 AAAA…"): OK, or PermissionDenied saying which check failed (another key, another
// namespace, a signature that does not verify); InvalidArgument for a malformed signature.
Status VerifySshSignature(std::string_view armored, std::string_view message, std::string_view ns,
                          std::string_view public_line);

}  // namespace gantry::sign

#!/bin/sh
# An exec credential plugin for kube_exec_test: obtains a real ServiceAccount token from the test
# apiserver (TokenRequest, with the admin token) and prints it as a client.authentication.k8s.io/v1
# ExecCredential, as aws eks get-token or gke-gcloud-auth-plugin print theirs.
#
# Environment (the kubeconfig's exec env): SERVER, CA_FILE, ADMIN_TOKEN, NAMESPACE, ACCOUNT,
# RUNS_FILE (a line is appended per run), EXPIRES_IN (seconds to the expirationTimestamp printed,
# default 600), FIRST_BAD=1 (the first run prints a token the server refuses), HANG=1 (never answers),
# CERT_FILE and KEY_FILE (prints that client certificate and key instead of a token).
set -eu
echo run >> "$RUNS_FILE"
echo "sa-token-plugin: run $(wc -l < "$RUNS_FILE") for $NAMESPACE/$ACCOUNT" >&2
if [ "${HANG:-}" = 1 ]; then
  sleep 600
fi
if [ -n "${CERT_FILE:-}" ]; then
  pem() { awk '{printf "%s\\n", $0}' "$1"; }
  printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"%s","clientKeyData":"%s"}}\n' \
    "$(pem "$CERT_FILE")" "$(pem "$KEY_FILE")"
  exit 0
fi
expires_in=${EXPIRES_IN:-600}
expiry=$(date -u -d "@$(( $(date +%s) + expires_in ))" +%Y-%m-%dT%H:%M:%SZ)
if [ "${FIRST_BAD:-}" = 1 ] && [ "$(wc -l < "$RUNS_FILE")" -eq 1 ]; then
  token=not-a-token-the-server-knows
else
  response=$(curl -sS --fail --cacert "$CA_FILE" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -X POST \
    -d '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":600}}' \
    "$SERVER/api/v1/namespaces/$NAMESPACE/serviceaccounts/$ACCOUNT/token")
  token=$(printf '%s' "$response" | tr -d ' \n' | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  [ -n "$token" ] || { echo "sa-token-plugin: the TokenRequest answer has no token" >&2; exit 1; }
fi
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' \
  "$token" "$expiry"

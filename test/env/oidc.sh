#!/usr/bin/env bash
# A throwaway OpenID Provider: the example OP of github.com/zitadel/oidc/v3 (a certified library),
# built from Go modules by build-tools.sh with our small main (oidc-op/main.go), on 127.0.0.1.
#
#   oidc.sh start RUN_DIR [--client-id ID] [--groups-claim NAME]   (protocol of lib.sh)
#   oidc.sh stop RUN_DIR
#
# start prints:
#   OIDC_ISSUER=http://127.0.0.1:PORT    discovery at $OIDC_ISSUER/.well-known/openid-configuration
#   OIDC_CLIENT_ID=gantry                a public client: device grant, code grant with PKCE S256
#                                        (redirect http://127.0.0.1:<any port>/callback, and
#                                        /auth/callback, gantry server's console sign-in); its ID
#                                        tokens carry aud=OIDC_CLIENT_ID and the groups claim
#   OIDC_GROUPS_CLAIM=groups
#   OIDC_ADMIN_USER=test-user@localhost  OIDC_ADMIN_PASSWORD=verysecure  OIDC_ADMIN_GROUPS=gantry-admins,team-a
#   OIDC_DEV_USER=test-user2             OIDC_DEV_PASSWORD=verysecure    OIDC_DEV_GROUPS=team-a
#   OIDC_PLAIN_USER=test-user3           OIDC_PLAIN_PASSWORD=verysecure  (no groups)
#   READY=1
# The device flow's user pages are the example's: GET $OIDC_ISSUER/device?user_code=CODE shows a
# form that POSTs user_code, username, password to /device/login, which sets a cookie and shows a
# confirmation; GET /device/confirm?action=allowed (or denied) with that cookie completes it.
# A browser login (code flow) is GET /login/username?authRequestID=ID, POST username, password, id.
# Every start makes a new RSA signing key (RS256), so tokens of one instance fail on another.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 start RUN_DIR [--client-id ID] [--groups-claim NAME] | stop RUN_DIR" >&2; exit 2; }

start() {
  local run=$1; shift
  local client_id=gantry groups_claim=groups
  while (($#)); do
    case $1 in
      --client-id) (($# >= 2)) || usage; client_id=$2; shift ;;
      --groups-claim) (($# >= 2)) || usage; groups_claim=$2; shift ;;
      *) usage ;;
    esac
    shift
  done
  mkdir -p "$run/logs" "$run/pids"
  run=$(cd "$run" && pwd)
  local bin=${GANTRY_TOOLS_BIN:-}
  [[ -n $bin && -x $bin/oidc-op ]] || bin=$("$TESTENV_DIR/build-tools.sh" oidc-op)

  # The example's user format (storage.StoreFromFile), keyed by user ID, plus Groups. Each ID is
  # the username: the example's device pages complete the grant with the username as the subject
  # and then look the subject up as a user ID ("user not found" otherwise).
  cat >"$run/users.json" <<'JSON'
{
  "test-user@localhost": {"ID": "test-user@localhost", "Username": "test-user@localhost", "Password": "verysecure",
          "FirstName": "Test", "LastName": "User", "Email": "test-user@example.com",
          "EmailVerified": true, "PreferredLanguage": "en", "IsAdmin": true,
          "Groups": ["gantry-admins", "team-a"]},
  "test-user2": {"ID": "test-user2", "Username": "test-user2", "Password": "verysecure",
          "FirstName": "Test", "LastName": "User2", "Email": "test-user2@example.com",
          "EmailVerified": true, "PreferredLanguage": "en", "Groups": ["team-a"]},
  "test-user3": {"ID": "test-user3", "Username": "test-user3", "Password": "verysecure",
          "FirstName": "Test", "LastName": "User3", "Email": "test-user3@example.com",
          "EmailVerified": false, "PreferredLanguage": "en"}
}
JSON

  local issuer
  launch_op() {
    start_bg "$run" oidc-op "$bin/oidc-op" -addr "127.0.0.1:$PORT" -issuer "http://127.0.0.1:$PORT" \
      -client-id "$client_id" -groups-claim "$groups_claim" -users "$run/users.json"
  }
  op_up() {
    curl -sf --noproxy '*' --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/.well-known/openid-configuration"
  }
  start_retrying "$run" oidc-op 30 op_up launch_op
  issuer=http://127.0.0.1:$PORT

  echo "OIDC_ISSUER=$issuer"
  echo "OIDC_CLIENT_ID=$client_id"
  echo "OIDC_GROUPS_CLAIM=$groups_claim"
  echo "OIDC_ADMIN_USER=test-user@localhost"
  echo "OIDC_ADMIN_PASSWORD=verysecure"
  echo "OIDC_ADMIN_GROUPS=gantry-admins,team-a"
  echo "OIDC_DEV_USER=test-user2"
  echo "OIDC_DEV_PASSWORD=verysecure"
  echo "OIDC_DEV_GROUPS=team-a"
  echo "OIDC_PLAIN_USER=test-user3"
  echo "OIDC_PLAIN_PASSWORD=verysecure"
  echo "READY=1"
}

(($# >= 2)) || usage
verb=$1 run=$2; shift 2
case $verb in
  start) start "$run" "$@" ;;
  stop) stop_all "$run" ;;
  *) usage ;;
esac

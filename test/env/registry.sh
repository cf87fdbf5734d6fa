#!/usr/bin/env bash
# A throwaway OCI registry: Debian's docker-registry (CNCF Distribution 2.8) on 127.0.0.1.
#
#   registry.sh start RUN_DIR [--auth | --token [--token-realm URL]]
#                                        anonymous HTTP; with --auth: htpasswd (bcrypt) basic auth
#                                        behind TLS with a self-signed CA made in RUN_DIR; with
#                                        --token: plain HTTP with the bearer-token flow, whose token
#                                        service the test serves itself (see below) at URL: bind
#                                        it first (port 0), then pass its URL, so no port races
#   registry.sh stop RUN_DIR
#
# start prints:
#   REGISTRY_URL=http://127.0.0.1:PORT   (https://... with --auth)
#   REGISTRY_HOST=127.0.0.1:PORT
#   REGISTRY_USER=... REGISTRY_PASSWORD=... REGISTRY_CA=RUN_DIR/tls/ca.crt   (only with --auth)
#   TOKEN_REALM=http://127.0.0.1:PORT/token   (only with --token; nothing listens there: the test
#                                              binds PORT and issues the tokens)
#   TOKEN_SERVICE=... TOKEN_ISSUER=...        the JWT's aud and iss the registry accepts
#   TOKEN_KEY=RUN_DIR/token/token.key         RSA key (PEM) to sign the JWTs with (RS256)
#   TOKEN_CERT=RUN_DIR/token/token.crt        its self-signed certificate, the registry's
#                                             rootcertbundle: put it (base64 DER) in the JWT
#                                             header's x5c
#   READY=1
# Blobs are stored in RUN_DIR/data; deletes are enabled. The protocol is described in lib.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 start RUN_DIR [--auth | --token [--token-realm URL]] | stop RUN_DIR" >&2; exit 2; }

# make_token_key DIR: an RSA key and a self-signed certificate for it, to sign and verify JWTs.
make_token_key() {
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=gantry test token issuer" \
    -keyout "$dir/token.key" -out "$dir/token.crt" 2>"$dir/openssl.log"
}

start() {
  local run=$1; shift
  local auth=0 token=0 realm=""
  while (($#)); do
    case $1 in
      --auth) auth=1 ;;
      --token) token=1 ;;
      --token-realm) (($# >= 2)) || usage; realm=$2; shift ;;
      *) usage ;;
    esac
    shift
  done
  ((auth && token)) && usage
  mkdir -p "$run/data" "$run/logs" "$run/pids"
  run=$(cd "$run" && pwd)  # the config needs absolute paths
  local scheme=http user="" password=""

  # The configuration, with the port filled in by each start attempt (start_retrying).
  local config=$run/config.yml.in
  cat >"$config" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $run/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:@PORT@
  secret: $(openssl rand -hex 16)
  headers:
    X-Content-Type-Options: [nosniff]
YAML
  if ((auth)); then
    scheme=https
    make_tls "$run/tls"
    cat >>"$config" <<YAML
  tls:
    certificate: $run/tls/server.crt
    key: $run/tls/server.key
YAML
    user=gantry-$(openssl rand -hex 3)
    password=$(openssl rand -hex 16)
    htpasswd -Bbn "$user" "$password" >"$run/htpasswd"
    cat >>"$config" <<YAML
auth:
  htpasswd:
    realm: gantry-test
    path: $run/htpasswd
YAML
  fi
  local service=gantry-test-registry issuer=gantry-test-issuer
  [[ -z $realm ]] || ((token)) || usage
  if ((token)); then
    make_token_key "$run/token"
    # Without --token-realm a free port the test must bind later (it may race with other binders).
    realm=${realm:-http://127.0.0.1:$(free_port)/token}
    cat >>"$config" <<YAML
auth:
  token:
    realm: $realm
    service: $service
    issuer: $issuer
    rootcertbundle: $run/token/token.crt
YAML
  fi

  local curl_args=(-s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 2)
  ((auth)) && curl_args+=(--cacert "$run/tls/ca.crt")
  launch_registry() {
    sed "s/@PORT@/$PORT/" "$config" >"$run/config.yml"
    # A clean environment: Distribution reads REGISTRY_* variables as configuration overrides.
    start_bg "$run" registry env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
      docker-registry serve "$run/config.yml"
  }
  # Ready when /v2/ answers (401 when auth is on).
  registry_up() {
    [[ $(curl "${curl_args[@]}" "$scheme://127.0.0.1:$PORT/v2/") =~ ^(200|401)$ ]]
  }
  start_retrying "$run" registry 30 registry_up launch_registry
  local port=$PORT url=$scheme://127.0.0.1:$PORT

  echo "REGISTRY_URL=$url"
  echo "REGISTRY_HOST=127.0.0.1:$port"
  if ((auth)); then
    echo "REGISTRY_USER=$user"
    echo "REGISTRY_PASSWORD=$password"
    echo "REGISTRY_CA=$run/tls/ca.crt"
  fi
  if ((token)); then
    echo "TOKEN_REALM=$realm"
    echo "TOKEN_SERVICE=$service"
    echo "TOKEN_ISSUER=$issuer"
    echo "TOKEN_KEY=$run/token/token.key"
    echo "TOKEN_CERT=$run/token/token.crt"
  fi
  echo "READY=1"
}

(($# >= 2)) || usage
verb=$1 run=$2; shift 2
case $verb in
  start) start "$run" "$@" ;;
  stop) stop_all "$run" ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# A throwaway SMTP server (aiosmtpd, Debian's python3-aiosmtpd) that keeps every message it gets.
#
#   smtp-sink.sh start RUN_DIR [--tls] [--auth USER:PASSWORD]
#       prints SMTP_URL=smtp://127.0.0.1:PORT, MAIL_DIR=RUN_DIR/mail (one NNNN.eml per message,
#       envelope in X-Envelope-From/-To), READY=1; --tls: STARTTLS offered and required, with a
#       certificate for 127.0.0.1 signed by CA_FILE (printed); --auth: AUTH PLAIN/LOGIN required
#   smtp-sink.sh stop RUN_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start() {
  local run=$1; shift
  mkdir -p "$run/mail" "$run/logs" "$run/pids"
  run=$(cd "$run" && pwd)
  rm -f "$run/port"
  local extra=()
  while (($#)); do
    case $1 in
      --tls) make_tls "$run/tls"; extra+=(--cert "$run/tls/server.crt" --key "$run/tls/server.key") ;;
      --auth) (($# >= 2)) || { echo "smtp-sink.sh: --auth needs USER:PASSWORD" >&2; exit 2; }; extra+=(--auth "$2"); shift ;;
      *) echo "smtp-sink.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
  done
  # Debian's python3, which has the package (not a python3 earlier on PATH).
  start_bg "$run" smtp /usr/bin/python3 "$TESTENV_DIR/smtp_sink.py" --mail-dir "$run/mail" --port-file "$run/port" \
    "${extra[@]}"
  local pid
  pid=$(cat "$run/pids/smtp.pid")
  smtp_up() {
    alive "$pid" || return 0
    [[ -s $run/port ]]
  }
  wait_for 30 "SMTP server" smtp_up || die_with_log "$run" smtp "SMTP server did not come up"
  alive "$pid" || die_with_log "$run" smtp "SMTP server exited during startup (is python3-aiosmtpd installed?)"
  echo "SMTP_URL=smtp://127.0.0.1:$(<"$run/port")"
  echo "MAIL_DIR=$run/mail"
  [[ -f $run/tls/ca.crt ]] && echo "CA_FILE=$run/tls/ca.crt"
  echo "READY=1"
}

(($# >= 2)) || { echo "usage: $0 start|stop RUN_DIR" >&2; exit 2; }
case $1 in
  start) verb=$1 run=$2; shift 2; start "$run" "$@" ;;
  stop) stop_all "$2" ;;
  *) echo "usage: $0 start|stop RUN_DIR" >&2; exit 2 ;;
esac

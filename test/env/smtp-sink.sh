#!/usr/bin/env bash
# A throwaway SMTP server (aiosmtpd, Debian's python3-aiosmtpd) that keeps every message it gets.
#
#   smtp-sink.sh start RUN_DIR   prints SMTP_URL=smtp://127.0.0.1:PORT, MAIL_DIR=RUN_DIR/mail
#                                (one NNNN.eml per message, envelope in X-Envelope-From/-To), READY=1
#   smtp-sink.sh stop RUN_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start() {
  local run=$1
  mkdir -p "$run/mail" "$run/logs" "$run/pids"
  run=$(cd "$run" && pwd)
  rm -f "$run/port"
  # Debian's python3, which has the package (not a python3 earlier on PATH).
  start_bg "$run" smtp /usr/bin/python3 "$TESTENV_DIR/smtp_sink.py" --mail-dir "$run/mail" --port-file "$run/port"
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
  echo "READY=1"
}

(($# >= 2)) || { echo "usage: $0 start|stop RUN_DIR" >&2; exit 2; }
case $1 in
  start) start "$2" ;;
  stop) stop_all "$2" ;;
  *) echo "usage: $0 start|stop RUN_DIR" >&2; exit 2 ;;
esac

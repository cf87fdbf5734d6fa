#!/usr/bin/env bash
# A throwaway Git server over SSH: Debian's sshd (openssh-server) on 127.0.0.1, key auth only,
# every login forced into git-shell, serving the bare repositories of RUN_DIR/repos.
#
#   ssh-git-server.sh start RUN_DIR     generates a host key and a client key, starts sshd
#   ssh-git-server.sh create RUN_DIR NAME
#                                       makes the bare repository RUN_DIR/repos/NAME.git (default
#                                       branch main); prints REPO_URL (ssh://), REPO_PATH
#   ssh-git-server.sh stop RUN_DIR
#
# start prints:
#   SSH_PORT=PORT  SSH_USER=USER  SSH_HOST=127.0.0.1
#   SSH_KEY=RUN_DIR/client/id_ed25519            the private key authorized_keys accepts
#   SSH_OTHER_KEY=RUN_DIR/client/other_ed25519   a key the server does not know
#   SSH_KNOWN_HOSTS=RUN_DIR/client/known_hosts   [127.0.0.1]:PORT (and SSH_SCP_HOST) with the host key
#   SSH_OTHER_KNOWN_HOSTS=RUN_DIR/client/other_known_hosts   the same host with another key
#   SSH_URL=ssh://USER@127.0.0.1:PORT            repositories at $SSH_URL/$GIT_ROOT/NAME.git
#   SSH_SCP_HOST=127.X.Y.Z                       the same server on port 22, for scp-like
#                                                USER@127.X.Y.Z:$GIT_ROOT/NAME.git; empty when
#                                                port 22 cannot be bound (not root)
#   GIT_ROOT=RUN_DIR/repos
#   READY=1
#
# sshd runs as the user who starts it, which is then the only user that can log in (SSH_USER).
# As root, sshd insists on its privilege separation directory /run/sshd: it is given a private
# mount namespace with a tmpfs /run of its own, so nothing of the host is written (this needs
# unshare(1) and CAP_SYS_ADMIN; without them an existing /run/sshd is used). Repository paths in URLs are absolute (git-shell
# runs in the user's home directory).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SSHD=${GANTRY_SSHD:-/usr/sbin/sshd}

usage() {
  echo "usage: $0 start RUN_DIR | create RUN_DIR NAME | stop RUN_DIR" >&2
  exit 2
}

start() {
  local run=$1
  [[ -x $SSHD ]] || {
    echo "ssh-git-server.sh: $SSHD not found; install Debian's openssh-server (apt-get install openssh-server) or set GANTRY_SSHD" >&2
    exit 1
  }
  command -v git-shell >/dev/null || { echo "ssh-git-server.sh: git-shell not found (Debian package git)" >&2; exit 1; }
  mkdir -p "$run/repos" "$run/logs" "$run/pids" "$run/server" "$run/client"
  run=$(cd "$run" && pwd)
  chmod 700 "$run/server" "$run/client"
  ssh-keygen -q -t ed25519 -N '' -C gantry-test-host -f "$run/server/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C gantry-test-host-other -f "$run/server/other_host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C gantry-test-client -f "$run/client/id_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C gantry-test-unknown -f "$run/client/other_ed25519"
  local git_shell
  git_shell=$(command -v git-shell)
  # restrict: no forwarding, no pty; the command is always git-shell with what the client asked.
  echo "restrict,command=\"$git_shell -c \\\"\$SSH_ORIGINAL_COMMAND\\\"\" $(<"$run/client/id_ed25519.pub")" \
    >"$run/server/authorized_keys"

  local port user scp_host=""
  user=$(id -un)
  # scp-like URLs (user@host:path) have no port: they reach port 22. A random loopback address
  # (all of 127/8 is loopback) gives this server port 22 of its own when the user may bind it
  # (root, or a lowered net.ipv4.ip_unprivileged_port_start); otherwise SSH_SCP_HOST is empty.
  local candidate=127.$((RANDOM % 250 + 2)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))
  if python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], 22))' "$candidate" 2>/dev/null; then
    scp_host=$candidate
  fi
  launch_sshd() {
    cat >"$run/server/sshd_config" <<EOF
ListenAddress 127.0.0.1:$PORT
${scp_host:+ListenAddress $scp_host:22}
HostKey $run/server/host_ed25519
PidFile $run/server/sshd.pid
AuthorizedKeysFile $run/server/authorized_keys
AllowUsers $user
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitUserEnvironment no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
EOF
    # -D: stay in the foreground (start_bg tracks it); -e: log to stderr (the log file).
    if (($(id -u) == 0)) && ! unshare -m true 2>/dev/null; then
      # No mount namespace (a container without CAP_SYS_ADMIN): the host's /run/sshd it must be.
      [[ -d /run/sshd ]] || {
        echo "ssh-git-server.sh: sshd as root needs /run/sshd, and unshare -m (to give it a private one) failed; run as a non-root user or create /run/sshd (mode 755)" >&2
        exit 1
      }
      start_bg "$run" sshd "$SSHD" -D -e -f "$run/server/sshd_config"
    elif (($(id -u) == 0)); then
      start_bg "$run" sshd unshare -m sh -c \
        'mount -t tmpfs -o mode=755 gantry-sshd /run && mkdir -m 755 /run/sshd && exec "$0" -D -e -f "$1"' \
        "$SSHD" "$run/server/sshd_config"
    else
      start_bg "$run" sshd "$SSHD" -D -e -f "$run/server/sshd_config"
    fi
  }
  # Ready when sshd answers with its banner.
  ssh_up() {
    python3 - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
sys.exit(0 if s.recv(64).startswith(b"SSH-2.0-") else 1)
PY
  }
  start_retrying "$run" sshd 30 ssh_up launch_sshd
  port=$PORT

  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$run/server/host_ed25519.pub")" >"$run/client/known_hosts"
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$run/server/other_host_ed25519.pub")" >"$run/client/other_known_hosts"
  [[ -z $scp_host ]] || echo "$scp_host $(cut -d' ' -f1,2 "$run/server/host_ed25519.pub")" >>"$run/client/known_hosts"
  echo "SSH_URL=ssh://$user@127.0.0.1:$port" >"$run/ssh-url"
  echo "SSH_PORT=$port"
  echo "SSH_USER=$user"
  echo "SSH_HOST=127.0.0.1"
  echo "SSH_KEY=$run/client/id_ed25519"
  echo "SSH_OTHER_KEY=$run/client/other_ed25519"
  echo "SSH_KNOWN_HOSTS=$run/client/known_hosts"
  echo "SSH_OTHER_KNOWN_HOSTS=$run/client/other_known_hosts"
  echo "SSH_URL=ssh://$user@127.0.0.1:$port"
  echo "SSH_SCP_HOST=$scp_host"
  echo "GIT_ROOT=$run/repos"
  echo "READY=1"
}

create() {
  local run=$1 name=${2:-}
  [[ $name =~ ^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$ ]] ||
    { echo "ssh-git-server.sh: bad repository name '$name' (letters, digits, . _ - /)" >&2; exit 2; }
  run=$(cd "$run" && pwd)
  [[ -f $run/ssh-url ]] || { echo "ssh-git-server.sh: no server started in $run" >&2; exit 1; }
  local path=$run/repos/$name.git
  if [[ -e $path ]]; then
    echo "ssh-git-server.sh: repository $name already exists at $path" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$path")"
  GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null git init -q --bare -b main "$path"
  local url
  url=$(sed -n 's/^SSH_URL=//p' "$run/ssh-url")
  echo "REPO_URL=$url$path"
  echo "REPO_PATH=$path"
}

(($# >= 2)) || usage
verb=$1 run=$2; shift 2
case $verb in
  start) (($# == 0)) || usage; start "$run" ;;
  create) (($# == 1)) || usage; create "$run" "$1" ;;
  stop) stop_all "$run" ;;
  *) usage ;;
esac

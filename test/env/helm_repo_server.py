#!/usr/bin/env python3
"""A static Helm chart repository for tests: index.yaml and chart archives served from a directory.

    helm_repo_server.py --root DIR --port-file FILE [--tls-cert CRT --tls-key KEY]

Binds 127.0.0.1 on a port the kernel picks and writes it to FILE once it listens. Serves the files
under DIR (GET and HEAD; nothing outside DIR, no directory listings). When the environment variables
HELM_REPO_USER and HELM_REPO_PASSWORD are set, every request needs HTTP basic auth with them (401
with WWW-Authenticate otherwise). With --tls-cert/--tls-key it speaks HTTPS only. Every request is
logged, with its Authorization scheme, so tests can see where credentials went. Standard library only.
"""

import argparse
import base64
import hmac
import http.server
import os
import ssl
import sys


class RepoHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gantry-test-helm-repo/1"

    def log_message(self, format, *args):  # noqa: A002
        auth = self.headers.get("Authorization", "").partition(" ")[0] or "-"
        sys.stderr.write("%s auth=%s %s\n" % (self.log_date_time_string(), auth, format % args))

    def authorized(self):
        user, password = os.environ.get("HELM_REPO_USER"), os.environ.get("HELM_REPO_PASSWORD")
        if not user:
            return True
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            got_user, sep, got_password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return bool(sep) and hmac.compare_digest(got_user.encode(), user.encode()) and hmac.compare_digest(
            got_password.encode(), password.encode())

    def guarded(self, serve):
        if not self.authorized():
            body = b"unauthorized\n"
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="charts"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.endswith("/") or os.path.isdir(self.translate_path(self.path)):
            self.send_error(404)
            return
        serve()

    def do_GET(self):
        self.guarded(super().do_GET)

    def do_HEAD(self):
        self.guarded(super().do_HEAD)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    root = os.path.abspath(args.root)

    def handler(*a, **kw):
        return RepoHandler(*a, directory=root, **kw)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()

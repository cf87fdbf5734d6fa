#!/usr/bin/env python3
"""A smart HTTP Git server for tests: `git http-backend` run as a CGI per request.

    git_http_server.py --root DIR --port-file FILE [--anonymous-read]

Binds 127.0.0.1 on a port the kernel picks and writes it to FILE once it listens. Serves the bare
repositories under DIR (GIT_PROJECT_ROOT) at /NAME.git; never creates repositories. Every request
needs HTTP basic auth with the credentials in the environment variables GIT_SERVER_USER and
GIT_SERVER_PASSWORD (401 with WWW-Authenticate otherwise), except that --anonymous-read lets
clone and fetch through without them. Push (receive-pack) is enabled for authenticated users.

Request bodies are streamed into the CGI as they arrive: fixed-length ones with CONTENT_LENGTH,
chunked ones (git for large pushes, libgit2 for every push) decoded and ended with EOF. Responses
are streamed back chunked, so HTTP/1.1 keep-alive works. Standard library only.
"""

import argparse
import base64
import hmac
import http.server
import os
import subprocess
import sys
import threading
import urllib.parse

BUFFER = 64 * 1024


class GitHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gantry-test-git/1"
    timeout = 300  # idle keep-alive connections

    def do_GET(self):
        self.serve_git()

    def do_POST(self):
        self.serve_git()

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's signature)
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), format % args))

    # The user named by a valid Authorization header, or None.
    def authenticated_user(self):
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        ok_user = hmac.compare_digest(user.encode(), self.server.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.server.password.encode())
        return user if sep and ok_user and ok_password else None

    def reply(self, code, text, headers=()):
        body = text.encode()
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        # The request body (if any) is not read: the connection cannot be reused.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def serve_git(self):
        path, _, query = self.path.partition("?")
        path = urllib.parse.unquote(path)
        if not path.startswith("/") or ".." in path.split("/"):
            return self.reply(400, "bad path\n")
        push = path.endswith("/git-receive-pack") or "service=git-receive-pack" in query
        user = self.authenticated_user()
        if user is None and (push or not self.server.anonymous_read):
            return self.reply(401, "authentication required\n",
                              [("WWW-Authenticate", 'Basic realm="gantry-test-git"')])

        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.server.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
            "GIT_CONFIG_KEY_1": "safe.directory",
            "GIT_CONFIG_VALUE_1": "*",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "REMOTE_ADDR": self.client_address[0],
        }
        if user is not None:
            env["REMOTE_USER"] = user
        for name, value in self.headers.items():
            if name.lower() not in ("authorization", "content-type", "content-length"):
                env["HTTP_" + name.upper().replace("-", "_")] = value
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked:
            self.log_message("%s %s: chunked request body", self.command, path)
        length = 0
        if not chunked and self.headers.get("Content-Length"):
            length = int(self.headers["Content-Length"])
            env["CONTENT_LENGTH"] = str(length)

        proc = subprocess.Popen(["git", "http-backend"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env, cwd=self.server.root)
        # Feeds the body in a thread: the backend may write before it has read everything.
        pump = threading.Thread(target=self.pump_body, args=(proc.stdin, chunked, length))
        pump.start()
        try:
            self.relay_response(proc.stdout)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            proc.kill()
        finally:
            pump.join()
            proc.stdout.close()
            code = proc.wait()
            if code != 0:
                self.log_message("git http-backend exited with %d for %s %s", code,
                                 self.command, path)

    # Copies the request body to `sink` (then closes it). Keeps reading after the backend stops
    # reading, so the connection stays in sync for the next request.
    def pump_body(self, sink, chunked, length):
        def write(data):
            nonlocal sink
            if sink is None:
                return
            try:
                sink.write(data)
            except (BrokenPipeError, ValueError):
                sink = None

        try:
            if chunked:
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        break
                    while size > 0:
                        data = self.rfile.read(min(size, BUFFER))
                        if not data:
                            raise ConnectionResetError("request body ended early")
                        write(data)
                        size -= len(data)
                    self.rfile.readline()  # CRLF after the chunk
            else:
                while length > 0:
                    data = self.rfile.read(min(length, BUFFER))
                    if not data:
                        raise ConnectionResetError("request body ended early")
                    write(data)
                    length -= len(data)
        except (ValueError, OSError) as e:
            self.log_message("reading request body: %s", e)
            self.close_connection = True
        finally:
            if sink is not None:
                try:
                    sink.close()
                except BrokenPipeError:
                    pass

    # Parses the CGI header block from `source` and streams the rest back chunked.
    def relay_response(self, source):
        status, headers = 200, []
        while True:
            line = source.readline()
            if not line:
                return self.reply(502, "git http-backend produced no response\n")
            line = line.rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            value = value.strip()
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name.lower() != "content-length":
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while True:
            data = source.read1(BUFFER)
            if not data:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--anonymous-read", action="store_true")
    args = parser.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GitHandler)
    server.daemon_threads = True
    server.root = os.path.abspath(args.root)
    server.anonymous_read = args.anonymous_read
    server.user = os.environ["GIT_SERVER_USER"]
    server.password = os.environ["GIT_SERVER_PASSWORD"]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Stand-in upstreams for the gateway test: one HTTP server on 127.0.0.1 per name given, each
answering every request with JSON saying which upstream it is and what it received (method,
path with query, body, the headers the services rely on). Writes "name port" lines to the file
named by --ports once every server listens, and serves until it is terminated."""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def handler_for(name):
    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            payload = json.dumps({
                "upstream": name,
                "method": self.command,
                "path": self.path,
                "body": body,
                "authorization": self.headers.get("Authorization"),
                "idempotency_key": self.headers.get("Idempotency-Key"),
                "host": self.headers.get("Host"),
                "forwarded_for": self.headers.get("X-Forwarded-For"),
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = answer

        def log_message(self, *args):
            pass

    return Echo


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    servers = []
    for name in args.names:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(name))
        servers.append((name, server))
        threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(args.ports + ".part", "w") as out:
        for name, server in servers:
            out.write(f"{name} {server.server_address[1]}\n")
    import os
    os.rename(args.ports + ".part", args.ports)
    threading.Event().wait()


if __name__ == "__main__":
    main()

"""Real receivers for Alertmanager's notifications, for the lab: an SMTP server (aiosmtpd, Debian's
python3-aiosmtpd) and an HTTP server taking webhook POSTs (Slack-style and Alertmanager's own JSON).

It runs on a monitoring host, on loopback, as a service (molecule/app/prepare.yml; bench/alerts.py), and appends
every notification it receives as one JSON line to a file of its directory, so a test on the
controller reads what arrived and when:

    mail.jsonl      {"received": <unix time>, "from": ..., "to": [...], "subject": ..., "body": ...}
    webhook.jsonl   {"received": <unix time>, "path": "/slack", "body": <the JSON posted>}

    python3 alert_inbox.py --directory /var/lib/alert-inbox --smtp-port 2525 --http-port 9099

No pytest in here: it is deployed as a file and run with the host's own Python.
"""
from __future__ import annotations

import argparse
import email
import email.policy
import http.server
import json
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller

_lock = threading.Lock()


def _append(path: Path, record: dict) -> None:
    line = json.dumps(record, sort_keys=True) + "\n"
    with _lock, path.open("a", encoding="utf-8") as file:
        file.write(line)
        file.flush()


class _MailHandler:
    def __init__(self, inbox: Path) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server, session, envelope) -> str:  # pylint: disable=invalid-name,unused-argument  # aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = message.get_body(preferencelist=("plain", "html"))
        _append(self.inbox, {"received": time.time(), "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                             "subject": str(message["Subject"]), "body": part.get_content() if part else ""})
        return "250 Message accepted for delivery"


def _webhook_handler(inbox: Path) -> type[http.server.BaseHTTPRequestHandler]:
    class Webhook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # pylint: disable=invalid-name  # http.server's name for it
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            _append(inbox, {"received": time.time(), "path": self.path, "body": body})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass
    return Webhook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    smtp = Controller(_MailHandler(args.directory / "mail.jsonl"), hostname="127.0.0.1", port=args.smtp_port)
    smtp.start()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.http_port), _webhook_handler(args.directory / "webhook.jsonl"))
    try:
        server.serve_forever()
    finally:
        smtp.stop()


if __name__ == "__main__":
    main()

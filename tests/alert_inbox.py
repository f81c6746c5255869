"""What lab/alert_inbox.py recorded on a monitoring host, read from the controller: the one reader of
its files, shared by molecule/app's monitoring tests and bench/alerts.py.

Each caller reaches the host its own way (testinfra, `docker exec`), so it passes `run`: a function
that runs a shell command on the monitoring host and returns its standard output.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

INBOX = "/var/lib/alert-inbox"


class Notification(NamedTuple):
    receiver: str  # the webhook's path without its slash ("slack", "sms"), or "mail"
    alertname: str
    status: str  # "firing" or "resolved"
    received: float  # unix time, on the monitoring host's clock


def records(run: Callable[[str], str], name: str) -> list[dict]:
    """The records of `name`.jsonl ("mail", "webhook"); none before the first notification."""
    return [json.loads(line) for line in run(f"cat {INBOX}/{name}.jsonl 2>/dev/null || true").splitlines() if line.strip()]


def notifications(run: Callable[[str], str], alertname: str, since: float, status: str | None = None) -> list[Notification]:
    """The notifications of `alertname` received at `since` or later (of `status` only, when given),
    webhooks' first, each in the order they arrived.

    Alertmanager's webhook JSON (the SMS gateway's) lists its alerts with their status. A Slack
    message and a mail only name the alert in their text, and Alertmanager's default title and
    subject say RESOLVED for a resolution.
    """
    found = []
    for post in records(run, "webhook"):
        receiver, body = post["path"].lstrip("/"), post["body"]
        if isinstance(body, dict) and "alerts" in body:
            found += [Notification(receiver, alert["labels"]["alertname"], alert["status"], post["received"])
                      for alert in body["alerts"]]
        else:
            found += _by_text(receiver, json.dumps(body), alertname, post["received"])
    for mail in records(run, "mail"):
        found += _by_text("mail", mail["subject"], alertname, mail["received"])
    return [note for note in found if note.alertname == alertname and note.received >= since and status in (None, note.status)]


def _by_text(receiver: str, text: str, alertname: str, received: float) -> list[Notification]:
    if alertname not in text:
        return []
    return [Notification(receiver, alertname, "resolved" if "RESOLVED" in text else "firing", received)]

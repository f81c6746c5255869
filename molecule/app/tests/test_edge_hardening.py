"""The edge's defences against spellings of a path, and the status socket's per-server live path,
with the real reference API (Express, which routes paths whatever their case) behind the edge on
both app hosts. tests/integration/test_edge_nginx.py covers each class of spelling on this machine;
here the role as it is installed, in front of the app."""
from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest

# test_edge's fixtures, imported to be this module's too.
from test_edge import SOCKET, live_servers, rate, status
from test_edge import burst, client, edge, edge_address, get, maintenance, settings  # noqa: F401 pylint: disable=unused-import

pytestmark = pytest.mark.journal("nginx.service")


def test_the_status_socket_asks_each_live_server_alone(edge, lab_host, lab_address):  # pylint: disable=redefined-outer-name
    for server in live_servers(lab_host, lab_address):
        for spelling in (server, quote(server, safe="")):
            assert json.loads(status(edge, f"/servers/{spelling}/api/health"))["status"] == "healthy", spelling
    unknown = edge.run(f"curl -sS -o /dev/null -w '%{{http_code}}' --unix-socket {SOCKET} http://localhost/servers/127.0.0.1:9/api/health")
    assert unknown.stdout == "404"


@pytest.mark.parametrize("path", ["/api/AUTH/register", "/API/Payments/initiate"])
def test_a_limited_route_in_another_case_is_limited(burst, settings, path):  # pylint: disable=redefined-outer-name
    # The edge's rate-limit test may have spent this client's allowance on another route, not these.
    statuses = [answer.status for answer in burst(path, settings["burst"] + 2, method="POST", body="{}")]
    assert 429 not in statuses[:settings["burst"] + 1] and statuses[-1] == 429, statuses
    # Drained again for the next spelling.
    time.sleep((settings["burst"] + 2) * rate(settings))


def test_maintenance_is_not_bypassed_by_an_encoded_path(get, maintenance):  # pylint: disable=redefined-outer-name
    maintenance("on")
    for path in ("/api/rentals/x%2F..%2F..%2Fhealth", "//api/health", "/API/health"):
        answer = get(path)
        assert answer.status == 503, (path, answer)
    assert get("/api/health").status == 200

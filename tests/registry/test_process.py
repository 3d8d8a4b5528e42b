"""`forecourt registry` as a real process: restarts keep every registration; bad starts exit clearly."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import httpx

from tests.registry.support import RegistryProcess, instance_json
from tests.registry.test_api import XML_REGISTRATION

JSON = {"Accept": "application/json"}


def snapshot(url: str) -> dict[str, Any]:
    """Every instance: (status, overridden status, port, metadata), by app/id."""
    apps = httpx.get(f"{url}apps", headers=JSON).json()["applications"]["application"]
    return {
        f"{app['name']}/{i['instanceId']}": (
            i["status"],
            i["overriddenstatus"],
            i["port"]["$"],
            i["metadata"],
        )
        for app in apps
        for i in app["instance"]
    }


def test_restart_keeps_every_registration(tmp_path: Path) -> None:
    data = tmp_path / "registry.json"
    first = RegistryProcess("--data", str(data)).start()
    try:
        with httpx.Client(base_url=first.url) as http:
            for n in range(1, 4):
                assert (
                    http.post(
                        "apps/ORDERS", json=instance_json(instance_id=f"o-{n}", port=8000 + n)
                    ).status_code
                    == 204
                )
            assert (
                http.post(
                    "apps/BILLING", content=XML_REGISTRATION, headers={"Content-Type": "application/xml"}
                ).status_code
                == 204
            )
            assert http.put("apps/ORDERS/o-2/status?value=OUT_OF_SERVICE").status_code == 200
            assert http.put("apps/ORDERS/o-3/metadata?version=3").status_code == 200
            assert http.delete("apps/ORDERS/o-1").status_code == 200
        before = snapshot(first.url)
    finally:
        code = first.stop(signal.SIGTERM)
    assert code == 0, first.output.decode()
    assert len(before) == 3

    second = RegistryProcess("--data", str(data), port=first.port).start()
    try:
        assert snapshot(second.url) == before
        assert snapshot(second.url)["ORDERS/o-2"][:2] == ("OUT_OF_SERVICE", "OUT_OF_SERVICE")
        # Every acknowledged change is already on disk: even SIGKILL loses nothing.
        with httpx.Client(base_url=second.url) as http:
            assert (
                http.post("apps/ORDERS", json=instance_json(instance_id="o-9", port=8009)).status_code == 204
            )
        after = snapshot(second.url)
    finally:
        second.stop(signal.SIGKILL)

    third = RegistryProcess("--data", str(data), port=first.port).start()
    try:
        assert snapshot(third.url) == after
        assert "ORDERS/o-9" in after
    finally:
        assert third.stop() == 0


def test_a_corrupt_data_file_is_a_clear_error_not_an_empty_registry(tmp_path: Path) -> None:
    data = tmp_path / "registry.json"
    data.write_text('{"format": "forecourt-registry/1", "instances": [{"instance": ')
    result = RegistryProcess("--data", str(data)).run_to_exit()
    assert result.returncode == 1
    message = result.stderr.decode()
    assert f"registry data file {data} is corrupt: not valid JSON" in message
    assert data.read_text().startswith('{"format"')  # left as it was, for the operator


def test_a_taken_address_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = RegistryProcess("--data", str(tmp_path / "r.json"), port=port).run_to_exit()
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr.decode()


def test_bad_options_are_refused() -> None:
    result = RegistryProcess("--eviction-interval", "0").run_to_exit()
    assert result.returncode == 2
    assert "--eviction-interval must be positive" in result.stderr.decode()

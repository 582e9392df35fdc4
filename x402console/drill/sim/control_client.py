"""SimControl: the synchronous client of a simulator's fault control API."""

from __future__ import annotations

from typing import Any

import httpx


class SimControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class SimControl:
    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout, trust_env=False
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SimControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._client.request(method, path, json=json)
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text}
        if response.status_code >= 400:
            raise SimControlError(response.status_code, str(data.get("error", data)))
        return data

    def faults(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "/faults")["faults"]

    def set_fault(self, name: str, **params: Any) -> dict[str, dict[str, Any]]:
        return self._call("PUT", f"/faults/{name}", json=params)["faults"]

    def clear_fault(self, name: str) -> dict[str, dict[str, Any]]:
        return self._call("DELETE", f"/faults/{name}")["faults"]

    def clear_all(self) -> dict[str, dict[str, Any]]:
        return self._call("DELETE", "/faults")["faults"]

    def backup(self) -> str:
        return self._call("POST", "/backup")["file"]

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

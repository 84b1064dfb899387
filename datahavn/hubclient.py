"""A small client for the JupyterHub REST API, as the ``datahavn`` commands use it.

Every failure becomes a :class:`HubError` with one line a person can act on:
the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import requests

PAGINATION = "application/jupyterhub-pagination+json"


class HubError(RuntimeError):
    """The hub could not be reached, refused the request, or answered an error."""


class HubClient:
    def __init__(self, url: str, token: str, timeout: float = 15.0):
        self.url = url.rstrip("/")
        self.api = f"{self.url}/hub/api"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def request(self, method: str, path: str, ok=(200, 201, 202, 204), base: str | None = None, **kwargs):
        url = f"{base or self.api}{path}"
        try:
            resp = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise HubError(f"cannot reach the hub at {self.url} ({type(e).__name__})") from None
        if resp.status_code in ok:
            return resp
        try:
            message = resp.json().get("message") or resp.reason
        except ValueError:
            message = resp.reason
            if "json" not in resp.headers.get("Content-Type", ""):
                message = f"{resp.reason}; is {self.url} a Datahavn hub?"
        if resp.status_code in (401, 403):
            # the token is unknown, or its owner may not do this: say which, with what the hub or service said
            raise HubError(f"the hub at {self.url} refused the token (HTTP {resp.status_code}): {message}; "
                           "check DATAHAVN_ADMIN_TOKEN")  # fmt: skip
        raise HubError(f"{method} {path}: HTTP {resp.status_code}: {message}")

    def get(self, path: str, missing_ok: bool = False):
        """GET a model; None for a 404 when ``missing_ok``."""
        ok = (200, 404) if missing_ok else (200,)
        resp = self.request("GET", path, ok=ok)
        return None if resp.status_code == 404 else resp.json()

    def get_all(self, path: str) -> list:
        """GET every page of a paginated list."""
        items, offset = [], 0
        while True:
            resp = self.request("GET", path, params={"offset": offset, "limit": 200}, headers={"Accept": PAGINATION})
            page = resp.json()
            items.extend(page["items"])
            nxt = page.get("_pagination", {}).get("next")
            if not nxt:
                return items
            offset = nxt["offset"]

    def audit(self, path: str, **params):
        """GET from the datahavn-audit service's API (through the hub's proxy)."""
        return self.request("GET", path, base=f"{self.url}/services/datahavn-audit/api", params=params)

    def airlock(self, method: str, path: str, **kwargs):
        """A request to the datahavn-airlock service's API (through the hub's proxy)."""
        return self.request(method, path, base=f"{self.url}/services/datahavn-airlock/api", **kwargs)

    def whoami(self) -> str:
        """The name of the user or service that owns the token."""
        return self.get("/user")["name"]

    def user(self, name: str) -> dict | None:
        return self.get(f"/users/{name}", missing_ok=True)

    def group(self, name: str) -> dict | None:
        return self.get(f"/groups/{name}", missing_ok=True)

    def groups(self) -> list[dict]:
        return self.get_all("/groups")

    def users(self) -> list[dict]:
        return self.get_all("/users")

    def add_user(self, name: str) -> dict:
        return self.request("POST", f"/users/{name}", json={}).json()

    def create_group(self, name: str, properties: dict) -> dict:
        self.request("POST", f"/groups/{name}", json={"users": []})
        try:
            return self.set_properties(name, properties)
        except HubError:
            # A group without its record is not a project: do not leave one behind.
            self.request("DELETE", f"/groups/{name}", ok=(204, 404))
            raise

    def set_properties(self, group: str, properties: dict) -> dict:
        return self.request("PUT", f"/groups/{group}/properties", json=properties).json()

    def add_member(self, group: str, user: str) -> None:
        self.request("POST", f"/groups/{group}/users", json={"users": [user]})

    def remove_member(self, group: str, user: str) -> None:
        self.request("DELETE", f"/groups/{group}/users", json={"users": [user]})

    def put_grant(self, project: str, user: str, until: str | None, reason: str) -> dict:
        """Grant in one step of the hub (membership and record together: no lost update)."""
        body = {"reason": reason, **({"until": until} if until else {})}
        return self.request("PUT", f"/datahavn/projects/{project}/grants/{user}", json=body).json()

    def delete_grant(self, project: str, user: str) -> dict:
        """Revoke in one step of the hub, and stop the user's workspace of that project."""
        return self.request("DELETE", f"/datahavn/projects/{project}/grants/{user}").json()

    def stop_server(self, user: str, server: str) -> None:
        self.request("DELETE", f"/users/{user}/servers/{server}", ok=(202, 204, 400, 404))

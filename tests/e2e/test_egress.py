"""Download paths out of a workspace, tried through the hub's proxy with a real user token: each refused and logged."""

import http.client
import json

import pytest
import requests

from ..hubs import wait_for

SERVER = "/user/alice/brca/"


@pytest.fixture
async def workspace(hub, kernel):
    """alice's brca workspace with the files the attacks aim at."""
    k = await kernel("alice", "brca")
    r = await k.execute(
        "import json, os\n"
        "open('genotypes.csv', 'w').write('sample,gt\\nA,0/1\\n')\n"
        "open('Genotypes.CSV', 'w').write('sample,gt\\n')\n"
        "open('renamed.ipynb', 'w').write('sample,gt\\nA,0/1\\n')\n"
        "open('.hidden.ipynb', 'w').write('{}')\n"
        "nb = {'cells': [], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}\n"
        "json.dump(nb, open('ok.ipynb', 'w'))\n"
        "nb['cells'] = [{'cell_type': 'markdown', 'metadata': {}, 'source': 'x' * 21_000_000}]\n"
        "json.dump(nb, open('huge.ipynb', 'w'))\n"
        "os.path.exists('data') or os.symlink('../../data', 'data')\n"
        "os.symlink('data/cohort.vcz', 'link-to-data') if not os.path.lexists('link-to-data') else None\n"
        "print('ready')"
    )
    assert r.stdout.strip() == "ready", r.error
    return hub.user_token("alice")


def raw_request(hub, method: str, path: str, token: str) -> tuple[int, str]:
    """Send the path byte for byte (HTTP libraries would normalise the encoded and dotted ones)."""
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=30)
    body = json.dumps({"type": "file", "format": "text", "content": "a,b"}) if method == "PUT" else None
    conn.request(method, path, body=body, headers={"Authorization": f"token {token}"})
    resp = conn.getresponse()
    text = resp.read().decode(errors="replace")
    conn.close()
    return resp.status, text


VECTORS = [
    ("GET", "files/genotypes.csv"),
    ("GET", "files/genotypes.csv?download=1"),
    ("GET", "files/ok.ipynb?download=1"),
    ("GET", "files/data/cohort.vcz/.zgroup"),
    ("GET", "files/link-to-data/.zgroup"),
    ("GET", "view/genotypes.csv"),
    ("GET", "nbconvert/html/ok.ipynb"),
    ("GET", "nbconvert/script/ok.ipynb?download=true"),
    ("POST", "api/nbconvert"),
    ("GET", "api/contents/genotypes.csv"),
    ("GET", "api/contents/Genotypes.CSV"),
    ("GET", "api/contents/genotypes.csv?format=base64"),
    ("GET", "api/contents/genotypes.csv?type=file&format=text"),
    ("GET", "api/contents/renamed.ipynb"),
    ("GET", "api/contents/huge.ipynb"),
    ("GET", "api/contents/.hidden.ipynb"),
    ("GET", "api/contents/link-to-data/.zgroup"),
    ("GET", "api/contents/data/cohort.vcz/call_genotype/0.0.0"),
    ("GET", "api/contents/%2e%2e/%2e%2e/cardio/data"),
    ("GET", "api/contents/%252e%252e%252f%252e%252e/cardio"),
    ("GET", "api/contents//etc/passwd"),
    ("GET", "api/contents/genotypes.csv/"),
    ("GET", "FILES/genotypes.csv"),
    ("GET", "files//genotypes.csv"),
    ("HEAD", "api/contents/ok.ipynb"),
    ("OPTIONS", "api/contents/ok.ipynb"),
    ("GET", "api/terminals"),
    ("GET", "lab/api/extensions"),
    ("PUT", "api/contents/upload.csv"),
    ("GET", "metrics"),
]


def denied_since(hub, seq: int) -> list[dict]:
    return [e for e in hub.events(kind="denied", after_seq=seq) if e.get("server") == "alice/brca"]


def test_every_download_vector_is_refused_and_logged(hub, workspace):
    token = workspace
    for method, path in VECTORS:
        start = hub.events()[-1]["seq"]
        status, body = raw_request(hub, method, SERVER + path, token)
        assert status in (403, 404), f"{method} {path}: {status} {body[:200]}"
        if status == 403 and method != "HEAD":
            assert "Refused" in json.loads(body)["message"], body
        # each refusal is an audit event (recorded just after the answer); the proxy may have
        # normalised the path first (%2e%2e, ..), so match on the method and the event, not the text
        (event,) = wait_for(lambda start=start: denied_since(hub, start), timeout=5, message=f"denied {method} {path}")
        assert event["detail"].startswith(method), event

    # another server's files and kernels, with alice's token (bob's server running: it refuses her)
    hub.start("bob", "cardio")
    start = hub.events()[-1]["seq"]
    for path in ("/user/bob/cardio/api/contents", "/user/bob/cardio/api/kernels", "/user/bob/cardio/files/x"):
        status, _ = raw_request(hub, "GET", path, token)
        assert status in (403, 404), f"{path}: {status}"

    def refused_by_bob():
        return [e for e in hub.events(kind="denied", after_seq=start) if e.get("server") == "bob/cardio"]

    wait_for(lambda: len(refused_by_bob()) >= 3, timeout=5, message="bob's server's refusals")
    assert len(refused_by_bob()) == 3, refused_by_bob()


def test_what_jupyterlab_needs_still_answers(hub, workspace):
    headers = {"Authorization": f"token {workspace}"}
    for path in ("api/contents/ok.ipynb", "api/contents/", "api/contents/data", "api/kernelspecs", "api/sessions",
                 "lab/api/settings", "api/contents/genotypes.csv?content=0"):  # fmt: skip
        r = requests.get(f"{hub.url}{SERVER}{path}", headers=headers, timeout=30)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:200]}"
    names = {
        c["name"]
        for c in requests.get(f"{hub.url}{SERVER}api/contents/", headers=headers, timeout=30).json()["content"]
    }
    assert {"ok.ipynb", "genotypes.csv", "data", "shared"} <= names


def test_a_refused_page_is_a_page_for_a_browser_and_json_for_the_lab(hub):
    hub.start("alice", "brca")
    auth = {"Authorization": f"token {hub.user_token('alice')}"}
    url = f"{hub.url}{SERVER}files/shared/phenotypes.csv"
    start = hub.events()[-1]["seq"]
    page = requests.get(url, timeout=30, headers={**auth, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 403 and page.headers["Content-Type"].startswith("text/html")
    assert "This is not available in a Datahavn workspace" in page.text and "/files/ would send" in page.text
    assert f'href="{SERVER}lab"' in page.text and "<script" not in page.text
    api = requests.get(url, timeout=30, headers={**auth, "Accept": "application/json"})
    assert api.status_code == 403 and api.json()["message"].startswith("Refused: /files/ would send")
    lab = requests.get(f"{hub.url}{SERVER}api/contents/shared/phenotypes.csv?type=file&format=text&content=1",
                       headers=auth, timeout=30)  # fmt: skip
    assert lab.status_code == 403 and lab.json()["message"] == (
        "Refused: Data files stay in the workspace. Read it in a notebook: pd.read_csv('shared/phenotypes.csv')"
    )
    wait_for(lambda: len([e for e in hub.events(kind="denied", after_seq=start) if e["user"] == "alice"]) >= 3, 20,
             message="the three refusals recorded")  # fmt: skip

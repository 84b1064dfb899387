"""The example notebook runs top to bottom with nbclient, in a kernel of alice's brca server.

nbclient drives a remote kernel through jupyter-server's gateway client (REST to
start it, the kernel websocket to run it): the cells go through the proxy, the
egress guard and the audit like a researcher's. The gateway client opens its
websocket without credentials, so ours adds the server token.
"""

from __future__ import annotations

import base64
from pathlib import Path
from unittest import mock

import nbformat
import pytest
from nbclient import NotebookClient

from ..hubs import ARTIFACTS

NOTEBOOK = Path(__file__).resolve().parents[2] / "kernels" / "example.ipynb"


def gateway_classes():
    import websocket
    from jupyter_server.gateway.gateway_client import GatewayClient
    from jupyter_server.gateway.managers import GatewayKernelClient, GatewayKernelManager

    class TokenKernelClient(GatewayKernelClient):
        async def start_channels(self, *args, **kwargs):
            connect = websocket.create_connection
            header = [f"Authorization: token {GatewayClient.instance().auth_token}"]
            with mock.patch.object(websocket, "create_connection", lambda url, **kw: connect(url, header=header, **kw)):
                return await super().start_channels(*args, **kwargs)

    class TokenKernelManager(GatewayKernelManager):
        client_factory = TokenKernelClient

    return GatewayClient, TokenKernelManager


@pytest.fixture
def gateway(hub):
    GatewayClient, manager = gateway_classes()
    url = hub.start("alice", "brca")
    GatewayClient.clear_instance()
    GatewayClient.instance(url=url.rstrip("/"), auth_token=hub.user_token("alice"), request_timeout=120.0)
    yield manager
    GatewayClient.clear_instance()


async def test_example_notebook_runs_in_a_project_kernel(hub, gateway):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata.kernelspec.name == "datahavn-genomics"
    client = NotebookClient(nb, km=gateway(kernel_name="datahavn-genomics"), timeout=300, allow_errors=False)
    await client.async_execute()
    ARTIFACTS.mkdir(exist_ok=True)
    nbformat.write(nb, ARTIFACTS / "example-executed.ipynb")

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    figures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 4  # allele frequencies, SFS, PCA, Manhattan
    for fig in figures:
        assert base64.b64decode(fig["data"]["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    text = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "variants x samples x ploidy" in text and "unlinked common variants" in text
    # the simulated causal variant (chromosome 2) tops the association scan
    top = code[-1].outputs[0]["data"]["text/plain"].splitlines()[1]
    assert "chr2" in top, top
    # and every cell is in the audit trail, as brca's
    events = hub.events(kind="execute", user="alice", project="brca")
    for cell in code:
        assert any(e.get("code") == cell.source for e in events), cell.source[:40]

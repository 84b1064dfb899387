"""Output budgets: how many bytes a kernel may send to the browser, per cell and per session.

Every iopub message counts (streams, rich displays, results, errors, comm messages),
not only ``stream`` as jupyter-server's ``iopub_data_rate_limit`` does, and nothing
resets at idle. Past a budget the output is held back, the user sees one notice
per cell, and the connection records an ``egress_alert``. Outputs saved into
notebooks are capped as well (:func:`strip_large_outputs`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field

PASS, NOTIFY, DROP = "pass", "notify", "drop"
#: iopub messages that carry no data and keep the notebook's state right
FREE = frozenset({"status", "execute_input", "clear_output"})
#: cells remembered per session (oldest forgotten first)
REMEMBERED_CELLS = 2000


@dataclass
class OutputBudget:
    cell_limit: int
    session_limit: int
    session_bytes: int = 0
    cells: OrderedDict = field(default_factory=OrderedDict)
    cut: dict = field(default_factory=dict)  # cell -> "cell" or "session": which budget ran out

    def admit(self, channel: str | None, msg_type: str, cell: str | None, size: int) -> str:
        """PASS to forward; NOTIFY the first time a cell is cut (tell the user, record it); DROP after."""
        if channel != "iopub" or msg_type in FREE:
            return PASS
        if cell in self.cut:
            return DROP
        used = self.cells.get(cell, 0) + size
        if used > self.cell_limit or self.session_bytes + size > self.session_limit:
            self.cut[cell] = "cell" if used > self.cell_limit else "session"
            if len(self.cut) > REMEMBERED_CELLS:
                self.cut.pop(next(iter(self.cut)))
            return NOTIFY
        self.cells[cell] = used
        self.cells.move_to_end(cell)
        if len(self.cells) > REMEMBERED_CELLS:
            self.cells.popitem(last=False)
        self.session_bytes += size
        return PASS

    def notice(self, cell: str | None) -> str:
        which = self.cut.get(cell, "cell")
        limit = self.cell_limit if which == "cell" else self.session_limit
        scope = "this cell" if which == "cell" else "this notebook session"
        return (
            f"[Datahavn] Output stopped: {scope} passed its {limit / 1e6:g} MB output limit, so the rest of this "
            "cell's output is not shown. Data stays in the workspace: summarise it, or ask a data steward "
            "about an export. This event has been recorded."
        )


def strip_large_outputs(model: dict, path: str, contents_manager, limit: int = 2_000_000, **kwargs) -> None:
    """``FileContentsManager.pre_save_hook``: cells whose outputs exceed ``limit`` bytes are saved without them."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    for cell in model["content"].get("cells", []):
        outputs = cell.get("outputs") or []
        size = len(json.dumps(outputs, default=str))
        if cell.get("cell_type") == "code" and size > limit:
            cell["outputs"] = [{
                "output_type": "stream", "name": "stderr",
                "text": f"[Datahavn] {size} bytes of output were removed when this notebook was saved: "
                        f"saved outputs are limited to {limit} bytes per cell.\n",
            }]  # fmt: skip

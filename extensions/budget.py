"""Output budgets of a kernel: per cell, and the workspace's one budget (:mod:`.meter`) for everything.

Every iopub message counts toward a cell (streams, rich displays, results, errors, comm
messages), not only ``stream`` as jupyter-server's ``iopub_data_rate_limit`` does, and
nothing resets at idle. Once the workspace's budget is used up, every message that carries
data stops, on every channel (inspect, complete and history replies, input requests too);
only what keeps the notebook's state right passes. Past a limit the user sees one notice per
cell, and the connection records an ``egress_alert``. Outputs saved into notebooks are capped
as well (:func:`strip_large_outputs`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field

PASS, NOTIFY, DROP = "pass", "notify", "drop"
#: messages that carry no data and keep the notebook's state right: they always pass
FREE = frozenset({
    "status", "execute_input", "clear_output", "execute_reply", "kernel_info_reply", "is_complete_reply",
    "comm_info_reply", "interrupt_reply", "shutdown_reply",
})  # fmt: skip
#: cells remembered (oldest forgotten first)
REMEMBERED_CELLS = 2000


@dataclass
class OutputBudget:
    cell_limit: int
    cells: OrderedDict = field(default_factory=OrderedDict)
    cut: dict = field(default_factory=dict)  # cell -> "cell", or the workspace budget that ran out

    def admit(self, channel: str | None, msg_type: str, cell: str | None, size: int,
              workspace: str | None = None) -> str:  # fmt: skip
        """PASS to forward; NOTIFY the first time a cell is cut (tell the user, record it); DROP after.

        ``workspace``: the workspace budget that is used up ("hour", "day" ...), or None.
        """
        if msg_type in FREE:
            return PASS
        if cell in self.cut:
            return DROP
        if workspace is not None:
            return self._cut(cell, workspace)
        if channel != "iopub":
            return PASS
        used = self.cells.get(cell, 0) + size
        if used > self.cell_limit:
            return self._cut(cell, "cell")
        self.cells[cell] = used
        self.cells.move_to_end(cell)
        if len(self.cells) > REMEMBERED_CELLS:
            self.cells.popitem(last=False)
        return PASS

    def _cut(self, cell: str | None, why: str) -> str:
        self.cut[cell] = why
        if len(self.cut) > REMEMBERED_CELLS:
            self.cut.pop(next(iter(self.cut)))
        return NOTIFY

    def notice(self, cell: str | None, workspace_reason: str = "") -> str:
        if self.cut.get(cell, "cell") == "cell":
            why = f"this cell passed its {self.cell_limit / 1e6:g} MB output limit"
        else:
            why = workspace_reason
        return (
            f"[Datahavn] Output stopped: {why}, so the rest of this cell's output is not shown. Data stays in "
            "the workspace: summarise it, or request an export. This event has been recorded."
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

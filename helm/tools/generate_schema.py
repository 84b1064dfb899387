#!/usr/bin/env python3
"""Write helm/values.schema.json (what helm enforces) from helm/values.schema.yaml (what people edit).

python3 helm/tools/generate_schema.py          # write it
python3 helm/tools/generate_schema.py --check  # exit 1 if it is out of date
"""

import json
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent


def render() -> str:
    schema = yaml.safe_load((CHART / "values.schema.yaml").read_text())
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    target = CHART / "values.schema.json"
    text = render()
    if "--check" in argv:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

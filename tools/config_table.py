"""Print README's configuration table from nmt/config.py (the dataclasses and their comments).

usage: python tools/config_table.py
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from nmt.config import SECTIONS


def comments() -> dict[str, str]:
    source = (Path(__file__).resolve().parents[1] / "nmt" / "config.py").read_text()
    pattern = re.compile(r"^class (\w+)Config|^    (\w+): [^=]+ = .*?  # (.+)$", re.M)
    found, section = {}, ""
    for m in pattern.finditer(source):
        if m.group(1):
            section = m.group(1).lower()
        else:
            found[f"{section}.{m.group(2)}"] = m.group(3)
    return found


def render(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return '""'
    if isinstance(value, tuple):  # as YAML writes a list
        return f"[{', '.join(render(v) for v in value)}]"
    return str(value)


def main() -> None:
    notes = comments()
    print("| option | default | meaning |")
    print("|---|---|---|")
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            key = f"{name}.{f.name}"
            print(f"| `{key}` | `{render(f.default)}` | {notes.get(key, '')} |")


if __name__ == "__main__":
    main()

"""Print README's configuration table, made from the options' help in nmt/config.py.

usage: python tools/config_table.py
"""

from __future__ import annotations

from nmt.config import options_table

if __name__ == "__main__":
    print(options_table(), end="")

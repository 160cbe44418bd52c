"""Write sapiens_blender/engine_options.json from the engine's option table (engine/options.py).

The Blender add-on never imports the engine, so it reads the options (names, kinds, choices,
defaults, labels, help) from this generated file to draw its panel and accept batch keys.
Run after changing engine/options.py; tests/test_options.py fails while the file is stale.

    .venv/bin/python scripts/sync_options.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET = REPO / "sapiens_blender" / "engine_options.json"


def render() -> str:
    from engine.options import export

    return json.dumps(export(), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the file is up to date (exit 1 if not)")
    args = parser.parse_args(argv)
    text = render()
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else None
    if args.check:
        if current != text:
            print(f"{TARGET} is stale: run scripts/sync_options.py", file=sys.stderr)
            return 1
        print(f"{TARGET} is up to date")
        return 0
    if current != text:
        TARGET.write_text(text, encoding="utf-8")
        print(f"wrote {TARGET}")
    else:
        print(f"{TARGET} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

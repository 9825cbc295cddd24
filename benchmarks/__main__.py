"""``make bench``: run every benchmark module and print one table per area.

Each module ``benchmarks/<area>.py`` exposes ``run(quick: bool)`` returning
rows of (benchmark, result, unit). ``--quick`` skips the largest sizes. The
tables are also written to docs/benchmarks.md with the machine they ran on.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path

from tabulate import tabulate

AREAS = ["archive", "dimse", "dicomweb", "on_demand", "gan"]
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("areas", nargs="*", default=AREAS, help=f"areas to run (default: all of {', '.join(AREAS)})")
    parser.add_argument("--quick", action="store_true", help="skip the largest sizes")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    sections = [f"# Benchmarks\n\nMeasured by `make bench` on {time.strftime('%Y-%m-%d')} ({machine}).\n"]
    for area in args.areas:
        try:
            module = importlib.import_module(f"benchmarks.{area}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmarks.{area}":
                continue
            raise
        print(f"\n== {area} ==", flush=True)
        started = time.perf_counter()
        rows = module.run(quick=args.quick)
        table = tabulate(rows, headers=["benchmark", "result", "unit"], tablefmt="github")
        print(table)
        print(f"({time.perf_counter() - started:.0f} s)", flush=True)
        sections.append(f"## {area}\n\n{table}\n")
    if not args.no_write:
        (ROOT / "docs" / "benchmarks.md").write_text("\n".join(sections))


if __name__ == "__main__":
    sys.exit(main())

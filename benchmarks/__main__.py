"""``make bench``: run every benchmark module and print one table per area.

Each module ``benchmarks/<area>.py`` exposes ``run(quick: bool)`` returning
rows of (benchmark, result, unit). ``--quick`` skips the largest sizes. The
tables are also written to docs/benchmarks.md with the machine they ran on:
the areas run replace their own sections, every other section (areas not
run this time, the written before/after comparisons) stays as it was.
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

AREAS = [
    "archive",
    "stored",
    "dimse",
    "dicomweb",
    "on_demand",
    "gan",
    "ecg",
    "mammography",
    "ohif",
    "versus_orthanc",
    "mixed_load",
]
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("areas", nargs="*", default=AREAS, help=f"areas to run (default: all of {', '.join(AREAS)})")
    parser.add_argument("--quick", action="store_true", help="skip the largest sizes")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    measured: dict[str, str] = {}
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
        measured[area] = f"## {area}\n\nMeasured on {time.strftime('%Y-%m-%d')} ({machine}).\n\n{table}\n"
    if not args.no_write:
        _write(ROOT / "docs" / "benchmarks.md", measured)


def _write(path: Path, measured: dict[str, str]) -> None:
    """Replace the measured areas' sections of ``path``; keep every other section in place (new areas go last)."""
    old = path.read_text() if path.exists() else "# Benchmarks\n\nMeasured by `make bench`.\n"
    head, *rest = old.split("\n## ")
    sections = [f"## {chunk}" for chunk in rest]
    names = [section.split("\n", 1)[0][3:].strip() for section in sections]
    for area, text in measured.items():
        if area in names:
            sections[names.index(area)] = text
        else:
            sections.append(text)
    path.write_text("\n".join([head.rstrip("\n") + "\n", *(section.rstrip("\n") + "\n" for section in sections)]))


if __name__ == "__main__":
    sys.exit(main())

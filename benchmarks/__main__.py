"""Discover and run every ``benchmarks/bench_*.py`` module's ``main()``.

Usage: python -m benchmarks [NAME ...]   (NAME: substring of a module name to select)

``main()`` may print its own output and/or return results: a mapping is printed as
``key: value`` lines, any other non-None value as is. A failing benchmark is reported and
the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path

PKG_DIR = Path(__file__).resolve().parent


def discover(selectors: list[str]) -> list[str]:
    names = sorted(
        m.name for m in pkgutil.iter_modules([str(PKG_DIR)]) if m.name.startswith("bench_")
    )
    if selectors:
        names = [n for n in names if any(s in n for s in selectors)]
    return names


def print_results(results: object) -> None:
    if results is None:
        return
    if isinstance(results, Mapping):
        width = max((len(str(k)) for k in results), default=0)
        for key, value in results.items():
            print(f"  {str(key):<{width}}  {value}")
    else:
        print(f"  {results}")


def run(argv: list[str]) -> int:
    names = discover(argv)
    if not names:
        print("benchmarks: no bench_*.py modules" + (f" matching {argv}" if argv else ""))
        return 0
    failed = []
    for name in names:
        print(f"== {name}")
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"{__package__ or 'benchmarks'}.{name}")
            entry = getattr(module, "main", None)
            if not callable(entry):
                raise TypeError(f"{name} has no main() function")
            print_results(entry())
        except Exception:
            traceback.print_exc()
            failed.append(name)
            print(f"   FAILED after {time.perf_counter() - start:.2f}s")
        else:
            print(f"   done in {time.perf_counter() - start:.2f}s")
        sys.stdout.flush()
    if failed:
        print(f"benchmarks: {len(failed)} failed: {', '.join(failed)}")
        return 1
    print(f"benchmarks: {len(names)} ran")
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

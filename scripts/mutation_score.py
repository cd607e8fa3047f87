"""Mutation score per module from the results mutmut left in scripts/mutation.sh's scratch copy.

    python scripts/mutation_score.py STAGE MODULE...           # the table
    python scripts/mutation_score.py --names STAGE MODULE...   # survivors and untested, by name

The score is killed / mutants: a timeout, or a mutant that no test reaches, counts against it.
SURVIVORS=1 lists the survivors under the table.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code


def statuses(stage: Path, module: str) -> dict[str, str]:
    """Each mutant of lib/kiln/MODULE.py, or of every file of the package lib/kiln/MODULE/, and
    its status: killed, survived, timeout, no tests..."""
    kiln = stage / "mutants" / "src" / "kiln"
    # mutmut writes one FILE.py.meta per mutated file: a package's results are spread over them.
    metas = sorted((kiln / module).glob("*.py.meta")) if (kiln / module).is_dir() else []
    result: dict[str, str] = {}
    for meta in metas or [kiln / f"{module}.py.meta"]:
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        result.update({name: status_by_exit_code[code] for name, code in exit_codes.items()})
    return result


def survivors(stage: Path, modules: list[str], *, untested: bool = False) -> list[str]:
    """Mutants that survived, and with untested those no test reached (new tests may now)."""
    wanted = {"survived", "no tests"} if untested else {"survived"}
    by_name = {name: s for module in modules for name, s in statuses(stage, module).items()}
    return sorted(name for name, status in by_name.items() if status in wanted)


def table(stage: Path, modules: list[str]) -> str:
    header = f"{'module':<12} {'mutants':>8} {'killed':>7} {'survived':>9} {'timeout/other':>14}"
    lines = [f"{header} {'score':>7}"]
    for module in modules:
        counts = Counter(statuses(stage, module).values())
        total = sum(counts.values())
        killed, survived = counts["killed"], counts["survived"]
        other = total - killed - survived
        score = 100 * killed / total if total else 100.0
        row = f"{module:<12} {total:>8} {killed:>7} {survived:>9} {other:>14}"
        lines.append(f"{row} {score:>6.1f}%")
        if other:
            rest = sorted((s, n) for s, n in counts.items() if s not in {"killed", "survived"})
            lines.append(f"{'':<12} ({', '.join(f'{n} {s}' for s, n in rest)})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    names_only = argv[:1] == ["--names"]
    if names_only:
        argv = argv[1:]
    stage, modules = Path(argv[0]), argv[1:]
    if names_only:
        print("\n".join(survivors(stage, modules, untested=True)))
        return 0
    print(table(stage, modules))
    if os.environ.get("SURVIVORS"):
        print("\nsurvived:")
        print("\n".join(f"  {name}" for name in survivors(stage, modules)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

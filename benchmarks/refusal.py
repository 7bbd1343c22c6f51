"""How fast a wrong run folder is refused: ``jrnn sample|eval|decode`` on a folder the command
does not apply to, measured in fresh processes.

The refusal reads only JSON and lists folders (``tests/test_app.py`` checks that no JAX,
Orbax, matplotlib or tqdm is loaded); this measures what that is worth on this machine: the
seconds from ``import jrnn`` to the one-line error, and the whole process's wall time, the
median of ``--repeats`` fresh processes per case.

Run: ``PYTHONPATH=$PWD python benchmarks/refusal.py [--repeats 5]`` (a few seconds; on a
quiet machine).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = (
    "import sys, time\n"
    "t0 = time.perf_counter()\n"
    "import jrnn\n"
    "from jrnn.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit as e:\n"
    "    assert e.code == 2, e.code\n"
    "print(time.perf_counter() - t0)\n"
)


def _folders(root: Path) -> dict[str, list[str]]:
    """The refused commands: a sequence run sampled, a text run decoded, no run folder."""
    from jrnn.app import Config, runs

    cases = {}
    for name, config, argv in (
        ("sample a reverse run", Config(task="reverse"), ["sample"]),
        ("decode a charlm run", Config(), ["decode"]),
    ):
        folder = root / name.replace(" ", "_")
        (folder / "checkpoints" / "10").mkdir(parents=True)
        runs.write_json_atomic(folder / "config.json", config.to_dict())
        cases[name] = [*argv, str(folder)]
    cases["eval a folder without a run"] = ["eval", str(root)]
    return cases


def _once(argv: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    return float(res.stdout), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per case (5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'case':<30} {'import jrnn -> refusal':>24} {'process':>10}")
        for name, argv in _folders(Path(tmp)).items():
            runs = [_once(argv) for _ in range(args.repeats)]
            inner = statistics.median(r[0] for r in runs)
            whole = statistics.median(r[1] for r in runs)
            print(f"{name:<30} {inner:>22.3f} s {whole:>8.3f} s")


if __name__ == "__main__":
    main()

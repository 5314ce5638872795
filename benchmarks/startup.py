"""Start-up time of what needs no torch: `import grokscope`, `grokscope --help`, `presets`, `info RUN`, against
`import torch` alone (the reference: what a command that imported torch eagerly would pay at least).

    python benchmarks/startup.py [--run tests/fixtures/v1_transformer] [--repeat 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time


def seconds(command: list[str], repeat: int) -> tuple[float, float]:
    """Median and maximum wall time of a fresh process running `command`."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="tests/fixtures/v1_transformer")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    py = [sys.executable]
    cli = [*py, "-m", "grokscope"]
    commands = {
        "import torch (reference)": [*py, "-c", "import torch"],
        "import grokscope": [*py, "-c", "import grokscope"],
        "grokscope --help": [*cli, "--help"],
        "grokscope presets": [*cli, "presets"],
        f"grokscope info {args.run}": [*cli, "info", args.run],
    }
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print("| command | median s | max s |\n|---|---|---|")
    for name, command in commands.items():
        median, worst = seconds(command, args.repeat)
        print(f"| `{name}` | {median:.2f} | {worst:.2f} |")


if __name__ == "__main__":
    main()

"""Where the time of a command goes: sample it with py-spy and print the top functions.

    .venv/bin/python benchmarks/pyspy_profile.py [--rate 200] [--top 15] -- COMMAND [ARGS...]
    .venv/bin/python benchmarks/pyspy_profile.py --raw FILE.raw   # summarise an earlier recording

Needs py-spy (``pip install py-spy``; not a dependency of the package). Records every thread
(idle included, so shares are of wall time) and its subprocesses, then prints for each process's
main thread: the share of wall time spent inside each function of ``reacture_convert``
(inclusive), the functions where the samples land (self time, any code), and how busy the
other threads were. Used to explain the benchmark targets that are missed (benchmarks/run.py).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_THREAD = re.compile(r"thread \((?:0x)?[0-9a-fA-F]+\)")


def short(frame: str, with_line: bool = False) -> str:
    """``func (path:line)`` -> ``func (last two path parts[:line])``."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    parts = m["file"].replace("\\", "/").split("/")
    where = "/".join(parts[-2:])
    return f"{m['func']} ({where}{':' + m['line'] if with_line and m['line'] else ''})"


def _thread_id(head: str) -> str:
    m = _THREAD.match(head)
    return m[0] if m else head


def parse(raw: Path) -> dict[str, list[tuple[list[str], int]]]:
    """py-spy raw (collapsed) stacks by thread: ``{thread: [(frames root-first, count)]}``."""
    threads: dict[str, list[tuple[list[str], int]]] = defaultdict(list)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        head = [f for f in frames if f.startswith(("process ", "thread "))]
        # "thread (tid): name" and "thread (tid)" (before the name is known) are one thread
        key = " ".join(_thread_id(h) for h in head) or "main"
        threads[key].append(([f for f in frames if f not in head], int(count)))
    return threads


def summarise(raw: Path, top: int = 15) -> str:
    threads = parse(raw)
    if not threads:
        return "no samples"
    totals = {k: sum(c for _, c in v) for k, v in threads.items()}
    by_process: dict[str, list[str]] = defaultdict(list)
    for key in threads:
        by_process[key.split(" thread ")[0] if " thread " in key else ""].append(key)
    out: list[str] = []
    for process, keys in by_process.items():
        main = max(keys, key=lambda k: totals[k])  # the thread sampled longest
        n = totals[main]
        inclusive: Counter[str] = Counter()
        selfs: Counter[str] = Counter()
        for frames, count in threads[main]:
            for f in {short(f) for f in frames}:
                inclusive[f] += count
            if frames:
                selfs[short(frames[-1], with_line=True)] += count
        out.append(f"## {process or 'process'}: main thread {main}, {n} samples")
        out.append("inclusive, reacture_convert functions:")
        ours = [(f, c) for f, c in inclusive.most_common() if "reacture_convert/" in f]
        out += [f"  {100 * c / n:5.1f} %  {f}" for f, c in ours[:top]]
        out.append("self (where the samples land):")
        out += [f"  {100 * c / n:5.1f} %  {f}" for f, c in selfs.most_common(top)]
        for k in sorted(keys, key=lambda k: -totals[k]):
            if k == main or totals[k] < n / 20:
                continue
            leaf: Counter[str] = Counter()
            for frames, count in threads[k]:
                if frames:
                    leaf[short(frames[-1], with_line=True)] += count
            out.append(f"other thread {k} (idle included), where its samples land:")
            out += [f"  {100 * c / n:5.1f} %  {f}" for f, c in leaf.most_common(5)]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=200, help="samples a second")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--raw", type=Path, help="summarise this py-spy raw file instead")
    ap.add_argument("--keep", type=Path, help="also keep the raw recording here")
    ap.add_argument("command", nargs="*")
    args = ap.parse_args(argv)
    if args.raw:
        print(summarise(args.raw, args.top))
        return 0
    if not args.command:
        ap.error("give a command after --, or --raw FILE")
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.keep or Path(tmp) / "profile.raw"
        spy = Path(sys.executable).parent / "py-spy"
        cmd = [
            str(spy) if spy.exists() else "py-spy",
            "record",
            "-r",
            str(args.rate),
            "-f",
            "raw",
            "-o",
            str(raw),
            "--threads",
            "--idle",
            "--subprocesses",
            "--",
            *args.command,
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(summarise(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

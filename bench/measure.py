"""What the benchmarks measure of the processes devstack starts for them: memory (RSS, PSS),
CPU time (of a process, a group of them, the whole machine), where time goes (py-spy), garbage
collections (from /metrics), sockets held open, least-squares fits; and bench/results.json,
where `make bench` and `make soak` write their results.
"""

import contextlib
import json
import math
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from devstack.env import PROJECT_DIR, VENV_BIN


def rss_mib(pid: int) -> float:
    """Resident set size (VmRSS) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mib(pid: int) -> float:
    """Proportional set size: pages shared with the master and the other workers split."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def profile(
    pids: list[int], seconds: float, out_dir: Path, name: str, *, waits: bool = False
) -> list[subprocess.Popen]:
    """Starts py-spy on each process for `seconds`: collapsed stacks of the GIL holder, or
    (`waits`) of every thread, waiting ones included (where a request spends its time)."""
    processes = []
    for pid in pids:
        output = out_dir / f"profile-{name}-{pid}.txt"
        command = [str(VENV_BIN / "py-spy"), "record", "--pid", str(pid), "--rate", "250"]
        command += ["--duration", str(math.ceil(seconds)), "--format", "raw"]
        command += ["--idle"] if waits else ["--gil"]
        command += ["--output", str(output)]
        processes.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    return processes


def profile_summary(out_dir: Path, name: str, top: int = 30, *, within: str = "") -> str:
    """The functions most often on the stack (inclusive) and on top of it (self), in percent of
    the samples, from the collapsed stacks `profile(..., out_dir, name)` wrote; with `within`,
    of the stacks that pass through a frame naming it (one view, say) alone."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for path in sorted(out_dir.glob(f"profile-{name}-*.txt")):
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit() or within not in stack:
                continue
            samples = int(count)
            total += samples
            frames = [_short(frame) for frame in stack.split(";")]
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + samples
            own[frames[-1]] = own.get(frames[-1], 0) + samples
    if not total:
        return "no samples"
    lines = [f"{total} samples; inclusive %:"]
    for frame, count in sorted(inclusive.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {100 * count / total:5.1f}  {frame}")
    lines.append("self %:")
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {100 * count / total:5.1f}  {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    """'function (/long/path/site-packages/pkg/mod.py:12)' -> 'function (pkg/mod.py)'."""
    function, _, location = frame.partition(" (")
    location = location.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{PROJECT_DIR}/", "lib/python3"):
        if marker in location:
            location = location.split(marker, 1)[1]
    return f"{function} ({location})"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_pids(database: str) -> list[int]:
    """The PostgreSQL backends serving `database` (their process titles name it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres:") and f" {database} " in title:
            pids.append(int(entry.name))
    return pids


def machine_busy_and_total() -> tuple[int, int]:
    """The machine's busy and total CPU ticks so far, all cores (/proc/stat's first line)."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    total = sum(ticks[:8])  # guest time is already counted in user
    return total - idle, total


class CpuMeter:
    """CPU seconds used by groups of processes between start() and stop(), and how busy the
    whole machine was meanwhile (`machine_busy`, 0-1 of all its cores)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.before: dict[str, dict[int, float]] = {}
        self.used: dict[str, dict[int, float]] = {}
        self.machine_before = (0, 0)
        self.machine_busy = math.nan

    def _sample(self) -> dict[str, dict[int, float]]:
        return {
            name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()
        }

    def start(self) -> None:
        self.before = self._sample()
        self.machine_before = machine_busy_and_total()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        busy, total = machine_busy_and_total()
        spent = total - self.machine_before[1]
        self.machine_busy = (busy - self.machine_before[0]) / spent if spent else math.nan
        self.used = {}
        for name, pids in after.items():
            before = self.before.get(name, {})
            self.used[name] = {pid: used - before.get(pid, 0.0) for pid, used in pids.items()}
        return {name: sum(pids.values()) for name, pids in self.used.items()}

    def split(self, name: str) -> str:
        """How the CPU of group `name` was shared among its processes, in %, largest first.

        Long-lived connections stay on the worker that accepted them, and one worker can
        accept a whole burst of them: a round whose web split is far from even measured one
        busy worker and one idle one."""
        used = sorted(self.used[name].values(), reverse=True)
        total = sum(used) or 1.0
        return "/".join(f"{100 * value / total:.0f}" for value in used)


GC_GENERATIONS = ("young", "middle", "old")


def gc_pauses(metrics: str) -> dict[tuple[str, float], float]:
    """The web workers' garbage collections in a /metrics answer, all workers added up:
    {(generation, bucket's upper bound in seconds): collections at most that long}."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[tuple[str, float], float] = {}
    for family in text_string_to_metric_families(metrics):
        if family.name == "python_gc_pause_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    key = (sample.labels["generation"], float(sample.labels["le"]))
                    counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def gc_generations(before: dict, after: dict, over_seconds: float) -> dict[str, tuple]:
    """The collections between two gc_pauses() readings, per generation: (how many, how many
    took longer than `over_seconds`, the bound of the bucket the longest fell in; 0 for none)."""
    done = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    found = {}
    for number, name in enumerate(GC_GENERATIONS):
        buckets = sorted((le, n) for (gen, le), n in done.items() if gen == str(number))
        total = buckets[-1][1] if buckets else 0.0
        over = total - next((n for le, n in buckets if le >= over_seconds), total)
        # the smallest bound that holds every collection of the generation
        longest = next((le for le, n in buckets if n == total), 0.0) if total else 0.0
        found[name] = (total, over, longest)
    return found


def _at_most(seconds: float) -> str:
    return "over 1 s" if math.isinf(seconds) else f"at most {seconds * 1000:g} ms"


def gc_pauses_summary(before: dict, after: dict, over_seconds: float = 0.05) -> str:
    """How many collections of each generation, how many took longer than `over_seconds`,
    and the bucket the longest fell in."""
    generations = gc_generations(before, after, over_seconds)
    parts = ", ".join(f"{name} {total:.0f}" for name, (total, _, _) in generations.items())
    over = sum(over for _, over, _ in generations.values())
    longest = max(longest for _, _, longest in generations.values())
    if not longest:
        return f"{parts}: none"
    return (
        f"{parts}; {over:.0f} longer than {over_seconds * 1000:g} ms; the longest "
        f"{_at_most(longest)}"
    )


def gc_generations_summary(counts: dict, over_seconds: float = 0.025) -> str:
    """gc_pauses_summary's figures for each generation apart, from one reading."""
    return ", ".join(
        f"{name} {total:.0f}"
        + (
            f" ({over:.0f} over {over_seconds * 1000:g} ms, the longest {_at_most(longest)})"
            if total
            else ""
        )
        for name, (total, over, longest) in gc_generations({}, counts, over_seconds).items()
    )


def established_connections(pid: int) -> int:
    """TCP connections in state ESTABLISHED that the process holds open (its clients', and its
    own to Redis and the database), from its file descriptors and /proc/net/tcp{,6}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                count += fields[3] == "01" and fields[9] in inodes  # 01: ESTABLISHED
    return count


def least_squares_two(rows: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """(b, c) of the least-squares fit y = a + b·x + c·z through (x, z, y) rows; None when x and
    z move together too closely to tell apart (a squared correlation above 0.95)."""
    n = len(rows)
    if n < 4:
        return None
    mx, mz, my = (sum(row[i] for row in rows) / n for i in range(3))
    sxx = sum((x - mx) ** 2 for x, _, _ in rows)
    szz = sum((z - mz) ** 2 for _, z, _ in rows)
    sxz = sum((x - mx) * (z - mz) for x, z, _ in rows)
    sxy = sum((x - mx) * (y - my) for x, _, y in rows)
    szy = sum((z - mz) * (y - my) for _, z, y in rows)
    if not sxx or not szz or sxz * sxz / (sxx * szz) > 0.95:
        return None
    determinant = sxx * szz - sxz * sxz
    return (sxy * szz - szy * sxz) / determinant, (szy * sxx - sxy * sxz) / determinant


def least_squares_slope(points: list[tuple[float, float]]) -> float:
    """The slope of the least-squares line through (x, y) points; NaN for fewer than two xs."""
    if len({x for x, _ in points}) < 2:
        return math.nan
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in points)
    variance = sum((x - mean_x) ** 2 for x, _ in points)
    return covariance / variance


RESULTS = PROJECT_DIR / "bench" / "results.json"


def merge_results(key: str, value) -> None:
    """Writes `value` under `key` in bench/results.json, keeping the other keys ("bench" from
    `make bench`, "soak" from `make soak`); NaN is written as null."""
    existing = {}
    if RESULTS.is_file():
        with contextlib.suppress(ValueError):
            existing = json.loads(RESULTS.read_text())
    if not isinstance(existing, dict):
        existing = {}  # an older layout: `make bench`'s rows alone
    existing[key] = value
    RESULTS.write_text(json.dumps(existing, indent=2, ensure_ascii=False, default=_plain))


def _plain(value):
    return None if isinstance(value, float) and math.isnan(value) else str(value)

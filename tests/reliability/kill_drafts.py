"""kill -9 against the draft autosave: the draft on disk is always a complete earlier or current
version, and the next launch restores it.

Two drivers, both usable from pytest and from the command line:

``app``   a real ``kolyric app --no-load`` in a pseudo-terminal. Each trial launches it on the
          draft the previous trial left, waits for the first paint, types (Hangul, Latin, Enter)
          at the start of the draft, and kills the process group with SIGKILL — at a random
          moment, or (every other trial) the instant an autosave temp file appears, i.e. while
          the save is being written. Typing goes in at the cursor, which starts at the top, so
          every version the app can have written is ``typed[:k] + restored``; the file after
          the kill must be exactly one of those, with ``k`` at least what was seen on disk before
          the kill, and the next launch must say "Restored your last draft".
``store`` a child process saving drafts of random sizes (up to ~2 MB) in a loop through the
          app's own ``DraftStore``, printing each sequence number once its save returned. After a
          SIGKILL at a random moment the file must be the last acknowledged version or the one
          being written, byte-for-byte complete.

    python -m tests.reliability.kill_drafts --mode both --trials 50
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability._util import ROOT, print_report, quiet_env, strip_ansi

DRAFT = "draft.json"
# What the app types: Hangul, Latin, digits, spaces and Enter (\r from a terminal).
TYPED_ALPHABET = list("가나다라마바사아자차카타파하사랑너를보낸다 바람이분다abcxyz 0123") + ["\r"]


def _tmp_files(data_dir: Path) -> list[Path]:
    return list(data_dir.glob(f".{DRAFT}.*.tmp"))


def _read_draft(path: Path) -> dict | None:
    """The saved draft as JSON, or None when there is none; raises if it is not a whole draft."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    data = json.loads(raw.decode("utf-8"))  # a torn file fails here
    assert data.get("format") == "kolyric-draft", data
    return data


# -- the app in a pseudo-terminal ------------------------------------------------------------------
class PtyApp:
    """``kolyric app --no-load --data-dir D`` on a 120x36 pseudo-terminal; output is drained."""

    def __init__(self, data_dir: Path, config_dir: Path, columns: int = 120, rows: int = 36) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = quiet_env(
            TERM="xterm-256color",
            KOLYRIC_CONFIG_DIR=str(config_dir),
            COLUMNS=str(columns),
            LINES=str(rows),
            LANG="C.UTF-8",
            LC_ALL="C.UTF-8",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kolyric", "app", "--no-load", "--data-dir", str(data_dir)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=ROOT,
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output.extend(data)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in strip_ansi(bytes(self.output)):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def type(self, text: str) -> None:
        os.write(self.master, text.encode("utf-8"))

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self._close()

    def quit(self, timeout: float = 20) -> int | None:
        """Ctrl+Q, as a person quits."""
        self.type("\x11")
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self._close()
        return code

    def _close(self) -> None:
        try:
            os.close(self.master)
        except OSError:
            pass
        self._reader.join(2)


@dataclass
class AppReport:
    trials: int = 0
    kills_during_write: int = 0  # the kill was sent while an autosave temp file existed
    temp_files_left: int = 0  # orphaned temp files after kills (harmless: never read)
    saves_observed: int = 0  # trials whose kill found a newer draft than the launch restored
    restored_notices: int = 0  # launches that said "Restored your last draft"
    launches_with_draft: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def base_draft(lines: int, rng: random.Random) -> str:
    """A draft long enough that each autosave takes a while to write (more kills land inside)."""
    words = ["바람이", "분다", "너를", "보낸다", "하늘", "위로", "날아가", "la", "love", "2024"]
    return "\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(lines))


def run_app_trials(
    trials: int, workdir: Path, *, seed: int = 0, draft_lines: int = 400, startup_timeout: float = 60.0, log=print
) -> AppReport:
    rng = random.Random(seed)
    data_dir, config_dir = workdir / "data", workdir / "config"
    data_dir.mkdir(parents=True, exist_ok=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    from kolyric.app.drafts import Draft, DraftStore  # light, no torch

    DraftStore(data_dir).save(Draft(base_draft(draft_lines, rng)), 1)
    report = AppReport()
    started = time.monotonic()
    for trial in range(trials):
        restored = _read_draft(data_dir / DRAFT)
        base = restored["text"] if restored else ""
        app = PtyApp(data_dir, config_dir)
        try:
            if not app.wait_for("Candidates", startup_timeout):
                report.failures.append(
                    f"trial {trial}: the app did not paint within {startup_timeout:g} s "
                    f"(exit {app.proc.poll()}): {strip_ansi(bytes(app.output))[-500:]!r}"
                )
                app.kill()
                continue
            if base:
                report.launches_with_draft += 1
                if app.wait_for("Restored your last draft", 5):
                    report.restored_notices += 1
                else:
                    report.failures.append(f"trial {trial}: no 'Restored your last draft' notice")
            typed = ""
            during_write = trial % 2 == 1
            # a random kill: after 0.05-2.5 s of typing; a kill during a save: at the first temp
            # file seen (autosaves come half a second after an edit), else after 4 s anyway
            stop_at = time.monotonic() + (rng.uniform(0.6, 4.0) if during_write else rng.uniform(0.05, 2.5))
            seen_k = 0
            killed_in_write = False
            while True:
                ch = rng.choice(TYPED_ALPHABET)
                app.type(ch)
                typed += "\n" if ch == "\r" else ch
                # watch the folder for a while between keys: kill the moment a save is in flight
                pause_until = time.monotonic() + rng.uniform(0.005, 0.06)
                while time.monotonic() < pause_until:
                    if during_write and _tmp_files(data_dir):
                        killed_in_write = True
                        break
                    time.sleep(0.0005 if during_write else 0.005)
                if killed_in_write or time.monotonic() >= stop_at:
                    break
                try:  # what a reader sees mid-session: never torn, and it only moves forward
                    current = _read_draft(data_dir / DRAFT)
                except (ValueError, AssertionError) as exc:
                    report.failures.append(f"trial {trial}: a torn draft was readable mid-session: {exc}")
                    current = None
                if current is not None:
                    seen_k = max(seen_k, _prefix_k(current["text"], typed, base, report, trial))
            in_write_now = bool(_tmp_files(data_dir))
            app.kill()
            report.kills_during_write += int(killed_in_write or in_write_now)
        finally:
            if app.proc.poll() is None:
                app.kill()
        report.trials += 1
        left = _tmp_files(data_dir)
        report.temp_files_left += len(left)
        for path in left:  # an orphan from a kill; the app never reads them
            path.unlink()
        try:
            after = _read_draft(data_dir / DRAFT)
        except (ValueError, AssertionError) as exc:
            report.failures.append(f"trial {trial}: the draft on disk is not a whole draft after kill -9: {exc}")
            continue
        if after is None:
            report.failures.append(f"trial {trial}: the draft vanished")
            continue
        k = _prefix_k(after["text"], typed, base, report, trial)
        if k < seen_k:
            report.failures.append(f"trial {trial}: the draft went back from {seen_k} to {k} typed characters")
        if after["prompt"] != "" or after["polarity"] is not None:
            report.failures.append(f"trial {trial}: prompt/polarity changed: {after!r}"[:300])
        report.saves_observed += int(k > 0)
        log(
            f"app trial {trial + 1}/{trials}: typed {len(typed)}, on disk {k} "
            f"({'kill during a save' if killed_in_write else 'random kill'}), "
            f"{len(after['text'])} chars"
        )
    # the last launch: the draft comes back and a clean quit leaves it as it is
    final = _read_draft(data_dir / DRAFT)
    app = PtyApp(data_dir, config_dir)
    if not (app.wait_for("Candidates", startup_timeout) and app.wait_for("Restored your last draft", 5)):
        report.failures.append("final launch: no restore notice")
    code = app.quit()
    if code != 0:
        report.failures.append(f"final launch: Ctrl+Q exited with {code}")
    if _read_draft(data_dir / DRAFT) != final:
        report.failures.append("final launch: a clean quit changed the restored draft")
    report.seconds = round(time.monotonic() - started, 1)
    return report


def _prefix_k(text: str, typed: str, base: str, report: AppReport, trial: int) -> int:
    """k such that text == typed[:k] + base; records a failure (and returns -1) if there is none."""
    if text.endswith(base):
        head = text[: len(text) - len(base)]
        if typed.startswith(head):
            return len(head)
    report.failures.append(
        f"trial {trial}: the draft is not an earlier or current version (head {text[:60]!r}, typed {typed[:60]!r})"
    )
    return -1


# -- the store in a child process --------------------------------------------------------------------
_CHILD = r"""
import random, sys
from pathlib import Path
from kolyric.app.drafts import Draft, DraftStore
store = DraftStore(Path(sys.argv[1]))
rng = random.Random(int(sys.argv[2]))
start = int(sys.argv[3])
seq = start
while True:
    seq += 1
    size = rng.choice([0, 10, 1000, 50_000, 400_000, 2_000_000])
    text = (f"v{seq}:" + "가나다라 " * (size // 13 + 1))[:size] + f":v{seq}"
    store.save(Draft(text, prompt=f"p{seq}:{len(text)}", polarity=rng.choice([None, "긍정", "부정"])), seq)
    print(seq, flush=True)
"""


@dataclass
class StoreReport:
    trials: int = 0
    kills_during_write: int = 0
    temp_files_left: int = 0
    newer_than_acknowledged: int = 0  # the save in flight had already landed
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_store_trials(trials: int, workdir: Path, *, seed: int = 0, log=print) -> StoreReport:
    rng = random.Random(seed)
    data_dir = workdir / "store"
    data_dir.mkdir(parents=True, exist_ok=True)
    report = StoreReport()
    started = time.monotonic()
    acknowledged = 0
    for trial in range(trials):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(data_dir), str(rng.getrandbits(32)), str(acknowledged)],
            stdout=subprocess.PIPE,
            env=quiet_env(),
            cwd=ROOT,
            text=True,
        )
        acks: list[int] = []
        reader = threading.Thread(target=lambda: [acks.append(int(line)) for line in proc.stdout], daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while not acks and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        if trial % 2:  # kill the moment a save is being written
            until = time.monotonic() + rng.uniform(0.05, 1.0)
            while time.monotonic() < until and not _tmp_files(data_dir):
                time.sleep(0.0002)
        else:
            time.sleep(rng.uniform(0.0, 0.8))
        in_write = bool(_tmp_files(data_dir))
        proc.kill()
        proc.wait(30)
        reader.join(5)
        report.trials += 1
        report.kills_during_write += int(in_write)
        last_ack = acks[-1] if acks else acknowledged
        left = _tmp_files(data_dir)
        report.temp_files_left += len(left)
        for path in left:
            path.unlink()
        try:
            data = _read_draft(data_dir / DRAFT)
        except (ValueError, AssertionError) as exc:
            report.failures.append(f"store trial {trial}: torn draft after kill -9: {exc}")
            continue
        if data is None:
            report.failures.append(f"store trial {trial}: no draft at all")
            continue
        from kolyric.app.drafts import DraftStore

        if DraftStore(data_dir).load()[1]:  # what the next launch would say
            report.failures.append(f"store trial {trial}: the app would not restore the draft")
        version, length = (int(x) for x in data["prompt"][1:].split(":"))
        text = data["text"]
        if not (text.endswith(f":v{version}") and len(text) == length):
            report.failures.append(f"store trial {trial}: version {version} is not whole ({len(text)} chars)")
        if version not in (last_ack, last_ack + 1):
            report.failures.append(f"store trial {trial}: on disk v{version}, last acknowledged v{last_ack}")
        report.newer_than_acknowledged += int(version == last_ack + 1)
        acknowledged = version
        log(
            f"store trial {trial + 1}/{trials}: acknowledged v{last_ack}, on disk v{version}, "
            f"{len(text):,} chars{' (killed mid-write)' if in_write else ''}"
        )
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("app", "store", "both"), default="both")
    parser.add_argument("--trials", type=int, default=50, help="kills per mode (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draft-lines", type=int, default=400, help="app mode: size of the starting draft")
    parser.add_argument("--workdir", default=None, help="where drafts go (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kolyric-kill-drafts-") as tmp:
        workdir = Path(args.workdir or tmp)
        failures = 0
        if args.mode in ("store", "both"):
            store = run_store_trials(args.trials, workdir, seed=args.seed)
            print_report("store", vars(store))
            failures += len(store.failures)
        if args.mode in ("app", "both"):
            app = run_app_trials(args.trials, workdir, seed=args.seed, draft_lines=args.draft_lines)
            print_report("app", vars(app))
            failures += len(app.failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

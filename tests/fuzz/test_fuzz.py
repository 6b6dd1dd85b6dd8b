"""The fuzz targets inside ``make test``: saved inputs, hand-built seeds, a short run.

Every input in ``tests/fuzz/corpus/{client,server}/`` (what fuzzing found, kept as
regression inputs) and every seed of ``seeds.py`` (many beyond 8 KiB) must hold the
invariants of ``targets.py``. Then a short, bounded coverage-guided run per side with
atheris (skipped when atheris is not installed); ``make fuzz`` runs longer.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from seeds import SEEDS
from targets import TARGETS

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
#: Seconds of the short coverage-guided run per side.
SHORT_RUN_SECONDS = 10


def _saved(side: str) -> list[Path]:
    return sorted(p for p in (CORPUS / side).iterdir() if p.is_file())


@pytest.mark.parametrize("side", sorted(TARGETS))
def test_saved_corpus_holds_the_invariants(side: str) -> None:
    saved = _saved(side)
    assert saved, f"no saved corpus for {side}"
    for path in saved:
        TARGETS[side](path.read_bytes())


@pytest.mark.parametrize(
    ("side", "name"), [(side, name) for side in sorted(SEEDS) for name in SEEDS[side]()]
)
def test_seed_holds_the_invariants(side: str, name: str) -> None:
    TARGETS[side](SEEDS[side]()[name])


def test_seeds_reach_beyond_8_kib() -> None:
    for side in SEEDS:
        big = [name for name, data in SEEDS[side]().items() if len(data) > 8 * 1024]
        assert len(big) >= 4, (side, big)


@pytest.mark.parametrize("side", sorted(TARGETS))
def test_short_coverage_guided_run(side: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    work = tmp_path / "corpus"
    work.mkdir()
    for path in _saved(side):
        (work / path.name).write_bytes(path.read_bytes())
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "run.py"),
            side,
            f"-max_total_time={SHORT_RUN_SECONDS}",
            "-max_len=16384",
            "-timeout=20",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    crashes = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("timeout-*"))
    assert proc.returncode == 0 and not crashes, proc.stderr[-3000:]
    done = re.search(r"Done (\d+) runs", proc.stderr)
    assert done and int(done.group(1)) > 0, proc.stderr[-2000:]

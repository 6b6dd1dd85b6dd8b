"""Coverage-guided fuzzing of the core with atheris: ``python tests/fuzz/run.py SIDE ...``.

``SIDE`` is ``client`` or ``server`` (see ``targets.py``); the other arguments go to
libFuzzer (``-max_total_time=60``, ``-runs=N``, corpus directories …). ``make fuzz`` runs
both sides for ``FUZZ_SECONDS`` each over a scratch corpus seeded from the saved corpus
and the hand-built seeds; an input that breaks an invariant is written as
``crash-<hash>`` — copy it to ``tests/fuzz/corpus/SIDE/`` so ``make test`` keeps it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import atheris

with atheris.instrument_imports():
    import h11  # noqa: F401
    import wsproto  # noqa: F401

    import millis_proto  # noqa: F401

from seeds import SEEDS
from targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options] [corpus...]")
    side = sys.argv.pop(1)
    merging = any(arg.startswith("-merge=") for arg in sys.argv)
    for arg in [] if merging else sys.argv[1:]:
        directory = Path(arg)
        if not arg.startswith("-") and directory.is_dir() and not any(directory.iterdir()):
            for name, data in SEEDS[side]().items():  # an empty corpus starts from the seeds
                (directory / f"seed-{name}").write_bytes(data)
    atheris.Setup(sys.argv, TARGETS[side])
    atheris.Fuzz()


if __name__ == "__main__":
    main()

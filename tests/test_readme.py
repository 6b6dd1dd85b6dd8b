"""Every ``python`` block of the README runs as written and prints what it promises.

A new user copies the README's setup lines (start ``millis-proto serve``, export
``MILLIS_ENDPOINT``) and then the blocks, in a directory of their own, with millis-proto
installed from a wheel. The slow test does exactly that: it builds the wheel, installs it
with the ``audio`` extra in a fresh virtual environment, starts the server with the
README's own ``serve`` line (on a free port instead of 8080, which may be taken) and runs
each block from a directory outside the repository. The fast test runs the same blocks
and checks against the development install, also from outside the repository.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
#: What each kind of block promises to print (keyed by a phrase of the block's code).
PROMISES = {
    "Conversation(": [
        r"^you: +What's the weather in Paris\?$",
        r"^agent: It is sunny in Paris",
        r"^latency: [1-9]\d* ms from the end of your question",
        r"^call ended \(\w+\); wrote reply\.wav$",
    ],
    "converse(": [r"^agent called get_weather\{'city': 'Paris'\}, played \d+\.\d s$"],
    "offline_call(": [r"^120 turns in 10 virtual minutes, last: \(echo of user turn 120\)$"],
    "transports.trio import connect": [r"^ready, session local-session-\d+$"],
    "transports.anyio import connect": [r"^connected: local-session-\d+$"],
    "connect_blocking": [r"^session local-session-\d+$", r"^played \d+ real samples$"],
    "socket.create_connection": [r"^session local-session-\d+ closed with 1000$"],
}


def setup_lines() -> tuple[list[str], dict[str, str]]:
    """The README's ``serve`` command line and its ``export``s, from the setup block."""
    start = README.index("## Your first conversation")
    block = re.search(r"```sh\n(.*?)```", README[start:], re.S)
    assert block, "the README has no setup block under 'Your first conversation'"
    serve: list[str] = []
    exports: dict[str, str] = {}
    for line in block.group(1).splitlines():
        words = shlex.split(line)
        if words[:2] == ["millis-proto", "serve"]:
            assert words[-1] == "&", "the serve line runs in the background"
            serve = words[:-1]
        elif words and words[0] == "export":
            name, _, value = words[1].partition("=")
            exports[name] = value
    assert serve and "MILLIS_ENDPOINT" in exports, block.group(1)
    return serve, exports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(bin_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Run the README's serve line from ``bin_dir`` on a free port; the env it exports."""
    serve, exports = setup_lines()
    port = str(free_port())
    assert "8080" in serve and "8080" in exports["MILLIS_ENDPOINT"]
    command = [str(bin_dir / serve[0]), *(port if w == "8080" else w for w in serve[1:])]
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert server.stdout is not None
    first = server.stdout.readline()
    assert f"127.0.0.1:{port}/millis" in first, first
    env = {name: value.replace("8080", port) for name, value in exports.items()}
    return server, env


def run_blocks(python: str, bin_dir: Path, workdir: Path) -> None:
    """Run every block with ``python`` in ``workdir`` against a README-started server."""
    server, exported = start_server(bin_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MILLIS_", "PYTHON"))}
    env.update(exported)
    try:
        for index, block in enumerate(BLOCKS):
            where = workdir / f"block{index}"
            where.mkdir()
            proc = subprocess.run(
                [python, "-c", block], cwd=where, env=env, capture_output=True, text=True,
                timeout=120, check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert proc.returncode == 0, f"README block {index} failed:\n{proc.stderr}"
            assert proc.stdout.strip(), f"README block {index} printed nothing"
            for phrase, patterns in PROMISES.items():
                if phrase in block:
                    for pattern in patterns:
                        assert re.search(pattern, proc.stdout, re.M), (index, pattern, proc.stdout)
            if "Conversation(" in block:
                reply = where / "reply.wav"
                assert reply.stat().st_size > 44 + 32000  # more than a second of audio
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_readme_has_its_examples() -> None:
    kinds = {phrase for phrase in PROMISES for block in BLOCKS if phrase in block}
    assert kinds == set(PROMISES)  # each promised example is still there


@pytest.mark.timeout(300)  # seven programs, two of them real-time calls, on a busy machine
def test_readme_blocks_run_from_outside_the_repository(tmp_path: Path) -> None:
    """The development install, from a directory that is not the repository."""
    run_blocks(sys.executable, Path(sys.executable).parent, tmp_path)


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel built from this tree, audio extra."""
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(base), str(ROOT)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    (wheel,) = base.glob("millis_proto-*.whl")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{wheel}[audio]"],
        check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    return env_dir


@pytest.mark.slow
@pytest.mark.timeout(900)  # building and installing the wheel (pip's cache) come first
def test_readme_blocks_run_against_the_installed_wheel(wheel_env: Path, tmp_path: Path) -> None:
    python = wheel_env / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import transports, millis_proto; print(transports.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert where.startswith(str(wheel_env)), where  # the wheel's copy, not the source tree
    run_blocks(str(python), wheel_env / "bin", tmp_path)

"""A pytest plugin: voice-agent suite cases as test items, and a caller fixture.

Registered through the ``pytest11`` entry point, so it is active wherever millis-proto is
installed — and therefore careful: it collects a ``.toml`` / ``.json`` file only when
asked, i.e. when the file is named on the command line (``pytest examples/suite.toml``),
given with ``--millis-suite FILE``, or matched by the ``millis_suites`` ini option (glob
patterns relative to the rootdir), and only if the file has a ``[suite]`` table.

Each case becomes one item; a failing case fails with every failed expectation, each
naming the turn, the expectation and the measured value. Cases run against the local
agent in virtual time, or against ``--millis-endpoint`` (with ``--millis-public-key``,
``--millis-agent-id``) in real time. ``--millis-out-dir`` keeps each case's recording,
JSONL and verdicts.

The ``millis_caller`` fixture writes cases in Python::

    def test_weather(millis_caller):
        caller = millis_caller(scenario="examples/suite_scenario.json")
        first = caller.say("What's the weather in Paris?")
        caller.wait_for_answer()
        first.expect_function("get_weather", city="Paris").expect_response("sunny")
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from .suite.format import Case
    from .suite.interactive import BlockingCaller
    from .suite.runner import CaseResult, SuiteRunner

__all__ = ["SuiteCaseFailed", "SuiteCaseItem", "SuiteFile"]

_SUFFIXES = (".toml", ".json")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("millis", "millis-proto voice-agent test suites")
    group.addoption(
        "--millis-suite",
        action="append",
        default=[],
        metavar="SUITE",
        help="collect this suite file's cases as tests (repeatable)",
    )
    group.addoption("--millis-endpoint", metavar="URL", help="run suites against this endpoint")
    group.addoption("--millis-public-key", metavar="KEY", help="public key for the endpoint")
    group.addoption("--millis-agent-id", metavar="ID", help="agent id for the endpoint")
    group.addoption("--millis-out-dir", metavar="DIR", help="keep each case's files here")
    parser.addini("millis_suites", type="linelist", help="suite files (globs) to collect")


_ASKED = pytest.StashKey[frozenset[Path]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "millis_suite: a case of a millis-proto test suite")
    base = config.invocation_params.dir
    asked = frozenset((base / p).resolve() for p in config.getoption("millis_suite") or [])
    config.stash[_ASKED] = asked
    # Collected like a path on the command line (pytest folds one inside another arg's
    # directory into that one, hence the stash for telling them apart).
    config.args.extend(str(p) for p in sorted(asked))


def _wanted(file_path: Path, parent: pytest.Collector) -> bool:
    if file_path.suffix.lower() not in _SUFFIXES:
        return False
    config = parent.config
    if parent.session.isinitpath(file_path) or file_path.resolve() in config.stash[_ASKED]:
        return True
    patterns = config.getini("millis_suites") or []
    try:
        relative = file_path.relative_to(config.rootpath)
    except ValueError:
        return False
    return any(relative.match(pattern) for pattern in patterns)


def _looks_like_suite(file_path: Path) -> bool:
    """The document has a top-level ``suite`` table (other TOML/JSON is left alone)."""
    try:
        text = file_path.read_text(encoding="utf-8")
        if file_path.suffix.lower() == ".json":
            obj = json.loads(text)
        elif sys.version_info >= (3, 11):
            import tomllib

            obj = tomllib.loads(text)
        else:  # pragma: no cover
            return "[suite]" in text
    except (OSError, ValueError):
        return True  # let the suite loader report it properly
    return isinstance(obj, dict) and "suite" in obj


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SuiteFile | None:
    if _wanted(file_path, parent) and _looks_like_suite(file_path):
        return SuiteFile.from_parent(parent, path=file_path)
    return None


class SuiteFile(pytest.File):
    """A suite file; its cases are the items."""

    _runner: SuiteRunner | None = None

    def collect(self) -> Iterator[SuiteCaseItem]:
        from millis_proto import ConfigError

        from .suite.runner import load_suite

        try:
            loaded = load_suite(self.path)
        except ConfigError as exc:
            raise self.CollectError(str(exc)) from None
        self._loaded = loaded
        for case in loaded.suite.cases:
            yield SuiteCaseItem.from_parent(self, name=case.name, case=case)

    def runner(self) -> SuiteRunner:
        """The suite's runner, built on first use (requests checked, audio rendered)."""
        if self._runner is None:
            from .suite.runner import SuiteRunner

            self._runner = SuiteRunner(self._loaded, **_target(self.config))
        return self._runner


class SuiteCaseFailed(AssertionError):
    """A suite case did not pass; carries its result."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__("\n".join(v.message for v in result.failures))
        self.result = result


class SuiteCaseItem(pytest.Item):
    """One case of a suite file."""

    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.add_marker(pytest.mark.millis_suite)

    def runtest(self) -> None:
        from .suite.runner import case_dir

        assert isinstance(self.parent, SuiteFile)
        out = self.config.getoption("millis_out_dir")
        directory = None if out is None else case_dir(Path(out), self.case, 1, 1)
        result = self.parent.runner().run_sync(self.case, directory=directory)
        if not result.passed:
            raise SuiteCaseFailed(result)

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, SuiteCaseFailed):
            result = excinfo.value.result
            lines = [f"{len(result.failures)} expectation(s) failed:"]
            lines += [f"  {v.message}" for v in result.failures]
            if result.directory is not None:
                lines.append(f"  files: {result.directory}")
            return "\n".join(lines)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"suite case: {self.case.name}"


def _target(config: pytest.Config) -> dict[str, Any]:
    """The runner's endpoint and base request from the ``--millis-*`` options."""
    endpoint = config.getoption("millis_endpoint")
    if endpoint is None:
        return {}
    from .cli.options import build_target

    target = build_target(
        endpoint=endpoint,
        public_key=config.getoption("millis_public_key"),
        agent_id=config.getoption("millis_agent_id"),
        agent_config=None,
        metadata=None,
        include_metadata_in_prompt=False,
        session_id=None,
    )
    return {"endpoint": target.endpoint, "request": target.request}


@pytest.fixture
def millis_caller(request: pytest.FixtureRequest) -> Iterator[Callable[..., BlockingCaller]]:
    """A factory of scripted callers: ``millis_caller(scenario=None)`` starts a call with
    the local agent in virtual time — or with ``--millis-endpoint`` in real time — and
    returns a :class:`~transports.suite.interactive.BlockingCaller` (``say``,
    ``barge_in``, ``wait_for_answer``, ``turn(n).expect(...)``). Calls are hung up at
    teardown."""
    from .suite.interactive import BlockingCaller

    callers: list[BlockingCaller] = []
    target = _target(request.config)

    def make(scenario: str | Path | None = None, **kwargs: Any) -> BlockingCaller:
        kwargs.setdefault("name", request.node.name)
        if target:
            caller = BlockingCaller.endpoint(target["endpoint"], target["request"], **kwargs)
        else:
            caller = BlockingCaller.local(scenario, **kwargs)
        callers.append(caller)
        return caller

    yield make
    for caller in callers:
        caller.close()

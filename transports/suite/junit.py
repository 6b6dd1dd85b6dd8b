"""JUnit XML for CI systems: one ``<testcase>`` per case run, failures with their messages."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .runner import SuiteResult

__all__ = ["junit_xml", "write_junit"]


def junit_xml(result: SuiteResult) -> str:
    """The JUnit XML document of a suite run (times in seconds of the call)."""
    runs = result.results
    failures = sum(not r.passed for r in runs)
    suite = ET.Element(
        "testsuite",
        name=result.suite.name,
        tests=str(len(runs)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{sum(r.observation.duration_ms for r in runs) / 1000:.3f}",
    )
    for run in runs:
        name = (
            run.case.name if len(result.runs(run.case)) == 1 else f"{run.case.name} [run {run.run}]"
        )
        case = ET.SubElement(
            suite,
            "testcase",
            classname=result.suite.name,
            name=name,
            time=f"{run.observation.duration_ms / 1000:.3f}",
        )
        failed = run.failures
        if failed:
            failure = ET.SubElement(
                case, "failure", message=failed[0].message, type="ExpectationFailed"
            )
            failure.text = "\n".join(v.message for v in failed)
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


def write_junit(result: SuiteResult, path: str | Path) -> None:
    """Write :func:`junit_xml` to ``path``."""
    Path(path).write_text(junit_xml(result), encoding="utf-8")

"""pytest plugin of the repository: after a run that executed notebooks with nbval, print how long each notebook took.

The chapters promise to run in about a minute or two on a laptop CPU; CI's log shows whether they still do.
"""
from __future__ import annotations

from collections import defaultdict

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report) -> None:
    path, separator, _ = report.nodeid.partition(".ipynb::")
    if separator:  # an nbval cell: setup (kernel start), call and teardown all count
        _NOTEBOOK_SECONDS[path + ".ipynb"] += report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    if not _NOTEBOOK_SECONDS:
        return
    terminalreporter.write_sep("-", "notebook execution times (nbval)")
    for notebook, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        terminalreporter.write_line(f"{seconds:7.1f} s  {notebook}")
    terminalreporter.write_line(f"{sum(_NOTEBOOK_SECONDS.values()):7.1f} s  in all")

"""The harness of the tests and the benchmark: real totmapsfs daemons and real workload processes.

Nothing at run time imports it (import-linter's layers put it above ``service``).
"""

from ._daemons import Mount, Notifications
from ._workloads import PY, WORKLOAD_SCRIPT, HarnessError, Latency, Workload, as_user, state, wait_for

__all__ = [
    "PY",
    "WORKLOAD_SCRIPT",
    "HarnessError",
    "Latency",
    "Mount",
    "Notifications",
    "Workload",
    "as_user",
    "state",
    "wait_for",
]

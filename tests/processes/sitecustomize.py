"""A fixture for the Python processes a test starts (`asana-etl sync` in a process of its
own, a fetcher started by `spawn` or `forkserver`): Python imports this module as it
starts, because tests/conftest.py puts this folder first on PYTHONPATH.

It carries the test's `plan.MIN_SPLIT_LATENCY` into such a process. The fixture
`_listings_split_only_where_asked` sets it in the test's own process, and a fetcher
forked from there inherits it, but a process that imports `etl.run.plan` afresh would
get the threshold as shipped: on a busy machine (the suite runs on several workers) a
request sometimes takes longer than it, and the run then probes the bounds and splits
its listings, one run but not the next. The value is the environment's
ASANA_ETL_TEST_MIN_SPLIT_LATENCY, which the fixture sets; without it nothing is done.
"""

from __future__ import annotations

import os

_THRESHOLD = os.environ.get("ASANA_ETL_TEST_MIN_SPLIT_LATENCY")

if _THRESHOLD is not None:
    import importlib.abc
    import importlib.machinery
    import sys

    class _SetThreshold(importlib.abc.MetaPathFinder):
        """Finds `etl.run.plan` as Python would, and sets the threshold once it has run."""

        def find_spec(self, name, path=None, target=None):
            if name != "etl.run.plan":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path, target)
            if spec is None or spec.loader is None:
                return spec
            run_module = spec.loader.exec_module

            def exec_module(module):
                run_module(module)
                module.MIN_SPLIT_LATENCY = float(_THRESHOLD)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _SetThreshold())

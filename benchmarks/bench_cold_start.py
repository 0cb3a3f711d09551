"""Cold start of the API function: importing its Lambda module, next to its floor.

Each run imports in a fresh interpreter, and times the import alone (not the
interpreter's own start). The API module's runs alternate with runs that
import only ``aiohttp.web`` and ``aiobotocore.session``, what any aiohttp
application on AWS imports, so both see the same machine. Goal: the API
module costs at most 1.3 times that floor.

The API module leaves the AWS SDK and the JWT library to the first request,
so a third figure adds those: what a cold start costs before its first
answer, next to the same floor.

    python -m benchmarks.bench_cold_start [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from benchmarks.harness import report

API = ("mumble.backends.aws.api",)
FLOOR = ("aiohttp.web", "aiobotocore.session")
#: What the first request imports besides: the backend's clients, the
#: owner's token check, and the module the outbox sanitises with.
FIRST_REQUEST = (*API, "aiobotocore.session", "aiobotocore.config", "jwt", "nh3")
GOAL = 1.3
#: Modules worth knowing whether the API import loads them.
WATCHED = ("aiobotocore.session", "botocore.session", "jwt", "pyld", "nh3")

_TIMED = """
import json, sys, time
start = time.perf_counter()
for name in {modules!r}:
    __import__(name)
elapsed = time.perf_counter() - start
loaded = [m for m in {watched!r} if m in sys.modules]
print(json.dumps({{"seconds": elapsed, "loaded": loaded}}))
"""


def import_once(modules: tuple[str, ...]) -> tuple[float, list[str]]:
    """Seconds to import ``modules`` in a fresh interpreter, and what got loaded."""
    code = _TIMED.format(modules=modules, watched=WATCHED)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out)
    return float(result["seconds"]), list(result["loaded"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    # One untimed run each, so that both start from warm bytecode caches.
    import_once(API)
    import_once(FLOOR)
    import_once(FIRST_REQUEST)
    api: list[float] = []
    floor: list[float] = []
    first: list[float] = []
    loaded: list[str] = []
    for _ in range(args.runs):
        seconds, loaded = import_once(API)
        api.append(seconds)
        floor.append(import_once(FLOOR)[0])
        first.append(import_once(FIRST_REQUEST)[0])
    api_ms = statistics.median(api) * 1000
    floor_ms = statistics.median(floor) * 1000
    first_ms = statistics.median(first) * 1000
    ratio = api_ms / floor_ms
    report(
        {
            "runs": args.runs,
            "api_module": API[0],
            "api_import_ms_median": round(api_ms, 1),
            "floor_modules": list(FLOOR),
            "floor_import_ms_median": round(floor_ms, 1),
            "ratio": round(ratio, 2),
            "goal": GOAL,
            "met": ratio <= GOAL,
            "api_import_loads": loaded,
            "with_first_request_imports_ms_median": round(first_ms, 1),
            "with_first_request_imports_ratio": round(first_ms / floor_ms, 2),
        }
    )


if __name__ == "__main__":
    main()

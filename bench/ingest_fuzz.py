"""Random ingest events through the parsers, counted: N JSON events shaped like the three forms
the ingest topic takes (tests/unit/test_ingest_fuzz.py's strategies), and N random byte strings
on the ingest and on a step topic. Each ends as jobs ("ok"), an error code, or "unclassified: <type>"
(an exception that would have stopped a worker; the issue counted 9,585 of 20,000 before).

    .venv/bin/python -m bench.ingest_fuzz [--n 20000] [--out bench/results/ingest_fuzz.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

from studioline.shared.events import parse_job
from tests.unit.test_ingest_fuzz import _ingest, ingest_json, outcome, random_bytes


def tally(strategy, parsers: dict, n: int) -> dict[str, Counter]:
    counts = {name: Counter() for name in parsers}

    # Generation only (no shrinking, no example database): every example is counted once.
    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value):
        for name, parse in parsers.items():
            counts[name][outcome(parse, value)] += 1

    run()
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="examples of each kind")
    ap.add_argument("--out", type=Path, default=Path("bench/results/ingest_fuzz.json"))
    args = ap.parse_args()
    start = time.perf_counter()
    results = {
        "json_on_ingest": tally(ingest_json, {"parse_ingest": _ingest}, args.n)["parse_ingest"],
        **{f"bytes_{k}": v for k, v in tally(random_bytes, {"on_ingest": _ingest, "on_step_topic": parse_job}, args.n).items()},
    }
    report = {
        "examples_per_kind": args.n,
        "seconds": round(time.perf_counter() - start, 1),
        "unclassified": sum(c for counts in results.values() for k, c in counts.items() if k.startswith("unclassified")),
        "parser_bug": sum(counts["parser_bug"] for counts in results.values()),
        "outcomes": {kind: dict(counts.most_common()) for kind, counts in results.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

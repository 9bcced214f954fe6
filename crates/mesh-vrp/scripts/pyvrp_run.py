#!/usr/bin/env python3
"""Runs PyVRP (`pip install pyvrp`, measured with 0.14.1) on VRPLIB files with a wall-clock
limit and prints one JSON object per instance on stdout:

    {"file", "cost", "feasible", "routes", "iterations", "seconds", "cpu_seconds"}

`routes` lists location indices (depot 0, customers 1..n), as mesh-vrp numbers them, so the
caller can re-check and re-price the routes with its own checker.

Used by `cargo run --release -p mesh-vrp --example pyvrp_compare`; on its own:

    python3 crates/mesh-vrp/scripts/pyvrp_run.py --time-limit 10 --seed 1 FILE.vrp...
"""

import argparse
import json
import sys
import time

import pyvrp
from pyvrp.stop import MaxRuntime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, required=True, help="seconds per file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    for path in args.files:
        # EUC_2D rounded to the nearest integer, as TSPLIB / CVRPLIB (and mesh-vrp) do.
        data = pyvrp.read(path, round_func="round")
        cpu0 = time.process_time()
        res = pyvrp.solve(
            data,
            stop=MaxRuntime(args.time_limit),
            seed=args.seed,
            collect_stats=False,
            display=False,
        )
        cpu = time.process_time() - cpu0
        best = res.best
        out = {
            "file": path,
            "cost": best.distance(),
            "feasible": best.is_feasible(),
            # Client activities number clients from 0; locations put the depots first.
            "routes": [
                [a.idx + data.num_depots for a in route if a.is_client()]
                for route in best.routes()
            ],
            "iterations": res.num_iterations,
            "seconds": res.runtime,
            "cpu_seconds": cpu,
        }
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

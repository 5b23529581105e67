"""`python -m bench NAME [--size N]`, `python -m bench all` (each at its small size), `python -m bench --list`."""

from __future__ import annotations

import argparse
import sys
import traceback

from bench import harness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run a benchmark (see bench/README.md). Needs DATABASE_URL (PostgreSQL) and REDIS_URL.",
    )
    parser.add_argument(
        "name", nargs="?", help="a benchmark name, or 'all' to run every one at its small size"
    )
    parser.add_argument(
        "--size", type=int, help="how much data to make (what it counts depends on the benchmark)"
    )
    parser.add_argument(
        "--small", action="store_true", help="use the small default size (what 'all' always uses)"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    harness.setup_django()
    benchmarks = harness.discover()
    if args.list or not args.name:
        for b in benchmarks.values():
            print(f"{b.name:<12} small size {b.small_size:>9,}  {b.help}")
        if not args.list:
            parser.print_usage(sys.stderr)
            return 2
        return 0
    if args.size is not None and (args.small or args.name == "all"):
        parser.error("--size applies to one benchmark; --small and 'all' use each benchmark's small size")
    if args.size is not None and args.size < 1:
        parser.error("--size must be at least 1")
    if args.name != "all" and args.name not in benchmarks:
        parser.error(f"unknown benchmark {args.name!r}; known: {', '.join(benchmarks)}, all")

    harness.require_services()
    harness.prepare_database()

    if args.name != "all":
        benchmark = benchmarks[args.name]
        harness.run(benchmark, args.size or benchmark.small_size)
        return 0

    failed = []
    for benchmark in benchmarks.values():
        try:
            harness.run(benchmark, benchmark.small_size)
        except Exception:  # one broken benchmark must not hide the others' results
            traceback.print_exc()
            failed.append(benchmark.name)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

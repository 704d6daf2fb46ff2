"""`python -m bench [--jobs N] [--quick] ...`: the side-by-side benchmark (see the README)."""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console

from bench.report import print_results, write_json
from bench.runner import ROOT, Bench, Options
from bench.service_row import CLIENTS
from bench.stats import BenchError


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per row (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent submitters (default 16)")
    parser.add_argument("--warmup", type=int, default=0, help="warm-up jobs per row (default jobs/10, >= 20)")
    parser.add_argument(
        "--quick", action="store_true",
        help="a smoke run: one WORKER_CONCURRENCY/RABBIT_PREFETCH variation, 20,000 pre-loaded tasks",
    )
    parser.add_argument(
        "--rounds", type=int, default=None,
        help="rounds of the three side-by-side rows, in order then reversed (default 2; --quick 1)",
    )
    parser.add_argument("--preload", type=int, default=None, help="tasks pre-loaded (default 1,000,000)")
    parser.add_argument(
        "--retention", type=int, default=None,
        help="tasks aged past RETENTION_DAYS for the retention part (default 200,000; --quick 20,000)",
    )
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery row (no venv install)")
    parser.add_argument(
        "--no-scaling", action="store_true", help="skip the workers/concurrency/prefetch rows"
    )
    parser.add_argument("--no-growth", action="store_true", help="skip the empty vs pre-loaded comparison")
    parser.add_argument(
        "--client", choices=CLIENTS, default="aiohttp",
        help="the service row's HTTP client (default aiohttp; httpx costs several times its CPU)",
    )
    parser.add_argument(
        "--compare-clients", action="store_true",
        help="also measure the service row with every other HTTP client, in the same rounds",
    )
    parser.add_argument(
        "--server-commit", action="store_true",
        help="leave the server's synchronous_commit (off on the embedded stack) to the bare and Celery rows",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.concurrency < 1:
        parser.error("--jobs and --concurrency must be at least 1")
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    retention = args.retention if args.retention is not None else (20_000 if args.quick else 200_000)
    preload = args.preload if args.preload is not None else (20_000 if args.quick else 1_000_000)
    return Options(
        jobs=args.jobs, concurrency=args.concurrency, warmup=args.warmup, quick=args.quick, rounds=rounds,
        preload_tasks=preload, celery=not args.no_celery, scaling=not args.no_scaling,
        growth=not args.no_growth, retention_tasks=retention, client=args.client,
        client_comparison=args.compare_clients, synchronous_commit=not args.server_commit,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    # Wide enough for the tables when the output goes to a file (Rich assumes 80 columns there).
    console = Console(width=None if sys.stdout.isatty() else 200)
    run_dir = ROOT / "reports" / "out" / f"{time.strftime('%Y%m%d-%H%M%S')}-bench"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        results = Bench(options, run_dir, console).run()
    except BenchError as error:
        console.print(f"[red]bench failed:[/red] {error}")
        return 1
    print_results(results, console)
    write_json(results, run_dir / "bench.json")
    console.print(f"results: {run_dir / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

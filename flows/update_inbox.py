"""The ``update-inbox`` flow: apply the change files dropped in an inbox folder to a master output.

Each file is applied once, in name order, by ``dedup.update.apply_file`` (new, corrected and
deleted records join the master's clusters with stable ids; see the README). The ledger of
applied files is published with each result, so a rerun after a crash applies exactly the files
still missing; the deployment's concurrency limit keeps two updates off the same master.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

from dedup.errors import DedupError
from dedup.io import check_run_output
from dedup.update import apply_file, inbox_files


@task(retries=2, retry_delay_seconds=5)  # safe to retry: a file already applied is skipped
def apply_change_file(path: str, master: str) -> bool:
    return apply_file(path, master, get_run_logger())


@flow(name="update-inbox", log_prints=True)
def update_inbox(inbox: str = "inbox/febrl3", master: str = "out/scheduled/febrl3") -> list[str]:
    """Apply every new file in ``inbox`` to ``master``; returns the names applied by this run."""
    check_run_output(master, ("clusters.parquet", "pairs.parquet", "report.json"))
    applied = [path.name for path in inbox_files(inbox) if apply_change_file(str(path), master)]
    print(f"applied {len(applied)} file(s) to {master}: {', '.join(applied) or 'none new'}")
    return applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inbox", required=True)
    parser.add_argument("--master", required=True)
    args = parser.parse_args(argv)
    try:  # checked before Prefect starts: a mistake is one line, exit 2
        check_run_output(args.master, ("clusters.parquet", "pairs.parquet", "report.json"))
        if not Path(args.inbox).is_dir():
            raise DedupError(f"inbox folder not found: {args.inbox}")
    except DedupError as exc:
        print(f"update-inbox: error: {exc}", file=sys.stderr)
        return 2
    update_inbox(args.inbox, args.master)
    return 0


if __name__ == "__main__":
    sys.exit(main())

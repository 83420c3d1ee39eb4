"""Command line: ``dedup run``, ``update``, ``evaluate``, ``blocking``, ``explain`` and ``synth``.

Errors a user can cause print one line to stderr and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import sys
from collections.abc import Sequence

from dedup.errors import DedupError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dedup", description="Find duplicate records in a Parquet file.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="block, train (or load) the model, score, cluster, write")
    run.add_argument("input", help="input Parquet file")
    run.add_argument("--config", required=True, help="YAML config (id column, fields, blocking)")
    run.add_argument("--output", required=True, help="output directory")
    run.add_argument("--model", default=None, help="saved model directory to reuse instead of training")
    run.add_argument("--labels", default=None, help="pair labels (dedup review's labels.parquet) to learn from")

    blocking = sub.add_parser("blocking", help="what each blocking pass contributes (pairs, new pairs, recall)")
    blocking.add_argument("input", help="input Parquet file")
    blocking.add_argument("--config", required=True)
    blocking.add_argument("--model", default=None, help="model for embedding passes (else one is trained)")
    blocking.add_argument("--label-column", default=None, help="true entity column, for pair completeness")

    update = sub.add_parser("update", help="add, correct or delete records in a previous run's output")
    update.add_argument("changes", help="Parquet/CSV of new or corrected records (optional `op` column: upsert/delete)")
    update.add_argument("--previous", required=True, help="output directory of `dedup run` (or of an update)")
    update.add_argument("--output", help="where the updated result goes (default: --previous, as a new generation)")
    inbox = sub.add_parser("inbox", help="apply every change file dropped in a folder to a master output, once each")
    inbox.add_argument("inbox", help="folder of change files (*.parquet, *.csv), applied in name order")
    inbox.add_argument("--master", required=True, help="output directory the changes are applied to")
    explain = sub.add_parser("explain", help="field-by-field evidence for one pair of records")
    explain.add_argument("output", help="output directory of `dedup run`")
    explain.add_argument("--id", action="append", required=True, dest="ids", help="record id (give two)")

    review = sub.add_parser("review", help="a local web page to judge uncertain pairs; answers retrain the model")
    review.add_argument("output", help="output directory of `dedup run`")
    review.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
    review.add_argument("--host", default="127.0.0.1", help="address to listen on (not loopback: a token is required)")
    review.add_argument("--input", default=None, help="the run's input, if not where report.json says (for retrain)")
    evaluate = sub.add_parser("evaluate", help="compare a run's output with ground-truth labels")
    evaluate.add_argument("output", help="output directory of `dedup run`")
    evaluate.add_argument("--truth", required=True, help="Parquet file with the id and label columns")
    evaluate.add_argument("--label-column", required=True, help="column holding the true entity")
    evaluate.add_argument("--json", action="store_true", help="also print all metrics as JSON")
    synth = sub.add_parser("synth", help="generate person records with known duplicates (column `cluster`)")
    synth.add_argument("--n", type=int, required=True, help="number of records")
    synth.add_argument("--output", required=True, help="Parquet file to write")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same records")
    synth.add_argument(
        "--hard",
        action="store_true",
        help="namesakes sharing a birth date, households sharing an address, common surnames, transcription noise",
    )
    return parser


def _print_run(report: dict) -> None:
    counts = report["counts"]
    print(
        f"{counts['records']} records, {counts['candidate_pairs']} candidate pairs, "
        f"{counts['matches']} matches, {counts['clusters']} clusters "
        f"({counts['duplicate_clusters']} with duplicates, largest {counts['largest_cluster']})"
    )
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in report["timings_seconds"].items())
    print(f"timings: {timings}")
    for old, new in report.get("renamed_input_columns", {}).items():  # said, not silently overwritten
        print(f"note: the input's column {old!r} is written as {new!r} (dedup adds its own {old!r})")
    for warning in report.get("warnings", []):  # the config read otherwise than written
        print(f"dedup: warning: {warning}", file=sys.stderr)
    if "metrics" in report:
        m = report["metrics"]
        print(f"held-out metrics: pairwise F1 {m['pairwise']['f1']:.4f}, cluster F1 {m['cluster_pairs']['f1']:.4f}")


def _print_metrics(metrics: dict) -> None:
    for view in ("pairwise", "cluster_pairs", "b_cubed"):
        m = metrics[view]
        print(f"{view:14s} precision {m['precision']:.4f}  recall {m['recall']:.4f}  F1 {m['f1']:.4f}")
    b = metrics["blocking"]
    print(
        f"{'blocking':14s} pair completeness {b['pair_completeness']:.4f}  "
        f"reduction ratio {b['reduction_ratio']:.6f}  candidates {int(b['candidate_pairs'])}"
    )


COMMAND_MODULES = {
    "run": "dedup.pipeline",
    "update": "dedup.update",
    "inbox": "dedup.update",
    "explain": "dedup.explain",
    "blocking": "dedup.analysis",
    "review": "dedup.review.app",
    "synth": "dedup.synth",
    "evaluate": "dedup.evaluation",
}


def import_frozen(module: str) -> None:
    """Import a command's code with the garbage collector off, then freeze what it made.

    The imports (torch, polars, matplotlib) make about a million objects that live as long as
    the process. Left to the collector, every full collection walks them all: during the
    imports, then whenever a chart's ticks are made, and once more at exit. For a ``dedup
    update`` of a 1M-record master that was ~0.3 s of the imports, ~0.5 s of exit and part of
    the charts (``benchmarks/incremental.py``); frozen (``gc.freeze``), the collector only looks
    at what the command itself makes. Only for a process of its own (``console``): frozen
    objects are never collected, so a caller that runs many commands keeps its collector whole.
    """
    gc.disable()
    try:
        importlib.import_module(module)
    finally:
        gc.freeze()
        gc.enable()


def console() -> int:
    """The ``dedup`` command."""
    return main(freeze_imports=True)


def main(argv: Sequence[str] | None = None, freeze_imports: bool = False) -> int:
    args = _parser().parse_args(argv)
    if freeze_imports:
        import_frozen(COMMAND_MODULES[args.command])
    # what the stages log is for Prefect's run logs; here the report's warnings are printed
    # once, after the run, instead of Python's bare last-resort echo of each
    logging.getLogger("dedup").addHandler(logging.NullHandler())
    try:
        if args.command == "run":
            from dedup.pipeline import run

            report = run(args.input, args.config, args.output, model_path=args.model, labels=args.labels)
            _print_run(report)
            print(f"wrote {args.output}/clusters.parquet, pairs.parquet, report.json")
        elif args.command == "update":
            from dedup.update import update

            report = update(args.changes, args.previous, args.output)
            _print_run(report)
            changes = ", ".join(f"{n} {reason}" for reason, n in report["update"]["changes"].items() if n)
            print(f"changes: {changes or 'none'}; {report['update']['pairs_scored']} pairs scored")
        elif args.command == "inbox":
            from dedup.update import apply_inbox

            applied = apply_inbox(args.inbox, args.master)
            print(f"applied {len(applied)} file(s): {', '.join(applied) or 'none new'}")
        elif args.command == "explain":
            from dedup.explain import explain_pair, format_explanation

            if len(args.ids) != 2:
                raise DedupError("explain needs exactly two --id values")
            print(format_explanation(explain_pair(args.output, args.ids[0], args.ids[1])))
        elif args.command == "blocking":
            from dedup.analysis import blocking_report

            print(blocking_report(args.input, args.config, args.model, args.label_column))
        elif args.command == "review":
            from dedup.review.app import serve

            serve(args.output, args.host, args.port, args.input)
        elif args.command == "synth":
            from dedup.synth import write

            path = write(args.n, args.output, seed=args.seed, hard=args.hard)
            print(f"wrote {args.n} records to {path}")
        else:
            from dedup.evaluation import evaluate_output

            metrics = evaluate_output(args.output, args.truth, args.label_column)
            _print_metrics(metrics)
            if args.json:
                print(json.dumps(metrics, indent=2))
    except DedupError as exc:
        if args.debug:
            raise
        print(f"dedup: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(console())

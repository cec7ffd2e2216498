"""One table across runs: per-class IoU and mIoU on target val, with the paper's rows (docs/benchmarks.md,
Published numbers) alongside when the runs are on ``dataset=synthia`` or ``dataset=viper`` (means only on
``gta5`` / ``synthia_image``).

    python scripts/compare_runs.py RUN_OR_RESULT [RUN_OR_RESULT ...] [--markdown FILE] [--no-paper]

Each argument is a run directory (its ``metrics.json``: the final checkpoint), an evaluation directory
(``RUN/eval/<time>``, e.g. from ``python -m dastc.eval select=best``) or a ``metrics.json`` file. The
``checkpoint`` column says how each row's checkpoint was chosen (a run's ``final``, ``best of N on val`` or
``given``; a published row's as its source states it), and the notes under the table where the published
figures were read. All runs must be on the same benchmark.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from dastc.compare import load_result, markdown, results_table, rows_of


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "runs", nargs="+", type=Path, help="run directories, eval directories or metrics.json"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    parser.add_argument("--no-paper", action="store_true", help="leave out the published rows")
    args = parser.parse_args()
    classes, rows = rows_of([load_result(p) for p in args.runs], paper=not args.no_paper)
    table = results_table(classes, rows, "Target val IoU per class (%)")
    Console(width=max(120, 12 * len(classes) + 80)).print(table)
    if args.markdown:
        args.markdown.write_text(markdown(classes, rows))
        print(f"markdown: {args.markdown}")


if __name__ == "__main__":
    main()

"""Writes notebooks/inspect_output.ipynb (kept as code so the notebook's source is reviewable).

python notebooks/build_inspect_output.py
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# Inspect a dedup run\n\n"
        "Opens the output of `dedup run` (set `DEDUP_OUTPUT`, default `out/febrl3` from `make demo`): "
        "the report, the biggest clusters, the borderline pairs near the threshold, one pair explained "
        "field by field, and the charts."
    ),
    new_code_cell(
        "import json\n"
        "import os\n"
        "from pathlib import Path\n\n"
        "import polars as pl\n"
        "from IPython.display import Image, display\n\n"
        "import dedup\n\n"
        "here = Path.cwd()\n"
        "root = here.parent if here.name == 'notebooks' else here\n"
        "OUTPUT = Path(os.environ.get('DEDUP_OUTPUT', root / 'out' / 'febrl3'))\n"
        "RUN = dedup.run_dir(OUTPUT)  # one run's files, even if another run finishes meanwhile\n"
        "clusters = pl.read_parquet(RUN / 'clusters.parquet')\n"
        "pairs = pl.read_parquet(RUN / 'pairs.parquet')\n"
        "report = json.loads((RUN / 'report.json').read_text())\n"
        "id_column = pairs.columns[0].removesuffix('_l')\n"
        "report['counts']"
    ),
    new_markdown_cell("## The biggest clusters\n\nEach record with its cluster and how strongly it belongs there."),
    new_code_cell(
        "biggest = (\n"
        "    clusters.filter(pl.col('cluster_size') > 1)\n"
        "    .sort(['cluster_size', 'cluster_id', 'cluster_confidence'], descending=[True, False, False])\n"
        ")\n"
        "print(f\"largest clusters: {report['largest_clusters'][:3]}\")\n"
        "biggest.head(15)"
    ),
    new_markdown_cell(
        "## Borderline pairs\n\nCandidate pairs closest to the threshold: where a reviewer's time is best spent."
    ),
    new_code_cell(
        "threshold = report['threshold']\n"
        "borderline = pairs.with_columns((pl.col('match_probability') - threshold).abs().alias('distance'))"
        ".sort('distance').head(10)\n"
        "borderline.select(f'{id_column}_l', f'{id_column}_r', 'match_probability', 'match_weight', "
        "pl.col('^sim_.*$'))"
    ),
    new_markdown_cell(
        "## One pair, explained\n\nEach field's values, similarity and contribution in bits; "
        "the prior plus the contributions is the match weight in `pairs.parquet`."
    ),
    new_code_cell(
        "pair = borderline.row(0, named=True)\n"
        "explanation = dedup.explain_pair(OUTPUT, pair[f'{id_column}_l'], pair[f'{id_column}_r'])\n"
        "print(dedup.format_explanation(explanation))\n"
        "contributions = {c.removeprefix('bf_'): pair[c] for c in pairs.columns if c.startswith('bf_')}\n"
        "recomputed = report['prior_weight_bits'] + sum(contributions.values())\n"
        "print(f\"prior {report['prior_weight_bits']:+.2f} + fields {sum(contributions.values()):+.2f} = \"\n"
        "      f\"{recomputed:+.2f} bits (pairs.parquet says {pair['match_weight']:+.2f})\")"
    ),
    new_markdown_cell("## Charts"),
    new_code_cell(
        "for chart in sorted((RUN / 'charts').glob('*.png')):\n"
        "    print(chart.name)\n"
        "    display(Image(filename=str(chart)))"
    ),
]


def build() -> nbformat.NotebookNode:
    return new_notebook(cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})


def main() -> None:
    target = Path(__file__).with_name("inspect_output.ipynb")
    nbformat.write(build(), target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

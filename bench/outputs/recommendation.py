"""The NUM_PARALLEL recommendation as the terminal shows it, after `bench run` of a sweep and in
`bench recommend`: a compact table that fits 80 columns, one 'why' line per setting, the verdict."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.analysis.recommend import Recommendation, candidates_table
from bench.analysis.run_analysis import RunAnalysis
from bench.escape import for_terminal

# The long 'why' column goes below the table, one line per setting, so the figures keep their width.
_TABLE_COLUMNS = ("NUM_PARALLEL", "concurrency", "output tok/s", "ttft p95", "tpot p95", "GPU memory", "outcome")
_SHORT_HEADERS = {"NUM_PARALLEL": "NP", "concurrency": "conc", "output tok/s": "tok/s", "GPU memory": "GPU"}


def recommendation_table(recommendation: Recommendation, title: str) -> Table:
    rows = candidates_table(recommendation)
    table = Table(title=for_terminal(title), title_justify="left")
    for column in _TABLE_COLUMNS:
        table.add_column(_SHORT_HEADERS.get(column, column), justify="left" if column == "outcome" else "right",
                         no_wrap=True)
    for row in rows:
        style = "bold" if row["outcome"] == "chosen" else None
        table.add_row(*(for_terminal(row[column]) for column in _TABLE_COLUMNS), style=style)
    return table


def print_recommendation(console: Console, recommendation: Recommendation, title: str) -> None:
    """Table, why each setting won or lost, then the verdict (yellow when provisional or none)."""
    console.print(recommendation_table(recommendation, title))
    why = Table.grid(padding=(0, 1))
    why.add_column(no_wrap=True)
    why.add_column(ratio=1)
    for row in candidates_table(recommendation):
        why.add_row(f"  NP={row['NUM_PARALLEL']}:", Text(for_terminal(row["why"])))
    console.print(why)
    plain = recommendation.num_parallel is not None and not recommendation.provisional
    console.print(recommendation.verdict, highlight=False, markup=False,
                  style="bold" if plain else "bold yellow")
    if recommendation.basis_line:
        console.print(recommendation.basis_line, highlight=False, soft_wrap=True, markup=False)


def print_run_recommendation(console: Console, analysis: RunAnalysis) -> None:
    """After `bench run` of a sweep with an OLLAMA_NUM_PARALLEL axis: the scenario's SLOs' answer."""
    if analysis.recommendation_error is not None:
        console.print(f"no NUM_PARALLEL recommendation: {analysis.recommendation_error}", highlight=False,
                      soft_wrap=True, markup=False)
        return
    if analysis.recommendation is None:
        return
    print_recommendation(console, analysis.recommendation, "OLLAMA_NUM_PARALLEL: the best cell of each setting")
    console.print(f"try other SLOs: bench recommend {analysis.run.path} --slo ttft_p95=2s (--write stores one)",
                  highlight=False, soft_wrap=True, markup=False, style="dim")

"""A comparison report of a regressed pair: red gate rows with glyphs, never the chosen green; the
OpenAI-vs-native throughput difference with its interval."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from bench.report import write_report


def test_regressed_gates_are_red_rows_with_the_terminals_glyphs(make_run: Callable[..., Path], tmp_path: Path) -> None:
    base = make_run(run_id="base", surfaces=("native",), rejected_at=None, cold_measured=False, requests_per_cell=40)
    slow = make_run(run_id="slow", surfaces=("native",), rejected_at=None, cold_measured=False, requests_per_cell=40,
                    speed_factor=1.5)
    html = write_report([base, slow], tmp_path / "cmp.html").read_text(encoding="utf-8")
    answer = html.split('<section id="answer">')[1].split("</section>")[0]
    gates = answer.split("Gates: ")[1].split("</table>")[0]
    failed = re.findall(r'<tr class="fail">(.*?)</tr>', gates, flags=re.S)
    assert failed and all("✗ REGRESSED" in row for row in failed)
    assert 'class="highlight"' not in gates
    assert '<p class="note error">' in answer and "REGRESSION" in answer


def test_openai_against_native_throughput_has_an_interval(make_run: Callable[..., Path]) -> None:
    run = make_run(surfaces=("native", "openai"), rejected_at=None, cold_measured=False, requests_per_cell=20)
    html = write_report([run], run / "report.html").read_text(encoding="utf-8")
    surfaces = html.split('<section id="surfaces">')[1].split("</section>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", surfaces.split("<tbody>")[1], flags=re.S)
    assert rows
    for row in rows:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        assert re.search(r"\[[+-]\d+\.\d, [+-]\d+\.\d\]%", cells[-1]), cells[-1]  # output tok/s Δ


def test_the_compared_runs_time_panels_share_one_x_scale(make_run: Callable[..., Path], tmp_path: Path,
                                                         monkeypatch) -> None:  # noqa: ANN001
    from bench.report import plotting

    drawn: dict[str, list[tuple[float, float]]] = {}
    render = plotting.render
    time_panels = ("The run over time", "Loaded models over time (/api/ps)")

    def recording(figure, title, alt):  # noqa: ANN001, ANN202
        drawn.setdefault(title, []).append(tuple(round(x, 6) for x in figure.axes[-1].get_xlim()))
        # Only the time panels are drawn: the other ~20 figures of the page are not what this checks
        # (their SVG is most of the page's cost, ~3 s a figure on a busy 2-core box).
        return render(figure, title, alt) if title in time_panels else plotting.Plot(title, "<svg></svg>", alt, 1, 1)

    monkeypatch.setattr(plotting, "render", recording)
    fast = make_run(run_id="fast", surfaces=("native",), rejected_at=None, ps=True)
    slow = make_run(run_id="slow", surfaces=("native",), rejected_at=None, ps=True, speed_factor=3.0)
    write_report([fast, slow], tmp_path / "cmp.html")
    for title in time_panels:
        assert len(drawn[title]) == 2 and drawn[title][0] == drawn[title][1], (title, drawn[title])

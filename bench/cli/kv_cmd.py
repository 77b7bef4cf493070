"""`bench kv` (KV-cache calculator) and `bench kv-analyze` (measured fit of a run): parse, call, print."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bench.cli import params
from bench.cli.console import output_console, working
from bench.errors import UsageError

if TYPE_CHECKING:
    from bench.analysis.kv_formulas import KvSizing

# bench.analysis.kv_formulas.CACHE_TYPES, repeated so that `bench --help` need not import numpy and scipy
# (tests/cli/test_startup.py keeps the two equal).
CACHE_TYPES: tuple[str, ...] = ("f16", "q8_0", "q4_0")


def _weights_from_tags(models: list[dict[str, Any]], name: str) -> int | None:
    wanted = name if ":" in name else f"{name}:latest"
    for entry in models:
        if wanted in (entry.get("name"), entry.get("model")) and entry.get("size") is not None:
            return int(entry["size"])
    return None


def _print_sizing(name: str, sizing: KvSizing) -> None:
    from bench.analysis.kv_formulas import describe_ratio
    from bench.numbers import binary_size

    arch = sizing.arch
    _echo_wrapped(
        f"{name}: {arch.arch}, {arch.block_count} layers, hidden {arch.embedding_length}, "
        f"{arch.head_count} heads / {arch.head_count_kv} KV heads, head_dim {arch.head_dim}", "  ")
    _echo_wrapped(
        f"num_ctx {sizing.num_ctx} x NUM_PARALLEL {sizing.num_parallel} = {sizing.ctx_total} tokens, "
        f"cache {sizing.cache_type}", "  ")
    weights = "unknown" if sizing.weights_bytes is None else binary_size(sizing.weights_bytes)
    rows = [
        ("weights", weights),
        ("KV, rule of thumb", f"{binary_size(sizing.rule_of_thumb_bytes)} (ctx x layers x hidden x 2 B)"),
        ("KV, exact", f"{binary_size(sizing.exact_bytes)} (2 x layers x ctx x kv_heads x head_dim x bytes)"),
    ]
    if sizing.exact_stored_bytes != sizing.exact_bytes:
        rows.append(("KV, exact as stored", f"{binary_size(sizing.exact_stored_bytes)} ({sizing.cache_type} blocks)"))
    if sizing.graph_known:
        compute = (f"{binary_size(sizing.graph_bytes)} (approx., -ub {sizing.num_batch} as Ollama v0.33 picks it, "
                   "flash attention on)")
    else:
        compute = "cannot know: the model reports no vocabulary size (give --graph)"
    rows += [
        ("rule of thumb vs exact", f"{sizing.rule_to_exact:.2f}x ({describe_ratio(sizing.rule_to_exact)})"),
        ("compute buffer (llama-server)", compute),
    ]
    if sizing.total_bytes is not None:
        rows.append(("total", f"{binary_size(sizing.total_bytes)} (weights + stored KV + compute)"))
    if sizing.gpu_memory_bytes is None:
        rows.append(("largest NUM_PARALLEL that fits", "give --gpu-memory"))
    elif sizing.max_parallel is None:
        rows.append(("largest NUM_PARALLEL that fits", "unknown weights size"))
    else:
        where = (f"in {binary_size(sizing.gpu_memory_bytes)} less llama-server's 1 GiB fit margin, at num_ctx "
                 f"{sizing.num_ctx}")
        rows.append(("largest NUM_PARALLEL that fits", f"{sizing.max_parallel} ({where})"))
    _echo_rows(rows)


def _columns() -> int:
    """The terminal's width (COLUMNS when set), 80 off a terminal."""
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns)


def _echo_wrapped(text: str, indent: str = "") -> None:
    import textwrap

    click.echo(textwrap.fill(text, width=_columns(), subsequent_indent=indent, break_on_hyphens=False))


def _echo_rows(rows: list[tuple[str, str]]) -> None:
    """`  label  value` rows; a long value wraps under itself, a long label goes on its own line."""
    import textwrap

    columns = _columns()
    width = min(max(len(label) for label, _ in rows), columns // 2 - 4)
    for label, value in rows:
        indent = " " * (width + 4)
        head = f"  {label:<{width}}  " if len(label) <= width else f"  {label}\n{indent}"
        body = textwrap.wrap(value, width=max(20, columns - len(indent)), break_on_hyphens=False) or [""]
        click.echo(head + ("\n" + indent).join(body))


def _print_table(sizings: list[tuple[str, KvSizing]], cache_type: str) -> None:
    from bench.analysis.kv_formulas import describe_ratio, kv_bytes_per_token, rule_of_thumb_bytes_per_token
    from bench.numbers import binary_size

    header = ("model", "arch", "layers", "hidden", "q/kv heads", "rule B/tok", "exact B/tok",
              "rule of thumb", "KV exact", "max parallel")  # fmt: skip
    lines = [header]
    for name, sizing in sizings:
        arch = sizing.arch
        lines.append(
            (
                name,
                arch.arch,
                str(arch.block_count),
                str(arch.embedding_length),
                f"{arch.head_count}/{arch.head_count_kv}",
                str(rule_of_thumb_bytes_per_token(arch)),
                f"{kv_bytes_per_token(arch, cache_type):g}",
                describe_ratio(sizing.rule_to_exact),
                binary_size(sizing.exact_stored_bytes),
                "-" if sizing.max_parallel is None else str(sizing.max_parallel),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    keep = list(range(len(header)))
    # A narrow terminal keeps the answer's columns (model, per token, KV, max parallel): figures are
    # never cut; the architecture columns go first.
    for dropped in ("arch", "hidden", "rule B/tok", "layers", "q/kv heads"):
        if sum(widths[i] + 2 for i in keep) <= _columns():
            break
        keep.remove(header.index(dropped))
    for line in lines:
        click.echo("  ".join(line[i].ljust(widths[i]) for i in keep).rstrip())
    _echo_wrapped(
        "rule of thumb = layers x hidden x 2 B per token; exact = 2 (K and V) x layers x kv_heads x "
        "head_dim x bytes/element. With g query heads per KV head the rule counts g times too many "
        "heads but forgets that K and V are two tensors, so at f16 it is g/2 times the exact figure."
    )


@click.command("kv")
@click.argument("model", required=False)
@click.option("--ctx", "num_ctx", type=params.COUNT, default=8192, show_default=True, help="num_ctx per slot")
@click.option("--parallel", "num_parallel", type=params.CONCURRENCY, default=1, show_default=True, help="OLLAMA_NUM_PARALLEL")
@click.option("--cache-type", type=click.Choice(CACHE_TYPES), default="f16", show_default=True)
@click.option("--gpu-memory", default=None, help="GPU memory to fit in, e.g. 80GiB or 24GB")
@click.option("--graph", "graph_size", default=None, help="fixed compute-buffer allowance (default: llama-server estimate)")
@click.option("--target", default=None, help="server URL, or `sim` for bench sim's catalog (default: the catalog "
              "when it has MODEL, else OLLAMA_HOST, else 127.0.0.1:11434)")
@click.option("--gguf", "gguf_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="read the architecture from a local GGUF file instead of a server")  # fmt: skip
@click.option("--all", "all_models", is_flag=True, help="a table over every model the server lists")
def kv_command(
    model: str | None,
    num_ctx: int,
    num_parallel: int,
    cache_type: str,
    gpu_memory: str | None,
    graph_size: str | None,
    target: str | None,
    gguf_path: Path | None,
    all_models: bool,
) -> None:
    """KV-cache calculator: rule of thumb vs exact GQA figure, weights, and the NUM_PARALLEL that fits."""
    from bench.analysis.kv_formulas import parse_bytes, size_model
    from bench.analysis.kv_model import ModelArch, read_gguf

    gpu_memory_bytes = parse_bytes(gpu_memory) if gpu_memory else None
    graph_bytes = parse_bytes(graph_size) if graph_size else None
    if gguf_path is not None:
        if target or all_models:
            raise UsageError("--gguf reads one local file: it cannot be combined with --target or --all")
        gguf_model = read_gguf(gguf_path)
        sizing = size_model(gguf_model.arch, gguf_model.weights_bytes, num_ctx, num_parallel, cache_type,
                            gpu_memory_bytes, graph_bytes)  # fmt: skip
        _print_sizing(model or gguf_path.name, sizing)
        return
    if not model and not all_models:
        raise UsageError("bench kv: give a MODEL, --all, or --gguf FILE")
    # A server when one is named (--target URL, or OLLAMA_HOST set) or the catalog lacks the model;
    # otherwise bench sim's catalog, offline.
    named_server = target not in (None, "sim") or (target is None and bool(os.environ.get("OLLAMA_HOST")))
    if named_server or (target is None and not all_models and not _in_catalog(model)):
        _from_server(model, all_models, target, num_ctx, num_parallel, cache_type, gpu_memory_bytes, graph_bytes)
        return
    _from_catalog(model, all_models, num_ctx, num_parallel, cache_type, gpu_memory_bytes, graph_bytes)


def _from_catalog(model: str | None, all_models: bool, num_ctx: int, num_parallel: int, cache_type: str,
                  gpu_memory_bytes: int | None, graph_bytes: int | None) -> None:
    """Offline: bench sim's catalog (the same figures /api/show of `bench sim` reports)."""
    from bench.analysis.kv_formulas import size_model
    from bench.analysis.kv_model import ModelArch
    from bench.sim.catalog import load_catalog

    catalog = load_catalog()
    specs = list(catalog.models.values()) if all_models else [catalog.resolve(model or "")]
    if any(spec is None for spec in specs):
        known = ", ".join(sorted(catalog.models))
        raise UsageError(f"bench kv: {model!r} is not in bench sim's catalog ({known}); give --target URL "
                         "for a live server or --gguf FILE")
    sizings = [(spec.name, size_model(ModelArch.from_model_info(spec.model_info(), source=f"catalog {spec.name}"),
                                      spec.size_bytes, num_ctx, num_parallel, cache_type, gpu_memory_bytes,
                                      graph_bytes)) for spec in specs if spec is not None]
    click.echo("from bench sim's catalog (no server asked; --target URL asks a live one)")
    if all_models:
        click.echo(f"num_ctx {num_ctx} x NUM_PARALLEL {num_parallel}, cache {cache_type}")
        _print_table(sizings, cache_type)
    else:
        _print_sizing(*sizings[0])


def _in_catalog(model: str | None) -> bool:
    from bench.sim.catalog import load_catalog

    return model is not None and load_catalog().resolve(model) is not None


def _from_server(model: str | None, all_models: bool, target: str | None, num_ctx: int, num_parallel: int,
                 cache_type: str, gpu_memory_bytes: int | None, graph_bytes: int | None) -> None:
    """The model(s) as a live server's /api/tags and /api/show describe them."""
    from bench.analysis.kv_formulas import size_model
    from bench.analysis.kv_model import ModelArch
    from bench.endpoints import resolve_ollama_host
    from bench.telemetry.server_info import list_models, show_model

    from bench.errors import TargetError

    base_url = resolve_ollama_host(target)
    if "://" not in base_url:
        base_url = f"http://{base_url}"
    try:
        tags = list_models(base_url)
    except TargetError as error:
        if target:
            raise
        raise UsageError(f"bench kv: {model!r} is not in bench sim's catalog and {error} (give --gguf FILE, "
                         "--target URL, or a catalog name: bench kv --all --target sim)") from None
    names = [str(entry.get("name") or entry.get("model")) for entry in tags] if all_models else [model or ""]
    sizings: list[tuple[str, KvSizing]] = []
    for name in names:
        shown = show_model(base_url, name)
        arch = ModelArch.from_model_info(shown["model_info"], source=f"{base_url} {name}")
        sizings.append((name, size_model(arch, _weights_from_tags(tags, name), num_ctx, num_parallel,
                                         cache_type, gpu_memory_bytes, graph_bytes)))  # fmt: skip
    if all_models:
        click.echo(f"num_ctx {num_ctx} x NUM_PARALLEL {num_parallel}, cache {cache_type}, {base_url}")
        _print_table(sizings, cache_type)
    else:
        _print_sizing(*sizings[0])


def _per_token(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


@click.command("kv-analyze")
@click.argument("run_dir", type=click.Path(path_type=Path))
def kv_analyze_command(run_dir: Path) -> None:
    """Fit memory against num_ctx x NUM_PARALLEL for a run; writes kv.json and prints bytes per token."""
    with working(output_console(), f"fitting memory against context for {run_dir}"):
        from bench.analysis.kv_fit import analyze_run
        from bench.numbers import binary_size
        from bench.records import KV_JSON, load_run, write_json

        payload = analyze_run(load_run(run_dir))
    write_json(Path(run_dir) / KV_JSON, payload)
    for group in payload["groups"]:
        per_token = group["bytes_per_token"]
        click.echo(f"{group['model']} (cache {group['cache_type']}, {len(group['points'])} cells)")
        for label, key in (("rule of thumb", "rule_of_thumb"), ("exact (GQA)", "exact"),
                           ("exact, stored blocks", "exact_stored"), ("Ollama /api/ps fit", "ollama_ps"),
                           ("llama-server KV log fit", "logged_kv"),
                           ("NVML fit (measured)", "nvml"), ("process RSS fit (measured)", "process_rss")):  # fmt: skip
            ratio = group["ratio_to_measured"].get(key)
            ratio_text = "" if ratio is None else f"  {ratio:.3f}x measured"
            if per_token.get(key) is None and key in ("nvml", "process_rss", "logged_kv"):
                continue  # that measurement was not taken in this run
            click.echo(f"  {label:<26} {_per_token(per_token[key]):>12} B/token{ratio_text}")
        measured_fit = group["fits"].get(group["measured_source"] or "", None)
        if measured_fit is not None:
            ci = measured_fit["bytes_per_token_ci95"]
            ci_text = "" if ci is None else f", 95% CI [{ci[0]:,.0f}, {ci[1]:,.0f}]"
            click.echo(
                f"  measured ({group['measured_source']}): fixed {binary_size(measured_fit['fixed_bytes'])}"
                f"{ci_text}"
            )
    for note in payload["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"wrote {Path(run_dir) / KV_JSON}")


def register(group: click.Group) -> None:
    group.add_command(kv_command)
    group.add_command(kv_analyze_command)

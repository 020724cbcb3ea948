"""The Markdown of the hostile-clients section of docs/benchmarks.md, from bench_hostile's
result."""

from __future__ import annotations

_GUESSES = (
    ("gateway_one_address", "gateway keys, one address"),
    ("gateway_forged_x_forwarded_for", "gateway keys, a forged `X-Forwarded-For` on each"),
    ("review_forged_x_forwarded_for", "reviewer tokens, a forged `X-Forwarded-For` on each"),
)


def _held(entry: dict) -> str:
    return f"{entry['min_s']} / {entry['median_s']} / {entry['max_s']} s"


def _statuses(statuses: dict[str, int]) -> str:
    named = {"None": "no answer (hang-ups)"}
    return ", ".join(f"{named.get(status, status)}: {n}" for status, n in statuses.items())


def render_hostile(result: dict) -> list[str]:
    cases = result["hostile_cases"]
    tickets = result["tickets"]
    errors = result["server_errors_by_cause"]
    five_xx = "; ".join(f"{cause}: {n}" for cause, n in errors.items()) or "none"
    crashes = ", ".join(result["crashes"]) or "0"
    tracebacks = sum(result["tracebacks"].values())
    shutdown = result["shutdown"]
    lines = [
        "## Hostile clients (`benchmarks/bench_hostile.py`)",
        "",
        "`make bench-hostile`: real `demur serve` and `demur review` processes on loopback, "
        f"each limited to {result['open_file_limit']} open files, with default settings: an "
        "open gateway (no keys, the loopback default) and a keyed one over a scripted ladder "
        "that hands every question to a person, the review app on the same queue, and a "
        "gateway whose upstream never answers, stopped with SIGTERM and "
        f"`--shutdown-timeout 2`. One run, {result['seconds']} s, {result['cpus']} cores "
        f"(load average {result['load_average_1m_at_end']} at the end).",
        "",
        "| | |",
        "|---|---|",
        f"| requests | {result['requests']}, of them {result['hostile_requests']} hostile |",
        "| hostile cases | "
        + ", ".join(f"{where}: {n}" for where, n in cases.items())
        + " (malformed JSON of every kind, 5000-digit integers, nesting 100 and 1000 deep, "
        "lone surrogates, NaN, 1e999, invalid UTF-8, bodies over the limit, wrong content "
        "types, cross-site `Origin`, DNS-rebound `Host`, malformed raw HTTP, `min_priority` "
        "±10^20, forms without CSRF, hang-ups mid-body, wrong keys and tokens) |",
        f"| statuses of the hostile requests | {_statuses(result['hostile_statuses'])} |",
        f"| 5xx by cause | {five_xx}; unintended: {result['unintended_5xx']} |",
        f"| crashes | {crashes} (exit codes: "
        + ", ".join(f"{name} {code}" for name, code in result["exit_codes"].items())
        + ") |",
        f"| tracebacks in the servers' logs | {tracebacks} |",
        f"| tickets lost | {tickets['lost']}: {tickets['filed']} filed by real questions "
        f"between the hostile ones, {tickets['resolved']} claimed and resolved through the "
        "review app |",
        f"| SIGTERM with {shutdown['routes']} routes in flight | "
        + _statuses(shutdown["statuses"])
        + f", exit {shutdown['exit_code']} after {shutdown['seconds_to_exit']} s |",
        "",
        "Guessing, as fast as one keep-alive connection goes:",
        "",
        "| target | guesses | checked (401) | refused (429) | checked per second |",
        "|---|---|---|---|---|",
    ]
    for key, label in _GUESSES:
        entry = result["guessing"][key]
        lines.append(
            f"| {label} | {entry['guesses']} in {entry['seconds']} s | {entry['checked']} | "
            f"{entry['refused_429']} | {entry['checked_per_s']} |"
        )
    slow = result["slow_clients"]
    lines += [
        "",
        "Slow clients, each sending a byte a second, while `/healthz` is asked every 0.5 s "
        "(held: how long until the server closed the connection, min / median / max):",
        "",
        "| server | 150 trickling headers | 20 trickling bodies | `/healthz` answered | p50 "
        "| max |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("gateway", "review"):
        entry = slow[name]
        probe = entry["healthz"]
        lines.append(
            f"| {name} | {_held(entry['header_tricklers'])} | {_held(entry['body_tricklers'])} "
            f"| {probe['probes'] - probe['failed']} of {probe['probes']} | {probe['p50_ms']} ms "
            f"| {probe['max_ms']} ms |"
        )
    half = slow["half_sent_requests"]
    probe = half["healthz"]
    lines += [
        f"| gateway, {half['half_sent']} half-sent requests at once | — | — | "
        f"{probe['probes'] - probe['failed']} of {probe['probes']} | {probe['p50_ms']} ms | "
        f"{probe['max_ms']} ms |",
        "",
        "The header and body timeouts (10 s and 30 s by default) end every slow client; with "
        f"{result['open_file_limit']} file descriptors the connection cap is "
        f"{result['open_file_limit'] // 2}, so the rest of the crowd displaces the "
        "longest-waiting connections (the short minimums) instead of taking the descriptors "
        "`/healthz` needs.",
        "",
    ]
    return lines


__all__ = ["render_hostile"]

"""The Markdown of the pre-generation section of docs/benchmarks.md, from bench_pregen's result."""

from __future__ import annotations

from benchmarks.figures import ci as _ci
from benchmarks.figures import pct as _pct

# Budgets shown in the accuracy table: indices into bench_pregen.LEVELS (0, 0.01, ..., 1).
SHOWN = (20, 40, 60, 80)

NAMES = {"p_weak": "P(weak)", "gain": "P(weak) − P(strong)"}


def policy_name(key: str) -> str:
    if key == "random":
        return "random routing (expected)"
    if key == "post":
        return "post-generation only (weak's mean_logprob)"
    stage, learner, score = key.split(":")
    what = "pre-generation only" if stage == "pre" else "combined"
    return f"{what}, {learner}, {NAMES[score]}"


def render_pregen(result: dict) -> list[str]:
    weak, strong = result["weak"], result["strong"]
    post = result["policies"]["post"]
    lines = [
        "## Pre-generation routing (`benchmarks/bench_pregen.py`)",
        "",
        f"The {result['questions']} ladder records above ({weak} → {strong}, HaluEval-QA with "
        "its passage in the prompt), each question embedded with "
        f"{result['embedder']} ({result['embedding_seconds']:.0f} s for questions and "
        f"passages). {result['folds']}-fold cross-fitted: the predictor and every threshold "
        "are fitted on the other folds (thresholds on those folds' own cross-fitted "
        "predictions) and applied to the held-out fold; outcomes pooled. The pre-generation "
        "score ranks which questions skip the weak model: P(weak succeeds), or P(weak) − "
        "P(strong) (lowest where the strong model is predicted to help most). "
        "Combined: skip the lowest-scored questions, then the "
        "post-generation threshold on the rest, the pair per budget chosen on the training "
        "folds. Always weak "
        f"{_pct(result['always_weak_accuracy'])} ({result['always_weak_seconds']:.2f} "
        f"model-s), always strong {_pct(result['always_strong_accuracy'])} "
        f"({result['always_strong_seconds']:.2f} model-s), oracle "
        f"{_pct(result['oracle_accuracy'])}.",
        "",
        "| predictor | cross-fitted AUROC, P(weak succeeds) | AUROC, P(strong succeeds) |",
        "|---|---|---|",
    ]
    for entry in result["predictors"].values():
        lines.append(
            f"| {entry['describe']} | {entry['auroc_weak']:.3f} "
            f"{_ci(entry['auroc_weak_ci'], pct=False)} | "
            f"{entry['auroc_strong']:.3f} |"
        )
    lines += [
        "",
        "APGR: area under the share-of-gap-recovered curve against the strong-call share; "
        "CPT(x): the smallest strong-call share recovering x of the gap (95% bootstrap "
        "intervals over questions). Model-seconds per question count the models actually "
        "called (a skipped question never pays for the weak model), at the cheapest budget "
        "recovering 80% of the gap.",
        "",
        "| policy | APGR | CPT(50%) | CPT(80%) | at CPT(80%): weak called | model-s / question "
        "| best accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, entry in result["policies"].items():
        at80, apgr = entry["at_cpt80"], f"{entry['apgr']:.3f}"
        lines.append(
            f"| {policy_name(key)} | {_with(apgr, entry.get('apgr_ci'))} | "
            f"{_with(_pct(entry['cpt50']), entry.get('cpt50_ci'), pct=True)} | "
            f"{_with(_pct(entry['cpt80']), entry.get('cpt80_ci'), pct=True)} | "
            f"{_pct(at80.get('weak_share', 1.0))} | "
            f"{at80['least_model_seconds_per_question']:.2f} | "
            f"{_pct(entry.get('best_accuracy'))} |"
        )
    swept = post["swept"]
    lines += [
        "",
        f"Post-generation only with its threshold swept on the pooled rows, as "
        f"`bench_ladder.py` reads it: APGR {swept['apgr']:.3f}, CPT(50%) "
        f"{_pct(swept['cpt50'])}, CPT(80%) {_pct(swept['cpt80'])}.",
        "",
        "Accuracy (and model-seconds per question) at a strong-call budget:",
        "",
        "| policy | " + " | ".join(f"{i}%" for i in SHOWN) + " |",
        "|---|" + "---|" * len(SHOWN),
    ]
    for key, entry in result["policies"].items():
        if "curve" not in entry:
            continue
        cells = []
        for i in SHOWN:
            _, accuracy, seconds = entry["curve"][i]
            cells.append(f"{_pct(accuracy)} ({seconds:.2f})")
        lines.append(f"| {policy_name(key)} | " + " | ".join(cells) + " |")
    lines += ["", *_aims(result), ""]
    return lines


def _aims(result: dict) -> list[str]:
    policies, aims = result["policies"], result["aims"]
    post = policies["post"]
    both = [k for k, a in aims.items() if a["beats_post_apgr"] and a["beats_pre_apgr"]]
    clear = [k for k in both if aims[k]["beats_post_apgr_beyond_ci"]]
    best = min(aims, key=lambda k: policies[k]["cpt80"])
    third = [k for k, a in aims.items() if a["cpt80_third_better"]]
    cheapest = min(
        (k for k in policies if k != "random"),
        key=lambda k: policies[k]["at_cpt80"]["least_model_seconds_per_question"],
    )
    seconds = policies[cheapest]["at_cpt80"]["least_model_seconds_per_question"]
    post_seconds = post["at_cpt80"]["least_model_seconds_per_question"]
    if clear:
        first = f"met: {', '.join(policy_name(k) for k in clear)}."
    elif both:
        first = (
            f"not clearly: {', '.join(policy_name(k) for k in both)} beats both on the point "
            f"estimate, inside post-generation's interval; the others beat pre-generation only "
            "and not post-generation only."
        )
    else:
        first = "not met: each combination beats pre-generation only, not post-generation only."
    return [
        "Against the aims. The combination beats each alone on APGR: "
        + first
        + f" CPT(80%) a third lower than post-generation only ({_pct(post['cpt80'])} → "
        f"<= {_pct(post['cpt80'] * 2 / 3)}): "
        + (f"met by {', '.join(policy_name(k) for k in third)}" if third else "not met")
        + f"; the best combination ({policy_name(best)}) reaches {_pct(policies[best]['cpt80'])}"
        f" ({aims[best]['cpt80_vs_post']:.2f}× post-generation's). From the question alone "
        "the weak model's success is barely predictable here (AUROC about 0.5), the strong "
        "model's a little more, so the gain score ranks better than P(weak). What skipping "
        "buys is compute: a skipped question never runs the weak model, so recovering 80% of "
        f"the gap costs {seconds:.2f} model-s per question with {policy_name(cheapest)} "
        f"against {post_seconds:.2f} for post-generation only "
        f"({seconds / post_seconds:.2f}×) and {result['always_strong_seconds']:.2f} for "
        "always strong. A wrong prediction only sends a question to the strong model early; "
        "in a route its answer is still checked as before.",
    ]


def _with(value: str, bounds: list[float] | None, pct: bool = False) -> str:
    return f"{value} {_ci(bounds, pct)}" if bounds else value

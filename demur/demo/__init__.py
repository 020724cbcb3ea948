"""The bundled demo: HaluEval-QA questions routed through the local model cascade."""

from demur.demo.runner import (
    DemoQuestion,
    DemoReport,
    DemoRow,
    Guarantee,
    default_guarantee,
    load_questions,
    run_demo,
)

__all__ = [
    "DemoQuestion",
    "DemoReport",
    "DemoRow",
    "Guarantee",
    "default_guarantee",
    "load_questions",
    "run_demo",
]

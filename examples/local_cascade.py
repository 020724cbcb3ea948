"""SmolLM2 answers; Gemma-3 takes what SmolLM2 is unsure of; a person takes the rest.

Both models ship in PyPI packages and run on the CPU through llama.cpp.

    python examples/local_cascade.py
"""

import tempfile
from pathlib import Path

from demur import (
    AskHuman,
    Escalate,
    Ladder,
    LlamaCppModel,
    MeanTokenLogprob,
    MinTokenProb,
    Query,
    Router,
    SqliteQueue,
)

queue_path = Path(tempfile.mkdtemp()) / "queue.db"
router = Router(
    [
        LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=24),
        LlamaCppModel("strong", builtin="gemma-3-270m", max_tokens=24),
    ],
    estimators=[MeanTokenLogprob(), MinTokenProb()],
    policy=Ladder(threshold=0.5, rungs=[Escalate("strong"), AskHuman()]),
    queue=SqliteQueue(queue_path),
)

with router:
    verdict = router.route(
        Query(
            "Which novel did Jane Austen publish in 1815?",
            context=("Jane Austen published Emma in December 1815; it was her fourth novel.",),
        )
    )

for step in verdict.steps:
    text = step.candidate.text if step.candidate else step.error
    print(f"{step.model}: {text!r} confidence={step.confidence}")
if verdict.status == "pending":
    ticket = SqliteQueue(queue_path).get(verdict.ticket_id or "")
    print(f"sent to a person: ticket {ticket.id} ({ticket.reason})")
else:
    print(f"{verdict.status}: {verdict.answer!r} from {verdict.model}")

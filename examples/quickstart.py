"""A router over two scripted models: runs instantly, no weights needed.

python examples/quickstart.py
"""

from demur import Abstain, Escalate, Ladder, MeanTokenLogprob, Reply, Router, ScriptedModel

weak = ScriptedModel("weak", [Reply.confident("Lyon", 0.35)])
strong = ScriptedModel("strong", [Reply.confident("Paris", 0.92)])

router = Router(
    [weak, strong],
    estimators=[MeanTokenLogprob()],
    policy=Ladder(threshold=0.6, rungs=[Escalate("strong"), Abstain("I am not sure.")]),
)

verdict = router.route("What is the capital of France?")
for step in verdict.steps:
    assert step.candidate is not None and step.decision is not None
    print(
        f"step {step.index}: {step.model} said {step.candidate.text!r} "
        f"with confidence {step.confidence:.2f} -> {step.decision.action.kind} "
        f"({step.decision.reason})"
    )
print(f"verdict: {verdict.status}, {verdict.answer!r} from {verdict.model}")

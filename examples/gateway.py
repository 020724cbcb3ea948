"""The demur gateway in front of the local model cascade, called with the official openai client.

The embedded defaults route SmolLM2 → Gemma-3 → a person; any OpenAI client gets the verdict.
`demur serve` does the same from the command line.

    python examples/gateway.py [--config demur.yaml]
"""

import argparse
import tempfile
from pathlib import Path

import openai

from demur.config import build_router, default_config, load_config
from demur.server import BackgroundServer, ServerSettings, create_app
from demur.telemetry import configure_telemetry

parser = argparse.ArgumentParser()
parser.add_argument("--config", help="a router config (default: the embedded local cascade)")
args = parser.parse_args()

# The embedded defaults, with the review queue and traces kept in a scratch folder.
scratch = Path(tempfile.mkdtemp())
config = default_config() if args.config is None else load_config(args.config)
if config.queue is not None:
    queue = config.queue.model_copy(update={"path": str(scratch / "queue.db")})
    config = config.model_copy(update={"queue": queue})
telemetry = configure_telemetry("jsonl", path=scratch / "traces.jsonl", set_global=False)
router = build_router(config, tracer_provider=telemetry.tracer_provider)
app = create_app(
    router,
    ServerSettings(api_keys=("sk-example",)),
    tracer_provider=telemetry.tracer_provider,
    owns_router=True,
)

with BackgroundServer(app) as server:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-example", timeout=300)
    question = [{"role": "user", "content": "Which novel did Jane Austen publish in 1815?"}]
    passage = "Jane Austen published Emma in December 1815; it was her fourth novel."

    completion = client.chat.completions.create(
        model="demur", messages=question, extra_body={"context": [passage]}
    )
    verdict = (completion.model_extra or {})["demur"]
    print(f"answer: {completion.choices[0].message.content!r}")
    print(
        f"demur: action={verdict['action']} status={verdict['status']} "
        f"confidence={verdict['confidence']} model={verdict['model']} "
        f"ticket={verdict['ticket_id']} trace={verdict['trace_id']}"
    )
    for step in verdict["steps"]:
        print(f"  step {step['index']}: {step['model']} -> {step['action']} ({step['reason']})")

    # Streaming: the route runs first; only the gated text is streamed.
    stream = client.chat.completions.create(
        model="demur", messages=question, extra_body={"context": [passage]}, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    print(f"streamed: {text!r}")

telemetry.shutdown()
print(f"traces: {scratch / 'traces.jsonl'}")

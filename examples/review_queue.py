"""A question the router is not sure about goes to a person, who answers it in the reviewer app.

Two scripted models both answer with low confidence, so the ladder hands the question to the
review queue and the route returns a pending verdict at once. The reviewer app serves the
queue; here a scripted "reviewer" signs in, claims the ticket and corrects the answer over
HTTP, exactly as the browser's forms do, while the caller waits for the verdict.
`demur review --queue-path PATH` serves the same app from the command line.

    python examples/review_queue.py           # the whole round trip, then exit
    python examples/review_queue.py --serve   # keep serving: review it yourself in a browser
"""

import argparse
import re
import secrets
import tempfile
import threading
from pathlib import Path

import httpx

from demur import AskHuman, Escalate, Ladder, MeanTokenLogprob, Query, Reply, Router
from demur import ScriptedModel as Scripted
from demur.queue import SqliteQueue, wait_verdict
from demur.review import ReviewServer, ReviewSettings, create_review_app

parser = argparse.ArgumentParser()
parser.add_argument("--serve", action="store_true", help="keep serving until Ctrl-C")
args = parser.parse_args()

db = Path(tempfile.mkdtemp()) / "queue.db"
router = Router(
    [
        Scripted("weak", [Reply.confident("Lyon", 0.2)]),
        Scripted("strong", [Reply.confident("Paris", 0.35)]),
    ],
    estimators=[MeanTokenLogprob()],
    policy=Ladder(0.6, rungs=[Escalate("strong"), AskHuman(priority=1)]),
    queue=SqliteQueue(db),
)
pending = router.route(
    Query("What is the capital of France?", context=("Paris is the capital of France.",))
)
router.close()
print(f"verdict: {pending.status}, ticket {pending.ticket_id}")

token = secrets.token_urlsafe(24)
settings = ReviewSettings(tokens={token: "ana"}, tokens_env=None)
app = create_review_app(SqliteQueue(db), settings, owns_queue=True)

with ReviewServer(app) as server:
    if args.serve:
        print(f"reviewer app: {server.url}  (sign in with the token {token}; Ctrl-C to stop)")
        threading.Event().wait()

    result = {}
    waiter = threading.Thread(
        target=lambda: result.update(v=wait_verdict(SqliteQueue(db), pending, timeout_s=30))
    )
    waiter.start()

    def csrf(html: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', html)
        assert found is not None
        return found.group(1)

    with httpx.Client(base_url=server.url, follow_redirects=True, timeout=10) as browser:
        page = browser.get("/login")
        page = browser.post("/login", data={"csrf": csrf(page.text), "token": token})
        ticket = f"/tickets/{pending.ticket_id}"
        browser.post(f"{ticket}/claim", data={"csrf": csrf(page.text)})
        page = browser.post(
            f"{ticket}/resolve",
            data={
                "csrf": csrf(page.text),
                "action": "edit",
                "candidate": "1",
                "text": "Paris, the capital of France",
                "note": "fixed the wording",
            },
        )
        print(f"reviewer app: {page.status_code} {page.url}")
    waiter.join()

final = result["v"]
print(f"verdict: {final.status}, {final.answer!r} ({final.message})")

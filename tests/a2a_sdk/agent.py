"""A real A2A agent for the ledger's client tests, built on the official
`a2a-sdk` package (see requirements.txt for the pinned versions).

Why a real agent: the fake agent in tests/common/fake_agent.rs only proves
that the client speaks the wire format as *we* read the spec. This one is
the SDK's own server, so the client is checked against an independent
implementation of both protocol versions on one JSON-RPC endpoint:
v1.0 (`SendMessage`/`GetTask`, `A2A-Version: 1.0`) and, because the routes
are created with `enable_v0_3_compat=True`, v0.3 (`message/send`,
`tasks/get`, no version header).

Behaviour:
  * a message whose text starts with "slow:" starts a task that stays
    `working` for `--slow-seconds`, then completes with an artifact holding
    the rest of the text upper-cased (so a non-blocking send returns the
    task at once and the caller has to poll it);
  * a message whose text starts with "ask:" starts a task that asks a
    question (state input-required, the rest of the text upper-cased as its
    status message) and waits;
  * a message whose text starts with "wait:" starts a task that stays
    `working` until it is cancelled (CancelTask / tasks/cancel);
  * any other message is answered at once with a single agent message
    holding the text upper-cased.

Usage: python agent.py [--port 8123] [--host 127.0.0.1] [--slow-seconds 1.5]

Once its socket listens it prints `ready <port>` on stdout (with --port 0,
the default, the port the system chose), so a caller waits for that line
instead of polling for the card.
"""

import argparse
import asyncio
import socket

import uvicorn
from starlette.applications import Starlette

from a2a.helpers import new_text_artifact, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Task,
    TaskState,
    TaskStatus,
)

SLOW_PREFIX = "slow:"
ASK_PREFIX = "ask:"
WAIT_PREFIX = "wait:"


class UppercaseExecutor(AgentExecutor):
    """Answers with the user's text in upper case, at once or via a task."""

    def __init__(self, slow_seconds: float) -> None:
        self.slow_seconds = slow_seconds

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        if not text.startswith((SLOW_PREFIX, ASK_PREFIX, WAIT_PREFIX)):
            await event_queue.enqueue_event(
                new_text_message(text.upper(), context_id=context.context_id)
            )
            return

        task_id = context.task_id
        context_id = context.context_id
        # The first event is the task itself: with a non-blocking send the
        # SDK answers the caller as soon as it is enqueued.
        await event_queue.enqueue_event(
            Task(
                id=task_id,
                context_id=context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                history=[context.message] if context.message else [],
            )
        )
        updater = TaskUpdater(event_queue, task_id, context_id)
        if text.startswith(ASK_PREFIX):
            question = text[len(ASK_PREFIX):].strip().upper()
            await updater.requires_input(
                new_text_message(question, context_id=context_id, task_id=task_id)
            )
            return
        await updater.start_work(
            new_text_message("working on it", context_id=context_id, task_id=task_id)
        )
        if text.startswith(WAIT_PREFIX):
            # Works until someone cancels the task.
            while True:
                await asyncio.sleep(3600)
        await asyncio.sleep(self.slow_seconds)
        answer = text[len(SLOW_PREFIX):].strip().upper()
        artifact = new_text_artifact(name="answer", text=answer)
        await updater.add_artifact(list(artifact.parts), name="answer")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel()


def build_app(host: str, port: int, slow_seconds: float) -> Starlette:
    url = f"http://{host}:{port}/"
    card = AgentCard(
        name="uppercase-agent",
        description="Answers with the text it was sent, in upper case.",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=AgentCapabilities(streaming=False, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id="uppercase",
                name="Uppercase",
                description="Upper-cases the text it is sent.",
                tags=["test"],
            )
        ],
    )
    handler = DefaultRequestHandler(
        agent_executor=UppercaseExecutor(slow_seconds),
        task_store=InMemoryTaskStore(),
        agent_card=card,
    )
    routes = create_agent_card_routes(card) + create_jsonrpc_routes(
        handler, rpc_url="/", enable_v0_3_compat=True
    )
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--slow-seconds", type=float, default=1.5)
    args = parser.parse_args()
    # Bind and listen before announcing: connections that arrive before
    # uvicorn accepts wait in the backlog instead of being refused.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = build_app(args.host, port, args.slow_seconds)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    print(f"ready {port}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()

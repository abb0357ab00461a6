"""Real-time messaging end to end: two API processes' worth of uvicorn servers (each with its own
hub), the outbox relay, Tansu, a real Faust worker (messages and notifications agents), Redis
pub/sub and MongoDB; real WebSocket clients (`websockets`) chatting through all of it.

One stack serves the module: a worker takes seconds to join its group. Deadlines are generous
(Kafka and Faust on a shared 2-vCPU machine); nothing waits by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.realtime import presence, tickets
from bridges.relay import OutboxRelay
from infrastructure.mongo import MongoDatabase, create_mongo_client, mongo_database
from infrastructure.processes import ManagedProcess
from infrastructure.settings import Settings
from tests.api.conftest import Account, login, register
from tests.api.gigs import Gig, data, open_gig
from tests.browser.live_stack import serve_api
from tests.conftest import wait_until
from tests.databases import fresh_database
from tests.mail import MailCapture
from tests.streams.workers import REPO, pipeline_settings, worker_env

# The first event waits for the worker to join its group and get partitions (seconds on Tansu).
FIRST_DEADLINE_S = 90.0
DEADLINE_S = 45.0
HEARTBEAT_S = 0.3
TEARDOWN_S = 30.0


@dataclass
class Stack:
    settings: Settings
    urls: list[str]
    mongo: MongoDatabase
    directory: Path
    workers: list[ManagedProcess] = field(default_factory=list)

    def worker_log(self) -> str:
        logs = []
        for worker in self.workers:
            assert worker.log_path is not None
            logs.append(worker.log_path.read_text(errors="replace")[-3000:])
        return "\n---\n".join(logs)

    def spawn_worker(self) -> ManagedProcess:
        name = f"worker{len(self.workers)}"
        env = worker_env(
            self.settings,
            TULIFO_FAUST_DATA_DIR=str(self.directory / name),
            TULIFO_WORKER_AGENTS="messages,notifications",
            TULIFO_BROKER_SESSION_TIMEOUT="10",
        )
        worker = ManagedProcess.spawn(
            name,
            [sys.executable, "-m", "streams.worker"],
            env=env,
            cwd=REPO,
            log_path=self.directory / f"{name}.log",
        )
        self.workers.append(worker)
        return worker


@pytest.fixture(scope="module")
async def stack(
    kafka: str, mongo_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp("realtime")
    mail = MailCapture()
    mail.start()
    run = uuid.uuid4().hex[:8]
    async with fresh_database() as database_url, contextlib.AsyncExitStack() as servers:
        settings = pipeline_settings(
            database_url=database_url,
            kafka=kafka,
            mongo_url=mongo_url,
            prefix="rt",
            redis_url=redis_url,
            bcrypt_rounds=4,
            register_max_per_ip=1_000_000,
            # Every sign-in comes from 127.0.0.1, like other modules' real servers in this run.
            login_max_per_ip=1_000_000,
            mongo_database=f"realtime_{run}",
            elasticsearch_url=None,
            smtp_host=mail.host,
            smtp_port=mail.port,
            realtime_heartbeat_seconds=HEARTBEAT_S,
        )
        # Two servers, two hubs: what one API process publishes reaches the other's sockets.
        apis = [await servers.enter_async_context(serve_api(settings)) for _ in range(2)]
        relay = OutboxRelay(settings)
        relay_task = asyncio.create_task(relay.run())
        client = create_mongo_client(settings)
        stack = Stack(
            settings,
            [api.url.removeprefix("http://") for api in apis],
            mongo_database(client, settings),
            directory,
        )
        stack.spawn_worker()
        try:
            yield stack
        finally:
            for worker in stack.workers:
                worker.stop()
            # Bounded: a relay stuck on a broker that went away must fail the run, not hang it.
            try:
                await asyncio.wait_for(relay.stop(), TEARDOWN_S)
            except TimeoutError:
                relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay_task
            client.close()
            mail.stop()


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{stack.urls[0]}", timeout=30) as client:
        yield client


class Socket:
    """A chat client: frames as dicts, waited for by event name."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.passed_over: list[dict[str, Any]] = []

    async def send(self, event: str, data: dict[str, Any] | None = None) -> None:
        await self.ws.send(json.dumps({"event": event, "data": data or {}}))

    async def next_frame(self, timeout: float = DEADLINE_S) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            frame: dict[str, Any] = json.loads(await self.ws.recv())
        return frame

    async def wait_for(
        self, event: str, timeout: float = DEADLINE_S, **match: Any
    ) -> dict[str, Any]:
        """The next frame named `event` whose data has `match`; others are kept aside."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            frame = await self.next_frame(max(0.01, end - loop.time()))
            data = frame.get("data", {})
            if frame["event"] == event and all(data.get(k) == v for k, v in match.items()):
                return frame
            self.passed_over.append(frame)

    async def closed(self, timeout: float = DEADLINE_S) -> int | None:
        """The close code, once the server has closed the socket."""
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(timeout):
                while True:
                    self.passed_over.append(json.loads(await self.ws.recv()))
        return closed.value.rcvd.code if closed.value.rcvd else None


async def ticket_for(stack: Stack, who: Account, server: int = 0) -> str:
    async with httpx.AsyncClient(base_url=f"http://{stack.urls[server]}") as http:
        response = await http.post("/api/realtime/ticket", headers=who.headers)
    body = data(response)
    assert body["url"] == f"/api/ws?ticket={body['ticket']}"
    assert body["expiresIn"] == 30
    return str(body["ticket"])


@contextlib.asynccontextmanager
async def socket_of(stack: Stack, who: Account, server: int = 0) -> AsyncIterator[Socket]:
    ticket = await ticket_for(stack, who, server)
    async with connect(f"ws://{stack.urls[server]}/api/ws?ticket={ticket}") as ws:
        sock = Socket(ws)
        connected = await sock.wait_for("connected", timeout=10)
        assert connected["data"]["userId"] == str(who.id)
        yield sock


async def conversation_of(http: httpx.AsyncClient, gig: Gig) -> str:
    response = await http.post(
        "/api/conversations",
        json={"projectId": str(gig.project_id), "participantId": str(gig.worker.id)},
        headers=gig.client.headers,
    )
    return str(data(response, 201)["id"])


async def post_message(
    http: httpx.AsyncClient, who: Account, conversation_id: str, content: str
) -> dict[str, Any]:
    response = await http.post(
        "/api/messages",
        json={"conversationId": conversation_id, "content": content, "type": "text"},
        headers=who.headers,
    )
    return data(response, 201)


async def new_message_notifications(stack: Stack, user: Account) -> list[dict[str, Any]]:
    cursor = stack.mongo.flexwork_notifications.find(
        {"kind": "notification", "userId": str(user.id), "type": "new_message"}
    )
    return [document async for document in cursor]


async def test_two_clients_on_two_servers_chat_live_with_typing_and_read_receipts(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    gig = await open_gig(http, rival=False)
    conversation_id = await conversation_of(http, gig)
    async with (
        socket_of(stack, gig.client, server=0) as cleo,
        socket_of(stack, gig.worker, server=1) as wanda,
    ):
        await wanda.send("join_conversation", {"conversationId": conversation_id})
        await wanda.wait_for("joined_conversation", conversationId=conversation_id)

        sent = await post_message(http, gig.client, conversation_id, "Can you start Monday?")
        try:
            received = await wanda.wait_for("new_message", FIRST_DEADLINE_S, id=sent["id"])
        except TimeoutError:
            raise AssertionError(f"no live message; worker log:\n{stack.worker_log()}") from None
        assert received["data"] == {
            "id": sent["id"],
            "conversationId": conversation_id,
            "sequence": 1,
            "senderId": str(gig.client.id),
            "type": "text",
            "content": "Can you start Monday?",
            "createdAt": received["data"]["createdAt"],
        }
        assert instant(received["data"]["createdAt"]) == instant(sent["createdAt"])
        # The sender's own sockets see it too (another tab of theirs).
        await cleo.wait_for("new_message", id=sent["id"])
        # Told live, then reading the history: the message is there.
        async with httpx.AsyncClient(base_url=f"http://{stack.urls[1]}") as other:
            page = data(
                await other.get(
                    f"/api/conversations/{conversation_id}/messages", headers=gig.worker.headers
                )
            )
        assert [item["id"] for item in page["items"]] == [sent["id"]]

        # Typing: relayed to the room's other participant, not back to the typist.
        await cleo.send("join_conversation", {"conversationId": conversation_id})
        await cleo.wait_for("joined_conversation", conversationId=conversation_id)
        await cleo.send("typing", {"conversationId": conversation_id})
        typing = await wanda.wait_for("typing", conversationId=conversation_id)
        assert typing["data"] == {
            "conversationId": conversation_id,
            "userId": str(gig.client.id),
            "isTyping": True,
        }
        await cleo.send("ping")
        assert (await cleo.next_frame())["event"] == "pong"

        # Read receipt: persisted, and the other side hears it.
        receipt = await http.post(
            f"/api/conversations/{conversation_id}/read",
            json={"upToMessageId": sent["id"]},
            headers=gig.worker.headers,
        )
        assert data(receipt)["unreadCount"] == 0
        read = await cleo.wait_for("messages_read", conversationId=conversation_id)
        assert read["data"]["userId"] == str(gig.worker.id)
        assert read["data"]["upToMessageId"] == sent["id"]
        assert read["data"]["sequence"] == 1

        # Leaving the room stops typing frames, not messages (they come by the user room).
        await wanda.send("leave_conversation", {"conversationId": conversation_id})
        await wanda.wait_for("left_conversation", conversationId=conversation_id)
        await wanda.send("typing", {"conversationId": conversation_id})
        refused = await wanda.wait_for("error")
        assert refused["data"]["code"] == "FORBIDDEN"
        assert refused["data"]["event"] == "typing"
        reply = await post_message(http, gig.worker, conversation_id, "Monday works")
        await wanda.wait_for("new_message", id=reply["id"])
        await cleo.wait_for("new_message", id=reply["id"])


async def test_an_offline_recipient_is_notified_in_app_and_an_online_one_is_not(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    gig = await open_gig(http, rival=False)
    conversation_id = await conversation_of(http, gig)
    async with socket_of(stack, gig.worker, server=1) as wanda:
        online = await post_message(http, gig.client, conversation_id, "You are online")
        await wanda.wait_for("new_message", FIRST_DEADLINE_S, id=online["id"])
    redis = stack_redis(stack)
    try:
        await wait_until(
            lambda: _offline(redis, gig.worker.id), timeout=10, what="the worker's socket gone"
        )
    finally:
        await redis.aclose()
    offline = await post_message(http, gig.client, conversation_id, "You were away")

    async def notified() -> list[dict[str, Any]]:
        return await new_message_notifications(stack, gig.worker)

    try:
        [notification] = await wait_until(notified, timeout=FIRST_DEADLINE_S, what="notification")
    except AssertionError:
        raise AssertionError(f"not notified; worker log:\n{stack.worker_log()}") from None
    # Both messages travel one partition in order: the online one was handled first, and
    # notified nobody.
    assert notification["body"] == "You were away"
    assert notification["title"] == "New message from Cleo Client"
    assert notification["url"] == f"/messages/{conversation_id}"
    assert offline["content"] == "You were away"
    assert await new_message_notifications(stack, gig.client) == []


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stack_redis(stack: Stack) -> Any:
    import redis.asyncio as aioredis

    return aioredis.from_url(stack.settings.redis_url, decode_responses=True)


async def _offline(redis: Any, user_id: uuid.UUID) -> bool:
    return user_id not in await presence.online(redis, [user_id])


async def test_a_ticket_opens_one_socket_and_an_unknown_one_none(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    who = await register(http, role="client")
    ticket = await ticket_for(stack, who)
    async with connect(f"ws://{stack.urls[0]}/api/ws?ticket={ticket}") as ws:
        assert json.loads(await ws.recv())["event"] == "connected"
        async with connect(f"ws://{stack.urls[1]}/api/ws?ticket={ticket}") as reused:
            assert await Socket(reused).closed(10) == 4401
    for query in ("?ticket=not-a-ticket", "", "?ticket=" + "x" * 500):
        async with connect(f"ws://{stack.urls[0]}/api/ws{query}") as ws:
            sock = Socket(ws)
            assert await sock.closed(10) == 4401
            assert sock.passed_over == []  # closed before any frame
    anonymous = await http.post("/api/realtime/ticket")
    assert anonymous.status_code == 401


async def test_a_socket_closes_when_its_session_is_revoked_or_its_token_expires(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    who = await register(http, role="worker")
    second = data(await login(http, who.email, who.password))
    other_session = Account(
        who.id, who.email, who.password, who.role, second["accessToken"], second["refreshToken"]
    )
    async with socket_of(stack, who) as revoked, socket_of(stack, other_session) as kept:
        sessions = data(await http.get("/api/sessions", headers=who.headers))["items"]
        [current] = [item for item in sessions if item["current"]]
        response = await http.delete(f"/api/sessions/{current['id']}", headers=who.headers)
        assert response.status_code == 204
        assert await revoked.closed() == 4401
        # The other session's socket lives on.
        await kept.send("ping")
        assert (await kept.wait_for("pong"))["event"] == "pong"

    # A ticket carries its token's expiry: the socket closes when the token would have.
    redis = stack_redis(stack)
    try:
        expiring = tickets.Ticket(
            user_id=who.id, role=who.role, session_id=None, expires_at=int(time.time()) + 2
        )
        value = await tickets.issue(redis, expiring, ttl_seconds=30)
    finally:
        await redis.aclose()
    async with connect(f"ws://{stack.urls[0]}/api/ws?ticket={value}") as ws:
        sock = Socket(ws)
        assert await sock.closed() == 4401
        assert [frame["event"] for frame in sock.passed_over] == ["connected"]


async def test_only_participants_join_a_conversation_and_bad_frames_get_errors(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    gig = await open_gig(http, rival=False)
    conversation_id = await conversation_of(http, gig)
    stranger = await register(http, role="worker")
    async with socket_of(stack, stranger) as sock:
        await sock.send("join_conversation", {"conversationId": conversation_id})
        refused = await sock.wait_for("error")
        assert (refused["data"]["code"], refused["data"]["event"]) == (
            "FORBIDDEN",
            "join_conversation",
        )
        await sock.send("join_conversation", {"conversationId": str(uuid.uuid4())})
        assert (await sock.wait_for("error"))["data"]["code"] == "NOT_FOUND"
        await sock.send("join_conversation", {})
        missing = await sock.wait_for("error")
        assert missing["data"]["details"][0]["field"] == "conversationId"
        await sock.send("typing", {"conversationId": conversation_id})
        assert (await sock.wait_for("error"))["data"]["code"] == "FORBIDDEN"
        await sock.ws.send("not json")
        assert (await sock.wait_for("error"))["data"]["code"] == "VALIDATION_ERROR"
        await sock.send("shout")
        assert (await sock.wait_for("error"))["data"]["code"] == "UNKNOWN_EVENT"
        # Still open after all that.
        await sock.send("ping")
        await sock.wait_for("pong")


async def test_a_worker_killed_mid_conversation_loses_no_message_and_stores_none_twice(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    gig = await open_gig(http, rival=False)
    conversation_id = await conversation_of(http, gig)
    async with socket_of(stack, gig.worker, server=1) as wanda:
        first = await post_message(http, gig.client, conversation_id, "before the crash")
        await wanda.wait_for("new_message", FIRST_DEADLINE_S, id=first["id"])
        sent = [
            await post_message(http, gig.client, conversation_id, f"message {i}") for i in range(40)
        ]
        live: dict[str, int] = {}

        async def receive_until(wanted: set[str]) -> None:
            loop = asyncio.get_running_loop()
            end = loop.time() + FIRST_DEADLINE_S
            while not wanted <= set(live):
                try:
                    frame = await wanda.wait_for("new_message", max(0.1, end - loop.time()))
                except TimeoutError:
                    missing = len(wanted - set(live))
                    raise AssertionError(
                        f"{missing} messages never delivered; log:\n{stack.worker_log()}"
                    ) from None
                live[frame["data"]["id"]] = live.get(frame["data"]["id"], 0) + 1

        # Killed while it works through the conversation: some stored and published, the rest
        # not, and its last offsets not committed.
        await receive_until({sent[0]["id"]})
        stack.workers[-1].kill()
        stack.spawn_worker()
        await receive_until({message["id"] for message in sent})
    # Live: every message arrived; a repeat (redelivery after the kill) carries the same id.
    assert set(live) == {message["id"] for message in sent}
    # The history (MongoDB) against the source of truth (PostgreSQL): each message once, in order.
    page = data(
        await http.get(
            f"/api/conversations/{conversation_id}/messages",
            params={"limit": 100},
            headers=gig.worker.headers,
        )
    )
    assert [item["id"] for item in page["items"]] == [m["id"] for m in reversed([first, *sent])]
    assert [item["sequence"] for item in page["items"]] == list(range(41, 0, -1))

"""Conversations and messages over REST: who may open, post, read and mark read (a matrix), bad
input named by field, one `message.sent` per message, and history pages that never skip or
repeat messages of one millisecond. The history is materialized by the messages agent's own
handler (no Kafka here; tests/api/test_realtime.py runs the whole pipeline)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from agents.messages import Deliverer
from agents.runtime import AgentDeps, RetryPolicy
from bridges.email import SmtpMailer
from streams.events import Event
from tests.api.conftest import Account, error_fields, outbox_events, register
from tests.api.gigs import Gig, data, make_admin, open_gig

QUICK = RetryPolicy(attempts=3, first_delay_s=0.01, max_delay_s=0.01)


async def open_conversation(
    http: httpx.AsyncClient, who: Account, project_id: Any, participant: Account | uuid.UUID
) -> httpx.Response:
    participant_id = participant.id if isinstance(participant, Account) else participant
    return await http.post(
        "/api/conversations",
        json={"projectId": str(project_id), "participantId": str(participant_id)},
        headers=who.headers,
    )


async def send(
    http: httpx.AsyncClient, who: Account, conversation_id: Any, content: str = "Hello"
) -> httpx.Response:
    return await http.post(
        "/api/messages",
        json={"conversationId": str(conversation_id), "content": content, "type": "text"},
        headers=who.headers,
    )


async def materialize(app: FastAPI, events: list[dict[str, Any]]) -> None:
    """What the messages agent does with each event, minus Kafka and the live publish."""
    settings = app.state.tulifo.settings
    deps = AgentDeps(
        settings=settings, mongo=app.state.tulifo.mongo, mailer=SmtpMailer(settings), retry=QUICK
    )
    deliverer = Deliverer(deps)
    for envelope in events:
        await deliverer.handle(Event.model_validate(envelope))


async def history(
    http: httpx.AsyncClient, who: Account, conversation_id: Any, **params: Any
) -> httpx.Response:
    return await http.get(
        f"/api/conversations/{conversation_id}/messages", params=params, headers=who.headers
    )


@pytest.fixture
async def gig(client: httpx.AsyncClient) -> Gig:
    return await open_gig(client)


@pytest.fixture
async def conversation(client: httpx.AsyncClient, gig: Gig) -> dict[str, Any]:
    return data(await open_conversation(client, gig.client, gig.project_id, gig.worker), 201)


async def test_either_party_opens_the_one_conversation_of_a_project_and_worker(
    client: httpx.AsyncClient, gig: Gig
) -> None:
    opened = data(await open_conversation(client, gig.client, gig.project_id, gig.worker), 201)
    assert opened["clientId"] == str(gig.client.id)
    assert opened["workerId"] == str(gig.worker.id)
    assert opened["participant"] == {
        "id": str(gig.worker.id),
        "name": "Wanda Worker",
        "role": "worker",
    }
    assert (opened["lastMessage"], opened["unreadCount"]) == (None, 0)
    again = data(await open_conversation(client, gig.client, gig.project_id, gig.worker), 200)
    from_worker = data(await open_conversation(client, gig.worker, gig.project_id, gig.client))
    assert again["id"] == from_worker["id"] == opened["id"]
    assert from_worker["participant"]["id"] == str(gig.client.id)
    # The other bidder has a conversation of their own.
    rival = data(await open_conversation(client, gig.rival, gig.project_id, gig.client), 201)
    assert rival["id"] != opened["id"]


async def test_only_the_client_and_a_worker_on_the_project_may_open_one(
    app: FastAPI, client: httpx.AsyncClient, gig: Gig
) -> None:
    stranger = await register(client, role="worker")
    other_client = await register(client, role="client")
    admin = await make_admin(app, client)
    cases = [
        (stranger, gig.client, 403),  # a worker with no bid
        (gig.client, stranger, 403),  # ... asked for by the client
        (other_client, gig.worker, 403),  # somebody else's project
        (gig.worker, gig.rival, 403),  # two workers
        (admin, gig.worker, 403),  # admins are not parties of private chats
        (gig.client, gig.client, 403),  # with oneself
    ]
    for who, participant, status in cases:
        response = await open_conversation(client, who, gig.project_id, participant)
        assert response.status_code == status, (who.role, response.text)
        assert response.json()["success"] is False
    unknown = await open_conversation(client, gig.client, uuid.uuid4(), gig.worker)
    assert unknown.status_code == 404
    anonymous = await client.post(
        "/api/conversations",
        json={"projectId": str(gig.project_id), "participantId": str(gig.worker.id)},
    )
    assert anonymous.status_code == 401
    bad = await client.post(
        "/api/conversations",
        json={"projectId": "nope", "participantId": str(gig.worker.id)},
        headers=gig.client.headers,
    )
    assert bad.status_code == 422
    assert error_fields(bad) == ["projectId"]


async def test_a_message_is_stored_with_one_message_sent_event_naming_the_offline_recipient(
    client: httpx.AsyncClient, db: asyncpg.Connection, gig: Gig, conversation: dict[str, Any]
) -> None:
    first = data(await send(client, gig.client, conversation["id"], "  Hi Wanda  "), 201)
    second = data(await send(client, gig.worker, conversation["id"], "Hi Cleo"), 201)
    assert (first["content"], first["sequence"], first["type"]) == ("Hi Wanda", 1, "text")
    assert (second["senderId"], second["sequence"]) == (str(gig.worker.id), 2)
    events = await outbox_events(db, event_type="message.sent", key=conversation["id"])
    assert [e["data"]["message_id"] for e in events] == [first["id"], second["id"]]
    assert [e["sequence"] for e in events] == [1, 2]
    record = events[0]["data"]
    assert record["sender_id"] == str(gig.client.id)
    assert record["recipient_ids"] == [str(gig.worker.id)]
    # Nobody has a live socket in this test: the recipient is offline, so notified.
    assert record["offline_recipient_ids"] == [str(gig.worker.id)]
    assert (record["content"], record["message_sequence"]) == ("Hi Wanda", 1)
    assert record["project_id"] == str(gig.project_id)
    assert events[0]["actor_id"] == str(gig.client.id)


async def test_only_participants_post_and_bad_messages_are_refused_naming_the_field(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Connection, gig: Gig
) -> None:
    conversation = data(
        await open_conversation(client, gig.client, gig.project_id, gig.worker), 201
    )
    stranger = await register(client, role="worker")
    admin = await make_admin(app, client)
    for who, status in ((gig.client, 201), (gig.worker, 201), (gig.rival, 403), (stranger, 403)):
        response = await send(client, who, conversation["id"])
        assert response.status_code == status, response.text
    assert (await send(client, admin, conversation["id"])).status_code == 403
    assert (await send(client, gig.client, uuid.uuid4())).status_code == 404
    before = len(await outbox_events(db, event_type="message.sent", key=conversation["id"]))
    bad_bodies: list[tuple[dict[str, Any], list[str]]] = [
        ({"content": ""}, ["content"]),
        ({"content": "   \n "}, ["content"]),
        ({"content": "x" * 5001}, ["content"]),
        ({"type": "system"}, ["type"]),
        ({"conversationId": "not-a-uuid"}, ["conversationId"]),
        ({"content": 42}, ["content"]),
    ]
    for overrides, fields in bad_bodies:
        body = {"conversationId": conversation["id"], "content": "Hello", "type": "text"}
        response = await client.post(
            "/api/messages", json={**body, **overrides}, headers=gig.client.headers
        )
        assert response.status_code == 422, (overrides, response.text)
        assert error_fields(response) == fields
    missing = await client.post(
        "/api/messages", json={"content": "Hello"}, headers=gig.client.headers
    )
    assert error_fields(missing) == ["conversationId"]
    assert len(await outbox_events(db, event_type="message.sent", key=conversation["id"])) == before


async def test_history_pages_never_skip_or_repeat_messages_of_one_millisecond(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Connection, gig: Gig
) -> None:
    conversation = data(
        await open_conversation(client, gig.client, gig.project_id, gig.worker), 201
    )
    sent = [
        data(await send(client, (gig.client, gig.worker)[i % 2], conversation["id"], f"m{i}"), 201)
        for i in range(7)
    ]
    events = await outbox_events(db, event_type="message.sent", key=conversation["id"])
    # Every message stamped with one instant, the worst case for a time-keyed cursor.
    same_instant = sent[0]["createdAt"]
    for envelope in events:
        envelope["data"]["sent_at"] = same_instant
    await materialize(app, events)
    await materialize(app, events)  # a redelivery changes nothing

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = data(await history(client, gig.worker, conversation["id"], **params))
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [message["id"] for message in reversed(sent)]
    newest = data(await history(client, gig.client, conversation["id"], limit=1))["items"][0]
    assert newest == {**sent[-1], "createdAt": newest["createdAt"]}
    assert newest["content"] == "m6"


async def test_history_is_for_participants_only_and_a_bad_cursor_is_named(
    app: FastAPI, client: httpx.AsyncClient, gig: Gig, conversation: dict[str, Any]
) -> None:
    stranger = await register(client, role="client")
    admin = await make_admin(app, client)
    assert (await history(client, gig.client, conversation["id"])).status_code == 200
    assert (await history(client, gig.rival, conversation["id"])).status_code == 403
    assert (await history(client, stranger, conversation["id"])).status_code == 403
    assert (await history(client, admin, conversation["id"])).status_code == 403
    assert (await history(client, gig.client, uuid.uuid4())).status_code == 404
    bad = await history(client, gig.client, conversation["id"], cursor="bm90LWEtY3Vyc29y")
    assert bad.status_code == 422
    assert error_fields(bad) == ["cursor"]
    too_many = await history(client, gig.client, conversation["id"], limit=1000)
    assert too_many.status_code == 422
    assert "limit" in error_fields(too_many)[0]


async def test_read_receipts_move_forward_only_and_count_what_is_left_unread(
    client: httpx.AsyncClient, gig: Gig, conversation: dict[str, Any]
) -> None:
    messages = [
        data(await send(client, gig.client, conversation["id"], f"n{i}"), 201) for i in range(3)
    ]
    await send(client, gig.worker, conversation["id"], "mine do not count")

    async def unread(who: Account) -> int:
        listing = data(await client.get("/api/conversations", headers=who.headers))
        [item] = [c for c in listing["items"] if c["id"] == conversation["id"]]
        return int(item["unreadCount"])

    assert await unread(gig.worker) == 3
    url = f"/api/conversations/{conversation['id']}/read"
    receipt = data(
        await client.post(
            url, json={"upToMessageId": messages[1]["id"]}, headers=gig.worker.headers
        )
    )
    assert (receipt["sequence"], receipt["unreadCount"]) == (2, 1)
    assert receipt["userId"] == str(gig.worker.id)
    back = data(
        await client.post(
            url, json={"upToMessageId": messages[0]["id"]}, headers=gig.worker.headers
        )
    )
    assert (back["upToMessageId"], back["unreadCount"]) == (messages[1]["id"], 1)
    assert await unread(gig.worker) == 1
    assert await unread(gig.client) == 1  # the worker's one message

    other = data(await open_conversation(client, gig.rival, gig.project_id, gig.client), 201)
    elsewhere = data(await send(client, gig.rival, other["id"], "elsewhere"), 201)
    wrong = await client.post(
        url, json={"upToMessageId": elsewhere["id"]}, headers=gig.worker.headers
    )
    assert wrong.status_code == 422
    assert error_fields(wrong) == ["upToMessageId"]
    outsider = await client.post(
        url, json={"upToMessageId": messages[2]["id"]}, headers=gig.rival.headers
    )
    assert outsider.status_code == 403


async def test_the_inbox_lists_my_conversations_latest_first_with_keyset_pages(
    client: httpx.AsyncClient,
) -> None:
    first = await open_gig(client)
    second = await open_gig(client, owner=first.client)
    a = data(await open_conversation(client, first.client, first.project_id, first.worker), 201)
    b = data(await open_conversation(client, first.client, second.project_id, second.worker), 201)
    c = data(await open_conversation(client, first.client, first.project_id, first.rival), 201)
    await send(client, first.worker, a["id"], "latest of all")

    ids: list[str] = []
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = data(
            await client.get("/api/conversations", params=params, headers=first.client.headers)
        )
        items += page["items"]
        ids += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert ids == [a["id"], c["id"], b["id"]]
    assert items[0]["lastMessage"]["content"] == "latest of all"
    assert items[0]["unreadCount"] == 1
    assert items[0]["projectTitle"] == first.project["title"]
    mine = data(await client.get("/api/conversations", headers=first.worker.headers))["items"]
    assert [item["id"] for item in mine] == [a["id"]]

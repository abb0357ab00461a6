"""Notification state in MongoDB: upserts that never duplicate, pages that never skip, and the
claim ledgers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from infrastructure.mongo import MongoDatabase
from tables.notifications import (
    EMAIL_CLAIM_LEASE,
    NOTIFICATIONS,
    PUSH_LOG,
    ClaimState,
    Position,
    add_notification,
    claim_email,
    count_unread,
    ensure_indexes,
    list_for_user,
    mark_email_sent,
    mark_read,
    release_email,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def a_notification(**overrides: object) -> dict[str, object]:
    return {
        "_id": "e1:welcome",
        "userId": "u1",
        "type": "welcome",
        "title": "Welcome",
        "body": "Hi",
        "read": False,
        "createdAt": NOW,
        "eventId": "e1",
        **overrides,
    }


async def test_a_notification_is_created_once_and_a_redelivery_changes_nothing(
    mongo_db: MongoDatabase,
) -> None:
    assert await add_notification(mongo_db, a_notification()) is True
    await mongo_db[NOTIFICATIONS].update_one({"_id": "e1:welcome"}, {"$set": {"read": True}})

    assert await add_notification(mongo_db, a_notification(title="changed")) is False

    assert await mongo_db[NOTIFICATIONS].count_documents({}) == 1
    stored = await mongo_db[NOTIFICATIONS].find_one({"_id": "e1:welcome"})
    assert stored is not None
    assert stored["kind"] == "notification"
    assert stored["read"] is True  # the user's read flag survives the redelivery
    assert stored["title"] == "Welcome"


async def test_the_indexes_cover_only_notifications_newest_first_with_a_tiebreak(
    mongo_db: MongoDatabase,
) -> None:
    await ensure_indexes(mongo_db)
    await ensure_indexes(mongo_db)  # idempotent at every worker start
    indexes = await mongo_db[NOTIFICATIONS].index_information()
    assert indexes["user_recent"]["key"] == [("userId", 1), ("createdAt", -1), ("_id", -1)]
    assert indexes["user_recent"]["partialFilterExpression"] == {"kind": "notification"}
    assert indexes["user_unread"]["key"] == [("userId", 1), ("read", 1)]


async def test_pages_of_one_walk_through_notifications_of_the_same_millisecond(
    mongo_db: MongoDatabase,
) -> None:
    for n in range(5):
        await add_notification(mongo_db, a_notification(_id=f"e{n}:new_bid:u1:in_app"))
    await add_notification(
        mongo_db,
        a_notification(_id="older:welcome:u1:in_app", createdAt=NOW - timedelta(milliseconds=1)),
    )

    seen: list[str] = []
    after: Position | None = None
    while True:
        page = await list_for_user(mongo_db, user_id="u1", limit=1, after=after)
        if not page:
            break
        seen.append(page[0]["_id"])
        after = Position(page[0]["createdAt"], page[0]["_id"])

    assert seen == [
        *(f"e{n}:new_bid:u1:in_app" for n in reversed(range(5))),
        "older:welcome:u1:in_app",
    ]


async def test_push_subscriptions_in_the_same_collection_are_never_taken_for_notifications(
    mongo_db: MongoDatabase,
) -> None:
    await add_notification(mongo_db, a_notification())
    await mongo_db[NOTIFICATIONS].insert_one(
        {"_id": "sub1", "kind": "push_subscription", "userId": "u1", "read": False,
         "createdAt": NOW}
    )  # fmt: skip

    assert [d["_id"] for d in await list_for_user(mongo_db, user_id="u1", limit=10)] == [
        "e1:welcome"
    ]
    assert await count_unread(mongo_db, user_id="u1") == 1
    assert await mark_read(mongo_db, user_id="u1", notification_id=None) == 1
    subscription = await mongo_db[NOTIFICATIONS].find_one({"_id": "sub1"})
    assert subscription is not None and "read" in subscription and subscription["read"] is False


async def test_unread_counts_only_the_users_own_unread_notifications(
    mongo_db: MongoDatabase,
) -> None:
    for n in range(3):
        await add_notification(mongo_db, a_notification(_id=f"e{n}:x:u1:in_app"))
    await add_notification(mongo_db, a_notification(_id="e9:x:u2:in_app", userId="u2"))
    assert await count_unread(mongo_db, user_id="u1") == 3

    assert await mark_read(mongo_db, user_id="u1", notification_id="e0:x:u1:in_app") == 1
    assert await mark_read(mongo_db, user_id="u1", notification_id="e9:x:u2:in_app") == 0
    assert await count_unread(mongo_db, user_id="u1") == 2
    assert await count_unread(mongo_db, user_id="u2") == 1


async def test_an_email_is_claimed_by_one_sender_and_then_known_as_sent(
    mongo_db: MongoDatabase,
) -> None:
    mine = await claim_email(mongo_db, "e1:welcome", now=NOW)
    assert mine.state is ClaimState.CLAIMED
    theirs = await claim_email(mongo_db, "e1:welcome", now=NOW + timedelta(seconds=1))
    assert theirs.state is ClaimState.IN_PROGRESS

    await mark_email_sent(mongo_db, mine, now=NOW, message_id="<e1.welcome@x>")

    later = await claim_email(mongo_db, "e1:welcome", now=NOW + EMAIL_CLAIM_LEASE * 10)
    assert later.state is ClaimState.SENT


async def test_a_released_claim_can_be_claimed_again(mongo_db: MongoDatabase) -> None:
    first = await claim_email(mongo_db, "e1:welcome", now=NOW)
    await release_email(mongo_db, first)
    again = await claim_email(mongo_db, "e1:welcome", now=NOW)
    assert again.state is ClaimState.CLAIMED
    assert again.token != first.token


async def test_a_dead_senders_claim_is_taken_over_after_the_lease_only(
    mongo_db: MongoDatabase,
) -> None:
    dead = await claim_email(mongo_db, "e1:welcome", now=NOW)
    within = await claim_email(mongo_db, "e1:welcome", now=NOW + EMAIL_CLAIM_LEASE)
    assert within.state is ClaimState.IN_PROGRESS

    heir = await claim_email(
        mongo_db, "e1:welcome", now=NOW + EMAIL_CLAIM_LEASE + timedelta(seconds=1)
    )
    assert heir.state is ClaimState.CLAIMED

    # The old claimant waking up can neither release nor complete the heir's claim.
    await release_email(mongo_db, dead)
    await mark_email_sent(mongo_db, dead, now=NOW, message_id="<stale>")
    stored = await mongo_db.email_log.find_one({"_id": "e1:welcome"})
    assert stored is not None
    assert stored["status"] == "sending"
    assert stored["token"] == heir.token
    assert stored["attempts"] == 2


async def test_pushes_are_claimed_in_their_own_ledger(mongo_db: MongoDatabase) -> None:
    email = await claim_email(mongo_db, "e1:x:u1", now=NOW)
    push = await claim_email(mongo_db, "e1:x:u1", now=NOW, ledger=PUSH_LOG)
    assert email.state is ClaimState.CLAIMED and push.state is ClaimState.CLAIMED
    await mark_email_sent(mongo_db, push, now=NOW, message_id="e1:x:u1")
    assert (await mongo_db[PUSH_LOG].find_one({"_id": "e1:x:u1"}) or {})["status"] == "sent"
    assert (await mongo_db.email_log.find_one({"_id": "e1:x:u1"}) or {})["status"] == "sending"

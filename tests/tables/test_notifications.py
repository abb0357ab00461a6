"""Notification state in MongoDB: upserts that never duplicate, and the email claim ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from infrastructure.mongo import MongoDatabase
from tables.notifications import (
    EMAIL_CLAIM_LEASE,
    ClaimState,
    add_notification,
    claim_email,
    ensure_indexes,
    mark_email_sent,
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
    await mongo_db.notifications.update_one({"_id": "e1:welcome"}, {"$set": {"read": True}})

    assert await add_notification(mongo_db, a_notification(title="changed")) is False

    assert await mongo_db.notifications.count_documents({}) == 1
    stored = await mongo_db.notifications.find_one({"_id": "e1:welcome"})
    assert stored is not None
    assert stored["read"] is True  # the user's read flag survives the redelivery
    assert stored["title"] == "Welcome"


async def test_the_listing_index_is_user_then_newest_first(mongo_db: MongoDatabase) -> None:
    await ensure_indexes(mongo_db)
    await ensure_indexes(mongo_db)  # idempotent at every worker start
    indexes = await mongo_db.notifications.index_information()
    assert indexes["user_recent"]["key"] == [("userId", 1), ("createdAt", -1)]


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

-- A pending bid not accepted within `bid_expiry_seconds` of its submission expires (the
-- `bid_expiry` job, api/jobs/kinds.py): a worker is not held to a price and an availability
-- forever. An expired bid, like a withdrawn one, frees the worker's slot for a new bid and can
-- no longer be accepted.
ALTER TABLE bids DROP CONSTRAINT bids_status_check;
ALTER TABLE bids ADD CONSTRAINT bids_status_check
    CHECK (status IN ('pending', 'accepted', 'rejected', 'withdrawn', 'expired'));

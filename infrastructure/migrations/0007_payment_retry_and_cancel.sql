-- A booking may have several payments now: after a declined card (payment_intent.payment_failed)
-- the client's retry gets a new PaymentIntent rather than the failed one (api/payments/service.py),
-- so the failed payments stay as history beside it. Still at most one that is not failed: two
-- live intents for one hold could both be paid.
ALTER TABLE payments DROP CONSTRAINT payments_booking_id_key;
ALTER TABLE payments DROP CONSTRAINT payments_escrow_id_key;
CREATE UNIQUE INDEX payments_one_live_per_booking ON payments (booking_id) WHERE status <> 'failed';
CREATE UNIQUE INDEX payments_one_live_per_escrow ON payments (escrow_id) WHERE status <> 'failed';
CREATE INDEX payments_booking ON payments (booking_id, created_at DESC);

-- An intent we stopped offering (its project was cancelled before it was paid, or a retry
-- replaced it) is cancelled at Stripe after the transaction that stopped it commits, never while
-- it holds locks. 'needed' until Stripe confirms: a Stripe that did not answer leaves it for
-- `retry_intent_cancellations`. 'refused': Stripe would not cancel it (it was already paid or
-- cancelled); a payment_intent.succeeded for it refunds a cancelled project's money in full.
ALTER TABLE payments
    ADD COLUMN stripe_cancel text CHECK (stripe_cancel IN ('needed', 'cancelled', 'refused')),
    ADD COLUMN stripe_cancel_error text;
CREATE INDEX payments_cancel_needed ON payments (updated_at) WHERE stripe_cancel = 'needed';

"""Payments: Stripe PaymentIntents that fund escrow holds, and the Stripe webhook."""

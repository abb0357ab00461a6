"""Escrow: money held for a booking between the client's payment and its release or refund."""

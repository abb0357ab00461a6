"""Disputes: a participant freezes a project's escrow; an admin decides where the money goes."""

"""Messaging (seed 2.4): conversations of a project's parties, messages, read receipts."""

"""Escrow balances: every gig's money (and its project's title and status), folded from its
`gigs` events (tables/escrow.py) into the `escrow_balances` table, materialized to
`analytics.escrow_balances` / `escrow_movements` and to MongoDB `client_data`."""

from __future__ import annotations

import faust

from agents.folding import Fold, register_fold
from agents.runtime import AgentDeps
from tables import escrow
from tables.client_data import ClientDataSink

FOLD = Fold(
    name="escrow_balances",
    stream="gigs",
    types=escrow.TYPES,
    apply=escrow.apply,
    sinks=(
        lambda deps: escrow.EscrowSink(deps.settings.database_url),
        lambda deps: ClientDataSink(deps.mongo),
    ),
)


def register(app: faust.App, deps: AgentDeps) -> None:
    register_fold(app, deps, FOLD)

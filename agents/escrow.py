"""Escrow balances: every gig's money, folded from its `gigs` events (tables/escrow.py) into the
`escrow_balances` table and materialized to `analytics.escrow_balances` / `escrow_movements`.
(MongoDB `client_data` is the same fold in an agent of its own: agents/client_data.py.)"""

from __future__ import annotations

import faust

from agents.folding import Fold, register_fold
from agents.runtime import AgentDeps
from tables import escrow

FOLD = Fold(
    name="escrow_balances",
    stream="gigs",
    types=escrow.TYPES,
    apply=escrow.apply,
    sinks=(lambda deps: escrow.EscrowSink(deps.settings.database_url),),
)


def register(app: faust.App, deps: AgentDeps) -> None:
    register_fold(app, deps, FOLD)

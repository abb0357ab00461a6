"""MongoDB `client_data`: each client's projects with their billing (tables/client_data.py),
folded from the `gigs` stream by the same pure fold as the escrow balances (tables/escrow.py),
in a table of its own.

An agent of its own rather than a second sink of `escrow_balances`: as a second sink, SecantusDB
(the development stand-in, a few hundred writes a second) held the analytics path down to ~100
events/s in the benchmark. Alone, it can run in a worker of its own
(TULIFO_WORKER_AGENTS=client_data) beside one running `escrow,ratings`; a worker runs all agents
unless told otherwise (the benchmark leaves it out; `tulifo replay` rebuilds it too).
"""

from __future__ import annotations

import faust

from agents.folding import Fold, register_fold
from agents.runtime import AgentDeps
from tables import escrow
from tables.client_data import ClientDataSink

FOLD = Fold(
    name="client_data",
    stream="gigs",
    types=escrow.TYPES,
    apply=escrow.apply,
    sinks=(lambda deps: ClientDataSink(deps.mongo),),
)


def register(app: faust.App, deps: AgentDeps) -> None:
    register_fold(app, deps, FOLD)

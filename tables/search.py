"""The search indices `workers` and `projects` (the seed's names): their mappings, defined here in
code, and how documents (tables/documents.py) are written to them. How the indices are created,
migrated and rebuilt behind their aliases is tables/search_indices.py.

Each name is an alias over a concrete index `<name>-v<MAPPING_VERSION>-<timestamp>`: readers and
the indexer use the alias. Change a mapping, bump its version: the next start sees the alias on an
index of an older version and rebuilds.

Writes use Elasticsearch's external versioning with the document's version (tables/documents.py)
plus one (`external_version`): a stale or repeated write never puts an older document back, and a
legacy row no event has written yet (version 0) is still indexed, at 1, below any real sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from elasticsearch import ApiError, AsyncElasticsearch, TransportError
from elasticsearch.helpers import async_bulk

from tables.documents import ProjectDocument, WorkerDocument

log = logging.getLogger(__name__)

# Text: standard tokens, lowercased, accents folded, English stop words out, Porter stems
# ("running" finds "run"). Skills are keywords for exact filters and facets, lowercased by a
# normalizer so "Python" and "python" are one bucket, with a text sub-field for free text.
_ANALYSIS: Final[dict[str, Any]] = {
    "analyzer": {
        "text_en": {
            "type": "custom",
            "tokenizer": "standard",
            "filter": ["lowercase", "asciifolding", "stop", "porter_stem"],
        }
    },
    "normalizer": {"lower": {"type": "custom", "filter": ["lowercase", "asciifolding"]}},
}
_TEXT: Final = {"type": "text", "analyzer": "text_en"}
_SKILLS: Final = {"type": "keyword", "normalizer": "lower", "fields": {"text": _TEXT}}
_KEYWORD: Final = {"type": "keyword"}


@dataclass(frozen=True)
class IndexSpec:
    alias: str
    version: int
    properties: dict[str, Any]

    def name(self, prefix: str = "") -> str:
        """The alias readers and the indexer use: the seed's name after the deployment's
        prefix (`TULIFO_SEARCH_INDEX_PREFIX`)."""
        return f"{prefix}{self.alias}"

    @property
    def mappings(self) -> dict[str, Any]:
        # strict: a field the code forgot to map is an indexing error, not a silent guess.
        return {
            "dynamic": "strict",
            "_meta": {"mapping_version": self.version},
            "properties": self.properties,
        }

    @property
    def settings(self) -> dict[str, Any]:
        return {"analysis": _ANALYSIS}


WORKERS: Final = IndexSpec(
    alias="workers",
    version=1,
    properties={
        "id": _KEYWORD,
        "public": {"type": "boolean"},
        "name": {**_TEXT, "fields": {"keyword": _KEYWORD}},
        "headline": _TEXT,
        "bio": _TEXT,
        "skills": _SKILLS,
        "experience": _TEXT,
        "location": {**_TEXT, "fields": {"keyword": {"type": "keyword", "normalizer": "lower"}}},
        "hourly_rate_cents": {"type": "long"},
        "currency": _KEYWORD,
        "availability": _KEYWORD,
        "rating": {"type": "float"},
        "rating_average": {"type": "float"},
        "rating_count": {"type": "integer"},
        "completed_projects": {"type": "integer"},
        "created_at": {"type": "date"},
        "updated_at": {"type": "date"},
    },
)

PROJECTS: Final = IndexSpec(
    alias="projects",
    version=1,
    properties={
        "id": _KEYWORD,
        "client_id": _KEYWORD,
        "title": _TEXT,
        "description": _TEXT,
        "skills": _SKILLS,
        "budget_cents": {"type": "long"},
        "currency": _KEYWORD,
        "status": _KEYWORD,
        "deadline": {"type": "date"},
        "bid_count": {"type": "integer"},
        "created_at": {"type": "date"},
        "updated_at": {"type": "date"},
    },
)

INDICES: Final = {spec.alias: spec for spec in (WORKERS, PROJECTS)}

Document = WorkerDocument | ProjectDocument


class SearchUnavailable(Exception):
    """The cluster cannot be reached or does not answer (connection error, timeout, 5xx, 429):
    the caller holds its batch and retries; external versions make a repeated write harmless."""


def external_version(version: int) -> int:
    """The Elasticsearch external version of a document at `version`: one more, so version 0 (a
    row written before the outbox kept sequences) is indexed at 1, and every reader of `_version`
    must subtract the same one."""
    return version + 1


async def write_documents(
    es: AsyncElasticsearch,
    spec: IndexSpec,
    docs: Iterable[Document],
    *,
    prefix: str = "",
    refresh: bool = False,
) -> dict[str, str]:
    """Index `docs` through the alias in one bulk request, each under its id and external
    version. A version conflict means an equal or newer document is there already: success.
    Returns the documents the index refused, {id: reason}, for the caller to dead-letter; raises
    SearchUnavailable when the cluster does not answer, or when the alias is missing (a write to a
    missing name would create a plain index of that name)."""
    return await bulk(es, spec.name(prefix), docs, refresh=refresh, require_alias=True)


async def bulk(
    es: AsyncElasticsearch,
    index: str,
    docs: Iterable[Document],
    *,
    refresh: bool,
    require_alias: bool,
) -> dict[str, str]:
    actions = [
        {
            "_op_type": "index",
            "_index": index,
            "_id": doc.id,
            "version": external_version(doc.version),
            "version_type": "external",
            "_source": doc.source(),
        }
        for doc in docs
    ]
    if not actions:
        return {}
    options: dict[str, Any] = {"require_alias": True} if require_alias else {}
    if refresh:
        options["refresh"] = True
    with unavailable(f"writing to {index}"):
        _, errors = await async_bulk(es, actions, raise_on_error=False, **options)
    refused: dict[str, str] = {}
    for item in errors if isinstance(errors, list) else ():
        info = next(iter(item.values()))
        status = int(info.get("status", 0))
        error = info.get("error")
        kind, reason = (
            (error.get("type", "error"), error.get("reason", ""))
            if isinstance(error, dict)
            else ("error", str(error))
        )
        if status == 409:  # an equal or newer version is indexed already
            continue
        if status == 429 or status >= 500 or kind == "index_not_found_exception":
            raise SearchUnavailable(f"{index} refused a write with {status} {kind}: {reason}")
        refused[str(info.get("_id"))] = f"{kind}: {reason}"
    return refused


@contextmanager
def unavailable(doing: str) -> Iterator[None]:
    """Connection errors, timeouts, 5xx and 429 as SearchUnavailable; other API errors (our
    requests' faults) as they are."""
    try:
        yield
    except TransportError as exc:
        raise SearchUnavailable(f"Elasticsearch does not answer ({doing}): {exc}") from exc
    except ApiError as exc:
        if exc.meta.status == 429 or exc.meta.status >= 500:
            raise SearchUnavailable(
                f"Elasticsearch answered {exc.meta.status} ({doing}): {exc}"
            ) from exc
        raise

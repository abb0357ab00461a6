"""The Elasticsearch client: created once per process at startup, then handed to its users.

Elasticsearch 8 in production and docker-compose; noida-db (the same REST API) on developer
machines and in the tests (DESIGN.md §5). The client's major version must match the server's.
"""

from __future__ import annotations

from elasticsearch import AsyncElasticsearch

from infrastructure.settings import Settings

# A search or a bulk write of a batch answers in well under a second on a healthy cluster
# (noida-db scans every document: ~0.4 s at 10k). 10 s bounds a stuck node; with two retries a
# caller waits at most ~30 s, and the API's readiness check cuts its own call shorter.
REQUEST_TIMEOUT_S = 10.0
MAX_RETRIES = 2


class SearchNotConfigured(RuntimeError):
    """No Elasticsearch is configured (TULIFO_ELASTICSEARCH_URL is unset)."""


def create_search_client(settings: Settings) -> AsyncElasticsearch:
    """A client for `settings.elasticsearch_url`. It connects on its first request; no sniffing
    (a node list learned from the cluster would bypass the address we were given, a load
    balancer's or a container name)."""
    if settings.elasticsearch_url is None:
        raise SearchNotConfigured(
            "TULIFO_ELASTICSEARCH_URL is not set: point it at an Elasticsearch 8 server "
            "(`tulifo dev` starts noida-db when none answers)"
        )
    return AsyncElasticsearch(
        settings.elasticsearch_url,
        request_timeout=REQUEST_TIMEOUT_S,
        retry_on_timeout=True,
        max_retries=MAX_RETRIES,
    )

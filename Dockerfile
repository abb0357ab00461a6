# syntax=docker/dockerfile:1
# Tulifo Gig: one image for every process (`tulifo api|worker|relay|migrate`).
# The [local] extra (embedded stand-ins, including GPL SecantusDB) is never installed here.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler for any dependency that ships no wheel for this platform; it stays in this stage.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams streams
COPY agents agents
COPY tables tables
COPY api api
COPY bridges bridges
COPY infrastructure infrastructure
RUN pip install --upgrade pip && pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin tulifo \
    && mkdir -p /var/lib/tulifo/faust \
    && chown -R tulifo:tulifo /var/lib/tulifo
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/tulifo
USER tulifo
EXPOSE 8000
ENTRYPOINT ["tulifo"]
CMD ["api"]

"""Child process of `api-write`: the production server (`api.server.serve`: uvicorn, uvloop,
one worker) on 127.0.0.1 and the port given, configured from the TULIFO_* environment."""

from __future__ import annotations

import sys

from api.server import serve
from infrastructure.settings import get_settings


def main() -> None:
    serve(get_settings(), host="127.0.0.1", port=int(sys.argv[1]))


if __name__ == "__main__":
    main()

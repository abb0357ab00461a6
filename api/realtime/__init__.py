"""Live connections: WebSocket sockets, rooms fanned out over Redis pub/sub, presence."""

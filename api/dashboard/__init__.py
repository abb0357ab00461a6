"""The live dashboard: a snapshot of the caller's values, the live events they may see as
Server-Sent Events (GET /api/dashboard/stream), and the page that shows both (GET /dashboard)."""

-- The matching agent's rankings (agents/matching.py): per open project, its top workers with each
-- part of the score. Written only by that agent, one project's whole ranking per transaction, and
-- read by GET /api/matching/match and by analysts. A project that stops being open loses its rows.
CREATE TABLE analytics.match_scores (
    project_id         uuid NOT NULL,
    worker_id          uuid NOT NULL,
    rank               integer NOT NULL CHECK (rank >= 1),
    -- score = W_TEXT * text_score + W_RATING * rating_score + W_AVAILABILITY * availability_score
    -- (tables/matching.py; README "Matching"); every part is in [0, 1].
    score              double precision NOT NULL,
    text_score         double precision NOT NULL,
    rating_score       double precision NOT NULL,
    availability_score double precision NOT NULL,
    computed_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, worker_id),
    UNIQUE (project_id, rank)
);
-- "Which projects is this worker ranked for" (live dashboards, analysts).
CREATE INDEX match_scores_worker ON analytics.match_scores (worker_id);

-- The seed's users table keeps first and last name apart, and its clients register with both.
-- `name` stays the display name every other domain reads (reviews, events, emails); the two
-- parts are kept beside it. Existing accounts are split at the first run of whitespace
-- ("Ann Lee Smith" -> "Ann", "Lee Smith"); a one-word name has an empty last name.

ALTER TABLE users
    ADD COLUMN first_name text NOT NULL DEFAULT '',
    ADD COLUMN last_name  text NOT NULL DEFAULT '';

UPDATE users
   SET first_name = coalesce(substring(btrim(name) FROM '^\S+'), ''),
       last_name  = coalesce(substring(btrim(name) FROM '^\S+\s+(.*)$'), '');

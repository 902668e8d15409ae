-- The PostgreSQL migration ledger: one row per applied migration.
-- It lives in its own schema so `\dt` in public lists only the platform's tables.
CREATE SCHEMA IF NOT EXISTS platformdb;
CREATE TABLE IF NOT EXISTS platformdb.schema_migrations (
    version     integer PRIMARY KEY CHECK (version > 0),
    name        text        NOT NULL,
    checksum    char(64)    NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms integer     NOT NULL CHECK (duration_ms >= 0),
    applied_by  text        NOT NULL,
    db_user     text        NOT NULL DEFAULT current_user
);

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
-- Rows written by `migrate baseline`: the schema was found equal to what the
-- migrations build, and the migration was recorded without running.
ALTER TABLE platformdb.schema_migrations
    ADD COLUMN IF NOT EXISTS baselined boolean NOT NULL DEFAULT false;

-- Progress of batched backfills (`platformdb migrate backfill`, `-- platformdb:
-- backfill`): one row per backfill and partition, written in the same
-- transaction as the batch it records, so a backfill resumes exactly where it
-- stopped.
CREATE TABLE IF NOT EXISTS platformdb.backfills (
    name         text        NOT NULL,
    partition    text        NOT NULL,
    checksum     char(64)    NOT NULL,
    last_key     text[],
    done         boolean     NOT NULL DEFAULT false,
    batches      bigint      NOT NULL DEFAULT 0,
    rows_scanned bigint      NOT NULL DEFAULT 0,
    rows_updated bigint      NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, partition)
);

-- The fingerprint of the schema the migrations built, for `platformdb health`
-- (drift since it was recorded). One row; `fingerprint` NULL means drift was
-- found and not yet cleared by `migrate verify --drift`.
CREATE TABLE IF NOT EXISTS platformdb.schema_state (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    fingerprint char(64),
    version     integer     NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    recorded_by text        NOT NULL,
    note        text        NOT NULL DEFAULT ''
);

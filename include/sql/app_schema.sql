-- Schema of the lab's demo app (database "app"). Idempotent: applied on every `resilience lab up`.
-- Every table carries created_at/updated_at so RPO (newest row that survived a restore) is measurable.

CREATE TABLE IF NOT EXISTS accounts (
    id            bigserial PRIMARY KEY,
    email         text        NOT NULL UNIQUE,
    display_name  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS posts (
    id          bigserial PRIMARY KEY,
    account_id  bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    body        text        NOT NULL,
    status      text        NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'scheduled', 'published', 'archived')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS uploads (
    id          bigserial PRIMARY KEY,
    account_id  bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    post_id     bigint      REFERENCES posts (id) ON DELETE SET NULL,
    s3_key      text        NOT NULL UNIQUE,
    size_bytes  bigint      NOT NULL CHECK (size_bytes >= 0),
    sha256      char(64)    NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS accounts_created_at_idx ON accounts (created_at);
CREATE INDEX IF NOT EXISTS accounts_updated_at_idx ON accounts (updated_at);
CREATE INDEX IF NOT EXISTS posts_created_at_idx    ON posts (created_at);
CREATE INDEX IF NOT EXISTS posts_updated_at_idx    ON posts (updated_at);
CREATE INDEX IF NOT EXISTS posts_account_id_idx    ON posts (account_id);
CREATE INDEX IF NOT EXISTS uploads_created_at_idx  ON uploads (created_at);
CREATE INDEX IF NOT EXISTS uploads_updated_at_idx  ON uploads (updated_at);
CREATE INDEX IF NOT EXISTS uploads_account_id_idx  ON uploads (account_id);
CREATE INDEX IF NOT EXISTS uploads_post_id_idx     ON uploads (post_id);

-- Webhooks received by the app (the runbook's "webhook processing active" check reads them back).
CREATE TABLE IF NOT EXISTS webhook_events (
    id           bigserial PRIMARY KEY,
    event_id     text        NOT NULL UNIQUE,
    event_type   text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_events_created_at_idx ON webhook_events (created_at);
CREATE INDEX IF NOT EXISTS webhook_events_updated_at_idx ON webhook_events (updated_at);

-- security: revocable tokens, and the installation's own secrets.

-- a revoked workspace token leaves the workspace without one: no hash
-- matches any token until a rotation issues a new one.
alter table workspaces alter column token_hash drop not null;

-- secrets of this installation, created once on first start and kept here
-- so that every node of one installation shares them. today one:
-- `idempotency_keys`, the key of the keyed hash that turns an idempotency
-- key into its delegation id, so another workspace cannot predict (and
-- squat) the id a workspace's key will get.
create table installation_secrets (
    name       text primary key,
    secret     bytea not null check (length(secret) >= 32),
    created_at timestamptz not null default now()
);

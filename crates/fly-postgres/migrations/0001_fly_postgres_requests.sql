-- fly-postgres: the record of forwarded writes that makes them exactly-once.
-- Run on the primary, once (Repo::migrate() does it; it is idempotent).
-- A forwarded write inserts its request id here in the SAME transaction as
-- the write itself; a retry with the same id finds the row and gets the
-- recorded output instead of running the write again. Rows are swept after
-- the repo's request retention (24 h by default).
create table if not exists fly_postgres_requests (
    id          text primary key,
    mutation    text not null,
    output      text,
    created_at  timestamptz not null default now(),
    -- sha256 of the mutation name and its canonical JSON arguments: a
    -- reused id with other content is refused instead of answered.
    args_digest text,
    -- A write that failed for good (JSON): its id answers with the failure,
    -- so a late attempt with the same id cannot commit after the caller was
    -- told "not committed".
    failure     text
);
-- Tables created before these columns existed.
alter table fly_postgres_requests add column if not exists args_digest text;
alter table fly_postgres_requests add column if not exists failure text;
-- When the sweeper may delete the row: soon for a request id the library
-- generated (only the retries of one call use it), after the request
-- retention for one the caller chose (an Idempotency-Key). Rows written
-- before this column existed are swept by created_at.
alter table fly_postgres_requests add column if not exists keep_until timestamptz;
create index if not exists fly_postgres_requests_created_at
    on fly_postgres_requests (created_at);
create index if not exists fly_postgres_requests_keep_until
    on fly_postgres_requests (keep_until);

-- fly-postgres: the record of forwarded writes that makes them exactly-once.
-- Run on the primary, once (Repo::migrate() does it; it is idempotent).
-- A forwarded write inserts its request id here in the SAME transaction as
-- the write itself; a retry with the same id finds the row and gets the
-- recorded output instead of running the write again.
create table if not exists fly_postgres_requests (
    id          text primary key,
    mutation    text not null,
    output      text,
    created_at  timestamptz not null default now()
);
create index if not exists fly_postgres_requests_created_at
    on fly_postgres_requests (created_at);

-- Schema 1 of mailwarden's PostgreSQL store.
--
-- Addresses are compared byte for byte (`COLLATE "C"`), as the embedded store does: an
-- address is an identifier, not prose, and the C collation makes the indexes on them
-- several times cheaper to search and to write than a language collation.
--
-- Every name starts with `mw_`, so that the store can share a database (and its `public`
-- schema) with other applications. Event ids are mailwarden's own (`EventId`: milliseconds
-- since the Unix epoch in the high bits, a sequence in the low 16), stored as bigint; a day
-- of events is therefore one range of ids, which is what the events are partitioned by.
--
-- Unreleased: until the PostgreSQL backend serves webhooks, this file may still change in
-- place. From the first release that serves, changes go into new numbered files only.

-- Normalized events, one row each, partitioned by day of receipt (the id's time), so that
-- retention detaches and drops whole partitions instead of deleting rows.
-- `mw_ensure_event_partitions` creates the days ahead; the default partition only catches
-- ids outside every day created (a clock far off), and is normally empty.
CREATE TABLE mw_events (
    id bigint NOT NULL,
    received_at timestamptz NOT NULL,
    occurred_at timestamptz,
    source text NOT NULL,
    provider text NOT NULL,
    kind text NOT NULL,
    recipient text COLLATE "C" NOT NULL,
    recipient_domain text COLLATE "C" NOT NULL,
    body_id bigint,
    -- The event as the embedded store encodes it (`store::codec`): what the events of
    -- one request share (`header`: body, source, provider, exact time of receipt) and
    -- the event's own record, so that both backends read and write one format.
    header bytea NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

CREATE TABLE mw_events_default PARTITION OF mw_events DEFAULT;

CREATE INDEX mw_events_recipient ON mw_events (recipient, id);
CREATE INDEX mw_events_domain ON mw_events (recipient_domain, id);

-- Deduplication keys of accepted events (a digest of source, kind, recipient and the
-- provider's identity of the event). Not partitioned: a unique index of a partitioned
-- table must contain the partition key, and a provider's retry arrives with a new id.
-- Purged with their events, by `event_id`.
CREATE TABLE mw_event_keys (
    key bytea PRIMARY KEY,
    event_id bigint NOT NULL
);

CREATE INDEX mw_event_keys_event ON mw_event_keys (event_id);

-- Request bodies as received, which events' raw JSON points into: `stored` is the
-- embedded store's form (a JSON header, then the bytes, zstd-compressed when large).
CREATE TABLE mw_bodies (
    id bigint PRIMARY KEY,
    stored bytea NOT NULL
);

-- Bodies and elements that could not be normalized (the quarantine entry's JSON).
CREATE TABLE mw_quarantine (
    id bigint PRIMARY KEY,
    entry bytea NOT NULL
);

-- Events waiting for the rules, claimed by one node at a time. Events of one recipient
-- are evaluated in order: a node claims whole recipients (by `recipient_hash`).
CREATE TABLE mw_pending (
    event_id bigint PRIMARY KEY,
    recipient_hash integer NOT NULL,
    claimed_by text,
    claimed_until timestamptz
);

CREATE INDEX mw_pending_recipient ON mw_pending (recipient_hash, event_id);

-- The suppression list: one row per bare address. `record` is the whole entry as the
-- embedded store keeps it (its last 50 changes included); the columns beside it are what
-- queries filter and sort on, and what the bulk check reads (without decoding JSON).
CREATE TABLE mw_suppressions (
    address text COLLATE "C" PRIMARY KEY,
    domain text COLLATE "C" NOT NULL,
    reason text NOT NULL,
    rule text NOT NULL,
    active boolean NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    record jsonb NOT NULL
);

CREATE INDEX mw_suppressions_domain ON mw_suppressions (domain, address);
CREATE INDEX mw_suppressions_expiry ON mw_suppressions (expires_at)
    WHERE expires_at IS NOT NULL;

-- Nodes sharing this database: what each last said about itself, so that a node whose
-- rules differ from the others' can say so.
CREATE TABLE mw_nodes (
    node_id text PRIMARY KEY,
    rules_hash text NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL
);

-- How far `mailwarden migrate-store` has copied each part of an embedded store, so that
-- an interrupted copy resumes where it stopped.
CREATE TABLE mw_copy_progress (
    part text PRIMARY KEY,
    last_key bytea NOT NULL,
    copied bigint NOT NULL
);

-- Creates the day partitions of `mw_events` from `first_day` for `days` days (those that
-- exist are left alone). A day's bounds are the smallest ids of its first millisecond and
-- of the next day's, in UTC.
CREATE FUNCTION mw_ensure_event_partitions(first_day date, days integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    created integer := 0;
    day date;
    low bigint;
    high bigint;
    name text;
BEGIN
    -- Nodes starting together would race to create the same day: the migration lock
    -- (held to the end of the caller's transaction) puts them in a queue.
    PERFORM pg_advisory_xact_lock(7881696737455338084);
    FOR offset_days IN 0 .. days - 1 LOOP
        day := first_day + offset_days;
        name := 'mw_events_' || to_char(day, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            low := (extract(epoch FROM day::timestamp)::bigint * 1000) << 16;
            high := (extract(epoch FROM (day + 1)::timestamp)::bigint * 1000) << 16;
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF mw_events FOR VALUES FROM (%s) TO (%s)',
                name, low, high);
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;

-- Claims pending events for the rules on behalf of `node`: whole recipients at a time
-- (by `recipient_hash`), so that the events of one recipient are evaluated in order by
-- one node. A recipient is skipped while another node holds an unexpired claim on any of
-- its events; claims expire after `lease`, so the events of a node that died are claimed
-- again by another. The per-recipient advisory lock (namespace 1) makes the check and the
-- claim one step against other nodes claiming at the same moment. Returns the claimed
-- events, oldest first per recipient.
CREATE FUNCTION mw_claim_pending(node text, max_events integer, lease interval)
RETURNS TABLE (event_id bigint, recipient_hash integer)
LANGUAGE plpgsql
AS $$
DECLARE
    bucket integer;
    claimed integer := 0;
    taken integer;
BEGIN
    FOR bucket IN
        SELECT p.recipient_hash FROM mw_pending p
        WHERE p.claimed_until IS NULL OR p.claimed_until < now() OR p.claimed_by = node
        GROUP BY p.recipient_hash
        ORDER BY min(p.event_id)
        LIMIT max_events
    LOOP
        EXIT WHEN claimed >= max_events;
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(1, bucket);
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM mw_pending q
            WHERE q.recipient_hash = bucket AND q.claimed_by <> node
              AND q.claimed_until >= now());
        RETURN QUERY
            UPDATE mw_pending AS u SET claimed_by = node, claimed_until = now() + lease
            WHERE u.recipient_hash = bucket
            RETURNING u.event_id, u.recipient_hash;
        GET DIAGNOSTICS taken = ROW_COUNT;
        claimed := claimed + taken;
    END LOOP;
END;
$$;

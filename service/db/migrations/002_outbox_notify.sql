-- The relay LISTENs on 'ast_outbox': every statement that inserts outbox rows wakes it, so the
-- writers need no separate pg_notify round trip (notifications are sent at commit, deduplicated).

CREATE OR REPLACE FUNCTION ast_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ast_outbox', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION ast_outbox_notify();

-- The key-change trigger of one public table: an UPDATE that changes the primary key also
-- logs a delete of the old key, so the hub does not keep a row the city no longer has.
-- Ordinary updates pay nothing: UPDATE OF skips statements that do not set a key column,
-- and WHEN is checked before an event is queued, so the function runs only on a key change.
-- It is the one row trigger: PostgreSQL fires a statement's row triggers before its
-- statement triggers, so the old keys' deletes take lower sequence numbers than the rows the
-- update trigger logs under their new keys (a key another row moved to in the same
-- statement ends live). ${old_key} and ${new_key} are the key columns of OLD and NEW.
CREATE TRIGGER ${trigger}
    AFTER UPDATE OF ${key_columns} ON ${table}
    FOR EACH ROW WHEN (${old_key} IS DISTINCT FROM ${new_key})
    EXECUTE FUNCTION ${function}()

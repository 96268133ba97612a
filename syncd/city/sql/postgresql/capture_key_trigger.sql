-- The key-change trigger of one public table: an UPDATE that changes the primary key also
-- logs a delete of the old key, so the hub does not keep a row the city no longer has.
-- Ordinary updates pay nothing: UPDATE OF skips statements that do not set a key column,
-- and WHEN is checked before an event is queued, so the function runs only on a key change.
-- ${old_key} and ${new_key} are the key columns of OLD and NEW as row values; the argument
-- 'D' makes the table's function log the old row as a delete (capture_function.sql).
CREATE TRIGGER ${trigger}
    AFTER UPDATE OF ${key_columns} ON ${table}
    FOR EACH ROW WHEN (${old_key} IS DISTINCT FROM ${new_key})
    EXECUTE FUNCTION ${function}('D')

-- The statement trigger of one public table: after any write statement, the table's function
-- notifies the capture channel (argument 'N', see capture_function.sql). A notification is
-- sent at commit and only once per transaction, so a busy CRM pays one call per statement;
-- the city's daemon LISTENs and pushes at once instead of at its next poll.
CREATE TRIGGER ${trigger}
    AFTER INSERT OR UPDATE OR DELETE ON ${table}
    FOR EACH STATEMENT EXECUTE FUNCTION ${function}('N')

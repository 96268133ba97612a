-- syncd capture: the trigger function of one public table, built from the policy.
--
-- It appends a statement's changes to the changelog in the writer's own transaction, with one
-- INSERT … SELECT over the statement's transition tables (${new_rows}, ${old_rows}) instead
-- of a function call per row. Row images list the table's public columns by name
-- (jsonb_build_object), so excluded and undeclared columns are never read. Each row takes its
-- own changelog sequence number.
--
--   INSERT  every new row, 'I'
--   UPDATE  every new row, 'U' under its (new) key: ${update_sql}, from
--           capture_update_plain.sql or, with the old filter values, _filtered.sql
--   DELETE  every old row, 'D'
--   ROW     the key-change trigger (capture_key_trigger.sql): an UPDATE moved OLD to another
--           key; log the old key's delete
--
-- Then, the first time a transaction logs anything, it notifies ${channel}, which wakes the
-- city's daemon to push (PostgreSQL delivers it at commit). The transaction-local setting
-- ${notified} spares later statements the call; a rolled-back subtransaction undoes both.
-- Where the setting is undone alone (a function with a SET clause restores settings on exit)
-- a later statement notifies again, which PostgreSQL folds into the same notification.
-- ${changelog} is schema-qualified: a temporary table of that name must not divert capture.
CREATE OR REPLACE FUNCTION ${function}() RETURNS trigger
LANGUAGE plpgsql AS $function$
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        INSERT INTO ${changelog} (table_name, op, row_image)
        VALUES (${table}, 'D', ${old_row_image});
        RETURN NULL;
    ELSIF TG_OP = 'UPDATE' THEN
        ${update_sql};
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO ${changelog} (table_name, op, row_image)
        SELECT ${table}, 'I', ${new_image} FROM ${new_rows} n;
    ELSE
        INSERT INTO ${changelog} (table_name, op, row_image)
        SELECT ${table}, 'D', ${old_image} FROM ${old_rows} o;
    END IF;
    IF FOUND AND current_setting(${notified}, true) IS DISTINCT FROM 'on' THEN
        PERFORM set_config(${notified}, 'on', true);
        PERFORM pg_notify(${channel}, '');
    END IF;
    RETURN NULL;
END
$function$

-- syncd capture: the statement trigger function of one public table, built from the policy.
--
-- It appends a statement's changes to the changelog in the writer's own transaction, with one
-- INSERT … SELECT over the statement's transition tables (${new_rows}, ${old_rows}) instead
-- of a function call per row. Row images list the table's public columns by name
-- (jsonb_build_object), so excluded and undeclared columns are never read. Each row takes its
-- own changelog sequence number, in the order the SELECT returns the rows.
--
-- UPDATE: the transition tables do not pair an old row with its new row, so rows are paired
-- by primary key, which is what the hub keys them by: a new row logs 'U' under its key (with
-- the old filter values when the old row of that key had others: ${filter_changed}); an old
-- key that no new row holds any more was moved away by a key change and logs 'D' with its old
-- row, so the hub does not keep a row the city no longer has. Keys swapped or shifted within
-- one statement pair with the row that holds the key after it, which is what the hub needs.
--
-- Then, when it logged anything, it notifies ${channel}, which wakes the city's daemon to
-- push (PostgreSQL delivers it at commit, once per transaction however many statements).
-- ${changelog} is schema-qualified: a temporary table of that name must not divert capture.
CREATE OR REPLACE FUNCTION ${function}() RETURNS trigger
LANGUAGE plpgsql AS $function$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO ${changelog} (table_name, op, row_image, old_filter)
        SELECT ${table},
               CASE WHEN ${new_missing} THEN 'D' ELSE 'U' END,
               CASE WHEN ${new_missing} THEN ${old_image} ELSE ${new_image} END,
               CASE WHEN NOT ${new_missing} AND NOT ${old_missing} AND ${filter_changed}
                    THEN ${old_filter} END
        FROM ${new_rows} n FULL JOIN ${old_rows} o ON ${key_join};
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO ${changelog} (table_name, op, row_image)
        SELECT ${table}, 'I', ${new_image} FROM ${new_rows} n;
    ELSE
        INSERT INTO ${changelog} (table_name, op, row_image)
        SELECT ${table}, 'D', ${old_image} FROM ${old_rows} o;
    END IF;
    IF FOUND THEN
        PERFORM pg_notify(${channel}, '');
    END IF;
    RETURN NULL;
END
$function$

-- syncd capture: the row trigger function of one public table, built from the policy.
--
-- It appends the change to the changelog in the writer's own transaction. The row image lists
-- the table's public columns by name (jsonb_build_object of NEW or OLD), so excluded and
-- undeclared columns are never read, and no row pays for building the whole row and removing
-- keys from it. One argument (TG_ARGV[0]) says which trigger called:
--   '0'  the main trigger, or the update trigger of a filtered table whose WHEN saw no filter
--        column change
--   '1'  the update trigger of a filtered table whose WHEN saw a filter column change: log
--        the old filter values too
--   'D'  the key-change trigger: log the OLD row as a delete of its key
--   'N'  the statement trigger: notify ${channel}, which wakes the city's daemon to push
--        (PostgreSQL delivers it at commit, once per transaction however many statements)
-- ${changelog} is schema-qualified: a temporary table of that name must not divert capture.
CREATE OR REPLACE FUNCTION ${function}() RETURNS trigger
LANGUAGE plpgsql AS $function$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify(${channel}, '');
    ELSIF TG_OP = 'UPDATE' AND TG_ARGV[0] <> 'D' THEN
        INSERT INTO ${changelog} (table_name, op, row_image, old_filter)
        VALUES (${table}, 'U', ${new_image},
                CASE WHEN TG_ARGV[0] = '1' THEN ${old_filter} END);
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO ${changelog} (table_name, op, row_image)
        VALUES (${table}, 'I', ${new_image});
    ELSE
        -- A DELETE, or an UPDATE that moved the row to another primary key: the main trigger
        -- logs the new key's row, this the old key's end. Only the filter columns of the old
        -- image decide, as for any delete, whether the hub ever had the old key.
        INSERT INTO ${changelog} (table_name, op, row_image)
        VALUES (${table}, 'D', ${old_image});
    END IF;
    RETURN NULL;
END
$function$

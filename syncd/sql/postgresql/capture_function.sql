-- syncd capture: the one row trigger function behind every public table's triggers.
--
-- It appends the change to the changelog in the writer's own transaction. The row image is
-- the whole row minus the columns that must never leave the city; syncd computes that list
-- when it installs the trigger and passes it as trigger arguments, so no row pays for looking
-- up the policy or parsing a list. Arguments (TG_ARGV, numbered from 0):
--   [0]         n, the number of columns to remove from a row image
--   [1]         '1' from the update trigger of a filtered table whose WHEN saw a filter
--               column change: log the old filter values too; '0' otherwise; or 'D' from
--               the key-change trigger: log the OLD row as a delete of its key
--   [2 .. n+1]  the columns to remove from a row image: excluded and undeclared ones
--   [n+2 ..]    on a filtered table, every column but the filter columns, so that
--               to_jsonb(OLD) minus them is the old filter values
-- ${changelog} is schema-qualified: a temporary table of that name must not divert capture.
CREATE OR REPLACE FUNCTION syncd_capture() RETURNS trigger
LANGUAGE plpgsql AS $function$
DECLARE
    n integer := TG_ARGV[0]::integer;
BEGIN
    IF TG_OP = 'UPDATE' AND TG_ARGV[1] <> 'D' THEN
        INSERT INTO ${changelog} (table_name, op, row_image, old_filter, txid)
        VALUES (
            TG_TABLE_NAME,
            'U',
            to_jsonb(NEW) - TG_ARGV[2:n + 1],
            CASE WHEN TG_ARGV[1] = '1' THEN to_jsonb(OLD) - TG_ARGV[n + 2:] END,
            pg_current_xact_id()::text::bigint
        );
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO ${changelog} (table_name, op, row_image, txid)
        VALUES (TG_TABLE_NAME, 'I', to_jsonb(NEW) - TG_ARGV[2:n + 1],
                pg_current_xact_id()::text::bigint);
    ELSE
        -- A DELETE, or an UPDATE that moved the row to another primary key: the main trigger
        -- logs the new key's row, this the old key's end. Only the filter columns of the old
        -- image decide, as for any delete, whether the hub ever had the old key.
        INSERT INTO ${changelog} (table_name, op, row_image, txid)
        VALUES (TG_TABLE_NAME, 'D', to_jsonb(OLD) - TG_ARGV[2:n + 1],
                pg_current_xact_id()::text::bigint);
    END IF;
    RETURN NULL;
END
$function$

-- One capture trigger of a public table: ${event} is INSERT, UPDATE or DELETE.
-- ${image} lists the table's public columns only, so excluded columns are never written;
-- ${old_filter} is the old filter values on UPDATE of a filtered table, else NULL.
CREATE TRIGGER ${trigger} AFTER ${event} ON ${table} FOR EACH ROW
BEGIN
    INSERT INTO syncd_changelog (table_name, op, row_image, old_filter)
    VALUES (${table_name}, ${op}, json_object(${image}), ${old_filter});
END

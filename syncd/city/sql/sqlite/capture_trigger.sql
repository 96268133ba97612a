-- One capture trigger of a public table: ${event} is INSERT, UPDATE, DELETE, or UPDATE OF the
-- primary key columns for the key-change trigger, whose ${when} (else empty) limits it to
-- updates that change the key and which logs a 'D' of the old key's row.
-- ${image} is a JSON object of the table's public columns only (excluded ones never written),
-- a BLOB in any of them as the stand-in {"syncd_unsendable": "blob"}: json_object fails on a
-- BLOB, and nothing in a capture trigger may fail the CRM's own write;
-- ${old_filter} is the old filter values on an UPDATE of a filtered table that changes a
-- filter column, else NULL (unchanged filter columns: the old row passes as the new does).
CREATE TRIGGER ${trigger} AFTER ${event} ON ${table} FOR EACH ROW${when}
BEGIN
    INSERT INTO syncd_changelog (table_name, op, row_image, old_filter)
    VALUES (${table_name}, ${op}, ${image}, ${old_filter});
END

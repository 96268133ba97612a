-- A capture trigger of one public table, calling the table's own function (capture_function.sql)
-- with the argument that says which trigger it is.
-- ${events} is INSERT OR UPDATE OR DELETE, or on a filtered table INSERT OR DELETE and UPDATE
-- twice: ${when} then splits updates by whether the filter columns changed, so the common
-- update (filter columns unchanged) never pays for the old filter values.
CREATE TRIGGER ${trigger}
    AFTER ${events} ON ${table}
    FOR EACH ROW ${when}EXECUTE FUNCTION ${function}(${arguments})

-- A capture trigger of one public table: one per event, as PostgreSQL requires of a trigger
-- with transition tables. ${event} is INSERT, UPDATE or DELETE; ${transition} names the
-- transition tables the table's function (capture_function.sql) reads: NEW TABLE for INSERT,
-- OLD and NEW TABLE for UPDATE, OLD TABLE for DELETE. The function runs once per statement,
-- however many rows it wrote (earlier builds called a row trigger per row; `syncd init`
-- replaces those triggers with these).
CREATE TRIGGER ${trigger}
    AFTER ${event} ON ${table}
    REFERENCING ${transition}
    FOR EACH STATEMENT EXECUTE FUNCTION ${function}()

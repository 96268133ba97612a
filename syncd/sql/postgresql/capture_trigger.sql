-- The capture trigger of one public table; arguments as described in capture_function.sql.
CREATE TRIGGER ${trigger}
    AFTER INSERT OR UPDATE OR DELETE ON ${table}
    FOR EACH ROW EXECUTE FUNCTION syncd_capture(${arguments})

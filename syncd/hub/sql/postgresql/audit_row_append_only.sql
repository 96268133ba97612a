-- syncd_audit_row (the row decisions of version-2 audit entries) is append-only like
-- syncd_audit, with the same function: UPDATE, DELETE and TRUNCATE are refused for every role.
-- Idempotent; needs audit_append_only.sql first (the function).

DROP TRIGGER IF EXISTS syncd_audit_row_no_change ON syncd_audit_row;
CREATE TRIGGER syncd_audit_row_no_change
    BEFORE UPDATE OR DELETE ON syncd_audit_row
    FOR EACH ROW EXECUTE FUNCTION syncd_audit_append_only();

DROP TRIGGER IF EXISTS syncd_audit_row_no_truncate ON syncd_audit_row;
CREATE TRIGGER syncd_audit_row_no_truncate
    BEFORE TRUNCATE ON syncd_audit_row
    FOR EACH STATEMENT EXECUTE FUNCTION syncd_audit_append_only();

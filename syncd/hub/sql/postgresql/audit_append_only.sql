-- syncd_audit is append-only: syncd only ever INSERTs into it. These triggers refuse UPDATE,
-- DELETE and TRUNCATE for every role, so a change to the log needs a deliberate act (disabling
-- user triggers, or session_replication_role = replica) that the hash chain then reveals to
-- `syncd audit verify`. Idempotent: safe to run again from a later migration.

CREATE OR REPLACE FUNCTION syncd_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'syncd_audit is append-only'
        USING HINT = 'audit entries are never updated, deleted or truncated';
END;
$$;

DROP TRIGGER IF EXISTS syncd_audit_no_change ON syncd_audit;
CREATE TRIGGER syncd_audit_no_change
    BEFORE UPDATE OR DELETE ON syncd_audit
    FOR EACH ROW EXECUTE FUNCTION syncd_audit_append_only();

-- TRUNCATE fires no row trigger: it needs its own statement-level one.
DROP TRIGGER IF EXISTS syncd_audit_no_truncate ON syncd_audit;
CREATE TRIGGER syncd_audit_no_truncate
    BEFORE TRUNCATE ON syncd_audit
    FOR EACH STATEMENT EXECUTE FUNCTION syncd_audit_append_only();

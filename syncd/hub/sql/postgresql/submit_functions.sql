-- Batch submission on a PostgreSQL hub. A city's login role may EXECUTE syncd_submit_batch and
-- syncd_node_watermark and nothing else: SECURITY DEFINER runs them as the hub owner, and each
-- checks that the caller's session_user is the role registered for the node it claims to be
-- (guarantee 3). ${schema} is the hub's schema (current_schema() at `syncd init`), quoted.
--
-- These functions run with the owner's rights on whatever the caller's session can make them
-- resolve, so nothing they name may resolve to an object the caller created:
--   * search_path is pg_catalog, then pg_temp explicitly last. Left out, pg_temp is searched
--     *first* for tables, so a caller's temporary pg_roles or syncd_node would answer the
--     identity check. PostgreSQL never looks up functions or operators in pg_temp, and the hub
--     schema is not on the path, so an unqualified function or operator (format, now, =) can
--     only be pg_catalog's: a trojan `=(varchar, text)` in a schema the caller can write, an
--     exact match that would beat pg_catalog's text = text, is never a candidate.
--   * every syncd table and function is qualified with ${schema}, catalog views with
--     pg_catalog.
--   * the identity is session_user: inside a SECURITY DEFINER function current_user is the
--     owner, and outside it SET ROLE changes current_user to any role the login is a member
--     of. session_user is the role that authenticated; only a session that logged in as a
--     superuser can change it (SET SESSION AUTHORIZATION), and a superuser may act for any
--     node anyway.
--   * the check returns true or false, never NULL, and callers refuse on IS NOT TRUE: a NULL
--     from a missing row must not read as "not refused".
-- Node roles also hold no TEMP on the database and no CREATE on any schema (inbox.py), so
-- they cannot create the objects above in the first place; these functions do not rely on it.

CREATE OR REPLACE FUNCTION ${schema}.syncd_caller_may_act_for(p_node text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    -- current_user here is the functions' owner, the hub's own role: it and its members
    -- (superusers included) may act for any node.
    SELECT EXISTS (SELECT 1 FROM ${schema}.syncd_node n
                    WHERE n.node_id = p_node AND n.role_name = session_user)
        OR COALESCE(pg_catalog.pg_has_role(session_user, current_user, 'MEMBER'), false);
$$;

-- The guard of the node functions that act for a registered node: refuses (42501) a caller
-- that may not act for p_node, then (42704) a node the hub does not know. Called from the
-- SECURITY DEFINER functions, it runs as their owner (no definer of its own: nobody else may
-- execute it); session_user stays the caller's.
CREATE OR REPLACE FUNCTION ${schema}.syncd_check_caller(p_node text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF ${schema}.syncd_caller_may_act_for(p_node) IS NOT TRUE THEN
        RAISE EXCEPTION 'role % may not act for node %', session_user, p_node
            USING ERRCODE = '42501';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ${schema}.syncd_node n WHERE n.node_id = p_node) THEN
        RAISE EXCEPTION 'node % is not registered at this hub', p_node USING ERRCODE = '42704';
    END IF;
END;
$$;

REVOKE ALL ON FUNCTION ${schema}.syncd_check_caller(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ${schema}.syncd_node_watermark(p_node text) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_seq bigint;
BEGIN
    IF ${schema}.syncd_caller_may_act_for(p_node) IS NOT TRUE THEN
        RAISE EXCEPTION 'role % may not act for node %', session_user, p_node
            USING ERRCODE = '42501';
    END IF;
    SELECT n.received_seq INTO v_seq FROM ${schema}.syncd_node n WHERE n.node_id = p_node;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node % is not registered at this hub', p_node USING ERRCODE = '42704';
    END IF;
    RETURN v_seq;
END;
$$;

-- Each way a city's public shape differs from the hub's (syncd.core.agreement.differences,
-- word for word, in code point order). Both arguments are {table: [column, ...]}, checked
-- to be of that form before this is called.
CREATE OR REPLACE FUNCTION ${schema}.syncd_policy_differences(p_city jsonb, p_hub jsonb)
RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT COALESCE(array_agg(DISTINCT d.line COLLATE "C" ORDER BY d.line COLLATE "C"),
                    '{}'::text[]) FROM (
        SELECT format('table %s is public in the city''s policy but not in the hub''s', c.key)
          FROM jsonb_each(p_city) c WHERE NOT p_hub ? c.key
        UNION ALL
        SELECT format('table %s is public in the hub''s policy but not in the city''s', h.key)
          FROM jsonb_each(p_hub) h WHERE NOT p_city ? h.key
        UNION ALL
        SELECT format('column %s.%s is public in the city''s policy but not in the hub''s',
                      c.key, col)
          FROM jsonb_each(p_city) c, jsonb_array_elements_text(c.value) col
         WHERE p_hub ? c.key AND NOT (p_hub -> c.key) ? col
        UNION ALL
        SELECT format('column %s.%s is public in the hub''s policy but not in the city''s',
                      h.key, col)
          FROM jsonb_each(p_hub) h, jsonb_array_elements_text(h.value) col
         WHERE p_city ? h.key AND NOT (p_city -> h.key) ? col
    ) AS d(line);
$$;

-- Why a batch stamped p_policy ({"fingerprint": text, "shape": {table: [column]}}) is refused,
-- or NULL: the rules and words of syncd.core.agreement.refusal.
CREATE OR REPLACE FUNCTION ${schema}.syncd_policy_refusal(p_policy jsonb) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_hub jsonb;
    v_found text[];
BEGIN
    IF p_policy IS NULL OR jsonb_typeof(p_policy) = 'null' THEN
        RETURN 'the batch carries no policy fingerprint: this city runs a syncd older than '
               'its hub; upgrade it';
    END IF;
    IF jsonb_typeof(p_policy) <> 'object'
       OR jsonb_typeof(p_policy -> 'fingerprint') IS DISTINCT FROM 'string'
       OR jsonb_typeof(p_policy -> 'shape') IS DISTINCT FROM 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(p_policy -> 'shape') e
                   WHERE jsonb_typeof(e.value) <> 'array'
                      OR EXISTS (SELECT 1 FROM jsonb_array_elements(e.value) x
                                  WHERE jsonb_typeof(x) <> 'string')) THEN
        RETURN 'the batch''s policy stamp is malformed';
    END IF;
    SELECT s.value -> 'shape' INTO v_hub FROM ${schema}.syncd_hub_state s WHERE s.key = 'policy';
    IF v_hub IS NULL OR jsonb_typeof(v_hub) <> 'object' THEN
        RETURN 'the hub has not recorded its policy: run `syncd init` at the hub';
    END IF;
    v_found := ${schema}.syncd_policy_differences(p_policy -> 'shape', v_hub);
    IF cardinality(v_found) = 0 THEN
        RETURN NULL;
    END IF;
    RETURN 'the city''s policy differs from the hub''s: '
        || array_to_string(v_found[1:10], '; ')
        || CASE WHEN cardinality(v_found) > 10
                THEN format('; and %s more', cardinality(v_found) - 10) ELSE '' END;
END;
$$;

-- Why a batch's rows cannot be received, or NULL: the payload text must be JSON (jsonb's
-- reading of it), and either form an array of changes, each an object with an integer "seq",
-- a text "table" and "op" and an object "key". What a change holds beyond that is validation's
-- business at apply, row by row; this only keeps apply from meeting a batch it cannot read.
-- The rules and words of syncd.hub.payload.problem(…, as_jsonb=True).
CREATE OR REPLACE FUNCTION ${schema}.syncd_payload_problem(p_payload text, p_rows jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_doc jsonb := p_rows;
    v_bad bigint;
BEGIN
    IF v_doc IS NULL THEN
        BEGIN
            v_doc := p_payload::jsonb;
        EXCEPTION WHEN OTHERS THEN
            RETURN 'malformed batch: the payload is not JSON PostgreSQL can read';
        END;
    END IF;
    IF jsonb_typeof(v_doc) <> 'array' THEN
        RETURN 'malformed batch: the payload is not an array of changes';
    END IF;
    SELECT e.ord - 1 INTO v_bad
      FROM jsonb_array_elements(v_doc) WITH ORDINALITY AS e(r, ord)
     WHERE jsonb_typeof(e.r) IS DISTINCT FROM 'object'
        OR jsonb_typeof(e.r -> 'seq') IS DISTINCT FROM 'number'
        OR (e.r ->> 'seq') !~ '^-?[0-9]{1,18}$'
        OR jsonb_typeof(e.r -> 'table') IS DISTINCT FROM 'string'
        OR jsonb_typeof(e.r -> 'op') IS DISTINCT FROM 'string'
        OR jsonb_typeof(e.r -> 'key') IS DISTINCT FROM 'object'
     ORDER BY e.ord LIMIT 1;
    IF FOUND THEN
        RETURN format('malformed batch: change %s is not an object with an integer seq, a '
                      'text table and op and an object key', v_bad);
    END IF;
    RETURN NULL;
END;
$$;

-- Returns 'accepted:<batch id>', 'duplicate:<batch id>' or 'refused: <reason>'. Refusals and
-- duplicates leave an event that the hub's apply cycle writes into the audit chain. A batch
-- whose city policy differs from the hub's in what is public is refused before anything of it
-- is stored, and the node shows why (policy_problem) until one of its batches is accepted.
--
-- The batch's rows come either as the payload text the city sent (p_payload: stored as sent,
-- its checksum is over exactly these bytes) or, from a city older than hub_0005, as jsonb
-- (p_rows: one syncd_inbox_row per change, as before). Not granted to node roles: they call
-- syncd_submit_payload or syncd_submit_batch, and the caller check below reads session_user,
-- which a SECURITY DEFINER call does not change.
CREATE OR REPLACE FUNCTION ${schema}.syncd_receive_batch(
    p_node text, p_first bigint, p_last bigint, p_checksum text, p_payload text, p_rows jsonb,
    p_policy jsonb
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_received bigint;
    v_existing text;
    v_existing_id bigint;
    v_batch bigint;
    v_reason text;
    v_policy_refused boolean := false;
    v_doc jsonb := p_rows;
BEGIN
    IF ${schema}.syncd_caller_may_act_for(p_node) IS NOT TRUE THEN
        RAISE EXCEPTION 'role % may not submit batches for node %', session_user, p_node
            USING ERRCODE = '42501';
    END IF;
    -- Row lock on the node: one submission per node at a time, in order.
    SELECT n.received_seq INTO v_received FROM ${schema}.syncd_node n
     WHERE n.node_id = p_node FOR UPDATE;
    IF NOT FOUND THEN
        v_reason := format('node %s is not registered at this hub', p_node);
    ELSE
        SELECT b.checksum, b.batch_id INTO v_existing, v_existing_id
          FROM ${schema}.syncd_inbox_batch b
         WHERE b.node_id = p_node AND b.last_seq = p_last;
        IF FOUND THEN
            IF v_existing = p_checksum THEN
                INSERT INTO ${schema}.syncd_inbox_event
                       (node_id, kind, first_seq, last_seq, checksum, reason, at)
                VALUES (p_node, 'duplicate', p_first, p_last, p_checksum,
                        'batch already received', (now() AT TIME ZONE 'UTC'));
                UPDATE ${schema}.syncd_node SET last_seen_at = (now() AT TIME ZONE 'UTC')
                 WHERE node_id = p_node;
                RETURN 'duplicate:' || v_existing_id;
            END IF;
            v_reason := format('batch (%s, %s) was already received with checksum %s, not %s',
                               p_node, p_last, v_existing, p_checksum);
        ELSIF p_first <= v_received THEN
            v_reason := format('batch %s..%s overlaps what was already received (up to %s)',
                               p_first, p_last, v_received);
        ELSIF p_last < p_first OR (p_payload IS NULL) = (p_rows IS NULL) THEN
            v_reason := 'malformed batch';
        ELSE
            v_reason := ${schema}.syncd_payload_problem(p_payload, p_rows);
        END IF;
        IF v_reason IS NULL THEN
            v_reason := ${schema}.syncd_policy_refusal(p_policy);
            v_policy_refused := v_reason IS NOT NULL;
        END IF;
    END IF;
    IF v_reason IS NOT NULL THEN
        INSERT INTO ${schema}.syncd_inbox_event
               (node_id, kind, first_seq, last_seq, checksum, reason, at)
        VALUES (p_node, 'refused', p_first, p_last, p_checksum, v_reason, (now() AT TIME ZONE 'UTC'));
        IF v_policy_refused THEN
            UPDATE ${schema}.syncd_node
               SET policy_problem = v_reason,
                   policy_problem_at = COALESCE(policy_problem_at, (now() AT TIME ZONE 'UTC'))
             WHERE node_id = p_node;
        END IF;
        RETURN 'refused: ' || v_reason;
    END IF;

    IF v_doc IS NULL THEN
        v_doc := p_payload::jsonb;  -- checked by syncd_payload_problem above
    END IF;
    INSERT INTO ${schema}.syncd_inbox_batch
           (node_id, first_seq, last_seq, row_count, checksum, received_at, status,
            policy_fingerprint, payload)
    VALUES (p_node, p_first, p_last, jsonb_array_length(v_doc), p_checksum,
            (now() AT TIME ZONE 'UTC'), 'pending', left(p_policy ->> 'fingerprint', 64),
            p_payload)
    RETURNING batch_id INTO v_batch;
    IF p_payload IS NULL THEN
        INSERT INTO ${schema}.syncd_inbox_row
               (batch_id, ord, seq, table_name, op, row_key, row_data)
        SELECT v_batch, (e.ord - 1)::int, (e.r->>'seq')::bigint, e.r->>'table', e.r->>'op',
               e.r->'key', NULLIF(e.r->'row', 'null'::jsonb)
          FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e(r, ord);
    END IF;
    UPDATE ${schema}.syncd_node
       SET received_seq = p_last, last_seen_at = (now() AT TIME ZONE 'UTC'),
           policy_fingerprint = left(p_policy ->> 'fingerprint', 64),
           policy_problem = NULL, policy_problem_at = NULL
     WHERE node_id = p_node;
    PERFORM pg_notify('syncd_inbox', p_node);
    RETURN 'accepted:' || v_batch;
END;
$$;

-- A city's submission: the batch's rows as the canonical JSON text it hashed.
CREATE OR REPLACE FUNCTION ${schema}.syncd_submit_payload(
    p_node text, p_first bigint, p_last bigint, p_checksum text, p_payload text, p_policy jsonb
) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT ${schema}.syncd_receive_batch(p_node, p_first, p_last, p_checksum, p_payload,
                                         NULL::jsonb, p_policy);
$$;

-- The submission of a city of issue 12 (rows as jsonb, one syncd_inbox_row each): kept, so a
-- hub can be upgraded before its cities.
CREATE OR REPLACE FUNCTION ${schema}.syncd_submit_batch(
    p_node text, p_first bigint, p_last bigint, p_checksum text, p_rows jsonb, p_policy jsonb
) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT ${schema}.syncd_receive_batch(p_node, p_first, p_last, p_checksum, NULL::text,
                                         p_rows, p_policy);
$$;

-- The submission of a city older than its hub, which sends no policy: refused, saying why
-- (a city upgraded later resumes where it stopped; nothing of its changelog is lost).
CREATE OR REPLACE FUNCTION ${schema}.syncd_submit_batch(
    p_node text, p_first bigint, p_last bigint, p_checksum text, p_rows jsonb
) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT ${schema}.syncd_submit_batch(p_node, p_first, p_last, p_checksum, p_rows, NULL::jsonb);
$$;

-- What a city's `status` shows of its node at the hub: refused rows, a policy problem, open
-- quarantine. The node's own figures only, like everything a node role may call.
CREATE OR REPLACE FUNCTION ${schema}.syncd_node_report(p_node text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_report jsonb;
BEGIN
    IF ${schema}.syncd_caller_may_act_for(p_node) IS NOT TRUE THEN
        RAISE EXCEPTION 'role % may not act for node %', session_user, p_node
            USING ERRCODE = '42501';
    END IF;
    SELECT jsonb_build_object(
               'refused_rows', n.refused_rows,
               'last_refused_reason', n.last_refused_reason,
               'last_refused_at', n.last_refused_at,
               'policy_problem', n.policy_problem,
               'policy_problem_at', n.policy_problem_at,
               'quarantined', (SELECT count(*) FROM ${schema}.syncd_quarantine q
                                WHERE q.node_id = p_node AND q.status = 'open'))
      INTO v_report
      FROM ${schema}.syncd_node n WHERE n.node_id = p_node;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node % is not registered at this hub', p_node USING ERRCODE = '42704';
    END IF;
    RETURN v_report;
END;
$$;

REVOKE ALL ON FUNCTION ${schema}.syncd_caller_may_act_for(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_node_watermark(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_submit_batch(text, bigint, bigint, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_submit_batch(text, bigint, bigint, text, jsonb, jsonb)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_node_report(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_submit_payload(text, bigint, bigint, text, text, jsonb)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_receive_batch(text, bigint, bigint, text, text, jsonb, jsonb)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_payload_problem(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_policy_refusal(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_policy_differences(jsonb, jsonb) FROM PUBLIC;

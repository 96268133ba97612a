-- Batch submission on a PostgreSQL hub. A city's login role may EXECUTE these two functions and
-- nothing else: SECURITY DEFINER runs them as the hub owner, and each checks that the caller's
-- session_user is the role registered for the node it claims to be (guarantee 3).

CREATE OR REPLACE FUNCTION syncd_caller_may_act_for(p_node text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT EXISTS (SELECT 1 FROM syncd_node n WHERE n.node_id = p_node AND n.role_name = session_user)
        OR (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)
        OR pg_has_role(session_user, (SELECT tableowner FROM pg_tables
                                       WHERE tablename = 'syncd_node' AND schemaname = 'public'),
                       'MEMBER');
$$;

CREATE OR REPLACE FUNCTION syncd_node_watermark(p_node text) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_seq bigint;
BEGIN
    IF NOT syncd_caller_may_act_for(p_node) THEN
        RAISE EXCEPTION 'role % may not act for node %', session_user, p_node
            USING ERRCODE = '42501';
    END IF;
    SELECT received_seq INTO v_seq FROM syncd_node WHERE node_id = p_node;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node % is not registered at this hub', p_node USING ERRCODE = '42704';
    END IF;
    RETURN v_seq;
END;
$$;

-- Returns 'accepted', 'duplicate' or 'refused: <reason>'. Refusals and duplicates leave an
-- event that the hub's apply cycle writes into the audit chain.
CREATE OR REPLACE FUNCTION syncd_submit_batch(
    p_node text, p_first bigint, p_last bigint, p_checksum text, p_rows jsonb
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_received bigint;
    v_existing text;
    v_batch bigint;
    v_reason text;
BEGIN
    IF NOT syncd_caller_may_act_for(p_node) THEN
        RAISE EXCEPTION 'role % may not submit batches for node %', session_user, p_node
            USING ERRCODE = '42501';
    END IF;
    -- Row lock on the node: one submission per node at a time, in order.
    SELECT received_seq INTO v_received FROM syncd_node WHERE node_id = p_node FOR UPDATE;
    IF NOT FOUND THEN
        v_reason := format('node %s is not registered at this hub', p_node);
    ELSE
        SELECT checksum INTO v_existing FROM syncd_inbox_batch
         WHERE node_id = p_node AND last_seq = p_last;
        IF FOUND THEN
            IF v_existing = p_checksum THEN
                INSERT INTO syncd_inbox_event (node_id, kind, first_seq, last_seq, checksum, reason, at)
                VALUES (p_node, 'duplicate', p_first, p_last, p_checksum,
                        'batch already received', (now() AT TIME ZONE 'UTC'));
                UPDATE syncd_node SET last_seen_at = (now() AT TIME ZONE 'UTC') WHERE node_id = p_node;
                RETURN 'duplicate';
            END IF;
            v_reason := format('batch (%s, %s) was already received with checksum %s, not %s',
                               p_node, p_last, v_existing, p_checksum);
        ELSIF p_first <= v_received THEN
            v_reason := format('batch %s..%s overlaps what was already received (up to %s)',
                               p_first, p_last, v_received);
        ELSIF p_last < p_first OR jsonb_typeof(p_rows) <> 'array' THEN
            v_reason := 'malformed batch';
        END IF;
    END IF;
    IF v_reason IS NOT NULL THEN
        INSERT INTO syncd_inbox_event (node_id, kind, first_seq, last_seq, checksum, reason, at)
        VALUES (p_node, 'refused', p_first, p_last, p_checksum, v_reason, (now() AT TIME ZONE 'UTC'));
        RETURN 'refused: ' || v_reason;
    END IF;

    INSERT INTO syncd_inbox_batch (node_id, first_seq, last_seq, row_count, checksum, received_at, status)
    VALUES (p_node, p_first, p_last, jsonb_array_length(p_rows), p_checksum,
            (now() AT TIME ZONE 'UTC'), 'pending')
    RETURNING batch_id INTO v_batch;
    INSERT INTO syncd_inbox_row (batch_id, ord, seq, table_name, op, row_key, row_data)
    SELECT v_batch, (e.ord - 1)::int, (e.r->>'seq')::bigint, e.r->>'table', e.r->>'op',
           e.r->'key', NULLIF(e.r->'row', 'null'::jsonb)
      FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e(r, ord);
    UPDATE syncd_node SET received_seq = p_last, last_seen_at = (now() AT TIME ZONE 'UTC')
     WHERE node_id = p_node;
    PERFORM pg_notify('syncd_inbox', p_node);
    RETURN 'accepted';
END;
$$;

REVOKE ALL ON FUNCTION syncd_caller_may_act_for(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION syncd_node_watermark(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION syncd_submit_batch(text, bigint, bigint, text, jsonb) FROM PUBLIC;

-- The downward path on a PostgreSQL hub (syncd/hub/downlink.py): a city fetches the insight
-- batches built for it and acknowledges what it applied. Like the submission functions
-- (submit_functions.sql, whose header says why search_path is pg_catalog, pg_temp and every
-- name is qualified), these run as the hub's owner and answer only for the caller's own node:
-- a node's role has no right on syncd_downlink_batch itself, so these functions are the only
-- way to read it, and they never return another node's rows.

CREATE OR REPLACE FUNCTION ${schema}.syncd_fetch_insights(p_node text, p_after bigint, p_limit integer)
RETURNS TABLE (seq bigint, row_count integer, checksum text, payload text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ${schema}.syncd_check_caller(p_node);
    RETURN QUERY
        SELECT b.seq, b.row_count, b.checksum::text, b.payload
          FROM ${schema}.syncd_downlink_batch b
         WHERE b.node_id = p_node AND b.seq > p_after
         ORDER BY b.seq
         LIMIT GREATEST(LEAST(p_limit, 100), 1);
END;
$$;

-- Returns the node's built_seq, so the city learns its downward lag in the same call.
CREATE OR REPLACE FUNCTION ${schema}.syncd_ack_insights(p_node text, p_seq bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_built bigint;
BEGIN
    PERFORM ${schema}.syncd_check_caller(p_node);
    SELECT d.built_seq INTO v_built FROM ${schema}.syncd_downlink_node d
     WHERE d.node_id = p_node;
    v_built := COALESCE(v_built, 0);
    IF p_seq > v_built THEN
        RAISE EXCEPTION 'node % acknowledges downlink batch %, never built', p_node, p_seq
            USING ERRCODE = '42704';
    END IF;
    UPDATE ${schema}.syncd_downlink_node d
       SET acked_seq = p_seq, acked_at = (now() AT TIME ZONE 'UTC')
     WHERE d.node_id = p_node AND d.acked_seq < p_seq;
    RETURN v_built;
END;
$$;

REVOKE ALL ON FUNCTION ${schema}.syncd_fetch_insights(text, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_ack_insights(text, bigint) FROM PUBLIC;

-- What the hub sent the node, summed for `syncd reconcile` at the city: how many customers,
-- and the sum of the first 60 bits of md5(row_key || ':' || digest) over them (order does not
-- matter; `syncd.core.downlink.row_hash` is the same in Python), and the last batch built.
CREATE OR REPLACE FUNCTION ${schema}.syncd_insight_summary(p_node text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rows bigint;
    v_sum numeric;
BEGIN
    PERFORM ${schema}.syncd_check_caller(p_node);
    SELECT count(*), COALESCE(sum(('x' || substr(md5(s.row_key || ':' || s.digest), 1, 15))
                                  ::bit(60)::bigint::numeric), 0)
      INTO v_rows, v_sum
      FROM ${schema}.syncd_insight_sent s WHERE s.node_id = p_node;
    RETURN jsonb_build_object(
        'rows', v_rows,
        'hash_sum', v_sum::text,
        'built_seq', COALESCE((SELECT d.built_seq FROM ${schema}.syncd_downlink_node d
                                WHERE d.node_id = p_node), 0));
END;
$$;

REVOKE ALL ON FUNCTION ${schema}.syncd_insight_summary(text) FROM PUBLIC;

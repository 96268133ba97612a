-- Reconcile on a PostgreSQL hub: a city's login role asks about its OWN source records only —
-- digests of hashed buckets (row count, money sums, combined row hash), then keys with row
-- hashes of small buckets, then per-column hashes (values only when asked) of named keys —
-- and records its result as an event the hub's apply cycle audits. Never a row of another
-- node: every question is filtered on origin_node = p_node after syncd_caller_may_act_for.
-- ${schema} is the hub's schema, quoted. Hardened as submit_functions.sql explains (read its
-- header): SECURITY DEFINER, search_path = pg_catalog, pg_temp, every syncd object qualified.
-- Dynamic SQL names columns with %I after checking each is a public column of a hub source
-- table; the canonical text it renders must equal syncd/store/digest.py's (syncd/core/reconcile.py).

-- Internal (no EXECUTE for nodes): the source table and the SQL expressions for its columns.
CREATE OR REPLACE FUNCTION ${schema}.syncd_reconcile_plan(
    p_table text, p_cols text[], p_kinds text[], p_scales int[], p_key text[],
    OUT rel text, OUT key_expr text, OUT row_expr text, OUT sums_expr text, OUT cells text[]
)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rel regclass;
    v_expr text;
    v_exprs text[] := ARRAY[]::text[];
    v_keys text[] := ARRAY[]::text[];
    v_sums text[] := ARRAY[]::text[];
    i int;
BEGIN
    v_rel := pg_catalog.to_regclass('${schema}.' || pg_catalog.quote_ident(p_table));
    IF v_rel IS NULL OR p_table LIKE 'syncd\_%' OR (
        SELECT count(*) FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = v_rel AND a.attname IN ('origin_node', '_deleted') AND NOT a.attisdropped
    ) <> 2 THEN
        RAISE EXCEPTION 'no source table % at this hub', p_table USING ERRCODE = '42704';
    END IF;
    IF coalesce(array_length(p_cols, 1), 0) = 0
       OR array_length(p_cols, 1) <> array_length(p_kinds, 1)
       OR array_length(p_cols, 1) <> array_length(p_scales, 1)
       OR coalesce(array_length(p_key, 1), 0) = 0 OR NOT (p_key <@ p_cols) THEN
        RAISE EXCEPTION 'malformed reconcile question' USING ERRCODE = '22023';
    END IF;
    FOR i IN 1 .. array_length(p_cols, 1) LOOP
        IF p_cols[i] LIKE '\_%' OR p_cols[i] = 'origin_node' OR NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = v_rel AND a.attname = p_cols[i] AND a.attnum > 0
               AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'no column %.% at this hub', p_table, p_cols[i] USING ERRCODE = '42703';
        END IF;
        v_expr := CASE p_kinds[i]
            WHEN 'text' THEN format('%I::text', p_cols[i])
            WHEN 'int' THEN format('%I::text', p_cols[i])
            WHEN 'dec' THEN format('round(%I::numeric, %s)::text', p_cols[i], p_scales[i]::int)
            WHEN 'date' THEN format('to_char(%I, %L)', p_cols[i], 'YYYY-MM-DD')
            WHEN 'ts' THEN format('to_char(%I, %L)', p_cols[i], 'YYYY-MM-DD"T"HH24:MI:SS')
            WHEN 'bool' THEN format('CASE WHEN %I = true THEN %L WHEN %I = false THEN %L END',
                                    p_cols[i], 't', p_cols[i], 'f')
            WHEN 'list' THEN format(
                'CASE WHEN %I IS NULL OR jsonb_typeof(%I) = %L THEN NULL ELSE coalesce((SELECT '
                'string_agg(e.value, chr(31)) FROM jsonb_array_elements_text(%I) AS e(value)), %L) END',
                p_cols[i], p_cols[i], 'null', p_cols[i], '')
        END;
        IF v_expr IS NULL THEN
            RAISE EXCEPTION 'unknown column kind %', p_kinds[i] USING ERRCODE = '22023';
        END IF;
        v_expr := format('coalesce(%s, chr(30))', v_expr);
        v_exprs := v_exprs || v_expr;
        IF p_kinds[i] = 'dec' THEN
            v_sums := v_sums || format('sum(%I)::text', p_cols[i]);
        END IF;
    END LOOP;
    FOR i IN 1 .. array_length(p_key, 1) LOOP
        v_keys := v_keys || v_exprs[array_position(p_cols, p_key[i])];
    END LOOP;
    rel := v_rel::text;
    key_expr := array_to_string(v_keys, ' || chr(31) || ');
    row_expr := array_to_string(v_exprs, ' || chr(31) || ');
    sums_expr := CASE WHEN cardinality(v_sums) = 0 THEN 'ARRAY[]::text[]'
                      ELSE 'ARRAY[' || array_to_string(v_sums, ', ') || ']' END;
    cells := v_exprs;
END;
$$;

CREATE OR REPLACE FUNCTION ${schema}.syncd_reconcile_digests(
    p_node text, p_table text, p_cols text[], p_kinds text[], p_scales int[], p_key text[],
    p_modulus bigint, p_parent_modulus bigint, p_parents bigint[]
) RETURNS TABLE (bucket bigint, row_count bigint, row_hash numeric, sums text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p record;
BEGIN
    IF ${schema}.syncd_caller_may_act_for(p_node) IS NOT TRUE THEN
        RAISE EXCEPTION 'role % may not reconcile for node %', session_user, p_node
            USING ERRCODE = '42501';
    END IF;
    SELECT * INTO p FROM ${schema}.syncd_reconcile_plan(p_table, p_cols, p_kinds, p_scales, p_key);
    RETURN QUERY EXECUTE format(
        'SELECT s.k32 %% $2 AS b, count(*)::bigint, sum(s.h60)::numeric, %s '
        'FROM (SELECT (''x'' || substr(md5(%s), 1, 8))::bit(32)::bigint AS k32, '
        '(''x'' || substr(md5(%s), 1, 15))::bit(60)::bigint AS h60, t.* '
        'FROM %s t WHERE t.origin_node = $1 AND NOT t._deleted) s '
        'WHERE $4 IS NULL OR (s.k32 %% $3) = ANY($4) GROUP BY 1',
        p.sums_expr, p.key_expr, p.row_expr, p.rel)
    USING p_node, p_modulus, p_parent_modulus, p_parents;
END;
$$;

CREATE OR REPLACE FUNCTION ${schema}.syncd_reconcile_leaf(
    p_node text, p_table text, p_cols text[], p_kinds text[], p_scales int[], p_key text[],
    p_modulus bigint, p_buckets bigint[]
) RETURNS TABLE (key_text text, row_md5 text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p record;
BEGIN
    IF ${schema}.syncd_caller_may_act_for(p_node) IS NOT TRUE THEN
        RAISE EXCEPTION 'role % may not reconcile for node %', session_user, p_node
            USING ERRCODE = '42501';
    END IF;
    SELECT * INTO p FROM ${schema}.syncd_reconcile_plan(p_table, p_cols, p_kinds, p_scales, p_key);
    RETURN QUERY EXECUTE format(
        'SELECT %s, md5(%s) FROM %s t WHERE t.origin_node = $1 AND NOT t._deleted '
        'AND (''x'' || substr(md5(%s), 1, 8))::bit(32)::bigint %% $2 = ANY($3)',
        p.key_expr, p.row_expr, p.rel, p.key_expr)
    USING p_node, p_modulus, p_buckets;
END;
$$;

-- Per named key, each column's md5 of its canonical text, or the text itself with p_values.
CREATE OR REPLACE FUNCTION ${schema}.syncd_reconcile_columns(
    p_node text, p_table text, p_cols text[], p_kinds text[], p_scales int[], p_key text[],
    p_keys text[], p_values boolean
) RETURNS TABLE (key_text text, cells text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p record;
    v_cells text;
BEGIN
    IF ${schema}.syncd_caller_may_act_for(p_node) IS NOT TRUE THEN
        RAISE EXCEPTION 'role % may not reconcile for node %', session_user, p_node
            USING ERRCODE = '42501';
    END IF;
    SELECT * INTO p FROM ${schema}.syncd_reconcile_plan(p_table, p_cols, p_kinds, p_scales, p_key);
    IF p_values THEN
        v_cells := array_to_string(p.cells, ', ');
    ELSE
        SELECT string_agg(format('md5(%s)', c), ', ' ORDER BY o) INTO v_cells
          FROM unnest(p.cells) WITH ORDINALITY AS u(c, o);
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT k.key_text, ARRAY[%s] FROM (SELECT %s AS key_text, t.* FROM %s t '
        'WHERE t.origin_node = $1 AND NOT t._deleted) k WHERE k.key_text = ANY($2)',
        v_cells, p.key_expr, p.rel)
    USING p_node, p_keys;
END;
$$;

-- Which of the named keys are in open quarantine or in a batch not yet applied, for this node.
CREATE OR REPLACE FUNCTION ${schema}.syncd_reconcile_pending(
    p_node text, p_table text, p_key text[], p_keys text[]
) RETURNS TABLE (key_text text, state text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF ${schema}.syncd_caller_may_act_for(p_node) IS NOT TRUE THEN
        RAISE EXCEPTION 'role % may not reconcile for node %', session_user, p_node
            USING ERRCODE = '42501';
    END IF;
    RETURN QUERY
    SELECT DISTINCT k.t, k.s FROM (
        SELECT (SELECT string_agg(coalesce(q.row_key ->> u.c, chr(30)), chr(31) ORDER BY u.o)
                  FROM unnest(p_key) WITH ORDINALITY AS u(c, o)) AS t, 'quarantined'::text AS s
          FROM ${schema}.syncd_quarantine q
         WHERE q.node_id = p_node AND q.table_name = p_table AND q.status = 'open'
        UNION ALL
        SELECT (SELECT string_agg(coalesce(r.row_key ->> u.c, chr(30)), chr(31) ORDER BY u.o)
                  FROM unnest(p_key) WITH ORDINALITY AS u(c, o)), 'in_flight'::text
          FROM ${schema}.syncd_inbox_batch b
          JOIN ${schema}.syncd_inbox_row r ON r.batch_id = b.batch_id
         WHERE b.node_id = p_node AND b.status = 'pending' AND r.table_name = p_table
        UNION ALL
        -- A batch received as one payload (hub_0005): its changes read from the text.
        SELECT (SELECT string_agg(coalesce(e.r -> 'key' ->> u.c, chr(30)), chr(31) ORDER BY u.o)
                  FROM unnest(p_key) WITH ORDINALITY AS u(c, o)), 'in_flight'::text
          FROM ${schema}.syncd_inbox_batch b
         CROSS JOIN LATERAL jsonb_array_elements(b.payload::jsonb) AS e(r)
         WHERE b.node_id = p_node AND b.status = 'pending' AND b.payload IS NOT NULL
           AND e.r ->> 'table' = p_table
    ) k WHERE k.t = ANY(p_keys);
END;
$$;

-- A node's reconcile summary (counts only, no values): an event the apply cycle audits.
CREATE OR REPLACE FUNCTION ${schema}.syncd_reconcile_record(p_node text, p_summary jsonb)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF ${schema}.syncd_caller_may_act_for(p_node) IS NOT TRUE THEN
        RAISE EXCEPTION 'role % may not record a reconcile for node %', session_user, p_node
            USING ERRCODE = '42501';
    END IF;
    IF jsonb_typeof(p_summary) <> 'object' OR length(p_summary::text) > 65536 THEN
        RAISE EXCEPTION 'malformed reconcile summary' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ${schema}.syncd_inbox_event (node_id, kind, reason, at)
    VALUES (p_node, 'reconcile', p_summary::text, (now() AT TIME ZONE 'UTC'));
END;
$$;

REVOKE ALL ON FUNCTION ${schema}.syncd_reconcile_plan(text, text[], text[], int[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_reconcile_digests(text, text, text[], text[], int[], text[], bigint, bigint, bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_reconcile_leaf(text, text, text[], text[], int[], text[], bigint, bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_reconcile_columns(text, text, text[], text[], int[], text[], text[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_reconcile_pending(text, text, text[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ${schema}.syncd_reconcile_record(text, jsonb) FROM PUBLIC;

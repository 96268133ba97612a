-- A filtered table's update: every new row as 'U', paired by primary key with the old row of
-- that key (the transition tables do not pair them) for its filter values, logged where they
-- differ. FULL JOIN, which PostgreSQL runs only as a hash or merge join, whatever the cached
-- plan estimated, so a million-row statement stays linear; OFFSET 0 keeps the planner from
-- reducing it to a LEFT JOIN it might run as a nested loop. Only ${narrow} of the old rows.
        INSERT INTO ${changelog} (table_name, op, row_image, old_filter)
        SELECT ${table}, 'U', x.image, x.old_filter FROM (
            SELECT n.${first_key} AS syncd_key, ${new_image} AS image,
                   CASE WHEN o.${first_key} IS NOT NULL AND ${old_values} IS DISTINCT FROM ${new_values}
                        THEN ${old_filter} END AS old_filter
            FROM ${new_rows} n
            FULL JOIN (SELECT ${narrow} FROM ${old_rows}) o ON ${key_join}
            OFFSET 0) x
        WHERE x.syncd_key IS NOT NULL

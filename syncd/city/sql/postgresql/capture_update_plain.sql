-- An unfiltered table's update: every new row as 'U'; the old rows are not read.
        INSERT INTO ${changelog} (table_name, op, row_image)
        SELECT ${table}, 'U', ${new_image} FROM ${new_rows} n

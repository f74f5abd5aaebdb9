-- Sequences behind the highest value of the column they feed: the next insert would collide.
WITH owned AS (
  SELECT s.oid::regclass AS seq, n.nspname, t.relname, a.attname
  FROM pg_class s
  JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
  JOIN pg_class t ON t.oid = d.refobjid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
  WHERE s.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
), checked AS (
  SELECT seq::text AS sequence, relname AS table_name, attname AS column_name,
         (SELECT last_value FROM pg_sequences ps
           WHERE format('%I.%I', ps.schemaname, ps.sequencename)::regclass = seq) AS last_value,
         (xpath('/row/m/text()',
                query_to_xml(format('SELECT max(%I) AS m FROM %I.%I', attname, nspname, relname),
                             false, true, '')))[1]::text::bigint AS max_value
  FROM owned
)
SELECT * FROM checked
WHERE max_value IS NOT NULL AND coalesce(last_value, 0) < max_value;

-- Indexes PostgreSQL marks invalid or not ready (e.g. an interrupted CREATE INDEX CONCURRENTLY).
SELECT i.indexrelid::regclass::text AS index_name, i.indrelid::regclass::text AS table_name
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (NOT i.indisvalid OR NOT i.indisready) AND n.nspname NOT IN ('pg_catalog', 'information_schema');

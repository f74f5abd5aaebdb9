-- Rows updated before they were created, or stamped in the future.
SELECT 'accounts' AS table_name, id FROM accounts
 WHERE updated_at < created_at OR created_at > now() + interval '1 minute'
UNION ALL
SELECT 'posts', id FROM posts
 WHERE updated_at < created_at OR created_at > now() + interval '1 minute'
UNION ALL
SELECT 'uploads', id FROM uploads
 WHERE updated_at < created_at OR created_at > now() + interval '1 minute'
LIMIT 20;

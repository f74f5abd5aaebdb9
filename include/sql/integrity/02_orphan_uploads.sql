-- Uploads pointing at a missing account or post.
SELECT u.id AS upload_id, u.account_id, u.post_id
FROM uploads u
LEFT JOIN accounts a ON a.id = u.account_id
LEFT JOIN posts p ON p.id = u.post_id
WHERE a.id IS NULL OR (u.post_id IS NOT NULL AND p.id IS NULL)
LIMIT 20;

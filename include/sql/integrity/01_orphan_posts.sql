-- Posts whose account does not exist (a broken foreign key after restore).
SELECT p.id AS post_id, p.account_id
FROM posts p
LEFT JOIN accounts a ON a.id = p.account_id
WHERE a.id IS NULL
LIMIT 20;

-- Account e-mails that appear twice ignoring case (a unique index that did not survive).
SELECT lower(email) AS email, count(*) AS copies
FROM accounts
GROUP BY lower(email)
HAVING count(*) > 1
LIMIT 20;

-- Uploads with an impossible size or a malformed checksum.
SELECT id, size_bytes, sha256
FROM uploads
WHERE size_bytes < 0 OR (sha256 IS NOT NULL AND sha256 !~ '^[0-9a-f]{64}$')
LIMIT 20;

"""The upload audit through Airflow Connections, the same on every platform: the app's ``uploads`` table (what
it acknowledged: key, size, SHA-256) against its bucket, read directly (an S3 fault sits on the app's path,
not on this one)."""

from __future__ import annotations

import hashlib
import logging

from resilience.platforms.types import UploadAudit

log = logging.getLogger(__name__)

UPLOAD_AUDIT_LIMIT = 1000  # uploads read back per audit; past it the audit says it was limited
READ_BUDGET_BYTES = 256 * 1024 * 1024  # bodies hashed per audit; past it only sizes are compared (HEAD)
UPLOADS_IN_WINDOW = ("SELECT s3_key, size_bytes, sha256 FROM uploads WHERE created_at >= to_timestamp(%s) "
                     "AND created_at <= to_timestamp(%s) AND starts_with(s3_key, %s) ORDER BY created_at LIMIT %s")


class ConnectionUploadAudit:
    def __init__(self, database_conn_id: str, aws_conn_id: str, bucket: str, key_prefix: str) -> None:
        self.database_conn_id = database_conn_id
        self.aws_conn_id = aws_conn_id
        self.bucket = bucket
        self.key_prefix = key_prefix

    def audit_uploads(self, since_epoch_s: float, until_epoch_s: float) -> UploadAudit:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from botocore.exceptions import ClientError

        from resilience.controldb import ControlDb, postgres_connect

        rows = ControlDb(postgres_connect(self.database_conn_id)).execute(
            UPLOADS_IN_WINDOW, (since_epoch_s, until_epoch_s, self.key_prefix, UPLOAD_AUDIT_LIMIT + 1))
        limited = len(rows) > UPLOAD_AUDIT_LIMIT
        rows = rows[:UPLOAD_AUDIT_LIMIT]
        client = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
        missing, corrupt, read, sized_only = [], [], 0, 0
        for key, size, sha256 in rows:
            hashed = read + size <= READ_BUDGET_BYTES
            try:
                if hashed:
                    body = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    read += len(body)
                    intact = len(body) == size and hashlib.sha256(body).hexdigest() == sha256
                else:  # over the budget: a partial object still shows in its size
                    intact = client.head_object(Bucket=self.bucket, Key=key)["ContentLength"] == size
                    sized_only += 1
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    missing.append(key)
                    continue
                raise
            if not intact:
                corrupt.append(key)
        audit = UploadAudit(len(rows), tuple(missing), tuple(corrupt), limited, sized_only)
        log.info("Upload audit of bucket %s: %d acknowledged upload(s) read back (%d by size only), %d missing, "
                 "%d corrupt%s", self.bucket, audit.checked, sized_only, len(missing), len(corrupt),
                 f" (the first {UPLOAD_AUDIT_LIMIT} only)" if limited else "")
        return audit

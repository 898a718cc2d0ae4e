"""From an HTTP request to (bucket, key, S3 operation name): the one dispatch table."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

# Bucket sub-resources (query names) and the operation each names, per method.
_BUCKET_SUB: dict[str, dict[str, str]] = {
    "GET": {
        "location": "GetBucketLocation", "uploads": "ListMultipartUploads", "versions": "ListObjectVersions",
        "versioning": "GetBucketVersioning", "policy": "GetBucketPolicy", "policyStatus": "GetBucketPolicyStatus",
        "acl": "GetBucketAcl", "cors": "GetBucketCors", "lifecycle": "GetBucketLifecycleConfiguration",
        "tagging": "GetBucketTagging", "encryption": "GetBucketEncryption", "website": "GetBucketWebsite",
        "logging": "GetBucketLogging", "notification": "GetBucketNotificationConfiguration",
        "replication": "GetBucketReplication", "object-lock": "GetObjectLockConfiguration",
        "ownershipControls": "GetBucketOwnershipControls", "publicAccessBlock": "GetPublicAccessBlock",
        "requestPayment": "GetBucketRequestPayment", "accelerate": "GetBucketAccelerateConfiguration",
        "analytics": "GetBucketAnalyticsConfiguration", "inventory": "GetBucketInventoryConfiguration",
        "metrics": "GetBucketMetricsConfiguration", "intelligent-tiering": "GetBucketIntelligentTieringConfiguration",
        "session": "CreateSession", "abac": "GetBucketAbac", "metadataConfiguration": "GetBucketMetadataConfiguration",
        "metadataTable": "GetBucketMetadataTableConfiguration",
    },
    "PUT": {
        "versioning": "PutBucketVersioning", "policy": "PutBucketPolicy", "acl": "PutBucketAcl",
        "cors": "PutBucketCors", "lifecycle": "PutBucketLifecycleConfiguration", "tagging": "PutBucketTagging",
        "encryption": "PutBucketEncryption", "website": "PutBucketWebsite", "logging": "PutBucketLogging",
        "notification": "PutBucketNotificationConfiguration", "replication": "PutBucketReplication",
        "object-lock": "PutObjectLockConfiguration", "ownershipControls": "PutBucketOwnershipControls",
        "publicAccessBlock": "PutPublicAccessBlock", "requestPayment": "PutBucketRequestPayment",
        "accelerate": "PutBucketAccelerateConfiguration", "analytics": "PutBucketAnalyticsConfiguration",
        "inventory": "PutBucketInventoryConfiguration", "metrics": "PutBucketMetricsConfiguration",
        "intelligent-tiering": "PutBucketIntelligentTieringConfiguration", "abac": "PutBucketAbac",
        "metadataAnnotationTable": "UpdateBucketMetadataAnnotationTableConfiguration",
        "metadataInventoryTable": "UpdateBucketMetadataInventoryTableConfiguration",
        "metadataJournalTable": "UpdateBucketMetadataJournalTableConfiguration",
    },
    "DELETE": {
        "policy": "DeleteBucketPolicy", "cors": "DeleteBucketCors", "lifecycle": "DeleteBucketLifecycle",
        "tagging": "DeleteBucketTagging", "encryption": "DeleteBucketEncryption", "website": "DeleteBucketWebsite",
        "replication": "DeleteBucketReplication", "ownershipControls": "DeleteBucketOwnershipControls",
        "publicAccessBlock": "DeletePublicAccessBlock", "analytics": "DeleteBucketAnalyticsConfiguration",
        "inventory": "DeleteBucketInventoryConfiguration", "metrics": "DeleteBucketMetricsConfiguration",
        "intelligent-tiering": "DeleteBucketIntelligentTieringConfiguration",
        "metadataConfiguration": "DeleteBucketMetadataConfiguration", "metadataTable": "DeleteBucketMetadataTableConfiguration",
    },
    "POST": {"delete": "DeleteObjects", "metadataConfiguration": "CreateBucketMetadataConfiguration",
             "metadataTable": "CreateBucketMetadataTableConfiguration"},
}

# Configurations kept by id: GET with ?id= reads one, GET without lists them.
_LIST_WITHOUT_ID = {
    "analytics": "ListBucketAnalyticsConfigurations", "inventory": "ListBucketInventoryConfigurations",
    "metrics": "ListBucketMetricsConfigurations", "intelligent-tiering": "ListBucketIntelligentTieringConfigurations",
}

_OBJECT_SUB: dict[str, dict[str, str]] = {
    "GET": {"uploadId": "ListParts", "attributes": "GetObjectAttributes", "tagging": "GetObjectTagging",
            "acl": "GetObjectAcl", "retention": "GetObjectRetention", "legal-hold": "GetObjectLegalHold",
            "torrent": "GetObjectTorrent", "annotation": "GetObjectAnnotation"},
    "PUT": {"tagging": "PutObjectTagging", "acl": "PutObjectAcl", "retention": "PutObjectRetention",
            "legal-hold": "PutObjectLegalHold", "annotation": "PutObjectAnnotation", "renameObject": "RenameObject",
            "encryption": "UpdateObjectEncryption"},
    "DELETE": {"uploadId": "AbortMultipartUpload", "tagging": "DeleteObjectTagging",
               "annotation": "DeleteObjectAnnotation"},
    "POST": {"uploads": "CreateMultipartUpload", "uploadId": "CompleteMultipartUpload",
             "restore": "RestoreObject", "select": "SelectObjectContent"},
}

# coffre's own tenant API (s3/coffre_api.py): "/_coffre/..." can name no bucket.
_COFFRE = "_coffre"
_COFFRE_OPS = {
    ("GET", "audit"): "GetAuditRecords", ("GET", "audit/public-key"): "GetAuditPublicKey",
    ("GET", "audit/delivery"): "GetAuditDelivery", ("PUT", "audit/delivery"): "PutAuditDelivery",
    ("DELETE", "audit/delivery"): "DeleteAuditDelivery",
}

_CONTROL_VERSION = "v20180820"
_CONTROL_BPA = "configuration/publicAccessBlock"
_CONTROL_BPA_OPS = {"GET": "GetAccountPublicAccessBlock", "PUT": "PutAccountPublicAccessBlock",
                    "DELETE": "DeleteAccountPublicAccessBlock"}


def split_path(raw_path: str, host_bucket: str | None) -> tuple[str | None, str | None]:
    """Bucket and key from the percent-encoded path (path style unless the Host named the bucket).

    The key is everything after the bucket's slash, byte for byte once decoded:
    "a//b", "../x" and trailing slashes are part of the key, never normalised.
    """
    path = raw_path if raw_path.startswith("/") else "/" + raw_path
    if host_bucket is not None:
        key = path[1:]
        return host_bucket, (unquote(key, errors="surrogateescape") if key else None)
    rest = path[1:]
    if rest == "":
        return None, None
    bucket, sep, key = rest.partition("/")
    bucket = unquote(bucket)
    if not sep or key == "":
        return bucket, None
    return bucket, unquote(key, errors="surrogateescape")


def host_bucket(host: str | None, domains: tuple[str, ...]) -> str | None:
    """Virtual-hosted-style: "bucket.s3.example.com" names the bucket when the domain is configured."""
    if not host or not domains:
        return None
    h = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else host
    for d in domains:
        d = d.lower()
        if h.endswith("." + d):
            return h[: -len(d) - 1]
    return None


def operation(method: str, bucket: str | None, key: str | None, query: Mapping[str, str],
              headers: Mapping[str, str]) -> str:
    """The S3 operation a request names; "Unknown" when none does."""
    if bucket == _CONTROL_VERSION and key == _CONTROL_BPA and "x-amz-account-id" in headers:
        # The S3 Control API's tenant-level Block Public Access (an account id names the tenant;
        # without it this is an ordinary bucket path).
        return _CONTROL_BPA_OPS.get(method, "Unknown")
    if bucket is None:
        return "ListBuckets" if method in ("GET", "HEAD") else "Unknown"
    if bucket == _COFFRE:
        return _COFFRE_OPS.get((method, key or ""), "Unknown")
    if method == "OPTIONS":
        return "OptionsObject"  # a browser's CORS preflight, on the bucket or on a key
    if key is None:
        sub = _BUCKET_SUB.get(method, {})
        for name, op in sub.items():
            if name in query:
                if method == "GET" and name in _LIST_WITHOUT_ID and "id" not in query:
                    return _LIST_WITHOUT_ID[name]
                return op
        if method == "GET":
            return "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"
        return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket",
                "POST": "PostObject"}.get(method, "Unknown")
    if method == "PUT" and "uploadId" in query and "partNumber" in query:
        return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
    for name, op in _OBJECT_SUB.get(method, {}).items():
        if name in query:
            return op
    if method == "PUT":
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, "Unknown")

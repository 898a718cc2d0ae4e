"""The Amazon S3 action names a bucket policy may name.

AWS refuses a bucket policy naming an action S3 does not have ("Policy has invalid action"),
also for a wildcard that matches none (``s3:Foo*``). The list follows AWS's service
authorization reference for Amazon S3, including actions coffre does not serve, so that a
policy written for AWS is accepted unchanged; an action coffre does not serve simply never
matches a request.
"""

from __future__ import annotations

# The actions whose resource is an object (arn:aws:s3:::bucket/key); the others name a bucket
# (or the account, an access point, a job...). A bucket policy statement whose actions and
# resources never meet is refused ("Action does not apply to any resource(s) in statement").
S3_OBJECT_ACTIONS: frozenset[str] = frozenset(name.lower() for name in (
    "AbortMultipartUpload", "BypassGovernanceRetention", "DeleteObject", "DeleteObjectTagging",
    "DeleteObjectVersion", "DeleteObjectVersionTagging", "GetObject", "GetObjectAcl",
    "GetObjectAttributes", "GetObjectLegalHold", "GetObjectRetention", "GetObjectTagging",
    "GetObjectTorrent", "GetObjectVersion", "GetObjectVersionAcl", "GetObjectVersionAttributes",
    "GetObjectVersionForReplication", "GetObjectVersionTagging", "GetObjectVersionTorrent",
    "InitiateReplication", "ListMultipartUploadParts", "ObjectOwnerOverrideToBucketOwner",
    "PutObject", "PutObjectAcl", "PutObjectLegalHold", "PutObjectRetention", "PutObjectTagging",
    "PutObjectVersionAcl", "PutObjectVersionTagging", "ReplicateDelete", "ReplicateObject",
    "ReplicateTags", "RestoreObject", "RenameObject", "GetObjectAnnotation",
))

S3_ACTIONS: frozenset[str] = S3_OBJECT_ACTIONS | frozenset(name.lower() for name in (
    # buckets
    "CreateBucket", "DeleteBucket", "DeleteBucketOwnershipControls", "DeleteBucketPolicy",
    "DeleteBucketWebsite", "DeleteBucketMetadataTableConfiguration",
    "DeleteBucketMetadataConfiguration", "GetAccelerateConfiguration",
    "GetAnalyticsConfiguration", "GetBucketAbac", "GetBucketAcl", "GetBucketCORS",
    "GetBucketLocation", "GetBucketLogging", "GetBucketMetadataTableConfiguration",
    "GetBucketMetadataConfiguration", "GetBucketNotification", "GetBucketObjectLockConfiguration",
    "GetBucketOwnershipControls", "GetBucketPolicy", "GetBucketPolicyStatus",
    "GetBucketPublicAccessBlock", "GetBucketRequestPayment", "GetBucketTagging",
    "GetBucketVersioning", "GetBucketWebsite", "GetEncryptionConfiguration",
    "GetIntelligentTieringConfiguration", "GetInventoryConfiguration",
    "GetLifecycleConfiguration", "GetMetricsConfiguration", "GetReplicationConfiguration",
    "ListBucket", "ListBucketMultipartUploads", "ListBucketVersions", "PutAccelerateConfiguration",
    "PutAnalyticsConfiguration", "PutBucketAbac", "PutBucketAcl", "PutBucketCORS",
    "PutBucketLogging", "PutBucketNotification", "PutBucketObjectLockConfiguration",
    "PutBucketOwnershipControls", "PutBucketPolicy", "PutBucketPublicAccessBlock",
    "PutBucketRequestPayment", "PutBucketTagging", "PutBucketVersioning", "PutBucketWebsite",
    "PutEncryptionConfiguration", "PutIntelligentTieringConfiguration",
    "PutInventoryConfiguration", "PutLifecycleConfiguration", "PutMetricsConfiguration",
    "PutReplicationConfiguration", "CreateBucketMetadataTableConfiguration",
    "CreateBucketMetadataConfiguration", "UpdateBucketMetadataInventoryTableConfiguration",
    "UpdateBucketMetadataJournalTableConfiguration", "PutBucketMetadataTableConfiguration",
    "GetBucketMetadataTableConfiguration",
    # account, access points, jobs, Storage Lens, directory buckets and the rest of the service
    "ListAllMyBuckets", "GetAccountPublicAccessBlock", "PutAccountPublicAccessBlock",
    "CreateAccessPoint", "DeleteAccessPoint", "GetAccessPoint", "ListAccessPoints",
    "GetAccessPointPolicy", "PutAccessPointPolicy", "DeleteAccessPointPolicy",
    "GetAccessPointPolicyStatus", "GetAccessPointConfigurationForObjectLambda",
    "CreateAccessPointForObjectLambda", "DeleteAccessPointForObjectLambda",
    "GetAccessPointForObjectLambda", "ListAccessPointsForObjectLambda",
    "PutAccessPointConfigurationForObjectLambda", "GetAccessPointPolicyForObjectLambda",
    "PutAccessPointPolicyForObjectLambda", "DeleteAccessPointPolicyForObjectLambda",
    "GetAccessPointPolicyStatusForObjectLambda", "PutAccessPointPublicAccessBlock",
    "CreateJob", "DescribeJob", "ListJobs", "UpdateJobPriority", "UpdateJobStatus",
    "GetJobTagging", "PutJobTagging", "DeleteJobTagging", "CreateMultiRegionAccessPoint",
    "DeleteMultiRegionAccessPoint", "DescribeMultiRegionAccessPointOperation",
    "GetMultiRegionAccessPoint", "GetMultiRegionAccessPointPolicy",
    "GetMultiRegionAccessPointPolicyStatus", "GetMultiRegionAccessPointRoutes",
    "ListMultiRegionAccessPoints", "PutMultiRegionAccessPointPolicy",
    "SubmitMultiRegionAccessPointRoutes", "GetStorageLensConfiguration",
    "PutStorageLensConfiguration", "DeleteStorageLensConfiguration",
    "ListStorageLensConfigurations", "GetStorageLensConfigurationTagging",
    "PutStorageLensConfigurationTagging", "DeleteStorageLensConfigurationTagging",
    "GetStorageLensDashboard", "GetStorageLensGroup", "CreateStorageLensGroup",
    "UpdateStorageLensGroup", "DeleteStorageLensGroup", "ListStorageLensGroups",
    "CreateAccessGrant", "DeleteAccessGrant", "GetAccessGrant", "ListAccessGrants",
    "CreateAccessGrantsInstance", "DeleteAccessGrantsInstance", "GetAccessGrantsInstance",
    "ListAccessGrantsInstances", "CreateAccessGrantsLocation", "DeleteAccessGrantsLocation",
    "GetAccessGrantsLocation", "ListAccessGrantsLocations", "UpdateAccessGrantsLocation",
    "GetDataAccess", "ListCallerAccessGrants", "TagResource", "UntagResource",
    "ListTagsForResource", "PutStorageLensConfigurationTagging", "CreateSession",
    "ListAllMyDirectoryBuckets", "PauseReplication", "GetAccessGrantsInstanceForPrefix",
    "GetAccessGrantsInstanceResourcePolicy", "PutAccessGrantsInstanceResourcePolicy",
    "DeleteAccessGrantsInstanceResourcePolicy", "AssociateAccessGrantsIdentityCenter",
    "DissociateAccessGrantsIdentityCenter", "ListAccessPointsForDirectoryBuckets",
    "GetAccessPointScope", "PutAccessPointScope", "DeleteAccessPointScope",
))

"""The one table from domain errors to S3 error codes and HTTP statuses."""

from __future__ import annotations

from coffre.core import errors as e

# class -> (HTTP status, S3 code). A class missing here falls back to its base class.
STATUS: dict[type[e.CoffreError], tuple[int, str]] = {
    e.NoSuchBucket: (404, "NoSuchBucket"),
    e.BucketAlreadyExists: (409, "BucketAlreadyExists"),
    e.BucketAlreadyOwnedByYou: (409, "BucketAlreadyOwnedByYou"),
    e.BucketNotEmpty: (409, "BucketNotEmpty"),
    e.InvalidBucketName: (400, "InvalidBucketName"),
    e.InvalidLocationConstraint: (400, "InvalidLocationConstraint"),
    e.IllegalLocationConstraintException: (400, "IllegalLocationConstraintException"),
    e.NoSuchKey: (404, "NoSuchKey"),
    e.NoSuchVersion: (404, "NoSuchVersion"),
    e.KeyTooLongError: (400, "KeyTooLongError"),
    e.MetadataTooLarge: (400, "MetadataTooLarge"),
    e.EntityTooLarge: (400, "EntityTooLarge"),
    e.EntityTooSmall: (400, "EntityTooSmall"),
    e.IncompleteBody: (400, "IncompleteBody"),
    e.BadDigest: (400, "BadDigest"),
    e.InvalidDigest: (400, "InvalidDigest"),
    e.XAmzContentSHA256Mismatch: (400, "XAmzContentSHA256Mismatch"),
    e.InvalidRange: (416, "InvalidRange"),
    e.InvalidPartNumber: (416, "InvalidPartNumber"),
    e.PreconditionFailed: (412, "PreconditionFailed"),
    e.NotModified: (304, "NotModified"),
    e.ConditionalRequestConflict: (409, "ConditionalRequestConflict"),
    e.InvalidObjectState: (403, "InvalidObjectState"),
    e.NoSuchUpload: (404, "NoSuchUpload"),
    e.InvalidPart: (400, "InvalidPart"),
    e.InvalidPartOrder: (400, "InvalidPartOrder"),
    e.InvalidTag: (400, "InvalidTag"),
    e.TooManyTags: (400, "BadRequest"),
    e.NoSuchTagSet: (404, "NoSuchTagSet"),
    e.MissingRequestBodyError: (400, "MissingRequestBodyError"),
    e.NoSuchCORSConfiguration: (404, "NoSuchCORSConfiguration"),
    e.NoSuchLifecycleConfiguration: (404, "NoSuchLifecycleConfiguration"),
    e.CORSForbidden: (403, "AccessForbidden"),
    e.CORSBadRequest: (400, "BadRequest"),
    e.InvalidPolicyDocument: (400, "InvalidPolicyDocument"),
    e.MalformedPOSTRequest: (400, "MalformedPOSTRequest"),
    e.MaxPostPreDataLengthExceeded: (400, "MaxPostPreDataLengthExceeded"),
    e.InvalidArgument: (400, "InvalidArgument"),
    e.InvalidRequest: (400, "InvalidRequest"),
    e.MalformedXML: (400, "MalformedXML"),
    e.InvalidDigestChecksum: (400, "BadDigest"),
    e.InvalidChecksum: (400, "InvalidRequest"),
    e.NotImplementedOperation: (501, "NotImplemented"),
    e.MethodNotAllowed: (405, "MethodNotAllowed"),
    e.RequestHeaderSectionTooLarge: (400, "RequestHeaderSectionTooLarge"),
    e.MissingContentLength: (411, "MissingContentLength"),
    e.RequestTimeout: (400, "RequestTimeout"),
    e.AccessDenied: (403, "AccessDenied"),
    e.KMSNotFound: (400, "KMS.NotFoundException"),
    e.KMSDisabled: (400, "KMS.DisabledException"),
    e.KMSInvalidState: (400, "KMS.KMSInvalidStateException"),
    e.KMSInvalidCiphertext: (400, "KMS.InvalidCiphertextException"),
    e.KeyServiceUnavailable: (503, "ServiceUnavailable"),
    e.InvalidBucketState: (409, "InvalidBucketState"),
    e.ObjectLockConfigurationNotFoundError: (404, "ObjectLockConfigurationNotFoundError"),
    e.NoSuchObjectLockConfiguration: (404, "NoSuchObjectLockConfiguration"),
    e.MalformedPolicy: (400, "MalformedPolicy"),
    e.NoSuchBucketPolicy: (404, "NoSuchBucketPolicy"),
    e.NoSuchPublicAccessBlockConfiguration: (404, "NoSuchPublicAccessBlockConfiguration"),
    e.OwnershipControlsNotFoundError: (404, "OwnershipControlsNotFoundError"),
    e.AccessControlListNotSupported: (400, "AccessControlListNotSupported"),
    e.InvalidBucketAclWithObjectOwnership: (400, "InvalidBucketAclWithObjectOwnership"),
    e.MalformedACLError: (400, "MalformedACLError"),
    e.UnresolvableGrantByEmailAddress: (400, "UnresolvableGrantByEmailAddress"),
    e.QuotaExceeded: (403, "QuotaExceeded"),  # as Ceph RGW answers (AWS has no quotas)
    e.TooManyBuckets: (400, "TooManyBuckets"),
    e.InvalidAccessKeyId: (403, "InvalidAccessKeyId"),
    e.SignatureDoesNotMatch: (403, "SignatureDoesNotMatch"),
    e.RequestTimeTooSkewed: (403, "RequestTimeTooSkewed"),
    e.AuthorizationHeaderMalformed: (400, "AuthorizationHeaderMalformed"),
    e.AuthorizationQueryParametersError: (400, "AuthorizationQueryParametersError"),
    e.ExpiredToken: (400, "ExpiredToken"),
    e.AccountProblem: (403, "AccountProblem"),
    e.ServiceUnavailable: (503, "ServiceUnavailable"),
}


def status_and_code(exc: e.CoffreError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        hit = STATUS.get(cls)
        if hit is not None:
            return hit
    return 500, "InternalError"

"""Domain exceptions.

Each is named after the S3 error it usually becomes; ``coffre.s3.errors`` alone
knows HTTP statuses and codes. Fields carry what a message needs, never secrets.
"""

from __future__ import annotations


class CoffreError(Exception):
    """Base of every domain error."""

    message = "An error occurred."

    def __init__(self, message: str | None = None, **fields: object) -> None:
        super().__init__(message or self.message)
        self.fields = fields

    @property
    def code(self) -> str:
        return type(self).__name__

    def __str__(self) -> str:
        return self.args[0] if self.args else self.message


# Buckets
class NoSuchBucket(CoffreError):
    message = "The specified bucket does not exist"


class BucketAlreadyExists(CoffreError):
    message = (
        "The requested bucket name is not available. The bucket namespace is shared by all users "
        "of the system. Please select a different name and try again."
    )


class BucketAlreadyOwnedByYou(CoffreError):
    message = "Your previous request to create the named bucket succeeded and you already own it."


class BucketNotEmpty(CoffreError):
    message = "The bucket you tried to delete is not empty"


class InvalidBucketName(CoffreError):
    message = "The specified bucket is not valid."


class InvalidLocationConstraint(CoffreError):
    message = "The specified location-constraint is not valid"


class IllegalLocationConstraintException(CoffreError):
    message = "The unspecified location constraint is incompatible for the region specific endpoint this request was sent to."


# Objects
class NoSuchKey(CoffreError):
    message = "The specified key does not exist."


class NoSuchVersion(CoffreError):
    message = "The specified version does not exist."


class KeyTooLongError(CoffreError):
    message = "Your key is too long"


class MetadataTooLarge(CoffreError):
    message = "Your metadata headers exceed the maximum allowed metadata size."


class EntityTooLarge(CoffreError):
    message = "Your proposed upload exceeds the maximum allowed size"


class EntityTooSmall(CoffreError):
    message = "Your proposed upload is smaller than the minimum allowed object size."


class IncompleteBody(CoffreError):
    message = "You did not provide the number of bytes specified by the Content-Length HTTP header."


class BadDigest(CoffreError):
    message = "The Content-MD5 you specified did not match what we received."


class InvalidDigest(CoffreError):
    message = "The Content-MD5 you specified was invalid."


class XAmzContentSHA256Mismatch(CoffreError):
    message = "The provided 'x-amz-content-sha256' header does not match what was computed."


class InvalidRange(CoffreError):
    message = "The requested range is not satisfiable"


class InvalidPartNumber(CoffreError):
    message = "The requested partnumber is not satisfiable"


class PreconditionFailed(CoffreError):
    message = "At least one of the pre-conditions you specified did not hold"


class NotModified(CoffreError):
    message = "Not Modified"


class ConditionalRequestConflict(CoffreError):
    message = "A conflicting operation occurred. If using PutObject you can retry the request."


class InvalidObjectState(CoffreError):
    message = "The operation is not valid for the object's storage class"


# Multipart
class NoSuchUpload(CoffreError):
    message = (
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have "
        "been aborted or completed."
    )


class InvalidPart(CoffreError):
    message = (
        "One or more of the specified parts could not be found. The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag."
    )


class InvalidPartOrder(CoffreError):
    message = "The list of parts was not in ascending order. Parts must be ordered by part number."


# Tagging
class InvalidTag(CoffreError):
    message = "The TagKey you have provided is invalid"


class TooManyTags(CoffreError):
    """More tags than a resource may carry (S3 answers a plain BadRequest)."""

    message = "Object tags cannot be greater than 10"


class NoSuchTagSet(CoffreError):
    message = "The TagSet does not exist"


# Requests
class MissingRequestBodyError(CoffreError):
    message = "Request Body is empty"


class InvalidArgument(CoffreError):
    message = "Invalid Argument"


class InvalidRequest(CoffreError):
    message = "Invalid Request"


class MalformedXML(CoffreError):
    message = "The XML you provided was not well-formed or did not validate against our published schema."


class InvalidDigestChecksum(CoffreError):
    """A checksum header or trailer did not match the body (S3 answers BadDigest)."""

    message = "The {algorithm} you specified did not match the calculated checksum."


class InvalidChecksum(CoffreError):
    """A checksum value is not valid for its algorithm (S3 answers InvalidRequest)."""

    message = "Value for x-amz-checksum header is invalid."


class NotImplementedOperation(CoffreError):
    message = "A header or operation you provided implies functionality that is not implemented."


class MethodNotAllowed(CoffreError):
    message = "The specified method is not allowed against this resource."


class RequestHeaderSectionTooLarge(CoffreError):
    message = "Your request header section exceeds the maximum allowed size."


class RequestTimeout(CoffreError):
    message = ("Your socket connection to the server was not read from or written to within the timeout "
               "period. Idle connections will be closed.")


class MissingContentLength(CoffreError):
    message = "You must provide the Content-Length HTTP header."


# Lifecycle
class NoSuchLifecycleConfiguration(CoffreError):
    message = "The lifecycle configuration does not exist"


# CORS and browser (POST) uploads
class NoSuchCORSConfiguration(CoffreError):
    message = "The CORS configuration does not exist"


class CORSForbidden(CoffreError):
    """A CORS preflight that no rule allows (S3 answers 403 AccessForbidden)."""

    message = "CORSResponse: This CORS request is not allowed."


class CORSBadRequest(CoffreError):
    """A CORS preflight missing what it must carry (S3 answers a plain 400 BadRequest)."""

    message = "Insufficient information. Origin request header needed."


class InvalidPolicyDocument(CoffreError):
    message = "The content of the form does not meet the conditions specified in the policy document."


class MalformedPOSTRequest(CoffreError):
    message = "The body of your POST request is not well-formed multipart/form-data."


class MaxPostPreDataLengthExceeded(CoffreError):
    message = "Your POST request fields preceeding the upload file was too large."


# Server-side encryption (issue #4)
class KMSNotFound(CoffreError):
    """A KMS key id that names no key of the caller's tenant (another tenant's is unknown too)."""

    message = "Invalid keyId"


class KMSDisabled(CoffreError):
    message = "The KMS key is disabled."


class KMSInvalidState(CoffreError):
    """A key that exists but cannot be used in its state (destroyed at a tenant's key service)."""

    message = "The KMS key is not in a valid state for this request."


class KMSInvalidCiphertext(CoffreError):
    message = "The key service could not open the wrapped key with this key and context."


class KeyServiceUnavailable(CoffreError):
    """A tenant's own key service (hold your own key) cannot be reached or did not answer in time.

    A subclass of nothing S3 knows: s3/errors.py makes it 503 ServiceUnavailable, which SDKs retry."""

    message = "The key service of this account cannot be reached; try again later."


# Authentication and authorisation
class AccessDenied(CoffreError):
    message = "Access Denied"


# Object Lock (issue #6)
class InvalidBucketState(CoffreError):
    message = "The request is not valid with the current state of the bucket."


class ObjectLockConfigurationNotFoundError(CoffreError):
    message = "Object Lock configuration does not exist for this bucket"


class NoSuchObjectLockConfiguration(CoffreError):
    message = "The specified object does not have a ObjectLock configuration"


# Policies, ACLs, public access, quotas (issue #3)
class MalformedPolicy(CoffreError):
    message = "Policies must be valid JSON and the first byte must be '{'"


class NoSuchBucketPolicy(CoffreError):
    message = "The bucket policy does not exist"


class NoSuchPublicAccessBlockConfiguration(CoffreError):
    message = "The public access block configuration was not found"


class OwnershipControlsNotFoundError(CoffreError):
    message = "The bucket ownership controls were not found"


class AccessControlListNotSupported(CoffreError):
    message = "The bucket does not allow ACLs"


class InvalidBucketAclWithObjectOwnership(CoffreError):
    message = "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"


class MalformedACLError(CoffreError):
    message = "The XML you provided was not well-formed or did not validate against our published schema"


class UnresolvableGrantByEmailAddress(CoffreError):
    message = "The e-mail address you provided does not match any account on record."


# The IAM API's errors (ErrorResponse/Error/Code); also what the admin API reports.
class NoSuchEntity(CoffreError):
    message = "The requested entity does not exist."


class EntityAlreadyExists(CoffreError):
    message = "The entity already exists."


class DeleteConflict(CoffreError):
    message = "Cannot delete an entity that is still in use."


class MalformedPolicyDocument(CoffreError):
    message = "The policy document is malformed."


class LimitExceeded(CoffreError):
    message = "A limit was exceeded."


class ValidationError(CoffreError):
    message = "A parameter is not valid."


class QuotaExceeded(CoffreError):
    message = "The quota of this tenant or bucket does not allow this write."


class TooManyBuckets(CoffreError):
    message = "You have attempted to create more buckets than allowed"


class InvalidAccessKeyId(CoffreError):
    message = "The AWS Access Key Id you provided does not exist in our records."


class SignatureDoesNotMatch(CoffreError):
    message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )


class RequestTimeTooSkewed(CoffreError):
    message = "The difference between the request time and the current time is too large."


class AuthorizationHeaderMalformed(CoffreError):
    message = "The authorization header is malformed."


class AuthorizationQueryParametersError(CoffreError):
    message = "Query-string authentication parameters are malformed."


class ExpiredToken(CoffreError):
    message = "The provided token has expired."


class AccountProblem(CoffreError):
    message = "There is a problem with your account that prevents the operation from completing."


class ServiceUnavailable(CoffreError):
    message = "Please reduce your request rate."
